/*
 * The merger (merge.h): rows pulled from each shard, combined as the plan
 * says. Three shapes:
 *  - concatenation: shard 0's rows, then shard 1's, ... (OFFSET / LIMIT on
 *    the stream);
 *  - ORDER BY: each shard's rows arrive sorted by the same keys, so a heap
 *    of each shard's current row gives the merged order one row at a time
 *    (ties in shard order, so the result is deterministic); a shard is
 *    pulled only when its row was taken;
 *  - groups, aggregates, DISTINCT: every row is folded into one row per
 *    group (COUNTs and SUMs added, MIN / MAX kept, AVG from a sum and a
 *    count), then the groups are sorted, and OFFSET / LIMIT applied.
 *
 * Values compare by their column's type: integers exactly as int64,
 * NUMERIC as exact decimals (never through a double), floats as doubles
 * (NaN above every number, as PostgreSQL sorts it), booleans as 0 / 1, and
 * everything else (text, bytes, dates) byte by byte: the merged order of
 * text is binary order, which equals the shards' order only under a binary
 * collation (docs/scatter.md).
 */
#include "merge_plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- plans ---- */

sr_merge_plan *sr__merge_plan_alloc(sr_sql_dialect dialect)
{
    sr_merge_plan *p = calloc(1, sizeof *p);
    if (p) {
        p->dialect = dialect;
        p->limit = -1;
    }
    return p;
}

void sr__merge_plan_free(sr_merge_plan *p)
{
    if (!p)
        return;
    free(p->order);
    free(p->group);
    free(p->aggs);
    free(p->avg_count);
    free(p);
}

bool sr__merge_plan_is_concat(const sr_merge_plan *p)
{
    return p->kind == MERGE_CONCAT && p->limit < 0 && p->offset == 0;
}

bool sr__merge_plan_is_blocking(const sr_merge_plan *p) { return p->kind == MERGE_GROUP; }

/* Where NULLs go when the ORDER BY does not say: as the shard's backend sorts them. */
static bool default_nulls_first(sr_sql_dialect d, bool desc)
{
    /* PostgreSQL: NULL above every value; MySQL, SQLite: below. */
    bool null_is_largest = d == SR_SQL_POSTGRES || d == SR_SQL_GENERIC;
    return null_is_largest ? desc : !desc;
}

#define WHY(...) (sr__fmt(why, whylen, __VA_ARGS__), SR_EINVAL)

static int plan_from_spec(sr_merge_plan *p, const sr_merge_spec *s, char *why, size_t whylen)
{
    if (!s)
        return WHY("SR_MERGE_SPEC without a spec");
    if (s->version != SR_MERGE_SPEC_VERSION)
        return WHY("sr_merge_spec.version is %d; this library knows version %d (initialise with "
                   "SR_MERGE_SPEC_INIT)",
                   s->version, SR_MERGE_SPEC_VERSION);
    if (s->norder < 0 || (s->norder > 0 && !s->order) || s->ngroup < 0 ||
        (s->ngroup > 0 && !s->group) || s->naggs < 0 || (s->naggs > 0 && !s->aggs))
        return WHY("a count in the spec is negative, or its array is NULL");
    if (s->limit < -1 || s->offset < 0)
        return WHY("limit must be -1 (none) or >= 0, offset >= 0");
    if (s->distinct != 0 && s->distinct != 1)
        return WHY("distinct must be 0 or 1");
    p->from_spec = true;
    p->limit = s->limit;
    p->offset = s->offset;
    p->distinct = s->distinct;
    if (s->norder > 0) {
        p->order = calloc((size_t)s->norder, sizeof *p->order);
        if (!p->order)
            return SR_ENOMEM;
    }
    for (int i = 0; i < s->norder; i++) {
        const sr_order_key *k = &s->order[i];
        if (k->col < 0 || (k->desc != 0 && k->desc != 1) || k->nulls < SR_NULLS_DEFAULT ||
            k->nulls > SR_NULLS_LAST)
            return WHY("order key %d: col must be >= 0, desc 0 or 1, nulls an sr_nulls", i);
        p->order[i].col = k->col;
        p->order[i].desc = k->desc;
        p->order[i].nulls_first = k->nulls == SR_NULLS_DEFAULT
                                      ? default_nulls_first(p->dialect, k->desc)
                                      : k->nulls == SR_NULLS_FIRST;
    }
    p->norder = s->norder;
    if (s->ngroup > 0 && s->naggs == 0)
        return WHY("groups need aggs: one sr_agg per result column (SR_AGG_NONE for the group "
                   "keys)");
    if (s->naggs > 0 && s->distinct)
        return WHY("DISTINCT together with aggregates is not merged");
    if (s->naggs > 0) {
        p->ncols = s->naggs;
        p->aggs = malloc((size_t)s->naggs * sizeof *p->aggs);
        p->avg_count = malloc((size_t)s->naggs * sizeof *p->avg_count);
        if (!p->aggs || !p->avg_count)
            return SR_ENOMEM;
        for (int i = 0; i < s->naggs; i++) {
            if (s->aggs[i] < SR_AGG_NONE || s->aggs[i] > SR_AGG_MAX)
                return WHY("aggs[%d] is not an sr_agg", i);
            p->aggs[i] = s->aggs[i];
            p->avg_count[i] = -1;
        }
        for (int i = 0; i < s->norder; i++)
            if (s->order[i].col >= s->naggs)
                return WHY("order key %d names column %d of %d", i, s->order[i].col, s->naggs);
    }
    if (s->ngroup > 0) {
        p->group = malloc((size_t)s->ngroup * sizeof *p->group);
        if (!p->group)
            return SR_ENOMEM;
        for (int i = 0; i < s->ngroup; i++) {
            int c = s->group[i];
            if (c < 0 || c >= s->naggs)
                return WHY("group key %d names column %d of %d", i, c, s->naggs);
            if (s->aggs[c] != SR_AGG_NONE)
                return WHY("group key column %d is also aggregated", c);
            p->group[i] = c;
        }
        p->ngroup = s->ngroup;
    }
    for (int c = 0; c < s->naggs; c++) {
        bool key = false;
        for (int i = 0; i < s->ngroup; i++)
            key |= s->group[i] == c;
        if (s->aggs[c] == SR_AGG_NONE && !key)
            return WHY("column %d is neither a group key nor aggregated (SR_AGG_NONE outside "
                       "the group keys)",
                       c);
    }
    p->kind = s->naggs > 0 || s->distinct ? MERGE_GROUP : s->norder > 0 ? MERGE_ORDER : MERGE_CONCAT;
    return SR_OK;
}

int sr__merge_plan_new(const char *sql, sr_sql_dialect dialect, int mode,
                       const sr_merge_spec *spec, sr_merge_plan **out, char **shard_sql,
                       char *why, size_t whylen)
{
    if (whylen)
        why[0] = '\0';
    sr_merge_plan *p = sr__merge_plan_alloc(dialect);
    if (!p)
        return SR_ENOMEM;
    int rc = SR_OK;
    *shard_sql = NULL;
    if (mode == SR_MERGE_CONCAT) {
        *shard_sql = sr_strdup(sql);
    } else if (mode == SR_MERGE_SPEC) {
        rc = plan_from_spec(p, spec, why, whylen);
        if (rc == SR_OK)
            *shard_sql = sr_strdup(sql);
    } else {
        rc = sr__merge_plan_from_sql(p, sql, shard_sql, why, whylen);
    }
    if (rc == SR_OK && !*shard_sql)
        rc = SR_ENOMEM;
    if (rc != SR_OK) {
        free(*shard_sql);
        *shard_sql = NULL;
        sr__merge_plan_free(p);
        return rc;
    }
    *out = p;
    return SR_OK;
}

static const char *agg_name(int a)
{
    switch (a) {
    case SR_AGG_COUNT: return "count";
    case SR_AGG_SUM: return "sum";
    case SR_AGG_MIN: return "min";
    case SR_AGG_MAX: return "max";
    case SR_AGG_AVG: return "avg";
    default: return "-";
    }
}

void sr__merge_plan_describe(const sr_merge_plan *p, char *buf, size_t len)
{
    static const char *const kinds[] = {"concatenate in shard order",
                                        "k-way merge of the shards' sorted rows",
                                        "group and aggregate every row, then sort"};
    size_t n = 0;
#define ADD(...)                                         \
    do {                                                 \
        if (n < len) {                                   \
            sr__fmt(buf + n, len - n, __VA_ARGS__);      \
            n += strlen(buf + n);                        \
        }                                                \
    } while (0)
    ADD("%s%s", kinds[p->kind], p->from_spec ? " (explicit spec)" : "");
    if (p->norder) {
        ADD("\n  order by:");
        for (int i = 0; i < p->norder; i++)
            ADD(" column %d %s nulls %s%s", p->order[i].col, p->order[i].desc ? "desc" : "asc",
                p->order[i].nulls_first ? "first" : "last", i + 1 < p->norder ? "," : "");
    }
    if (p->ngroup) {
        ADD("\n  group by columns:");
        for (int i = 0; i < p->ngroup; i++)
            ADD(" %d", p->group[i]);
    }
    if (p->aggs) {
        ADD("\n  columns:");
        for (int i = 0; i < p->ncols; i++) {
            ADD(" %d=%s", i, p->aggs[i] == SR_AGG_NONE ? "key" : agg_name(p->aggs[i]));
            if (p->avg_count && p->avg_count[i] >= 0)
                ADD("(sum / count in hidden column %d)", p->avg_count[i]);
        }
    }
    if (p->distinct)
        ADD("\n  distinct rows");
    if (p->offset)
        ADD("\n  offset %lld", (long long)p->offset);
    if (p->limit >= 0)
        ADD("\n  limit %lld", (long long)p->limit);
    if (p->limit_pushed)
        ADD("\n  each shard sends at most offset + limit = %lld rows",
            (long long)(p->limit + p->offset));
    if (p->nhidden)
        ADD("\n  %d hidden column%s dropped after merging", p->nhidden, p->nhidden > 1 ? "s" : "");
#undef ADD
}

/* ---- values ---- */

typedef struct val {
    const char *p; /* NUL-terminated; NULL: SQL NULL */
    size_t len;
    sr_type type;
} val;

static val val_at(const sr_result *res, int row, int col)
{
    val v = {sr_result_value(res, row, col), sr_result_length(res, row, col),
             sr__result_coltype(res, col)};
    return v;
}

static bool numeric_type(sr_type t)
{
    return t == SR_TYPE_INT || t == SR_TYPE_FLOAT || t == SR_TYPE_NUMERIC || t == SR_TYPE_BOOL;
}

/* A plain decimal: [sign] digits [. digits] (at least one digit). */
typedef struct dec {
    bool neg;
    const char *ip; /* integer digits without leading zeros */
    size_t il;
    const char *fp; /* fraction digits without trailing zeros */
    size_t fl;
    size_t scale;   /* fraction digits as written (a sum keeps the larger scale: 1.10 + 1 = 2.10) */
} dec;

static bool parse_dec(const char *s, size_t len, dec *d)
{
    size_t i = 0;
    d->neg = false;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        d->neg = s[i++] == '-';
    size_t start = i;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    size_t iend = i, fstart = i, fend = i;
    if (i < len && s[i] == '.') {
        fstart = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        fend = i;
    }
    if (i != len || (iend == start && fend == fstart))
        return false;
    while (start < iend && s[start] == '0')
        start++;
    d->scale = fend - fstart;
    while (fend > fstart && s[fend - 1] == '0')
        fend--;
    d->ip = s + start;
    d->il = iend - start;
    d->fp = s + fstart;
    d->fl = fend - fstart;
    if (d->il == 0 && d->fl == 0)
        d->neg = false; /* -0 is 0 */
    return true;
}

static int cmp_mag(const dec *a, const dec *b)
{
    if (a->il != b->il)
        return a->il < b->il ? -1 : 1;
    int c = memcmp(a->ip, b->ip, a->il);
    if (c)
        return c < 0 ? -1 : 1;
    size_t n = a->fl < b->fl ? a->fl : b->fl;
    c = memcmp(a->fp, b->fp, n);
    if (c)
        return c < 0 ? -1 : 1;
    return a->fl == b->fl ? 0 : a->fl < b->fl ? -1 : 1;
}

static int cmp_dec(const dec *a, const dec *b)
{
    if (a->neg != b->neg)
        return a->neg ? -1 : 1;
    int c = cmp_mag(a, b);
    return a->neg ? -c : c;
}

static double to_double(const char *s, bool *ok)
{
    if (s[0] == 't' || s[0] == 'f') { /* a boolean as PostgreSQL prints it */
        *ok = s[1] == '\0';
        return s[0] == 't';
    }
    char *end;
    double d = strtod(s, &end);
    *ok = end != s && *end == '\0';
    return d;
}

static int cmp_double(double a, double b)
{
    bool an = isnan(a), bn = isnan(b);
    if (an || bn)
        return an == bn ? 0 : an ? 1 : -1; /* NaN above every number */
    return a < b ? -1 : a > b;
}

/* Both non-NULL. SR_EINVAL never: what cannot be compared as numbers compares as bytes.
 * Values of no known type (a driver without column types) compare as numbers when both
 * read as numbers. */
static int cmp_vals(const val *a, const val *b)
{
    bool an = numeric_type(a->type) || a->type == SR_TYPE_UNKNOWN;
    bool bn = numeric_type(b->type) || b->type == SR_TYPE_UNKNOWN;
    if (an && bn) {
        int64_t x, y;
        if (sr__int64_of(a->p, a->len, &x) && sr__int64_of(b->p, b->len, &y))
            return x < y ? -1 : x > y;
        dec da, db;
        if (a->type != SR_TYPE_FLOAT && b->type != SR_TYPE_FLOAT && parse_dec(a->p, a->len, &da) &&
            parse_dec(b->p, b->len, &db))
            return cmp_dec(&da, &db);
        bool oka, okb;
        double fa = to_double(a->p, &oka), fb = to_double(b->p, &okb);
        if (oka && okb)
            return cmp_double(fa, fb);
    }
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->p, b->p, n) : 0;
    if (c)
        return c < 0 ? -1 : 1;
    return a->len == b->len ? 0 : a->len < b->len ? -1 : 1;
}

/* Order of two rows by the plan's keys; NULLs placed per key. */
static int cmp_rows(const sr_merge_plan *p, const sr_result *ra, int a, const sr_result *rb, int b)
{
    for (int i = 0; i < p->norder; i++) {
        const merge_key *k = &p->order[i];
        val va = val_at(ra, a, k->col), vb = val_at(rb, b, k->col);
        int c;
        if (!va.p || !vb.p)
            c = !va.p && !vb.p ? 0 : (!va.p == k->nulls_first) ? -1 : 1;
        else
            c = k->desc ? -cmp_vals(&va, &vb) : cmp_vals(&va, &vb);
        if (c)
            return c;
    }
    return 0;
}

/* ---- exact sums ---- */

typedef enum { NUM_NULL = 0, NUM_INT, NUM_DEC, NUM_DOUBLE } num_kind;

typedef struct num {
    num_kind kind;
    int64_t i;
    char *dec; /* NUM_DEC: decimal text, malloc'd */
    double d;
} num;

/* |a| + |b| or |a| - |b| (|a| >= |b|) of two decimals, at the larger scale. */
static char *dec_arith(const dec *a, const dec *b, bool subtract, bool neg)
{
    size_t scale = a->scale > b->scale ? a->scale : b->scale;
    size_t il = (a->il > b->il ? a->il : b->il) + 1;
    size_t n = il + scale;
    char *digits = calloc(n + 1, 1);
    char *out = malloc(n + 4);
    if (!digits || !out) {
        free(digits);
        free(out);
        return NULL;
    }
    int carry = 0;
    for (size_t k = 0; k < n; k++) { /* k: position from the right */
        size_t pos = n - 1 - k;
        int da = 0, db = 0;
        /* digit of a at this position: fraction digits first, then integer digits */
        if (k < scale) {
            size_t fi = scale - 1 - k;
            da = fi < a->fl ? a->fp[fi] - '0' : 0;
            db = fi < b->fl ? b->fp[fi] - '0' : 0;
        } else {
            size_t ii = k - scale;
            da = ii < a->il ? a->ip[a->il - 1 - ii] - '0' : 0;
            db = ii < b->il ? b->ip[b->il - 1 - ii] - '0' : 0;
        }
        int v = subtract ? da - db - carry : da + db + carry;
        carry = subtract ? v < 0 : v >= 10;
        if (subtract && v < 0)
            v += 10;
        else if (!subtract && v >= 10)
            v -= 10;
        digits[pos] = (char)('0' + v);
    }
    size_t start = 0;
    while (start + 1 < il && digits[start] == '0')
        start++;
    size_t o = 0;
    bool zero = true;
    for (size_t k = start; k < n; k++)
        zero &= digits[k] == '0';
    if (neg && !zero)
        out[o++] = '-';
    memcpy(out + o, digits + start, il - start);
    o += il - start;
    if (scale) {
        out[o++] = '.';
        memcpy(out + o, digits + il, scale);
        o += scale;
    }
    out[o] = '\0';
    free(digits);
    return out;
}

static char *dec_add(const char *x, const char *y)
{
    dec a, b;
    if (!parse_dec(x, strlen(x), &a) || !parse_dec(y, strlen(y), &b))
        return NULL;
    if (a.neg == b.neg)
        return dec_arith(&a, &b, false, a.neg);
    int c = cmp_mag(&a, &b);
    return c >= 0 ? dec_arith(&a, &b, true, a.neg) : dec_arith(&b, &a, true, b.neg);
}

/* Adds one value to a sum: SR_OK, SR_EINVAL (not a number), SR_ENOMEM. */
static int num_add(num *n, const val *v)
{
    int64_t i;
    dec d;
    bool is_int = v->type != SR_TYPE_FLOAT && sr__int64_of(v->p, v->len, &i);
    bool is_dec = !is_int && v->type != SR_TYPE_FLOAT && parse_dec(v->p, v->len, &d);
    if (!is_int && !is_dec) {
        bool ok;
        double f = to_double(v->p, &ok);
        if (!ok)
            return SR_EINVAL;
        if (n->kind == NUM_INT)
            n->d = (double)n->i;
        else if (n->kind == NUM_DEC) {
            n->d = strtod(n->dec, NULL);
            free(n->dec);
            n->dec = NULL;
        }
        n->d = n->kind == NUM_NULL ? f : n->d + f;
        n->kind = NUM_DOUBLE;
        return SR_OK;
    }
    if (n->kind == NUM_DOUBLE) {
        n->d += strtod(v->p, NULL);
        return SR_OK;
    }
    if (n->kind == NUM_NULL && is_int) {
        n->kind = NUM_INT;
        n->i = i;
        return SR_OK;
    }
    if (n->kind == NUM_INT && is_int) {
        int64_t r;
        if (!__builtin_add_overflow(n->i, i, &r)) {
            n->i = r;
            return SR_OK;
        }
    }
    /* Exact decimal from here on (an int64 overflow, or a NUMERIC). */
    char buf[32];
    const char *cur = n->kind == NUM_DEC ? n->dec : n->kind == NUM_INT ? buf : "0";
    if (n->kind == NUM_INT)
        snprintf(buf, sizeof buf, "%lld", (long long)n->i);
    char *sum = dec_add(cur, v->p);
    if (!sum)
        return SR_ENOMEM;
    free(n->dec);
    n->dec = sum;
    n->kind = NUM_DEC;
    return SR_OK;
}

static double num_double(const num *n)
{
    return n->kind == NUM_INT ? (double)n->i : n->kind == NUM_DEC ? strtod(n->dec, NULL) : n->d;
}

/* ---- the merger ---- */

typedef struct slot {
    char *p; /* a copy (NUL-terminated), NULL for SQL NULL */
    size_t len;
    sr_type type;
    num sum;       /* SUM, AVG: the sum; COUNT: sum.i */
    int64_t count; /* AVG: the count */
} slot;

typedef struct group {
    uint64_t hash;
    slot *slots; /* one per output column */
} group;

struct sr_merger {
    const sr_merge_plan *p;
    int n;
    sr_merge_pull_fn pull;
    void *ctx;
    sr_result *cols;   /* the output columns (a result with no rows) */
    int src_ncols;     /* columns in the shards' rows */
    int out_ncols;     /* columns given out */
    int64_t skipped, emitted;
    const sr_result **checked; /* per shard: the result whose columns were checked last */
    /* concatenation */
    int cur;
    /* ORDER BY */
    sr_row_ref *heads;
    int *heap;
    int nheap;
    int last;          /* the shard whose row was given out last: pulled on the next call */
    bool started;
    /* groups */
    group *groups;
    size_t ngroups, groups_cap;
    uint32_t *table;   /* open addressing: group index + 1, 0 empty */
    size_t table_cap;
    int *keys;         /* key columns */
    int nkeys;
    sr_result *out;    /* the groups as rows, sorted */
    int *order;        /* row order of `out` */
    int out_next;
    bool built;
};

int sr__merger_new(const sr_merge_plan *plan, int nshards, sr_merge_pull_fn pull, void *ctx,
                   sr_merger **out)
{
    sr_merger *m = calloc(1, sizeof *m);
    if (!m)
        return SR_ENOMEM;
    m->p = plan;
    m->n = nshards;
    m->pull = pull;
    m->ctx = ctx;
    m->last = -1;
    m->checked = calloc((size_t)(nshards > 0 ? nshards : 1), sizeof *m->checked);
    if (!m->checked) {
        free(m);
        return SR_ENOMEM;
    }
    if (plan->kind == MERGE_ORDER) {
        m->heads = calloc((size_t)(nshards > 0 ? nshards : 1), sizeof *m->heads);
        m->heap = calloc((size_t)(nshards > 0 ? nshards : 1), sizeof *m->heap);
        if (!m->heads || !m->heap) {
            sr__merger_free(m);
            return SR_ENOMEM;
        }
    }
    *out = m;
    return SR_OK;
}

/* Combined rows have their own types (COUNT an integer, AVG a float, ...): those of `out`. */
const sr_result *sr__merger_columns(const sr_merger *m) { return m->out ? m->out : m->cols; }

/*
 * Checks a shard's columns against the first shard's (count and names) and
 * takes the first one's as the output columns. SR_EINVAL with why.
 */
static int see_columns(sr_merger *m, const sr_result *res, int shard, char *why, size_t whylen)
{
    if (!res || (sr_result_ncols(res) == 0 && !res->columns_set))
        return SR_OK;
    const sr_merge_plan *p = m->p;
    int nc = sr_result_ncols(res);
    if (!m->cols) {
        int out_ncols = p->ncols ? p->ncols : nc;
        if (p->ncols && nc != p->ncols + p->nhidden)
            return WHY("shard %d returned %d columns where the merge expects %d", shard, nc,
                       p->ncols + p->nhidden);
        for (int i = 0; i < p->norder; i++)
            if (p->order[i].col >= out_ncols)
                return WHY("the merge orders by column %d but the rows have %d", p->order[i].col,
                           out_ncols);
        m->cols = sr__result_new(-1);
        if (!m->cols || sr__result_copy_columns(m->cols, res, out_ncols) != SR_OK)
            return SR_ENOMEM;
        m->src_ncols = nc;
        m->out_ncols = out_ncols;
        return SR_OK;
    }
    if (nc != m->src_ncols)
        return WHY("shard %d returned %d columns, another shard %d", shard, nc, m->src_ncols);
    for (int i = 0; i < nc && i < m->out_ncols; i++)
        if (strcmp(sr_result_colname(res, i), sr_result_colname(m->cols, i)) != 0)
            return WHY("shard %d names column %d '%s', another shard '%s'", shard, i,
                       sr_result_colname(res, i), sr_result_colname(m->cols, i));
    return SR_OK;
}

/* One pull, with the columns seen. */
static int pull(sr_merger *m, int shard, sr_row_ref *ref, char *why, size_t whylen)
{
    ref->res = NULL;
    ref->row = -1;
    int rc = m->pull(m->ctx, shard, ref);
    if (rc < 0 || !ref->res || m->checked[shard] == ref->res)
        return rc; /* a batch refilled keeps its columns: checked once */
    int c = see_columns(m, ref->res, shard, why, whylen);
    if (c != SR_OK)
        return c;
    if (m->cols)
        m->checked[shard] = ref->res;
    return rc;
}

/* OFFSET / LIMIT on the stream: true when the row is given out, false when skipped. */
static bool take(sr_merger *m)
{
    if (m->skipped < m->p->offset) {
        m->skipped++;
        return false;
    }
    m->emitted++;
    return true;
}

static bool limit_reached(const sr_merger *m)
{
    return m->p->limit >= 0 && m->emitted >= m->p->limit;
}

static int next_concat(sr_merger *m, sr_row_ref *out, char *why, size_t whylen)
{
    while (m->cur < m->n && !limit_reached(m)) {
        int rc = pull(m, m->cur, out, why, whylen);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            m->cur++;
            continue;
        }
        if (take(m))
            return 1;
    }
    return 0;
}

/* Heap of shards by their current row: lower first, ties by shard index. */
static bool heap_less(const sr_merger *m, int a, int b)
{
    int c = cmp_rows(m->p, m->heads[a].res, m->heads[a].row, m->heads[b].res, m->heads[b].row);
    return c < 0 || (c == 0 && a < b);
}

static void heap_push(sr_merger *m, int shard)
{
    int i = m->nheap++;
    m->heap[i] = shard;
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!heap_less(m, m->heap[i], m->heap[parent]))
            break;
        int t = m->heap[i];
        m->heap[i] = m->heap[parent];
        m->heap[parent] = t;
        i = parent;
    }
}

static int heap_pop(sr_merger *m)
{
    int top = m->heap[0];
    m->heap[0] = m->heap[--m->nheap];
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, best = i;
        if (l < m->nheap && heap_less(m, m->heap[l], m->heap[best]))
            best = l;
        if (r < m->nheap && heap_less(m, m->heap[r], m->heap[best]))
            best = r;
        if (best == i)
            break;
        int t = m->heap[i];
        m->heap[i] = m->heap[best];
        m->heap[best] = t;
        i = best;
    }
    return top;
}

/* Pulls the shard's next row into the heap (nothing when it ended). */
static int refill(sr_merger *m, int shard, char *why, size_t whylen)
{
    int rc = pull(m, shard, &m->heads[shard], why, whylen);
    if (rc > 0)
        heap_push(m, shard);
    return rc < 0 ? rc : SR_OK;
}

static int next_ordered(sr_merger *m, sr_row_ref *out, char *why, size_t whylen)
{
    int rc;
    if (!m->started) {
        m->started = true;
        for (int i = 0; i < m->n; i++)
            if ((rc = refill(m, i, why, whylen)) < 0)
                return rc;
    } else if (m->last >= 0) {
        int s = m->last;
        m->last = -1;
        if ((rc = refill(m, s, why, whylen)) < 0)
            return rc;
    }
    while (m->nheap > 0 && !limit_reached(m)) {
        int s = heap_pop(m);
        if (take(m)) {
            *out = m->heads[s];
            m->last = s; /* its row stays valid until this shard is pulled again */
            return 1;
        }
        if ((rc = refill(m, s, why, whylen)) < 0)
            return rc;
    }
    return 0;
}

/* ---- groups ---- */

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t hash_val(uint64_t h, const val *v)
{
    if (!v->p)
        return hash_bytes(h, "\xff\x00", 2);
    if (numeric_type(v->type) || v->type == SR_TYPE_UNKNOWN) {
        /* Equal numbers hash alike whatever their text ("1.50" and "1.5"), as cmp_vals
         * finds them equal. */
        bool ok;
        double d = to_double(v->p, &ok);
        if (ok) {
            if (d == 0)
                d = 0; /* -0 */
            return hash_bytes(h, &d, sizeof d);
        }
    }
    return hash_bytes(h, v->p, v->len);
}

static bool same_key(const sr_merger *m, const group *g, const sr_result *res, int row)
{
    for (int k = 0; k < m->nkeys; k++) {
        int c = m->keys[k];
        const slot *s = &g->slots[c];
        val a = {s->p, s->len, s->type}, b = val_at(res, row, c);
        if (!a.p || !b.p) {
            if (a.p != b.p)
                return false;
        } else if (cmp_vals(&a, &b) != 0) {
            return false;
        }
    }
    return true;
}

static int slot_set(slot *s, const val *v)
{
    free(s->p);
    s->p = NULL;
    s->len = 0;
    s->type = v->type;
    if (!v->p)
        return SR_OK;
    s->p = malloc(v->len + 1);
    if (!s->p)
        return SR_ENOMEM;
    memcpy(s->p, v->p, v->len);
    s->p[v->len] = '\0';
    s->len = v->len;
    return SR_OK;
}

static int table_grow(sr_merger *m)
{
    size_t cap = m->table_cap ? m->table_cap * 2 : 64;
    uint32_t *t = calloc(cap, sizeof *t);
    if (!t)
        return SR_ENOMEM;
    for (size_t g = 0; g < m->ngroups; g++) {
        size_t i = m->groups[g].hash & (cap - 1);
        while (t[i])
            i = (i + 1) & (cap - 1);
        t[i] = (uint32_t)g + 1;
    }
    free(m->table);
    m->table = t;
    m->table_cap = cap;
    return SR_OK;
}

/* Folds one row into its group. */
static int fold(sr_merger *m, const sr_result *res, int row, char *why, size_t whylen)
{
    const sr_merge_plan *p = m->p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int k = 0; k < m->nkeys; k++) {
        val v = val_at(res, row, m->keys[k]);
        h = hash_val(h, &v);
    }
    if ((m->ngroups + 1) * 2 > m->table_cap && table_grow(m) != SR_OK)
        return SR_ENOMEM;
    size_t i = h & (m->table_cap - 1);
    group *g = NULL;
    while (m->table[i]) {
        group *c = &m->groups[m->table[i] - 1];
        if (c->hash == h && same_key(m, c, res, row)) {
            g = c;
            break;
        }
        i = (i + 1) & (m->table_cap - 1);
    }
    if (!g) {
        if (m->ngroups >= UINT32_MAX - 1)
            return SR_ENOMEM;
        if (m->ngroups == m->groups_cap) {
            size_t cap = m->groups_cap ? m->groups_cap * 2 : 16;
            group *gs = realloc(m->groups, cap * sizeof *gs);
            if (!gs)
                return SR_ENOMEM;
            m->groups = gs;
            m->groups_cap = cap;
        }
        g = &m->groups[m->ngroups];
        g->hash = h;
        g->slots = calloc((size_t)m->out_ncols, sizeof *g->slots);
        if (!g->slots)
            return SR_ENOMEM;
        m->table[i] = (uint32_t)++m->ngroups;
        for (int k = 0; k < m->nkeys; k++) {
            val v = val_at(res, row, m->keys[k]);
            if (slot_set(&g->slots[m->keys[k]], &v) != SR_OK)
                return SR_ENOMEM;
        }
    }
    for (int c = 0; p->aggs && c < m->out_ncols; c++) {
        int agg = p->aggs[c];
        slot *s = &g->slots[c];
        val v = val_at(res, row, c);
        if (agg == SR_AGG_NONE)
            continue;
        if (s->type == SR_TYPE_UNKNOWN)
            s->type = v.type;
        if (!v.p)
            continue; /* NULLs are ignored by every aggregate */
        int rc = SR_OK;
        if (agg == SR_AGG_COUNT || agg == SR_AGG_SUM || agg == SR_AGG_AVG) {
            rc = num_add(&s->sum, &v);
            if (rc == SR_OK && agg == SR_AGG_AVG) {
                val cnt = val_at(res, row, p->avg_count[c]);
                int64_t n = 0;
                if (cnt.p && !sr__int64_of(cnt.p, cnt.len, &n))
                    return WHY("the hidden count of column %d is not an integer: '%s'", c, cnt.p);
                s->count += n;
            }
        } else if (!s->p) {
            rc = slot_set(s, &v);
        } else {
            val cur = {s->p, s->len, s->type};
            int cmp = cmp_vals(&v, &cur);
            if ((agg == SR_AGG_MIN && cmp < 0) || (agg == SR_AGG_MAX && cmp > 0))
                rc = slot_set(s, &v);
        }
        if (rc == SR_EINVAL)
            return WHY("column %d (%s): '%s' cannot be added as a number", c, agg_name(agg), v.p);
        if (rc != SR_OK)
            return rc;
    }
    return SR_OK;
}

/* Stable merge sort of row indexes by the plan's keys (no qsort_r in C11). */
static void sort_rows(const sr_merge_plan *p, const sr_result *res, int *a, int *tmp, int n)
{
    if (n < 2)
        return;
    int h = n / 2;
    sort_rows(p, res, a, tmp, h);
    sort_rows(p, res, a + h, tmp, n - h);
    int i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = cmp_rows(p, res, a[j], res, a[i]) < 0 ? a[j++] : a[i++];
    while (i < h)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, (size_t)n * sizeof *a);
}

/* The groups as rows of the merger's own result, in output order. */
static int build_output(sr_merger *m)
{
    const sr_merge_plan *p = m->p;
    sr_result_builder rb;
    if (sr__result_builder_init(&rb, -1) != SR_OK)
        return SR_ENOMEM;
    int nc = m->out_ncols;
    const char **names = malloc((size_t)(nc ? nc : 1) * sizeof *names);
    sr_type *types = malloc((size_t)(nc ? nc : 1) * sizeof *types);
    int rc = names && types ? SR_OK : SR_ENOMEM;
    for (int c = 0; rc == SR_OK && c < nc; c++) {
        names[c] = sr_result_colname(m->cols, c);
        int agg = p->aggs ? p->aggs[c] : SR_AGG_NONE;
        sr_type t = sr__result_coltype(m->cols, c);
        if (agg == SR_AGG_COUNT)
            t = SR_TYPE_INT;
        else if (agg == SR_AGG_AVG)
            t = SR_TYPE_FLOAT;
        else if (agg == SR_AGG_SUM) {
            for (size_t g = 0; g < m->ngroups; g++) {
                num_kind k = m->groups[g].slots[c].sum.kind;
                if (k == NUM_DEC && t == SR_TYPE_INT)
                    t = SR_TYPE_NUMERIC;
                else if (k == NUM_DOUBLE && t != SR_TYPE_FLOAT)
                    t = SR_TYPE_FLOAT;
            }
        }
        types[c] = t;
    }
    if (rc == SR_OK)
        rc = sr_result_builder_columns(&rb, nc, names);
    if (rc == SR_OK)
        rc = sr_result_builder_types(&rb, types);
    free(names);
    free(types);
    for (size_t g = 0; rc == SR_OK && g < m->ngroups; g++) {
        for (int c = 0; rc == SR_OK && c < nc; c++) {
            slot *s = &m->groups[g].slots[c];
            int agg = p->aggs ? p->aggs[c] : SR_AGG_NONE;
            char buf[64];
            const char *v = s->p;
            size_t len = s->len;
            if (agg == SR_AGG_COUNT || agg == SR_AGG_SUM) {
                v = NULL;
                if (s->sum.kind == NUM_INT)
                    snprintf(buf, sizeof buf, "%lld", (long long)s->sum.i), v = buf;
                else if (s->sum.kind == NUM_DEC)
                    v = s->sum.dec;
                else if (s->sum.kind == NUM_DOUBLE)
                    snprintf(buf, sizeof buf, "%.17g", s->sum.d), v = buf;
                else if (agg == SR_AGG_COUNT)
                    v = "0";
                len = v ? strlen(v) : 0;
            } else if (agg == SR_AGG_AVG) {
                v = NULL;
                if (s->count > 0) {
                    snprintf(buf, sizeof buf, "%.17g", num_double(&s->sum) / (double)s->count);
                    v = buf;
                }
                len = v ? strlen(v) : 0;
            }
            rc = sr_result_builder_value(&rb, v, len);
        }
    }
    m->out = sr__result_builder_finish(&rb);
    if (rc != SR_OK || !m->out) {
        sr__result_builder_discard(&rb);
        return SR_ENOMEM;
    }
    int n = sr_result_nrows(m->out);
    m->order = malloc((size_t)(n ? n : 1) * sizeof *m->order);
    int *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!m->order || !tmp) {
        free(tmp);
        return SR_ENOMEM;
    }
    for (int i = 0; i < n; i++)
        m->order[i] = i;
    sort_rows(p, m->out, m->order, tmp, n);
    free(tmp);
    return SR_OK;
}

static int build_groups(sr_merger *m, char *why, size_t whylen)
{
    const sr_merge_plan *p = m->p;
    for (int s = 0; s < m->n; s++) {
        for (;;) {
            sr_row_ref ref;
            int rc = pull(m, s, &ref, why, whylen);
            if (rc < 0)
                return rc;
            if (rc == 0)
                break;
            if (!m->keys) {
                /* Key columns: the plan's groups, or every column for DISTINCT. */
                m->nkeys = p->aggs ? p->ngroup : m->out_ncols;
                m->keys = malloc((size_t)(m->nkeys ? m->nkeys : 1) * sizeof *m->keys);
                if (!m->keys)
                    return SR_ENOMEM;
                for (int k = 0; k < m->nkeys; k++)
                    m->keys[k] = p->aggs ? p->group[k] : k;
            }
            if ((rc = fold(m, ref.res, ref.row, why, whylen)) != SR_OK)
                return rc;
        }
    }
    if (!m->cols)
        return SR_OK; /* no shard gave columns: nothing to say */
    return build_output(m);
}

static int next_grouped(sr_merger *m, sr_row_ref *out, char *why, size_t whylen)
{
    if (!m->built) {
        int rc = build_groups(m, why, whylen);
        if (rc != SR_OK)
            return rc;
        m->built = true;
    }
    while (m->out && m->out_next < sr_result_nrows(m->out) && !limit_reached(m)) {
        int row = m->order[m->out_next++];
        if (take(m)) {
            out->res = m->out;
            out->row = row;
            return 1;
        }
    }
    return 0;
}

int sr__merger_next(sr_merger *m, sr_row_ref *out, char *why, size_t whylen)
{
    if (whylen)
        why[0] = '\0';
    switch (m->p->kind) {
    case MERGE_ORDER: return next_ordered(m, out, why, whylen);
    case MERGE_GROUP: return next_grouped(m, out, why, whylen);
    default: return next_concat(m, out, why, whylen);
    }
}

void sr__merger_free(sr_merger *m)
{
    if (!m)
        return;
    for (size_t g = 0; g < m->ngroups; g++) {
        for (int c = 0; c < m->out_ncols; c++) {
            free(m->groups[g].slots[c].p);
            free(m->groups[g].slots[c].sum.dec);
        }
        free(m->groups[g].slots);
    }
    free(m->groups);
    free(m->table);
    free(m->keys);
    free(m->order);
    sr_result_free(m->out);
    sr_result_free(m->cols);
    free(m->heads);
    free(m->heap);
    free(m->checked);
    free(m);
}
