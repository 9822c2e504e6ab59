/*
 * sr_result and the builder drivers fill. A result keeps its values and
 * column names in one growable byte arena plus an index of (offset, length)
 * per cell. A small result (a point read) fits in storage allocated with the
 * struct itself, so it costs one malloc and one free; larger ones move their
 * cells, names or bytes to buffers of their own as they grow.
 */
#ifndef SR_RESULT_H
#define SR_RESULT_H

#include "internal.h"

typedef struct sr_cell {
    uint32_t off;
    uint32_t len;     /* UINT32_MAX: SQL NULL */
} sr_cell;

struct sr_result {
    int nrows, ncols;
    int64_t affected;
    int shard;          /* shard of every row unless row_shards is set */
    int *row_shards;    /* scatter: shard of each row */
    size_t shards_cap;  /* row_shards capacity (sr__result_append_row) */
    sr_cell *cells;
    size_t ncells, cells_cap;
    char *arena;
    size_t arena_len, arena_cap;
    uint32_t *colname_off; /* ncols offsets of the column names in the arena */
    /* Which of the three still point into `inline_store` (not to be freed). */
    unsigned char cells_inline, arena_inline, names_inline;
    unsigned char columns_set; /* the columns were set (names copied or shared) */
    sr_colset *colset;         /* shared column names, or NULL when they are in the arena */
    size_t names_cap;
    /* Column types: ncols bytes at types_off in the arena when has_types,
     * else the colset's, else all SR_TYPE_UNKNOWN. */
    uint32_t types_off;
    unsigned char has_types;
    uint32_t header_len;       /* arena bytes before the first value (names, types) */
    int *failed;               /* scatter with partial results: the failed shards */
    int nfailed;
    _Alignas(8) unsigned char inline_store[];
};

struct sr_result_builder {
    sr_result *res;
    int failed;         /* an allocation failed: the result is unusable */
};

/* An empty result for `shard` (-1 for a scatter result); NULL when out of memory. */
sr_result *sr__result_new(int shard);

/* A fresh builder with an empty result for `shard`. */
int sr__result_builder_init(sr_result_builder *rb, int shard);
/* Finishes: returns the result (caller owns) or NULL if building failed. */
sr_result *sr__result_builder_finish(sr_result_builder *rb);
/* Discards a builder's result. */
void sr__result_builder_discard(sr_result_builder *rb);

/*
 * Appends `src` (rows of one shard) to `dst` for scatter. Columns must match
 * in number and names; returns SR_EINVAL when they do not. dst may be empty
 * (no columns yet).
 */
int sr__result_append(sr_result *dst, const sr_result *src);

/* The `len` bytes at p as a whole decimal integer that fits int64 (optional sign; no white
 * space, unlike the option parser sr__parse_int64; no locale). */
bool sr__int64_of(const char *p, size_t len, int64_t *out);

/* The type of column `col` (SR_TYPE_UNKNOWN when out of range). */
sr_type sr__result_coltype(const sr_result *res, int col);

/*
 * Gives `dst` (no columns yet) the columns and types of `src`, leaving out
 * the columns from `ncols` on (ncols < 0: all). SR_EINVAL when dst has
 * columns, SR_ENOMEM.
 */
int sr__result_copy_columns(sr_result *dst, const sr_result *src, int ncols);

/* Appends row `row` of `src` (its first dst->ncols columns) to `dst`, remembering `shard`
 * for it (dst keeps a per-row shard array from its first such row). SR_ENOMEM. */
int sr__result_append_row(sr_result *dst, const sr_result *src, int row, int shard);

/* Makes the rows a driver has added so far readable (nrows) while building goes on. */
void sr__result_sync_rows(sr_result *r);

/* Drops every row but keeps the columns and types, to refill the result (a cursor's batch). */
void sr__result_clear_rows(sr_result *r);

/* Records the failed shards of a partial scatter result (copied). SR_ENOMEM. */
int sr__result_set_failed(sr_result *r, const int *shards, int n);

#endif
