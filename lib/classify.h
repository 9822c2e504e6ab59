/*
 * The SQL lexer: classifies a statement as certainly-a-read or a write, and
 * rewrites '?' placeholders (sr_sql_rewrite_placeholders in driver.h).
 */
#ifndef SR_CLASSIFY_H
#define SR_CLASSIFY_H

#include "internal.h"

/*
 * true only when `sql` is certainly a single read-only statement: SELECT,
 * VALUES, SHOW, TABLE, EXPLAIN without ANALYZE, WITH whose parts are all
 * reads; and none of FOR UPDATE / FOR SHARE / FOR NO KEY UPDATE / FOR KEY
 * SHARE / LOCK IN SHARE MODE / INTO, no side-effecting function and no MySQL
 * ":=". Comments, quoted strings and identifiers, dollar quotes and SQLite
 * variables are skipped as each server lexes them. Anything unknown or
 * malformed is a write, and so is anything that lexes differently under a
 * setting the lexer cannot see: PostgreSQL's standard_conforming_strings,
 * MySQL's NO_BACKSLASH_ESCAPES and ANSI_QUOTES (a MySQL statement is lexed
 * once per mode that could change it) or a multi-byte MySQL charset.
 * SR_SQL_GENERIC is a read only if it is one in every dialect.
 * Pure, no allocation.
 */
bool sr__sql_is_read(const char *sql, sr_sql_dialect dialect);

#endif
