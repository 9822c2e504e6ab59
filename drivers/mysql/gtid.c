/*
 * Replication positions as text, and their algebra (pure functions, no I/O):
 *
 *  - MariaDB GTID positions: "domain-server-seq" entries, one per domain,
 *    comma-separated ("0-1-42,7-1-3"). Within a domain, seq_no orders
 *    transactions, so a position covers another when, for every domain of
 *    the wanted one, it has that domain at an equal or higher seq_no.
 *  - MySQL GTID sets: "uuid:interval[:interval...]" elements, comma-separated
 *    ("3E11FA47-...:1-5:7,..."; MySQL 8.3 tags, "uuid:tag:1-5", are kept as
 *    part of the key). A set covers another when it is a superset
 *    (GTID_SUBSET). Kept small, and not run against a MySQL server here.
 *
 * A text with a ':' is a MySQL set, anything else a MariaDB position; "" is
 * the empty position, covered by everything.
 */
#include "my_internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_mysql_set(const char *s) { return strchr(s, ':') != NULL; }

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

static const char *skip_space(const char *p)
{
    while (is_space(*p))
        p++;
    return p;
}

/* Parses an unsigned decimal at *p (no sign, at least one digit); a
 * hand-rolled loop, as covers() runs on every read that checks a position. */
static int parse_u64(const char **p, uint64_t *out)
{
    const char *q = *p;
    if (*q < '0' || *q > '9')
        return -1;
    uint64_t v = 0;
    for (; *q >= '0' && *q <= '9'; q++) {
        unsigned d = (unsigned)(*q - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    *p = q;
    return 0;
}

/* ---- MariaDB positions ---- */

typedef struct md_gtid {
    uint64_t domain, server, seq;
} md_gtid;

/* Reads the next "D-S-N" entry at *p: 1 with *g filled, 0 at the end, -1
 * when malformed. */
static int md_next(const char **p, md_gtid *g)
{
    const char *q = skip_space(*p);
    if (!*q)
        return 0;
    if (parse_u64(&q, &g->domain) || *q++ != '-' || parse_u64(&q, &g->server) || *q++ != '-' ||
        parse_u64(&q, &g->seq))
        return -1;
    q = skip_space(q);
    if (*q == ',') {
        q = skip_space(q + 1);
        if (!*q)
            return -1; /* a trailing comma */
    } else if (*q) {
        return -1;
    }
    *p = q;
    return 1;
}

/* Parses a MariaDB position into a new array (*out, *n); "" gives n = 0. */
static int md_parse(const char *s, md_gtid **out, size_t *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    md_gtid *g = malloc(cap * sizeof *g);
    if (!g)
        return SR_ENOMEM;
    size_t k = 0;
    const char *p = s;
    int r = 0;
    while (k < cap && (r = md_next(&p, &g[k])) == 1)
        k++;
    if (k == cap && *skip_space(p))
        r = -1;
    if (r < 0) {
        free(g);
        return SR_EINVAL;
    }
    *out = g;
    *n = k;
    return SR_OK;
}

/* Without allocating: positions hold one entry per domain, a handful, and
 * `have` is scanned once per wanted domain, up to that domain. */
static int md_covers(const char *have, const char *want)
{
    md_gtid h, w;
    int r, covers = 1;
    const char *q = want;
    while ((r = md_next(&q, &w)) == 1) {
        int found = 0, rh = 0;
        const char *p = have;
        while (!found && (rh = md_next(&p, &h)) == 1)
            if (h.domain == w.domain)
                found = 1 + (h.seq >= w.seq);
        if (!found && rh < 0)
            return SR_EINVAL;
        if (found != 2)
            covers = 0;
    }
    return r < 0 ? SR_EINVAL : covers;
}

static int md_merge(const char *a, const char *b, char *buf, size_t buflen)
{
    md_gtid *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int rc = md_parse(a, &x, &nx);
    if (rc == SR_OK)
        rc = md_parse(b, &y, &ny);
    if (rc != SR_OK) {
        free(x);
        return rc;
    }
    /* Domains in order of first appearance, each at its highest seq_no. */
    md_gtid *all = malloc((nx + ny + 1) * sizeof *all);
    size_t n = 0;
    if (!all)
        rc = SR_ENOMEM;
    for (size_t i = 0; rc == SR_OK && i < nx + ny; i++) {
        const md_gtid *g = i < nx ? &x[i] : &y[i - nx];
        size_t j = 0;
        while (j < n && all[j].domain != g->domain)
            j++;
        if (j == n)
            all[n++] = *g;
        else if (g->seq > all[j].seq)
            all[j] = *g;
    }
    size_t used = 0;
    if (rc == SR_OK && buflen > 0)
        buf[0] = '\0';
    for (size_t i = 0; rc == SR_OK && i < n; i++) {
        int k = snprintf(buf + used, buflen - used, "%s%" PRIu64 "-%" PRIu64 "-%" PRIu64,
                         i ? "," : "", all[i].domain, all[i].server, all[i].seq);
        if (k < 0 || (size_t)k >= buflen - used)
            rc = SR_EINVAL;
        else
            used += (size_t)k;
    }
    if (rc == SR_OK && buflen == 0)
        rc = SR_EINVAL;
    free(all);
    free(x);
    free(y);
    return rc;
}

/* ---- MySQL GTID sets ---- */

typedef struct my_range {
    const char *key; /* points into the parsed copy: "uuid" or "uuid:tag" */
    uint64_t lo, hi;
} my_range;

typedef struct my_set {
    char *copy;      /* the text, with keys NUL-terminated in place */
    my_range *r;
    size_t n;
} my_set;

static void set_free(my_set *s)
{
    free(s->copy);
    free(s->r);
}

/* Parses a GTID set into (key, lo, hi) ranges. Whitespace (MySQL wraps long
 * sets over lines) is ignored. */
static int set_parse(const char *text, my_set *s)
{
    memset(s, 0, sizeof *s);
    size_t len = strlen(text);
    s->copy = malloc(len + 1);
    size_t cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == ':' || *p == ',';
    s->r = malloc(cap * sizeof *s->r);
    if (!s->copy || !s->r) {
        set_free(s);
        return SR_ENOMEM;
    }
    /* Drop whitespace first so keys are plain substrings. */
    size_t m = 0;
    for (const char *p = text; *p; p++)
        if (!is_space(*p))
            s->copy[m++] = *p;
    s->copy[m] = '\0';

    char *p = s->copy;
    while (*p) {
        /* The uuid: up to the first ':'. */
        char *key = p;
        char *colon = strchr(p, ':');
        char *comma = strchr(p, ',');
        if (!colon || (comma && comma < colon) || colon == p)
            goto bad;
        p = colon + 1;
        /* A tag (MySQL 8.3) joins the key: "uuid:tag". */
        if (*p && !isdigit((unsigned char)*p)) {
            char *tag_end = p;
            while (*tag_end && *tag_end != ':' && *tag_end != ',')
                tag_end++;
            if (*tag_end != ':')
                goto bad;
            *tag_end = '\0';
            p = tag_end + 1;
        } else {
            *colon = '\0';
        }
        /* Intervals: N or N-M, ':'-separated, up to ',' or the end. */
        for (;;) {
            my_range r = {key, 0, 0};
            const char *q = p;
            if (parse_u64(&q, &r.lo))
                goto bad;
            r.hi = r.lo;
            if (*q == '-') {
                q++;
                if (parse_u64(&q, &r.hi) || r.hi < r.lo)
                    goto bad;
            }
            if (s->n == cap)
                goto bad;
            s->r[s->n++] = r;
            p = (char *)q;
            if (*p == ':') {
                p++;
                continue;
            }
            break;
        }
        if (*p == ',')
            p++;
        else if (*p)
            goto bad;
    }
    return SR_OK;
bad:
    set_free(s);
    return SR_EINVAL;
}

static int range_cmp(const void *a, const void *b)
{
    const my_range *x = a, *y = b;
    int k = strcmp(x->key, y->key);
    if (k)
        return k;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Sorts by key then start and merges overlapping or adjacent ranges. */
static void set_normalise(my_set *s)
{
    if (s->n == 0)
        return;
    qsort(s->r, s->n, sizeof *s->r, range_cmp);
    size_t k = 0;
    for (size_t i = 1; i < s->n; i++) {
        my_range *last = &s->r[k];
        /* hi + 1 would wrap at UINT64_MAX and leave overlapping ranges unmerged (found by
         * tests/fuzz/fuzz_token.c: merge was not idempotent, so positions grew). */
        if (strcmp(last->key, s->r[i].key) == 0 &&
            (last->hi == UINT64_MAX || s->r[i].lo <= last->hi + 1)) {
            if (s->r[i].hi > last->hi)
                last->hi = s->r[i].hi;
        } else {
            s->r[++k] = s->r[i];
        }
    }
    s->n = k + 1;
}

static int set_covers(const char *have, const char *want)
{
    my_set h, w;
    int rc = set_parse(have, &h);
    if (rc != SR_OK)
        return rc;
    if ((rc = set_parse(want, &w)) != SR_OK) {
        set_free(&h);
        return rc;
    }
    set_normalise(&h);
    int covers = 1;
    for (size_t i = 0; i < w.n && covers; i++) {
        int found = 0;
        for (size_t j = 0; j < h.n && !found; j++)
            found = strcmp(h.r[j].key, w.r[i].key) == 0 && h.r[j].lo <= w.r[i].lo &&
                    w.r[i].hi <= h.r[j].hi;
        covers = found;
    }
    set_free(&h);
    set_free(&w);
    return covers;
}

static int set_merge(const char *a, const char *b, char *buf, size_t buflen)
{
    size_t la = strlen(a), lb = strlen(b);
    char *both = malloc(la + lb + 2);
    if (!both)
        return SR_ENOMEM;
    memcpy(both, a, la);
    size_t n = la;
    if (la && lb)
        both[n++] = ',';
    memcpy(both + n, b, lb + 1);
    my_set s;
    int rc = set_parse(both, &s);
    free(both);
    if (rc != SR_OK)
        return rc;
    set_normalise(&s);
    size_t used = 0;
    if (buflen == 0)
        rc = SR_EINVAL;
    else
        buf[0] = '\0';
    for (size_t i = 0; rc == SR_OK && i < s.n; i++) {
        int same_key = i > 0 && strcmp(s.r[i - 1].key, s.r[i].key) == 0;
        int k;
        if (s.r[i].lo == s.r[i].hi)
            k = snprintf(buf + used, buflen - used, "%s%s:%" PRIu64, same_key ? "" : i ? "," : "",
                         same_key ? "" : s.r[i].key, s.r[i].lo);
        else
            k = snprintf(buf + used, buflen - used, "%s%s:%" PRIu64 "-%" PRIu64,
                         same_key ? "" : i ? "," : "", same_key ? "" : s.r[i].key, s.r[i].lo,
                         s.r[i].hi);
        if (k < 0 || (size_t)k >= buflen - used)
            rc = SR_EINVAL;
        else
            used += (size_t)k;
    }
    set_free(&s);
    return rc;
}

/* ---- the driver's pure position methods ---- */

int sr__my_position_covers(const char *have, const char *want)
{
    if (!have || !want)
        return SR_EINVAL;
    /* The common case on a read: the replica is exactly where the write was. */
    if (!*skip_space(want) || strcmp(have, want) == 0)
        return 1;
    if (is_mysql_set(want) || is_mysql_set(have)) {
        if (!*skip_space(have))
            return 0;
        if (!is_mysql_set(want) || !is_mysql_set(have))
            return SR_EINVAL; /* one MariaDB position, one MySQL set */
        return set_covers(have, want);
    }
    return md_covers(have, want);
}

int sr__my_position_merge(const char *a, const char *b, char *buf, size_t buflen)
{
    if (!a || !b || !buf)
        return SR_EINVAL;
    int mysql = is_mysql_set(a) || is_mysql_set(b);
    if (mysql && ((*skip_space(a) && !is_mysql_set(a)) || (*skip_space(b) && !is_mysql_set(b))))
        return SR_EINVAL;
    return mysql ? set_merge(a, b, buf, buflen) : md_merge(a, b, buf, buflen);
}
