/*
 * What the consistency suites of every backend share (test code, not part
 * of the library): the two shards, sessions in a mode, keys on a shard, a
 * one-row write, the routers' statement counters, and a token made by a
 * child process (tests/support/proc.h). Each backend's suite
 * (tests/integration/test_consistency_pg.c, _mysql.c, _sqlite.c) adds its own
 * cluster control. Header-only and static inline; Check assertions fail the
 * calling test, so call these from the test's process and thread only,
 * except token_child_exit, which is for the child.
 */
#ifndef SR_TEST_SUPPORT_CONSISTENCY_COMMON_H
#define SR_TEST_SUPPORT_CONSISTENCY_COMMON_H

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <shardroute.h>

#include "proc.h"
#include "testutil.h"

#define NSHARDS 2
static const char *const shard_db[NSHARDS] = {"shard0", "shard1"};

/* Write-then-read pairs of the read-your-writes tests, over KEYS keys. */
enum { PAIRS = 1000, KEYS = 20 };

/* Reads of the monotonic-reads tests. */
enum { MONO_READS = 1000 };

/* The lag tests' replica.max_lag_ms and how often the router measures lag. */
enum { MAX_LAG = 500, LAG_REFRESH = 100 };

/*
 * How late (ms) a read may still reach a replica whose lag has passed the
 * bound: the last measurement is at most LAG_REFRESH old, plus rounding of
 * millisecond figures. No scheduling delay enters: a read that starts later
 * measures later, and a later measurement only sees more lag.
 */
enum { ROUNDING = 50 };

static inline sr_session *session_in(sr_router *r, const char *mode)
{
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    if (mode)
        ck_assert_msg(sr_session_set(s, "consistency", mode) == SR_OK, "%s", sr_session_errmsg(s));
    return s;
}

/* The n-th (0-based) integer key >= 0 that the router maps to `shard`. */
static inline int64_t key_on(const sr_router *r, int shard, int n)
{
    for (int64_t k = 0; k < 100000; k++)
        if (sr_router_shard_for(r, sr_key_int(k)) == shard && n-- == 0)
            return k;
    ck_abort_msg("no key for shard %d", shard);
    return -1;
}

/* A routed write of one row that must change exactly one row. */
static inline void write_one(sr_session *s, int64_t key, const char *sql, const char *value)
{
    char ks[24];
    snprintf(ks, sizeof ks, "%lld", (long long)key);
    const char *p[] = {value, ks};
    sr_result *res = NULL;
    int rc = sr_exec(s, sr_key_int(key), SR_WRITE, sql, 2, p, &res);
    ck_assert_msg(rc == SR_OK, "%s: %s (%s)", sql, sr_strerror(rc), sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_affected(res), 1);
    sr_result_free(res);
}

/* Statements completed by the replicas / the primary of every shard (the router's counters). */
static inline uint64_t statements_on(const sr_router *r, int want_primary)
{
    uint64_t n = 0;
    for (int sh = 0; sh < sr_router_nshards(r); sh++)
        for (int i = 0; i < sr_router_nnodes(r, sh); i++) {
            sr_node_info info;
            ck_assert_int_eq(sr_router_node_info(r, sh, i, &info), SR_OK);
            if ((info.role == SR_PRIMARY) == (want_primary != 0))
                n += info.statements;
        }
    return n;
}

/* What a token child gets: two keys (PostgreSQL) or one per shard (MariaDB), and the value. */
typedef struct token_args {
    int64_t key0, key1;
    const int64_t *keys;
    const char *value;
} token_args;

/*
 * The end of a token child: writes the session's token (or `msg`, an
 * "ERR ..." line, when `ok` is 0 or there is no token) to `fd`, frees the
 * session and router and exits 0 only when a token was written.
 */
static inline void token_child_exit(int fd, sr_router *r, sr_session *s, int ok, char *msg,
                                    size_t msgsize)
{
    const char *tok = ok ? sr_session_token(s) : NULL;
    if (tok)
        snprintf(msg, msgsize, "%s", tok);
    else if (ok)
        snprintf(msg, msgsize, "ERR token: %s", sr_session_errmsg(s));
    ok = ok && tok;
    size_t len = strlen(msg), off = 0;
    while (off < len) {
        ssize_t n = write(fd, msg + off, len - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    sr_session_free(s);
    sr_router_close(r);
    close(fd);
    _exit(ok ? 0 : 1);
}

/*
 * Runs a token child in a new process (tests/support/proc.h: bounded, killed
 * when it hangs) and returns what it printed (a token, or "ERR ...").
 */
static inline char *token_from(void (*fn)(int, void *), token_args *a)
{
    int status = -1;
    char *buf = tp_run_child(fn, a, 60000, &status);
    ck_assert_ptr_nonnull(buf);
    ck_assert_msg(status == 0, "child failed (status %d): %s", status, buf);
    return buf;
}

#endif
