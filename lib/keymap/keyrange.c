/*
 * keyrange: the key's XXH3-64 hash is its keyspace id and each shard owns a
 * half-open slice of the 64-bit space, written in hex the way Vitess writes
 * shard names ("-40", "40-80", "c0-"). Resharding splits one slice, so only
 * that slice's keys move.
 */
#include "dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Lookup is one probe into a table of buckets indexed by the top bits of the
 * keyspace id. With at least as many buckets as slices, a bucket of an even
 * split meets at most two slices, so it holds both answers and the boundary
 * between them: a load and a compare, whatever the shard count. A bucket that
 * meets more slices (a finely split corner of an uneven layout) falls back to
 * a binary search among just those slices.
 */
typedef struct bucket {
    uint64_t split; /* ids >= split belong to hi, the rest to lo */
    int32_t lo, hi; /* declaration indexes; hi < 0: slow bucket, see below */
} bucket;

typedef struct keyrange_state {
    int n;
    int shift;        /* 64 - log2(number of buckets) */
    bucket *buckets;
    uint64_t *starts; /* sorted; starts[0] == 0 and the slices tile the space */
    int *index;       /* declaration index of the slice starting at starts[i] */
} keyrange_state;

#define MAX_BUCKET_BITS 16

/* Whole bytes only, left-aligned: "40" is the top byte, "4000" the top two. */
static int parse_bound(const char *s, size_t n, uint64_t *out)
{
    *out = 0;
    if (n == 0)
        return 0;
    if (n % 2 != 0 || n > 16)
        return SR_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d = sr__hexval(s[i]);
        if (d < 0)
            return SR_EINVAL;
        v = (v << 4) | (uint64_t)d;
    }
    *out = n == 16 ? v : v << (64 - 4 * n);
    return 0;
}

int sr__keyrange_parse(const char *text, uint64_t *start, uint64_t *end, int *end_is_max)
{
    if (!text || !start || !end || !end_is_max)
        return SR_EINVAL;
    const char *dash = strchr(text, '-');
    if (!dash || strchr(dash + 1, '-'))
        return SR_EINVAL;
    uint64_t s, e;
    size_t elen = strlen(dash + 1);
    if (parse_bound(text, (size_t)(dash - text), &s) != 0 || parse_bound(dash + 1, elen, &e) != 0)
        return SR_EINVAL;
    int max = elen == 0;
    if (!max && e <= s)
        return SR_EINVAL; /* empty or reversed slice */
    *start = s;
    *end = max ? 0 : e;
    *end_is_max = max;
    return 0;
}

/* floor(i * 2^64 / n) without 128-bit arithmetic; i < n. */
static uint64_t split_point(uint64_t i, uint64_t n)
{
    uint64_t q = UINT64_MAX / n, r = UINT64_MAX % n + 1; /* 2^64 = q*n + r */
    if (r == n) {
        q++;
        r = 0;
    }
    return i * q + (i * r) / n;
}

/* 16 hex digits with trailing zero bytes dropped, as Vitess names bounds; 0 gives "". */
static void format_bound(uint64_t v, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)v);
    size_t len = 16;
    while (len >= 2 && out[len - 1] == '0' && out[len - 2] == '0')
        len -= 2;
    out[len] = '\0';
}

void sr__keyrange_name(int i, int n, char *buf, size_t len)
{
    if (!buf || len == 0)
        return;
    if (n <= 0 || i < 0 || i >= n) {
        buf[0] = '\0';
        return;
    }
    char lo[17], hi[17];
    format_bound(split_point((uint64_t)i, (uint64_t)n), lo);
    if (i + 1 == n)
        hi[0] = '\0';
    else
        format_bound(split_point((uint64_t)i + 1, (uint64_t)n), hi);
    sr__fmt(buf, len, "%s-%s", lo, hi);
}

/* ---- build ---- */

typedef struct slice {
    uint64_t start, end;
    int end_is_max;
    int index;
} slice;

static int slice_cmp(const void *a, const void *b)
{
    const slice *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->index - y->index;
}

static const char *shard_name(const sr_keymap_spec *spec, int i)
{
    const char *n = spec->shards ? spec->shards[i].name : NULL;
    return n ? n : "?";
}

/* "[40,80)" with full 16-digit bounds so neighbouring slices compare at a glance. */
static void describe(const slice *s, char *buf, size_t len)
{
    if (s->end_is_max)
        sr__fmt(buf, len, "[%016llx, end)", (unsigned long long)s->start);
    else
        sr__fmt(buf, len, "[%016llx, %016llx)", (unsigned long long)s->start,
                (unsigned long long)s->end);
}

static int check_tiling(const sr_keymap_spec *spec, const slice *sl, int n, char *err, size_t errlen)
{
    char a[64], b[64];
    if (sl[0].start != 0) {
        describe(&sl[0], a, sizeof a);
        sr__fmt(err, errlen,
                "keyrange gap: keyspace ids [0000000000000000, %016llx) have no shard "
                "(lowest range is shard \"%s\" %s)",
                (unsigned long long)sl[0].start, shard_name(spec, sl[0].index), a);
        return SR_EINVAL;
    }
    for (int i = 0; i + 1 < n; i++) {
        const slice *p = &sl[i], *q = &sl[i + 1];
        describe(p, a, sizeof a);
        describe(q, b, sizeof b);
        if (p->end_is_max || p->end > q->start) {
            sr__fmt(err, errlen, "keyrange overlap: shard \"%s\" %s and shard \"%s\" %s",
                    shard_name(spec, p->index), a, shard_name(spec, q->index), b);
            return SR_EINVAL;
        }
        if (p->end < q->start) {
            sr__fmt(err, errlen,
                    "keyrange gap: keyspace ids [%016llx, %016llx) have no shard "
                    "(between shard \"%s\" %s and shard \"%s\" %s)",
                    (unsigned long long)p->end, (unsigned long long)q->start,
                    shard_name(spec, p->index), a, shard_name(spec, q->index), b);
            return SR_EINVAL;
        }
    }
    if (!sl[n - 1].end_is_max) {
        describe(&sl[n - 1], a, sizeof a);
        sr__fmt(err, errlen,
                "keyrange gap: keyspace ids [%016llx, end) have no shard "
                "(highest range is shard \"%s\" %s)",
                (unsigned long long)sl[n - 1].end, shard_name(spec, sl[n - 1].index), a);
        return SR_EINVAL;
    }
    return 0;
}

/* The slices as declared (from keyrange, else the name) or the even split. */
static int collect(const sr_keymap_spec *spec, slice *sl, char *err, size_t errlen)
{
    int n = spec->nshards, ranged = 0, unranged = -1;
    for (int i = 0; spec->shards && i < n; i++) {
        const sr_keymap_shard_spec *sh = &spec->shards[i];
        slice *s = &sl[i];
        s->index = i;
        if (sh->keyrange) {
            if (sr__keyrange_parse(sh->keyrange, &s->start, &s->end, &s->end_is_max) != 0) {
                sr__fmt(err, errlen,
                        "shard \"%s\": malformed keyrange \"%s\" (expected hex bounds of whole "
                        "bytes such as \"-40\", \"40-80\", \"c0-\", or \"-\")",
                        shard_name(spec, i), sh->keyrange);
                return SR_EINVAL;
            }
            ranged++;
        } else if (sh->name && sr__keyrange_parse(sh->name, &s->start, &s->end, &s->end_is_max) == 0) {
            ranged++;
        } else if (unranged < 0) {
            unranged = i;
        }
    }
    if (ranged == 0) {
        for (int i = 0; i < n; i++) {
            sl[i].index = i;
            sl[i].start = split_point((uint64_t)i, (uint64_t)n);
            sl[i].end_is_max = i + 1 == n;
            sl[i].end = sl[i].end_is_max ? 0 : split_point((uint64_t)i + 1, (uint64_t)n);
        }
        return 0;
    }
    if (unranged >= 0) {
        sr__fmt(err, errlen,
                "shard \"%s\" has no keyrange while other shards have one: give every shard a "
                "keyrange (or a name like \"40-80\"), or none to split the keyspace evenly",
                shard_name(spec, unranged));
        return SR_EINVAL;
    }
    return 0;
}

int sr__keyrange_build(const sr_keymap_spec *spec, void **state, char *err, size_t errlen)
{
    int n = spec->nshards;
    slice *sl = malloc((size_t)n * sizeof *sl);
    if (!sl) {
        sr__fmt(err, errlen, "out of memory");
        return SR_ENOMEM;
    }
    int rc = collect(spec, sl, err, errlen);
    if (rc == 0) {
        qsort(sl, (size_t)n, sizeof *sl, slice_cmp);
        rc = check_tiling(spec, sl, n, err, errlen);
    }
    keyrange_state *st = NULL;
    if (rc == 0) {
        int bits = 1;
        while (bits < MAX_BUCKET_BITS && (1L << bits) < n)
            bits++;
        size_t nb = (size_t)1 << bits;
        /* One block: header, buckets, starts, then indexes (largest alignment first). */
        size_t bytes = sizeof *st + nb * sizeof(bucket) + (size_t)n * (sizeof(uint64_t) + sizeof(int));
        st = malloc(bytes);
        if (!st) {
            sr__fmt(err, errlen, "out of memory");
            rc = SR_ENOMEM;
        } else {
            st->n = n;
            st->shift = 64 - bits;
            st->buckets = (bucket *)(st + 1);
            st->starts = (uint64_t *)(st->buckets + nb);
            st->index = (int *)(st->starts + n);
            for (int i = 0; i < n; i++) {
                st->starts[i] = sl[i].start;
                st->index[i] = sl[i].index;
            }
            int first = 0;
            for (size_t b = 0; b < nb; b++) {
                uint64_t lo_id = (uint64_t)b << st->shift, hi_id = lo_id + ((UINT64_C(1) << st->shift) - 1);
                while (first + 1 < n && st->starts[first + 1] <= lo_id)
                    first++;
                int last = first;
                while (last + 1 < n && st->starts[last + 1] <= hi_id)
                    last++;
                bucket *bk = &st->buckets[b];
                if (last == first) {
                    bk->split = 0;
                    bk->lo = bk->hi = st->index[first];
                } else if (last == first + 1) {
                    bk->split = st->starts[last];
                    bk->lo = st->index[first];
                    bk->hi = st->index[last];
                } else {
                    /* Slow bucket: lo is the first candidate slice, -1 - hi the last. */
                    bk->split = 0;
                    bk->lo = first;
                    bk->hi = -1 - last;
                }
            }
        }
    }
    free(sl);
    if (rc == 0)
        *state = st;
    return rc;
}

int sr__keyrange_lookup(const void *state, sr_key key, uint64_t h)
{
    const keyrange_state *st = state;
    (void)key;
    const bucket *bk = &st->buckets[h >> st->shift];
    if (bk->hi >= 0)
        return h >= bk->split ? bk->hi : bk->lo;
    /* Last start <= h among the bucket's slices, halving with a conditional move. */
    const uint64_t *base = st->starts + bk->lo;
    size_t len = (size_t)(-1 - bk->hi - bk->lo) + 1;
    while (len > 1) {
        size_t half = len / 2;
        base = base[half] <= h ? base + half : base;
        len -= half;
    }
    return st->index[base - st->starts];
}

void sr__keyrange_free(void *state)
{
    free(state);
}
