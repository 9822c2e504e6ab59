/*
 * What a consistency token costs to read, at its worst, on a large router.
 *
 *   bench_token [SHARDS] [ROUNDS]        (defaults: 4096 shards, 20 rounds)
 *
 * The router has SHARDS shards on a fake backend whose positions are
 * MariaDB-like "D-N" lists (merge = per-domain maximum; the tests' own,
 * tests/support/fake_positions.h), so no server is needed. Measured with
 * sr_session_set_token() on a fresh session each round (median and maximum):
 *   1. the largest token the router itself emits: every shard holding a long
 *      position (16 domains);
 *   2. the worst token an attacker can make it read: every shard once plus
 *      the 64 unknown entries allowed, positions as long as accepted;
 *   3. the audit's kind of token: 10 MB of unknown entries (1.1 M), refused
 *      on its length before any entry is read;
 *   4. a token at the size cap made of unknown entries: refused at the 65th.
 * It measures and prints; it asserts nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "token.h"

#define FAKE_POSITIONS_NOOP_DRIVER
#include "fake_positions.h" /* tests/support/ */

static char next_pos[SR_POSITION_MAX];

static int f_position(sr_driver_conn *c, int64_t d, char *buf, size_t len, sr_driver_error *e)
{
    (void)c, (void)d, (void)e;
    snprintf(buf, len, "%s", next_pos);
    return SR_OK;
}

static const char *const schemes[] = {"benchtok", NULL};
static const sr_driver driver = {
    .abi_version = SR_DRIVER_ABI_VERSION,
    .name = "benchtok",
    .schemes = schemes,
    .dialect = SR_SQL_GENERIC,
    .connect = fp_noop_connect,
    .close = fp_noop_close,
    .exec = fp_noop_exec,
    .begin = fp_noop_begin,
    .commit = fp_noop_txn,
    .rollback = fp_noop_txn,
    .ping = fp_noop_txn,
    .write_position = f_position,
    .replay_position = f_position,
    .position_covers = fp_gtid_covers,
    .position_merge = fp_gtid_merge,
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Times sr_session_set_token(token) on a fresh session, `rounds` times. */
static void measure(sr_router *r, const char *what, const char *token, int rounds)
{
    double *t = malloc((size_t)rounds * sizeof *t);
    int rc = SR_OK;
    char msg[120] = "";
    for (int i = 0; i < rounds; i++) {
        sr_session *s;
        if (sr_session_new(r, &s) != SR_OK)
            exit(1);
        double t0 = now_ms();
        rc = sr_session_set_token(s, token);
        t[i] = now_ms() - t0;
        snprintf(msg, sizeof msg, "%s", sr_session_errmsg(s));
        sr_session_free(s);
    }
    qsort(t, (size_t)rounds, sizeof *t, cmp_double);
    printf("%-44s %9zu bytes  %-7s median %8.3f ms  max %8.3f ms  %s\n", what, strlen(token),
           rc == SR_OK ? "ok" : sr_strerror(rc), t[rounds / 2], t[rounds - 1],
           rc == SR_OK ? "" : msg);
    free(t);
}

int main(int argc, char **argv)
{
    int nshards = argc > 1 ? atoi(argv[1]) : 4096;
    int rounds = argc > 2 ? atoi(argv[2]) : 20;
    if (nshards < 1 || rounds < 1 || sr_driver_register(&driver) != SR_OK)
        return 1;
    sr_config *c = sr_config_new();
    sr_config_set(c, "shard.distribution", "jump");
    for (int i = 0; i < nshards; i++) {
        char name[32];
        snprintf(name, sizeof name, "shard-%04d", i);
        if (sr_config_add_shard(c, name) != SR_OK ||
            sr_config_add_node(c, name, SR_PRIMARY, "benchtok://fake/db", 1) != SR_OK)
            return 1;
    }
    sr_router *r = NULL;
    if (sr_router_open(c, &r) != SR_OK) {
        fprintf(stderr, "open: %s\n", sr_config_errmsg(c));
        return 1;
    }
    sr_config_free(c);
    printf("router: %d shards; token size cap %zu bytes\n", nshards, sr__token_max_bytes(atomic_load(&r->current)));

    /* 1. Its own largest token. */
    size_t o = 0;
    for (int d = 0; d < FP_DOMAINS; d++)
        o += (size_t)snprintf(next_pos + o, sizeof next_pos - o, "%s%d-%llu", d ? "," : "", d,
                              18446744073709551000ULL + (unsigned long long)d);
    sr_session *w;
    sr_session_new(r, &w);
    for (int i = 0; i < nshards; i++)
        sr_exec_shard(w, i, SR_WRITE, "INSERT", 0, NULL, NULL);
    char *own = strdup(sr_session_token(w));
    sr_session_free(w);
    measure(r, "1. largest token the router emits", own, rounds);

    /* 2. Every shard once, 64 unknown entries, the longest position text accepted. */
    char longpos[SR_POSITION_MAX];
    memset(longpos, '0', sizeof longpos - 1);
    memcpy(longpos, "0-", 2);
    longpos[sizeof longpos - 2] = '1';
    longpos[sizeof longpos - 1] = '\0';
    size_t cap = sr__token_max_bytes(atomic_load(&r->current)) + 1;
    char *worst = malloc(cap);
    o = (size_t)snprintf(worst, cap, "%.22s", own);
    for (int i = 0; i < 64; i++)
        o += (size_t)snprintf(worst + o, cap - o, ";gone-%02d=%s", i, longpos);
    for (int i = 0; i < nshards && o + 600 < cap; i++)
        o += (size_t)snprintf(worst + o, cap - o, ";shard-%04d=%s", i, longpos);
    measure(r, "2. worst accepted: all shards + 64 unknown", worst, rounds);

    /* 3. The audit's kind: 10 MB of unknown entries. */
    size_t big = 10u * 1024 * 1024;
    char *audit = malloc(big + 1);
    o = (size_t)snprintf(audit, big + 1, "%.22s", own);
    for (int i = 0; o + 8 < big; i++)
        o += (size_t)snprintf(audit + o, big + 1 - o, ";x%x=0-1", i % 0x1000);
    measure(r, "3. 10 MB of unknown entries (the audit's)", audit, rounds);

    /* 4. At the size cap, unknown entries only. */
    audit[cap - 1] = '\0';
    measure(r, "4. size cap of unknown entries", audit, rounds);

    free(own);
    free(worst);
    free(audit);
    sr_router_close(r);
    return 0;
}
