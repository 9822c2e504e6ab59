/*
 * range: integer keys in declared half-open intervals "LO..HI" ("..1000",
 * "1000..2000", "2000.."). The intervals need not cover every int64: a key
 * that no interval holds has no shard (SR_ENOSHARD) rather than a guessed one.
 */
#include "dist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Bounds are stored inclusive so that "..", "LO.." and "..HI" need no flags. */
typedef struct interval {
    int64_t lo, hi;
    int index;
} interval;

typedef struct range_state {
    int n;
    interval iv[]; /* sorted by lo, disjoint */
} range_state;

/* A whole optionally signed decimal int64, nothing else. */
static int parse_int64(const char *s, size_t n, int64_t *out)
{
    char buf[32];
    if (n == 0 || n >= sizeof buf)
        return SR_EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    const char *d = buf[0] == '-' ? buf + 1 : buf;
    if (*d == '\0')
        return SR_EINVAL;
    for (const char *q = d; *q; q++)
        if (*q < '0' || *q > '9')
            return SR_EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (errno == ERANGE || *end != '\0')
        return SR_EINVAL;
    *out = (int64_t)v;
    return 0;
}

/* "LO..HI" half-open; an empty bound is unbounded. Empty intervals are errors. */
int sr__range_parse(const char *text, int64_t *lo, int64_t *hi)
{
    const char *dots = strstr(text, "..");
    if (!dots || strstr(dots + 2, ".."))
        return SR_EINVAL;
    size_t lolen = (size_t)(dots - text), hilen = strlen(dots + 2);
    int64_t l = INT64_MIN, h = INT64_MAX;
    if (lolen && parse_int64(text, lolen, &l) != 0)
        return SR_EINVAL;
    if (hilen) {
        int64_t excl;
        if (parse_int64(dots + 2, hilen, &excl) != 0 || excl <= l)
            return SR_EINVAL;
        h = excl - 1;
    }
    *lo = l;
    *hi = h;
    return 0;
}

static int interval_cmp(const void *a, const void *b)
{
    const interval *x = a, *y = b;
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    return x->index - y->index;
}

static const char *name_of(const sr_keymap_spec *spec, int i)
{
    return spec->shards[i].name ? spec->shards[i].name : "?";
}

int sr__range_build(const sr_keymap_spec *spec, void **state, char *err, size_t errlen)
{
    int n = spec->nshards;
    if (!spec->shards) {
        sr__fmt(err, errlen, "distribution range needs a range on every shard");
        return SR_EINVAL;
    }
    range_state *st = malloc(sizeof *st + (size_t)n * sizeof st->iv[0]);
    if (!st) {
        sr__fmt(err, errlen, "out of memory");
        return SR_ENOMEM;
    }
    st->n = n;
    for (int i = 0; i < n; i++) {
        const char *r = spec->shards[i].range;
        if (!r) {
            sr__fmt(err, errlen, "shard \"%s\" has no range (distribution range needs \"LO..HI\" on every shard)",
                    name_of(spec, i));
            goto fail;
        }
        if (sr__range_parse(r, &st->iv[i].lo, &st->iv[i].hi) != 0) {
            sr__fmt(err, errlen,
                    "shard \"%s\": malformed range \"%s\" (expected LO..HI with int64 bounds, LO < HI, "
                    "an empty bound meaning unbounded: \"..1000\", \"1000..2000\", \"2000..\")",
                    name_of(spec, i), r);
            goto fail;
        }
        st->iv[i].index = i;
    }
    qsort(st->iv, (size_t)n, sizeof st->iv[0], interval_cmp);
    for (int i = 0; i + 1 < n; i++) {
        if (st->iv[i].hi >= st->iv[i + 1].lo) {
            int a = st->iv[i].index, b = st->iv[i + 1].index;
            sr__fmt(err, errlen, "range overlap: shard \"%s\" (%s) and shard \"%s\" (%s) both hold key %lld",
                    name_of(spec, a), spec->shards[a].range, name_of(spec, b), spec->shards[b].range,
                    (long long)st->iv[i + 1].lo);
            goto fail;
        }
    }
    *state = st;
    return 0;
fail:
    free(st);
    return SR_EINVAL;
}

int sr__range_lookup(const void *state, sr_key key, uint64_t hash)
{
    (void)hash;
    const range_state *st = state;
    if (key.kind != SR_KEY_INT)
        return SR_EINVAL;
    int64_t v = key.i;
    /* The last interval starting at or below v is the only one that can hold it. */
    size_t lo = 0, hi = (size_t)st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->iv[mid].lo <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0 || v > st->iv[lo - 1].hi)
        return SR_ENOSHARD;
    return st->iv[lo - 1].index;
}

void sr__range_free(void *state)
{
    free(state);
}
