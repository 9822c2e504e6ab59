/*
 * libFuzzer target for the SQL lexer: sr__sql_is_read and
 * sr_sql_rewrite_placeholders on arbitrary bytes, in every dialect.
 *
 * Built by meson with -Dfuzz=true and run by scripts/fuzz.sh; by hand:
 *
 *   clang -g -O1 -std=c11 -fsanitize=fuzzer,address,undefined \
 *         -D_POSIX_C_SOURCE=200809L -DSR_BUILDING_LIBRARY -DSR_HAVE_SQLITE=1 \
 *         -Iinclude -Ilib tests/fuzz/fuzz_classify.c lib/classify.c -lsqlite3 -o fuzz_classify
 *   mkdir -p corpus && ./fuzz_classify -dict=tests/fuzz/classify.dict -max_total_time=60 \
 *         corpus tests/fuzz/corpus/classify
 *
 * The first input byte picks the dialect, the rest is the statement (copied
 * to an exactly sized, NUL-terminated buffer, so ASan catches any read past
 * the end; an embedded NUL simply ends the statement early).
 *
 * Besides "no crash, no over-read, no leak", it checks properties that hold
 * for every input:
 *  - the rewrite succeeds, and leaves a statement without '?' unchanged;
 *  - in the PostgreSQL-like dialects, rewriting does not change how
 *    PostgreSQL's reading classifies the statement, and rewriting the
 *    result again changes nothing
 *    and counts the same number of parameters ($1..$k are now native);
 *  - SQLite is the referee for the SQLite and generic dialects: when the
 *    lexer says "read", SQLite itself must see exactly one statement, and
 *    that statement must be read-only (sqlite3_stmt_readonly).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"

#if SR_HAVE_SQLITE
#include <sqlite3.h>

/* Prepare never runs a statement, but PRAGMA flags change the connection as
 * they compile: refuse them, so every input sees the same referee. */
static int deny_pragma(void *arg, int action, const char *a, const char *b, const char *c, const char *d)
{
    (void)arg, (void)a, (void)b, (void)c, (void)d;
    return action == SQLITE_PRAGMA ? SQLITE_DENY : SQLITE_OK;
}

/* One in-memory database for the whole run, with the tables the seeds use. */
static sqlite3 *referee(void)
{
    static sqlite3 *db;
    if (db)
        return db;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        abort();
    if (sqlite3_exec(db,
                     "CREATE TABLE t(id INTEGER PRIMARY KEY, x, a, b, c, v);"
                     "CREATE TABLE users(id INTEGER PRIMARY KEY, name);"
                     "CREATE TABLE s(id, v);"
                     "CREATE VIEW vt AS SELECT id, x FROM t;",
                     NULL, NULL, NULL) != SQLITE_OK)
        abort();
    sqlite3_set_authorizer(db, deny_pragma, NULL);
    return db;
}

/*
 * True when SQLite would see more than a single read-only statement.
 * Statements are split by following sqlite3_prepare_v2's tail. A statement
 * that fails to prepare ends the walk: after a syntax error the tail points
 * into the middle of the statement, so nothing is known about the rest. It
 * still counts when a statement before it prepared: then it is certainly a
 * second, non-empty statement (a tail of only spaces and comments prepares
 * to no statement and no error).
 */
static bool sqlite_sees_write(const char *sql)
{
    sqlite3 *db = referee();
    int statements = 0;
    const char *z = sql;
    while (*z) {
        sqlite3_stmt *st = NULL;
        const char *tail = NULL;
        int rc = sqlite3_prepare_v2(db, z, -1, &st, &tail);
        if (rc != SQLITE_OK) {
            sqlite3_finalize(st);
            return statements > 0;
        }
        if (st) {
            statements++;
            bool ro = sqlite3_stmt_readonly(st) != 0;
            sqlite3_finalize(st);
            if (!ro || statements > 1)
                return true;
        }
        if (!tail || tail <= z)
            break;
        z = tail;
    }
    return false;
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    sr_sql_dialect d = (sr_sql_dialect)(data[0] % 4);
    size_t n = size - 1;
    char *sql = malloc(n + 1);
    if (!sql)
        return 0;
    memcpy(sql, data + 1, n);
    sql[n] = '\0';

    bool read = sr__sql_is_read(sql, d);

#if SR_HAVE_SQLITE
    if (read && (d == SR_SQL_SQLITE || d == SR_SQL_GENERIC) && sqlite_sees_write(sql))
        abort();
#endif

    char *out = NULL;
    int count = -1;
    int rc = sr_sql_rewrite_placeholders(sql, d, &out, &count);
    if (rc == SR_ENOMEM) {
        free(sql);
        return 0;
    }
    if (rc != SR_OK || !out || count < 0)
        abort();
    if (!strchr(sql, '?') && strcmp(out, sql) != 0)
        abort();

    if ((d == SR_SQL_POSTGRES || d == SR_SQL_GENERIC) && strcmp(out, sql) != 0) {
        /*
         * The rewrite follows PostgreSQL's tokens, so it keeps PostgreSQL's
         * reading; generic also asks SQLite, to which "x(a?)" and
         * "x(a $1)" differ (the space ends a TCL-style variable).
         */
        if (sr__sql_is_read(out, SR_SQL_POSTGRES) != sr__sql_is_read(sql, SR_SQL_POSTGRES))
            abort();
        char *again = NULL;
        int count2 = -1;
        rc = sr_sql_rewrite_placeholders(out, d, &again, &count2);
        if (rc == SR_OK && (strcmp(again, out) != 0 || count2 != count))
            abort();
        free(again);
    }

    free(out);
    free(sql);
    return 0;
}
