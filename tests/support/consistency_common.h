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
#include <stdlib.h>
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

/*
 * A router over a cluster: `nshards` shards (databases shard0, shard1), each
 * with `primary` and then every one of `replicas` (base URIs, no database) as
 * nodes, balance.policy round_robin, then the options `opts` (name/value
 * pairs ending with NULL, or NULL) in order, then the log function if any.
 */
static inline sr_router *open_cluster_router(const char *primary, const char *const *replicas,
                                             int nreplicas, int nshards,
                                             const char *const *opts, sr_log_fn log_fn,
                                             void *log_ud)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sr_config_set(c, "balance.policy", "round_robin"), SR_OK);
    for (int i = 0; opts && opts[i]; i += 2)
        ck_assert_msg(sr_config_set(c, opts[i], opts[i + 1]) == SR_OK, "%s", sr_config_errmsg(c));
    if (log_fn)
        ck_assert_int_eq(sr_config_set_log_fn(c, log_fn, log_ud), SR_OK);
    for (int i = 0; i < nshards; i++) {
        ck_assert_int_eq(sr_config_add_shard(c, shard_db[i]), SR_OK);
        for (int n = -1; n < nreplicas; n++) {
            char *uri = xfmt("%s/%s", n < 0 ? primary : replicas[n], shard_db[i]);
            ck_assert_msg(sr_config_add_node(c, shard_db[i], n < 0 ? SR_PRIMARY : SR_REPLICA, uri,
                                             1) == SR_OK,
                          "%s", sr_config_errmsg(c));
            free(uri);
        }
    }
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "open: %s", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

/* What one routed read saw: the value (or "" for no row) and which server answered. */
typedef struct seen {
    char value[64];
    int found;
    long server; /* the second column: a port or a server id */
} seen;

/*
 * Runs `sql` (one parameter, the key; two columns: a value and the answering
 * server) with SR_READ and per-read options; what it saw.
 */
static inline seen read_row_as(sr_session *s, const char *sql, int64_t key,
                               const sr_read_opts *opts)
{
    char ks[24];
    snprintf(ks, sizeof ks, "%lld", (long long)key);
    const char *p[] = {ks};
    sr_result *res = NULL;
    int rc = sr_exec_opts(s, sr_key_int(key), SR_READ, opts, sql, 1, p, &res);
    ck_assert_msg(rc == SR_OK, "%s: %s (%s)", sql, sr_strerror(rc), sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_nrows(res), 1);
    seen w;
    memset(&w, 0, sizeof w);
    const char *v = sr_result_value(res, 0, 0);
    w.found = v != NULL;
    snprintf(w.value, sizeof w.value, "%s", v ? v : "");
    w.server = atol(sr_result_value(res, 0, 1));
    sr_result_free(res);
    return w;
}

/*
 * Reads row 1 of `sql` (read_row_as) MONO_READS times; returns how many reads
 * were older than the freshest value seen before them (values are integers),
 * and counts in by_server[i] the reads servers[i] answered.
 */
static inline int read_many_as(sr_session *s, const char *sql, const long *servers, int nservers,
                               int *by_server)
{
    int regressions = 0, newest = 0;
    memset(by_server, 0, sizeof(int) * (size_t)nservers);
    for (int i = 0; i < MONO_READS; i++) {
        seen w = read_row_as(s, sql, 1, NULL);
        ck_assert(w.found);
        int v = atoi(w.value);
        if (v < newest)
            regressions++;
        if (v > newest)
            newest = v;
        for (int j = 0; j < nservers; j++)
            by_server[j] += w.server == servers[j];
    }
    return regressions;
}

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

/* Inserts `nkeys` rows (k, 'initial') into `table`, spread evenly over the shards. */
static inline void insert_initial_rows(sr_session *s, const sr_router *r, const char *table,
                                       int nkeys)
{
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT INTO %s VALUES (?, 'initial')", table);
    for (int i = 0; i < nkeys; i++) {
        int64_t key = key_on(r, i % NSHARDS, i / NSHARDS);
        char ks[24];
        snprintf(ks, sizeof ks, "%lld", (long long)key);
        const char *p[] = {ks};
        ck_assert_msg(sr_exec(s, sr_key_int(key), SR_WRITE, sql, 1, p, NULL) == SR_OK, "%s: %s",
                      sql, sr_session_errmsg(s));
    }
}

/* Statements completed by the replicas / the primary of every shard (the router's counters). */
static inline uint64_t statements_on(const sr_router *r, int want_primary)
{
    uint64_t n = 0;
    for (int sh = 0; sh < sr_router_nshards(r); sh++)
        for (int i = 0; i < sr_router_nnodes(r, sh); i++) {
            sr_node_info info = SR_NODE_INFO_INIT;
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
