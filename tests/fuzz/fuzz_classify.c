/*
 * libFuzzer target for the SQL lexer: sr__sql_is_read and
 * sr_sql_rewrite_placeholders on arbitrary bytes, in every dialect.
 *
 * Built by meson with -Dfuzz=true and run by scripts/fuzz.sh; by hand:
 *
 *   clang -g -O1 -std=c11 -fsanitize=fuzzer,address,undefined \
 *         -D_POSIX_C_SOURCE=200809L -DSR_BUILDING_LIBRARY -Iinclude -Ilib \
 *         tests/fuzz/fuzz_classify.c lib/classify.c -o fuzz_classify
 *   mkdir -p corpus && ./fuzz_classify -max_total_time=60 corpus
 *
 * The first input byte picks the dialect, the rest is the statement (copied
 * to an exactly sized, NUL-terminated buffer, so ASan catches any read past
 * the end; an embedded NUL simply ends the statement early).
 *
 * Besides "no crash, no over-read, no leak", it checks properties that hold
 * for every input:
 *  - the rewrite succeeds, and leaves a statement without '?' unchanged;
 *  - in the PostgreSQL-like dialects, rewriting does not change how the
 *    statement classifies, and rewriting the result again changes nothing
 *    and counts the same number of parameters ($1..$k are now native).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"

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
        if (sr__sql_is_read(out, d) != read)
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
