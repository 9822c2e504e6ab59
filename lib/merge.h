/*
 * Merging the rows of a scatter statement (merge.c, merge_sql.c): a plan,
 * from an explicit sr_merge_spec or derived from the SQL's top level, and a
 * streaming merger that pulls rows from each shard and gives back merged
 * rows one at a time: concatenation, a k-way merge for ORDER BY, and a
 * group table for GROUP BY / aggregates / DISTINCT (one row per group).
 * Pure logic over sr_result rows: it never touches a node or a driver, so
 * the scatter engine (scatter.c) and cursors (cursor.c) share it and its
 * unit tests need no server.
 */
#ifndef SR_MERGE_H
#define SR_MERGE_H

#include "result.h"

typedef struct sr_merge_plan sr_merge_plan;

/*
 * Builds the plan of a scatter statement.
 *  - mode SR_MERGE_CONCAT: rows in shard order; the SQL is sent unchanged.
 *  - mode SR_MERGE_SPEC: `spec` (validated: version, column indexes >= 0,
 *    limit/offset ranges, aggs given for every column when naggs > 0); the
 *    SQL is sent unchanged. Columns past a result's width are reported by
 *    the merger (it only then knows the width).
 *  - mode SR_MERGE_AUTO: derived from the SQL's top level in `dialect`: a
 *    statement that is not a single SELECT (a write, DDL, SHOW, ...) is
 *    concatenated; ORDER BY, LIMIT/OFFSET, COUNT/SUM/MIN/MAX/AVG, GROUP BY
 *    on plain columns and DISTINCT are merged; AVG is rewritten to SUM and
 *    COUNT (hidden columns the merger removes); LIMIT n OFFSET m is sent as
 *    LIMIT n+m only when no group, aggregate or DISTINCT spans shards.
 *    Shapes that cannot be merged correctly are SR_EINVAL with `why` saying
 *    why and what to do (use SR_MERGE_SPEC or SR_MERGE_CONCAT, ...).
 * *shard_sql receives the SQL every shard runs (malloc'd, caller frees).
 * Errors: SR_EINVAL (why set), SR_ENOMEM. Pure; thread-safe.
 */
int sr__merge_plan_new(const char *sql, sr_sql_dialect dialect, int mode,
                       const sr_merge_spec *spec, sr_merge_plan **out, char **shard_sql,
                       char *why, size_t whylen);

void sr__merge_plan_free(sr_merge_plan *p);

/* true when the plan only concatenates (rows pass through in shard order). */
bool sr__merge_plan_is_concat(const sr_merge_plan *p);

/* true when the merger must see every row before its first output (groups, aggregates,
 * DISTINCT, or an ORDER BY over shards that are not sorted by it). */
bool sr__merge_plan_is_blocking(const sr_merge_plan *p);

/* Appends a human-readable description of the plan (for sr_explain_all) to buf. */
void sr__merge_plan_describe(const sr_merge_plan *p, char *buf, size_t len);

/* One row: row `row` of `res` (sr_result_shard(res, row) tells its shard). */
typedef struct sr_row_ref {
    const sr_result *res;
    int row;
} sr_row_ref;

/*
 * Where the merger gets rows: the next row of `shard`, 1 with *out set, 0 at
 * the shard's end, or a negative status (the merger returns it as is). The
 * row must stay valid until the next pull for the same shard. An empty shard
 * may still give its columns: before returning 0 it may set out->res to a
 * result holding the columns (out->row = -1), or leave out->res NULL.
 */
typedef int (*sr_merge_pull_fn)(void *ctx, int shard, sr_row_ref *out);

typedef struct sr_merger sr_merger;

/* A merger over `nshards` sources for `plan` (borrowed: must outlive it). SR_ENOMEM. */
int sr__merger_new(const sr_merge_plan *plan, int nshards, sr_merge_pull_fn pull, void *ctx,
                   sr_merger **out);

/*
 * The next merged row: 1 with *out set (valid until the next call or free),
 * 0 when done, negative on failure: a pull's status passed through, or
 * SR_EINVAL with `why` (shards returned different columns, a column of the
 * spec past the result's width, values of one column that cannot be
 * compared or added), SR_ENOMEM. Rows computed by the merger (groups,
 * aggregates) live in a result of its own whose rows have shard -1; rows
 * passed through keep their source result and shard. The merger pulls
 * lazily: from a shard only when it needs that shard's next row.
 */
int sr__merger_next(sr_merger *m, sr_row_ref *out, char *why, size_t whylen);

/*
 * The merged result's column names and types, once known (after the first
 * sr__merger_next call that returned >= 0): a result with no rows holding
 * them (hidden columns removed), or NULL when no shard gave columns.
 */
const sr_result *sr__merger_columns(const sr_merger *m);

void sr__merger_free(sr_merger *m);

#endif
