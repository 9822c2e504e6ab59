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
 * SHARE / LOCK IN SHARE MODE / INTO. Comments, quoted strings and identifiers
 * and dollar quotes are skipped. Anything unknown or malformed is a write.
 * Pure, no allocation.
 */
bool sr__sql_is_read(const char *sql, sr_sql_dialect dialect);

#endif
