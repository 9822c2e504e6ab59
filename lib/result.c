/*
 * Results: one shape for every backend. Values and column names live in one
 * growable arena (NUL-terminated, so sr_result_value can hand out C strings)
 * and are addressed by offset, so growing the arena never invalidates them.
 */
#include "result.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared column names ---- */

struct sr_colset {
    _Atomic int refs;
    int ncols;
    unsigned char *types; /* ncols types after the strings, or NULL */
    char *names[]; /* ncols pointers, then the strings, in one allocation */
};

static bool column_type_ok(int t)
{
    return t == SR_TYPE_UNKNOWN || (t >= SR_TYPE_INT && t <= SR_TYPE_DATETIME);
}

SR_API sr_colset *sr_colset_new(int ncols, const char *const *names)
{
    return sr_colset_new_typed(ncols, names, NULL);
}

SR_API sr_colset *sr_colset_new_typed(int ncols, const char *const *names, const sr_type *types)
{
    if (ncols < 0 || (ncols > 0 && !names))
        return NULL;
    for (int i = 0; types && i < ncols; i++)
        if (!column_type_ok(types[i]))
            return NULL;
    size_t bytes = sizeof(sr_colset) + (size_t)ncols * sizeof(char *);
    for (int i = 0; i < ncols; i++)
        bytes += strlen(names[i] ? names[i] : "") + 1;
    if (types)
        bytes += (size_t)ncols;
    sr_colset *cs = malloc(bytes);
    if (!cs)
        return NULL;
    atomic_init(&cs->refs, 1);
    cs->ncols = ncols;
    cs->types = NULL;
    char *p = (char *)&cs->names[ncols];
    for (int i = 0; i < ncols; i++) {
        const char *n = names[i] ? names[i] : "";
        size_t len = strlen(n) + 1;
        memcpy(p, n, len);
        cs->names[i] = p;
        p += len;
    }
    if (types) {
        cs->types = (unsigned char *)p;
        for (int i = 0; i < ncols; i++)
            cs->types[i] = (unsigned char)types[i];
    }
    return cs;
}

SR_API void sr_colset_release(sr_colset *cs)
{
    if (cs && atomic_fetch_sub_explicit(&cs->refs, 1, memory_order_acq_rel) == 1)
        free(cs);
}

SR_API int sr_result_builder_colset(sr_result_builder *rb, sr_colset *cs)
{
    if (!rb || !rb->res || !cs)
        return SR_EINVAL;
    sr_result *r = rb->res;
    if (r->columns_set || r->ncells != 0)
        return SR_EINVAL; /* columns come once, before values */
    atomic_fetch_add_explicit(&cs->refs, 1, memory_order_relaxed);
    r->colset = cs;
    r->ncols = cs->ncols;
    r->columns_set = 1;
    r->header_len = (uint32_t)r->arena_len;
    return SR_OK;
}

#define SR_CELL_NULL UINT32_MAX

/* Inline storage carved out of the result's own allocation (see result.h). */
#define INLINE_CELLS 16
#define INLINE_NAMES 8
#define INLINE_ARENA 384
#define INLINE_BYTES \
    (INLINE_CELLS * sizeof(sr_cell) + INLINE_NAMES * sizeof(uint32_t) + INLINE_ARENA)

/* Grows a buffer that may still live in the inline store: the first growth copies it out. */
static void *grow(void *buf, unsigned char *is_inline, size_t used, size_t cap)
{
    if (!*is_inline)
        return realloc(buf, cap);
    void *p = malloc(cap);
    if (p) {
        if (used)
            memcpy(p, buf, used);
        *is_inline = 0;
    }
    return p;
}

/* The growth paths are kept out of line (and cold): inlined, they made
 * sr_result_builder_value, which runs once per value, save and restore six
 * registers on every call. */
#define SR_SLOW_PATH __attribute__((noinline, cold))

static SR_SLOW_PATH int arena_grow(sr_result *r, size_t extra);

static inline int arena_reserve(sr_result *r, size_t extra)
{
    return r->arena_len + extra <= r->arena_cap ? SR_OK : arena_grow(r, extra);
}

static SR_SLOW_PATH int arena_grow(sr_result *r, size_t extra)
{
    size_t cap = r->arena_cap ? r->arena_cap : 256;
    while (cap < r->arena_len + extra) {
        if (cap > SIZE_MAX / 2)
            return SR_ENOMEM;
        cap *= 2;
    }
    /* Offsets are 32-bit: a single result is capped at 4 GiB of text. */
    if (cap > UINT32_MAX)
        cap = UINT32_MAX;
    if (r->arena_len + extra > cap)
        return SR_ENOMEM;
    char *a = grow(r->arena, &r->arena_inline, r->arena_len, cap);
    if (!a)
        return SR_ENOMEM;
    r->arena = a;
    r->arena_cap = cap;
    return SR_OK;
}

/* Copies bytes plus a NUL into the arena; returns the offset via *off. */
static inline int arena_put(sr_result *r, const char *p, size_t len, uint32_t *off)
{
    if (len >= UINT32_MAX - 1 || arena_reserve(r, len + 1) != SR_OK)
        return SR_ENOMEM;
    *off = (uint32_t)r->arena_len;
    if (len)
        memcpy(r->arena + r->arena_len, p, len);
    r->arena[r->arena_len + len] = '\0';
    r->arena_len += len + 1;
    return SR_OK;
}

static SR_SLOW_PATH int cells_grow(sr_result *r, size_t extra);

static inline int cells_reserve(sr_result *r, size_t extra)
{
    return r->ncells + extra <= r->cells_cap ? SR_OK : cells_grow(r, extra);
}

static SR_SLOW_PATH int cells_grow(sr_result *r, size_t extra)
{
    size_t cap = r->cells_cap ? r->cells_cap * 2 : 16;
    while (cap < r->ncells + extra)
        cap *= 2;
    sr_cell *c = grow(r->cells, &r->cells_inline, r->ncells * sizeof *c, cap * sizeof *c);
    if (!c)
        return SR_ENOMEM;
    r->cells = c;
    r->cells_cap = cap;
    return SR_OK;
}

sr_result *sr__result_new(int shard)
{
    /* malloc, not calloc: the inline store need not be zeroed. */
    sr_result *r = malloc(sizeof *r + INLINE_BYTES);
    if (!r)
        return NULL;
    memset(r, 0, sizeof *r);
    r->shard = shard;
    r->cells = (sr_cell *)(void *)r->inline_store;
    r->cells_cap = INLINE_CELLS;
    r->colname_off = (uint32_t *)(void *)(r->inline_store + INLINE_CELLS * sizeof(sr_cell));
    r->names_cap = INLINE_NAMES;
    r->arena = (char *)r->inline_store + INLINE_CELLS * sizeof(sr_cell) +
               INLINE_NAMES * sizeof(uint32_t);
    r->arena_cap = INLINE_ARENA;
    r->cells_inline = r->arena_inline = r->names_inline = 1;
    return r;
}

int sr__result_builder_init(sr_result_builder *rb, int shard)
{
    rb->failed = 0;
    rb->res = sr__result_new(shard);
    return rb->res ? SR_OK : SR_ENOMEM;
}

sr_result *sr__result_builder_finish(sr_result_builder *rb)
{
    sr_result *r = rb->res;
    rb->res = NULL;
    if (!r)
        return NULL;
    if (rb->failed) {
        sr_result_free(r);
        return NULL;
    }
    /* A row left half-filled by a driver would make every later index wrong. */
    if (r->ncols > 0 && r->ncells % (size_t)r->ncols != 0) {
        sr_result_free(r);
        return NULL;
    }
    r->nrows = r->ncols > 0 ? (int)(r->ncells / (size_t)r->ncols) : 0;
    return r;
}

void sr__result_builder_discard(sr_result_builder *rb)
{
    sr_result_free(rb->res);
    rb->res = NULL;
}

SR_API int sr_result_builder_columns(sr_result_builder *rb, int ncols, const char *const *names)
{
    if (!rb || !rb->res || ncols < 0 || (ncols > 0 && !names))
        return SR_EINVAL;
    sr_result *r = rb->res;
    if (r->columns_set || r->ncells != 0)
        return SR_EINVAL; /* columns come once, before values */
    if ((size_t)ncols > r->names_cap) {
        uint32_t *offs = grow(r->colname_off, &r->names_inline, 0, (size_t)ncols * sizeof *offs);
        if (!offs) {
            rb->failed = 1;
            return SR_ENOMEM;
        }
        r->colname_off = offs;
        r->names_cap = (size_t)ncols;
    }
    for (int i = 0; i < ncols; i++) {
        const char *n = names[i] ? names[i] : "";
        if (arena_put(r, n, strlen(n), &r->colname_off[i]) != SR_OK) {
            rb->failed = 1;
            return SR_ENOMEM;
        }
    }
    r->ncols = ncols;
    r->columns_set = 1;
    r->header_len = (uint32_t)r->arena_len;
    return SR_OK;
}

/* Puts the column types in the arena: from `types`, else the colset's, else unknown. */
static int types_put(sr_result *r, const sr_type *types)
{
    size_t n = (size_t)r->ncols;
    if (n >= UINT32_MAX - 1 || arena_reserve(r, n + 1) != SR_OK) /* ncols bytes + NUL */
        return SR_ENOMEM;
    uint32_t off = (uint32_t)r->arena_len;
    r->arena_len += n + 1;
    unsigned char *t = (unsigned char *)r->arena + off;
    t[n] = '\0';
    for (int i = 0; i < r->ncols; i++)
        t[i] = types ? (unsigned char)types[i]
                     : r->colset && r->colset->types ? r->colset->types[i] : SR_TYPE_UNKNOWN;
    r->types_off = off;
    r->has_types = 1;
    if (r->ncells == 0)
        r->header_len = (uint32_t)r->arena_len;
    return SR_OK;
}

SR_API int sr_result_builder_types(sr_result_builder *rb, const sr_type *types)
{
    if (!rb || !rb->res || (!types && rb->res->ncols > 0))
        return SR_EINVAL;
    sr_result *r = rb->res;
    if (!r->columns_set || r->ncells != 0 || r->has_types)
        return SR_EINVAL;
    for (int i = 0; i < r->ncols; i++)
        if (!column_type_ok(types[i]))
            return SR_EINVAL;
    if (types_put(r, types) != SR_OK) {
        rb->failed = 1;
        return SR_ENOMEM;
    }
    return SR_OK;
}

SR_API int sr_result_builder_refine_type(sr_result_builder *rb, int col, sr_type type)
{
    if (!rb || !rb->res)
        return SR_EINVAL;
    sr_result *r = rb->res;
    if (!r->columns_set || col < 0 || col >= r->ncols || !column_type_ok(type))
        return SR_EINVAL;
    if (!r->has_types && types_put(r, NULL) != SR_OK) {
        rb->failed = 1;
        return SR_ENOMEM;
    }
    unsigned char *t = (unsigned char *)r->arena + r->types_off;
    if (t[col] == SR_TYPE_UNKNOWN)
        t[col] = (unsigned char)type;
    return SR_OK;
}

sr_type sr__result_coltype(const sr_result *res, int col)
{
    if (!res || col < 0 || col >= res->ncols)
        return SR_TYPE_UNKNOWN;
    if (res->has_types)
        return (sr_type)(unsigned char)res->arena[res->types_off + (uint32_t)col];
    if (res->colset && res->colset->types)
        return (sr_type)res->colset->types[col];
    return SR_TYPE_UNKNOWN;
}

int sr__result_copy_columns(sr_result *dst, const sr_result *src, int ncols)
{
    if (dst->columns_set || dst->ncells != 0)
        return SR_EINVAL;
    if (ncols < 0 || ncols > src->ncols)
        ncols = src->ncols;
    sr_result_builder rb = {dst, 0};
    int rc;
    if (src->colset && ncols == src->ncols) {
        rc = sr_result_builder_colset(&rb, src->colset);
    } else {
        const char *few[16] = {0};
        const char **names = ncols <= 16 ? few : malloc((size_t)ncols * sizeof *names);
        if (!names)
            return SR_ENOMEM;
        for (int i = 0; i < ncols; i++)
            names[i] = sr_result_colname(src, i);
        rc = sr_result_builder_columns(&rb, ncols, names);
        if (names != few)
            free(names);
    }
    if (rc != SR_OK || !(src->has_types || (src->colset && src->colset->types)))
        return rc;
    if (types_put(dst, NULL) != SR_OK)
        return SR_ENOMEM;
    unsigned char *t = (unsigned char *)dst->arena + dst->types_off;
    for (int i = 0; i < ncols; i++)
        t[i] = (unsigned char)sr__result_coltype(src, i);
    return SR_OK;
}

void sr__result_sync_rows(sr_result *r)
{
    r->nrows = r->ncols > 0 ? (int)(r->ncells / (size_t)r->ncols) : 0;
}

void sr__result_clear_rows(sr_result *r)
{
    if (r->has_types && r->types_off >= r->header_len) {
        /* Types given after the first values (refined): keep them in the header. */
        memmove(r->arena + r->header_len, r->arena + r->types_off, (size_t)r->ncols + 1);
        r->types_off = r->header_len;
        r->header_len += (uint32_t)r->ncols + 1;
    }
    r->ncells = 0;
    r->nrows = 0;
    r->arena_len = r->header_len;
    free(r->row_shards);
    r->row_shards = NULL;
    r->shards_cap = 0;
}

int sr__result_set_failed(sr_result *r, const int *shards, int n)
{
    if (n <= 0)
        return SR_OK;
    int *f = malloc((size_t)n * sizeof *f);
    if (!f)
        return SR_ENOMEM;
    memcpy(f, shards, (size_t)n * sizeof *f);
    free(r->failed);
    r->failed = f;
    r->nfailed = n;
    return SR_OK;
}

/* sr_result_builder_value when the cells or the arena must grow first. */
static SR_SLOW_PATH int value_slow(sr_result_builder *rb, const char *value, size_t len)
{
    sr_result *r = rb->res;
    if (cells_reserve(r, 1) != SR_OK) {
        rb->failed = 1;
        return SR_ENOMEM;
    }
    sr_cell *c = &r->cells[r->ncells];
    if (!value) {
        c->off = 0;
        c->len = SR_CELL_NULL;
    } else {
        if (arena_put(r, value, len, &c->off) != SR_OK) {
            rb->failed = 1;
            return SR_ENOMEM;
        }
        c->len = (uint32_t)len;
    }
    r->ncells++;
    return SR_OK;
}

SR_API int sr_result_builder_value(sr_result_builder *rb, const char *value, size_t len)
{
    if (!rb || !rb->res)
        return SR_EINVAL;
    sr_result *r = rb->res;
    if (r->ncols == 0)
        return SR_EINVAL;
    /* Runs once per value: room is checked up front so that the common case
     * calls nothing but memcpy, as its last act, and needs no stack frame. */
    if (r->ncells >= r->cells_cap ||
        (value && (len >= UINT32_MAX - 1 || r->arena_len + len + 1 > r->arena_cap)))
        return value_slow(rb, value, len);
    sr_cell *c = &r->cells[r->ncells++];
    if (!value) {
        c->off = 0;
        c->len = SR_CELL_NULL;
        return SR_OK;
    }
    char *dst = r->arena + r->arena_len;
    c->off = (uint32_t)r->arena_len;
    c->len = (uint32_t)len;
    r->arena_len += len + 1;
    dst[len] = '\0';
    if (len)
        memcpy(dst, value, len);
    return SR_OK;
}

SR_API void sr_result_builder_affected(sr_result_builder *rb, int64_t affected)
{
    if (rb && rb->res)
        rb->res->affected = affected;
}

int sr__result_append(sr_result *dst, const sr_result *src)
{
    if (dst->ncols == 0 && dst->nrows == 0 && dst->ncells == 0 && !dst->columns_set) {
        /* First shard to answer: take its columns. */
        sr_result_builder rb = {dst, 0};
        const char **names = NULL;
        if (src->ncols > 0) {
            names = malloc((size_t)src->ncols * sizeof *names);
            if (!names)
                return SR_ENOMEM;
            for (int i = 0; i < src->ncols; i++)
                names[i] = sr_result_colname(src, i);
        }
        int rc = sr_result_builder_columns(&rb, src->ncols, names);
        free(names);
        if (rc == SR_OK && (src->has_types || (src->colset && src->colset->types))) {
            rc = types_put(dst, NULL);
            for (int i = 0; rc == SR_OK && i < src->ncols; i++)
                ((unsigned char *)dst->arena + dst->types_off)[i] =
                    (unsigned char)sr__result_coltype(src, i);
        }
        if (rc != SR_OK)
            return rc;
    } else {
        if (dst->ncols != src->ncols)
            return SR_EINVAL;
        for (int i = 0; i < src->ncols; i++)
            if (strcmp(sr_result_colname(dst, i), sr_result_colname(src, i)) != 0)
                return SR_EINVAL;
    }
    dst->affected += src->affected;
    if (src->nrows == 0)
        return SR_OK;

    int *rs = realloc(dst->row_shards, (size_t)(dst->nrows + src->nrows) * sizeof *rs);
    if (!rs)
        return SR_ENOMEM;
    dst->row_shards = rs;
    dst->shards_cap = (size_t)(dst->nrows + src->nrows);
    if (cells_reserve(dst, src->ncells) != SR_OK)
        return SR_ENOMEM;
    for (size_t i = 0; i < src->ncells; i++) {
        const sr_cell *sc = &src->cells[i];
        sr_cell *dc = &dst->cells[dst->ncells];
        if (sc->len == SR_CELL_NULL) {
            *dc = *sc;
        } else {
            uint32_t off;
            if (arena_put(dst, src->arena + sc->off, sc->len, &off) != SR_OK)
                return SR_ENOMEM; /* cells beyond ncells are not visible: dst stays consistent */
            dc->off = off;
            dc->len = sc->len;
        }
        dst->ncells++;
    }
    for (int i = 0; i < src->nrows; i++)
        rs[dst->nrows + i] = src->row_shards ? src->row_shards[i] : src->shard;
    dst->nrows += src->nrows;
    return SR_OK;
}

int sr__result_append_row(sr_result *dst, const sr_result *src, int row, int shard)
{
    size_t n = (size_t)dst->ncols;
    if ((size_t)dst->nrows >= dst->shards_cap) {
        size_t cap = dst->shards_cap ? dst->shards_cap * 2 : 16;
        int *rs = realloc(dst->row_shards, cap * sizeof *rs);
        if (!rs)
            return SR_ENOMEM;
        if (!dst->row_shards) /* rows added before the first per-row shard */
            for (int i = 0; i < dst->nrows; i++)
                rs[i] = dst->shard;
        dst->row_shards = rs;
        dst->shards_cap = cap;
    }
    if (cells_reserve(dst, n) != SR_OK)
        return SR_ENOMEM;
    const sr_cell *sc = &src->cells[(size_t)row * (size_t)src->ncols];
    size_t start = dst->ncells;
    for (size_t i = 0; i < n; i++) {
        sr_cell *dc = &dst->cells[start + i];
        if (sc[i].len == SR_CELL_NULL) {
            *dc = sc[i];
        } else if (arena_put(dst, src->arena + sc[i].off, sc[i].len, &dc->off) != SR_OK) {
            return SR_ENOMEM; /* ncells not yet moved: dst stays consistent */
        } else {
            dc->len = sc[i].len;
        }
    }
    dst->ncells = start + n;
    dst->row_shards[dst->nrows++] = shard;
    return SR_OK;
}

/* ---- public accessors ---- */

static const sr_cell *cell_at(const sr_result *res, int row, int col)
{
    if (!res || row < 0 || col < 0 || row >= res->nrows || col >= res->ncols)
        return NULL;
    return &res->cells[(size_t)row * (size_t)res->ncols + (size_t)col];
}

SR_API int sr_result_nrows(const sr_result *res) { return res ? res->nrows : 0; }
SR_API int sr_result_ncols(const sr_result *res) { return res ? res->ncols : 0; }

SR_API const char *sr_result_colname(const sr_result *res, int col)
{
    if (!res || col < 0 || col >= res->ncols)
        return NULL;
    return res->colset ? res->colset->names[col] : res->arena + res->colname_off[col];
}

SR_API const char *sr_result_value(const sr_result *res, int row, int col)
{
    const sr_cell *c = cell_at(res, row, col);
    if (!c || c->len == SR_CELL_NULL)
        return NULL;
    return res->arena + c->off;
}

SR_API size_t sr_result_length(const sr_result *res, int row, int col)
{
    const sr_cell *c = cell_at(res, row, col);
    return (!c || c->len == SR_CELL_NULL) ? 0 : c->len;
}

SR_API int sr_result_is_null(const sr_result *res, int row, int col)
{
    const sr_cell *c = cell_at(res, row, col);
    return !c || c->len == SR_CELL_NULL;
}

SR_API int64_t sr_result_affected(const sr_result *res) { return res ? res->affected : -1; }

SR_API int sr_result_shard(const sr_result *res, int row)
{
    if (!res || row < 0 || row >= res->nrows)
        return SR_EINVAL;
    return res->row_shards ? res->row_shards[row] : res->shard;
}

SR_API sr_type sr_result_coltype(const sr_result *res, int col)
{
    return sr__result_coltype(res, col);
}

bool sr__int64_of(const char *p, size_t len, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (i < len && (p[i] == '-' || p[i] == '+'))
        neg = p[i++] == '-';
    if (i == len)
        return false;
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (limit - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

/* A boolean as a driver without ABI 6 may give it ("t" / "f"): 1 or 0, else -1. */
static int bool_letter(const sr_result *res, int col, const char *p, uint32_t len)
{
    if (sr__result_coltype(res, col) == SR_TYPE_BOOL && len == 1 && (*p == 't' || *p == 'f'))
        return *p == 't';
    return -1;
}

SR_API int sr_result_int64(const sr_result *res, int row, int col, int64_t *out)
{
    const sr_cell *c = cell_at(res, row, col);
    if (!c || c->len == SR_CELL_NULL || !out)
        return SR_EINVAL;
    const char *p = res->arena + c->off;
    int b = bool_letter(res, col, p, c->len);
    if (b >= 0) {
        *out = b;
        return SR_OK;
    }
    return sr__int64_of(p, c->len, out) ? SR_OK : SR_EINVAL;
}

SR_API int sr_result_double(const sr_result *res, int row, int col, double *out)
{
    const sr_cell *c = cell_at(res, row, col);
    if (!c || c->len == SR_CELL_NULL || !out)
        return SR_EINVAL;
    const char *p = res->arena + c->off;
    int b = bool_letter(res, col, p, c->len);
    if (b >= 0) {
        *out = b;
        return SR_OK;
    }
    if (c->len == 0 || strlen(p) != c->len || p[0] == ' ' || (p[0] >= '\t' && p[0] <= '\r'))
        return SR_EINVAL;
    char *end;
    double d = strtod(p, &end);
    if (end != p + c->len)
        return SR_EINVAL;
    *out = d;
    return SR_OK;
}

SR_API const void *sr_result_bytes(const sr_result *res, int row, int col, size_t *len)
{
    const sr_cell *c = cell_at(res, row, col);
    if (!c || c->len == SR_CELL_NULL) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = c->len;
    return res->arena + c->off;
}

SR_API int sr_result_failed_shard(const sr_result *res, int i)
{
    if (!res || i < 0 || i >= res->nfailed)
        return -1;
    return res->failed[i];
}

SR_API void sr_result_free(sr_result *res)
{
    if (!res)
        return;
    free(res->failed);
    if (res->row_shards) /* scatter results only: spares the call on every other one */
        free(res->row_shards);
    sr_colset_release(res->colset);
    if (!res->cells_inline)
        free(res->cells);
    if (!res->arena_inline)
        free(res->arena);
    if (!res->names_inline)
        free(res->colname_off);
    free(res);
}
