/*
 * The merge plan as merge_sql.c (derivation from SQL) builds it and merge.c
 * (the merger) runs it. Private to those two files.
 */
#ifndef SR_MERGE_PLAN_H
#define SR_MERGE_PLAN_H

#include "merge.h"

/* An AVG column: the shards send its SUM in its place and its COUNT hidden at the end. */
#define SR_AGG_AVG 100

typedef enum merge_kind {
    MERGE_CONCAT = 0, /* rows in shard order */
    MERGE_ORDER,      /* k-way merge of sorted shards (LIMIT / OFFSET on the stream) */
    MERGE_GROUP       /* groups / aggregates / DISTINCT: everything first, one row per group */
} merge_kind;

typedef struct merge_key {
    int col;          /* output column */
    bool desc;
    bool nulls_first; /* resolved: the dialect's default or as written */
} merge_key;

struct sr_merge_plan {
    merge_kind kind;
    sr_sql_dialect dialect;
    int norder;
    merge_key *order;
    int64_t limit;    /* -1: none */
    int64_t offset;
    int ngroup;
    int *group;       /* group key columns */
    int ncols;        /* output columns when known from the SQL (0: from the shards' results) */
    int *aggs;        /* NULL, or ncols entries: sr_agg / SR_AGG_AVG per output column */
    int *avg_count;   /* NULL, or ncols entries: the hidden COUNT column of an AVG, else -1 */
    int nhidden;      /* hidden columns after the output columns */
    bool distinct;
    bool from_spec;
    bool limit_pushed; /* each shard got LIMIT offset+limit */
};

/* A plan with nothing set (kind CONCAT, no limit). NULL when out of memory. */
sr_merge_plan *sr__merge_plan_alloc(sr_sql_dialect dialect);

/* Derives `p` from the SQL (merge_sql.c); *shard_sql gets the SQL to send. */
int sr__merge_plan_from_sql(sr_merge_plan *p, const char *sql, char **shard_sql, char *why,
                            size_t whylen);

#endif
