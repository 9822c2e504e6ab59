/*
 * Replication positions for fake backends (test, benchmark and fuzzing code,
 * not part of the library), so that tokens and read-your-writes can be
 * exercised without servers: tests/unit/test_token.c, bench/bench_token.c and
 * tests/fuzz/fuzz_token.c use them as a driver's position_covers and
 * position_merge.
 *
 * Two algebras:
 *   fp_gtid_*  MariaDB-like: "D-N" entries (domain < FP_DOMAINS, sequence
 *              N > 0), comma separated, blanks allowed around them, "" the
 *              empty position; merge is the per-domain maximum written
 *              canonically ("0-5,3-9").
 *   fp_num_*   a position is a decimal number; merge is the maximum.
 * Both return SR_EINVAL for a position they cannot read, as a driver must.
 *
 * With FAKE_POSITIONS_NOOP_DRIVER defined before the include, it also
 * defines struct sr_driver_conn and fp_noop_driver(), which fills a driver's
 * connection, exec and transaction slots with functions that succeed and do
 * nothing (leave it undefined next to tests/unit/fake_driver.h, which has
 * its own connection).
 *
 * Header-only and static inline; every function is thread-safe (no state).
 */
#ifndef SR_TEST_SUPPORT_FAKE_POSITIONS_H
#define SR_TEST_SUPPORT_FAKE_POSITIONS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shardroute/driver.h>

enum { FP_DOMAINS = 16 };

/* Parses "D-N, D-N ..." into seq[domain] (0 = absent); 0 when well-formed, -1 when not. */
static inline int fp_gtid_parse(const char *p, unsigned long long seq[FP_DOMAINS])
{
    memset(seq, 0, sizeof(unsigned long long) * FP_DOMAINS);
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            return 0;
        char *end;
        unsigned long d = strtoul(p, &end, 10);
        if (end == p || *end != '-' || d >= FP_DOMAINS)
            return -1;
        p = end + 1;
        unsigned long long n = strtoull(p, &end, 10);
        if (end == p || n == 0)
            return -1;
        if (n > seq[d])
            seq[d] = n;
        p = end;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
}

static inline int fp_gtid_merge(const char *a, const char *b, char *buf, size_t len)
{
    unsigned long long x[FP_DOMAINS], y[FP_DOMAINS];
    if (fp_gtid_parse(a, x) || fp_gtid_parse(b, y))
        return SR_EINVAL;
    size_t o = 0;
    buf[0] = '\0';
    for (int d = 0; d < FP_DOMAINS; d++) {
        unsigned long long n = x[d] > y[d] ? x[d] : y[d];
        if (!n)
            continue;
        int w = snprintf(buf + o, len - o, "%s%d-%llu", o ? "," : "", d, n);
        if (w < 0 || (size_t)w >= len - o)
            return SR_EINVAL;
        o += (size_t)w;
    }
    return SR_OK;
}

static inline int fp_gtid_covers(const char *have, const char *want)
{
    unsigned long long h[FP_DOMAINS], w[FP_DOMAINS];
    if (fp_gtid_parse(have, h) || fp_gtid_parse(want, w))
        return SR_EINVAL;
    for (int d = 0; d < FP_DOMAINS; d++)
        if (w[d] > h[d])
            return 0;
    return 1;
}

static inline int fp_num_parse(const char *p, unsigned long long *v)
{
    char *end;
    if (*p < '0' || *p > '9')
        return -1;
    *v = strtoull(p, &end, 10);
    return *end ? -1 : 0;
}

static inline int fp_num_covers(const char *have, const char *want)
{
    unsigned long long h, w;
    if (fp_num_parse(have, &h) || fp_num_parse(want, &w))
        return SR_EINVAL;
    return h >= w;
}

static inline int fp_num_merge(const char *a, const char *b, char *buf, size_t len)
{
    unsigned long long x, y;
    if (fp_num_parse(a, &x) || fp_num_parse(b, &y))
        return SR_EINVAL;
    int n = snprintf(buf, len, "%llu", x > y ? x : y);
    return n > 0 && (size_t)n < len ? SR_OK : SR_EINVAL;
}

#ifdef FAKE_POSITIONS_NOOP_DRIVER
struct sr_driver_conn {
    int unused;
};

static inline int fp_noop_connect(const sr_driver_connect_args *a, sr_driver_conn **out,
                                  sr_driver_error *e)
{
    (void)a, (void)e;
    *out = calloc(1, sizeof **out);
    return *out ? SR_OK : SR_ENOMEM;
}
static inline void fp_noop_close(sr_driver_conn *c) { free(c); }
static inline int fp_noop_exec(sr_driver_conn *c, const char *sql, int np, const char *const *p,
                               int64_t d, sr_result_builder *rb, sr_driver_error *e)
{
    (void)c, (void)sql, (void)np, (void)p, (void)d, (void)rb, (void)e;
    return SR_OK;
}
static inline int fp_noop_txn(sr_driver_conn *c, int64_t d, sr_driver_error *e)
{
    (void)c, (void)d, (void)e;
    return SR_OK;
}
static inline int fp_noop_begin(sr_driver_conn *c, int ro, int64_t d, sr_driver_error *e)
{
    (void)ro;
    return fp_noop_txn(c, d, e);
}

/* Fills d's connect, close, exec, begin, commit, rollback and ping with no-ops. */
static inline void fp_noop_driver(sr_driver *d)
{
    d->connect = fp_noop_connect;
    d->close = fp_noop_close;
    d->exec = fp_noop_exec;
    d->begin = fp_noop_begin;
    d->commit = fp_noop_txn;
    d->rollback = fp_noop_txn;
    d->ping = fp_noop_txn;
}
#endif

#endif
