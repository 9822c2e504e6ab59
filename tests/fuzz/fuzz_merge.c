/*
 * libFuzzer target for scatter merging (lib/merge*.c): deriving a merge plan
 * from arbitrary SQL, in every dialect, and running the merger over shard
 * results whose columns, types and values come from the input too.
 *
 * Built by meson with -Dfuzz=true and run by scripts/fuzz.sh.
 *
 * Input: byte 0 picks the dialect, byte 1 the number of shards (1..4) and
 * columns (1..6), the next bytes up to the first 0xff are the SQL, the rest
 * feeds the shards' values (each value: a type byte, a length byte, the
 * bytes). Besides "no crash, no over-read, no leak" it checks that:
 *  - a plan that was refused gives a reason, and one that was made gives
 *    shard SQL and a description;
 *  - the merger never returns a row outside the results it was given or its
 *    own, nor a row index out of range, and never more rows than its
 *    inputs hold when nothing is grouped (a concatenation or an ORDER BY).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "merge.h"

typedef struct shards {
    int n;
    sr_result *res[4];
    int next[4];
} shards;

static int pull(void *ctx, int shard, sr_row_ref *out)
{
    shards *s = ctx;
    sr_result *r = s->res[shard];
    if (s->next[shard] < sr_result_nrows(r)) {
        out->res = r;
        out->row = s->next[shard]++;
        return 1;
    }
    out->res = r;
    out->row = -1;
    return 0;
}

static sr_result *build(int shard, int ncols, const uint8_t **p, const uint8_t *end)
{
    sr_result_builder rb;
    if (sr__result_builder_init(&rb, shard) != SR_OK)
        return NULL;
    const char *names[6] = {"a", "b", "c", "d", "e", "f"};
    sr_type types[6];
    for (int i = 0; i < ncols; i++)
        types[i] = *p < end ? (sr_type)(2 + (**p % 7)) : SR_TYPE_TEXT;
    if (*p < end)
        (*p)++;
    sr_result_builder_columns(&rb, ncols, names);
    sr_result_builder_types(&rb, types);
    int rows = *p < end ? **p % 8 : 0;
    if (*p < end)
        (*p)++;
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < ncols; c++) {
            size_t len = *p < end ? **p % 12 : 0;
            bool null = *p < end && **p >= 240;
            if (*p < end)
                (*p)++;
            if ((size_t)(end - *p) < len)
                len = (size_t)(end - *p);
            sr_result_builder_value(&rb, null ? NULL : (const char *)*p, len);
            *p += len;
        }
    }
    return sr__result_builder_finish(&rb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    sr_sql_dialect dialect = (sr_sql_dialect)(data[0] % 4);
    int nshards = 1 + data[1] % 4, ncols = 1 + (data[1] / 4) % 6;
    const uint8_t *sql_start = data + 2, *end = data + size;
    const uint8_t *sql_end = memchr(sql_start, 0xff, (size_t)(end - sql_start));
    if (!sql_end)
        sql_end = end;
    size_t sql_len = (size_t)(sql_end - sql_start);
    char *sql = malloc(sql_len + 1);
    if (!sql)
        return 0;
    memcpy(sql, sql_start, sql_len);
    sql[sql_len] = '\0';

    sr_merge_plan *plan = NULL;
    char *shard_sql = NULL;
    char why[512] = "";
    int rc = sr__merge_plan_new(sql, dialect, SR_MERGE_AUTO, NULL, &plan, &shard_sql, why,
                                sizeof why);
    free(sql);
    if (rc == SR_EINVAL && !why[0])
        abort(); /* a refusal always says why */
    if (rc != SR_OK)
        return 0;
    if (!shard_sql)
        abort();
    char desc[2048];
    sr__merge_plan_describe(plan, desc, sizeof desc);

    shards s = {.n = nshards};
    const uint8_t *p = sql_end < end ? sql_end + 1 : end;
    int total = 0;
    for (int i = 0; i < nshards; i++) {
        s.res[i] = build(i, ncols, &p, end);
        total += sr_result_nrows(s.res[i]);
    }
    sr_merger *m = NULL;
    if (sr__merger_new(plan, nshards, pull, &s, &m) == SR_OK) {
        sr_row_ref ref;
        int out = 0;
        while ((rc = sr__merger_next(m, &ref, why, sizeof why)) > 0) {
            if (!ref.res || ref.row < 0 || ref.row >= sr_result_nrows(ref.res))
                abort();
            for (int c = 0; c < sr_result_ncols(ref.res); c++)
                (void)sr_result_length(ref.res, ref.row, c);
            if (++out > total && !sr__merge_plan_is_blocking(plan))
                abort();
        }
        sr__merger_free(m);
    }
    for (int i = 0; i < nshards; i++)
        sr_result_free(s.res[i]);
    free(shard_sql);
    sr__merge_plan_free(plan);
    return 0;
}
