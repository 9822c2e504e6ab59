/*
 * Routing decisions without servers: where a statement goes and what the
 * caller sees when nodes fail, lag, fall behind or hang. Only the public API
 * (shardroute.h, shardroute/driver.h) is used, so this suite holds whatever
 * the statement path inside lib/ looks like: it is the regression net for
 * restructuring it.
 *
 * The fake driver (tests/support/route_driver.h) is registered through
 * sr_driver_register() and knows which node each connection belongs to, so a
 * test sets each node's behaviour and asks each node what ran on it. A read
 * returns the name of the node that answered.
 *
 * Topology of every test: shards s0, s1, ... (distribution `range`: shard i
 * owns keys i*100 .. i*100+99, the first and last unbounded), each with a
 * primary "sNp" and replicas "sNr1", "sNr2", ...; balance.policy is
 * round_robin wherever the spread matters (p2c_ewma is random).
 *
 * Nothing here sleeps to "wait for" something except bounded polling, and
 * times are only checked against generous upper bounds (a deadline holds),
 * never as a measure of speed.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shardroute.h>
#include <shardroute/driver.h>

#include "route_driver.h"

/* ---- helpers ---- */

/* Upper bound on how late a bounded call may return on a loaded machine (or valgrind). */
static int64_t slack_ms(void) { return getenv("SR_UNDER_VALGRIND") ? 20000 : 3000; }

static int64_t now_ms(void) { return sr_clock_ns() / 1000000; }

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static _Atomic int ejected_lines;  /* "node ejected" log lines */
static char last_log[1024];

static void capture(void *ud, sr_log_level level, const char *msg)
{
    (void)ud, (void)level;
    if (strstr(msg, "node ejected"))
        atomic_fetch_add(&ejected_lines, 1);
    snprintf(last_log, sizeof last_log, "%s", msg);
}

/* A key of shard `shard` (see the topology above). */
static sr_key K(int shard) { return sr_key_int((int64_t)shard * 100 + 1); }

static route_node *N(const char *name)
{
    route_node *n = route_node_find(name);
    ck_assert_msg(n != NULL, "no fake node %s", name);
    return n;
}

/* Statements that succeeded on a node, and every exec it was sent. */
static int ok_on(const char *name) { return atomic_load(&N(name)->exec_ok); }
static int sent_to(const char *name) { return atomic_load(&N(name)->execs); }
static int position_of(const char *name) { return (int)atomic_load(&N(name)->position); }

static void config_set(sr_config *c, const char *k, const char *v)
{
    ck_assert_msg(sr_config_set(c, k, v) == SR_OK, "%s = %s: %s", k, v, sr_config_errmsg(c));
}

/*
 * A router of `nshards` shards with `nreplicas` replicas each; `opts` is
 * NULL or name, value, ..., NULL and overrides the suite's defaults. Nodes
 * are declared to the fake driver unless they exist (a second router of the
 * same topology shares them, like a second process).
 */
/* The URI scheme open_router() gives nodes: "fake", or "fakeat" (with exec_at). */
static const char *scheme = "fake";

static sr_router *open_router(int nshards, int nreplicas, const char *const *opts)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    config_set(c, "shard.distribution", "range");
    config_set(c, "balance.policy", "round_robin");
    config_set(c, "health.retry_ms", "3600000"); /* no probe in the middle of a test */
    config_set(c, "health.retry_max_ms", "3600000");
    config_set(c, "consistency.wait_ms", "0");
    for (const char *const *o = opts; o && o[0]; o += 2)
        config_set(c, o[0], o[1]);
    ck_assert_int_eq(sr_config_set_log_fn(c, capture, NULL), SR_OK);
    for (int i = 0; i < nshards; i++) {
        char shard[16], range[64], node[32], uri[64];
        snprintf(shard, sizeof shard, "s%d", i);
        ck_assert_int_eq(sr_config_add_shard(c, shard), SR_OK);
        if (nshards == 1)
            snprintf(range, sizeof range, "..");
        else if (i == 0)
            snprintf(range, sizeof range, "..100");
        else if (i == nshards - 1)
            snprintf(range, sizeof range, "%d..", i * 100);
        else
            snprintf(range, sizeof range, "%d..%d", i * 100, (i + 1) * 100);
        ck_assert_msg(sr_config_shard_set(c, shard, "range", range) == SR_OK, "%s",
                      sr_config_errmsg(c));
        for (int j = 0; j <= nreplicas; j++) {
            if (j == 0)
                snprintf(node, sizeof node, "s%dp", i);
            else
                snprintf(node, sizeof node, "s%dr%d", i, j);
            if (!route_node_find(node))
                route_node_add(node, j == 0 ? SR_PRIMARY : SR_REPLICA);
            snprintf(uri, sizeof uri, "%s://127.0.0.1/%s", scheme, node);
            ck_assert_msg(sr_config_add_node(c, shard, j == 0 ? SR_PRIMARY : SR_REPLICA, uri, 1) ==
                              SR_OK,
                          "%s", sr_config_errmsg(c));
        }
    }
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

static sr_session *new_session(sr_router *r)
{
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    return s;
}

/* One read on `shard` that must succeed; returns the node that answered. */
static const char *read_opts(sr_session *s, int shard, const sr_read_opts *o)
{
    static char who[4][32];
    static int slot;
    sr_result *res = NULL;
    int rc = sr_exec_opts(s, K(shard), SR_READ, o, "SELECT node FROM t", 0, NULL, &res);
    ck_assert_msg(rc == SR_OK, "read on s%d: %s: %s", shard, sr_strerror(rc), sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_nrows(res), 1);
    ck_assert_str_eq(sr_result_colname(res, 0), "node");
    char *w = who[slot++ % 4];
    snprintf(w, sizeof who[0], "%s", sr_result_value(res, 0, 0));
    sr_result_free(res);
    return w;
}

static const char *read_on(sr_session *s, int shard) { return read_opts(s, shard, NULL); }

/* One read that must fail; returns its status. */
static int read_fails(sr_session *s, int shard, const sr_read_opts *o)
{
    sr_result *res = NULL;
    int rc = sr_exec_opts(s, K(shard), SR_READ, o, "SELECT node FROM t", 0, NULL, &res);
    ck_assert_msg(rc != SR_OK, "read on s%d succeeded on %s", shard,
                  res ? sr_result_value(res, 0, 0) : "?");
    ck_assert_ptr_null(res); /* written only on success */
    return rc;
}

static void write_on(sr_session *s, int shard)
{
    sr_result *res = NULL;
    int rc = sr_exec(s, K(shard), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, &res);
    ck_assert_msg(rc == SR_OK, "write on s%d: %s: %s", shard, sr_strerror(rc), sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_affected(res), 1);
    sr_result_free(res);
}

static sr_node_info node_info(sr_router *r, int shard, int node)
{
    sr_node_info ni = SR_NODE_INFO_INIT;
    ck_assert_int_eq(sr_router_node_info(r, shard, node, &ni), SR_OK);
    return ni;
}

#define ASSERT_CONTAINS(hay, needle) \
    ck_assert_msg(strstr((hay), (needle)) != NULL, "'%s' does not contain '%s'", (hay), (needle))

static char trace_buf[4096];
#define TRACE() route_trace_take(trace_buf, sizeof trace_buf)

static void setup(void)
{
    route_driver_reset();
    scheme = "fake";
    atomic_store(&ejected_lines, 0);
    last_log[0] = '\0';
}

/* ---- writes and the spread of reads ---- */

START_TEST(writes_go_to_the_primary)
{
    sr_router *r = open_router(1, 2, NULL);
    sr_session *s = new_session(r);
    for (int i = 0; i < 3; i++)
        write_on(s, 0);
    /* AUTO: the lexer says write; WRITE wins over a SELECT; by shard index too. */
    ck_assert_int_eq(sr_exec(s, K(0), SR_AUTO, "UPDATE t SET x = 1", 0, NULL, NULL), SR_OK);
    ck_assert_int_eq(sr_exec(s, K(0), SR_AUTO, "DELETE FROM t", 0, NULL, NULL), SR_OK);
    ck_assert_int_eq(sr_exec(s, K(0), SR_WRITE, "SELECT node FROM t", 0, NULL, NULL), SR_OK);
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "INSERT INTO t VALUES (2)", 0, NULL, NULL),
                     SR_OK);
    ck_assert_int_eq(ok_on("s0p"), 7);
    ck_assert_int_eq(sent_to("s0r1") + sent_to("s0r2"), 0);
    ck_assert_str_eq(TRACE(), "s0p s0p s0p s0p s0p s0p s0p");
    /* ... while a read goes to a replica (one that has replayed them: read-your-writes). */
    ck_assert_int_eq(position_of("s0p"), 6); /* the SELECT sent as a write changed nothing */
    atomic_store(&N("s0r1")->position, 6);
    atomic_store(&N("s0r2")->position, 6);
    const char *who = read_on(s, 0);
    ck_assert_msg(strcmp(who, "s0r1") == 0 || strcmp(who, "s0r2") == 0, "read on %s", who);
    ck_assert_int_eq(ok_on("s0p"), 7);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(auto_reads_spread_over_the_replicas_in_turn)
{
    sr_router *r = open_router(1, 2, NULL);
    sr_session *s = new_session(r);
    int n1 = 0, n2 = 0;
    for (int i = 0; i < 20; i++) {
        sr_result *res = NULL;
        ck_assert_int_eq(sr_exec(s, K(0), SR_AUTO, "SELECT node FROM t", 0, NULL, &res), SR_OK);
        const char *who = sr_result_value(res, 0, 0);
        ck_assert_ptr_nonnull(who);
        n1 += strcmp(who, "s0r1") == 0;
        n2 += strcmp(who, "s0r2") == 0;
        sr_result_free(res);
    }
    /* The answers agree with what each node counted. */
    ck_assert_int_eq(n1, ok_on("s0r1"));
    ck_assert_int_eq(n2, ok_on("s0r2"));
    ck_assert_int_eq(n1 + n2, 20);
    ck_assert_int_eq(sent_to("s0p"), 0);
    /* The router's counters agree. */
    ck_assert_int_eq((int)node_info(r, 0, 1).statements, 10);
    ck_assert_int_eq((int)node_info(r, 0, 2).statements, 10);
    ck_assert_int_eq((int)node_info(r, 0, 0).statements, 0);
    ck_assert_int_eq((int)node_info(r, 0, 1).in_flight, 0);
    /* Without a lag bound, lag is not measured on the read path. */
    ck_assert_int_eq(atomic_load(&N("s0r1")->lag_reads) + atomic_load(&N("s0r2")->lag_reads), 0);
    /* round_robin takes them in turn. */
    ck_assert_int_eq(n1, 10);
    ck_assert_int_eq(n2, 10);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(other_policies_read_replicas_only)
{
    static const char *const policies[] = {"random", "p2c_ewma", "least_outstanding", "weighted",
                                           "affinity"};
    for (size_t p = 0; p < sizeof policies / sizeof *policies; p++) {
        route_driver_reset();
        const char *opts[] = {"balance.policy", policies[p], NULL};
        sr_router *r = open_router(1, 2, opts);
        sr_session *s = new_session(r);
        for (int i = 0; i < 200; i++)
            read_on(s, 0);
        ck_assert_msg(sent_to("s0p") == 0, "%s: the primary served reads", policies[p]);
        ck_assert_int_eq(ok_on("s0r1") + ok_on("s0r2"), 200);
        if (strcmp(policies[p], "random") == 0) /* P(one replica never drawn) = 2^-199 */
            ck_assert(ok_on("s0r1") > 0 && ok_on("s0r2") > 0);
        if (strcmp(policies[p], "affinity") == 0) /* one session sticks to one replica */
            ck_assert(ok_on("s0r1") == 0 || ok_on("s0r2") == 0);
        sr_session_free(s);
        sr_router_close(r);
    }
}
END_TEST

START_TEST(primary_reads_always_makes_the_primary_a_candidate)
{
    const char *opts[] = {"balance.primary_reads", "always", NULL};
    sr_router *r = open_router(1, 2, opts);
    sr_session *s = new_session(r);
    for (int i = 0; i < 30; i++)
        read_on(s, 0);
    ck_assert_int_eq(ok_on("s0p"), 10);
    ck_assert_int_eq(ok_on("s0r1"), 10);
    ck_assert_int_eq(ok_on("s0r2"), 10);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(consistency_primary_reads_the_primary)
{
    sr_router *r = open_router(1, 2, NULL);
    sr_session *s = new_session(r);
    ck_assert_int_eq(sr_session_set(s, "consistency", "primary"), SR_OK);
    for (int i = 0; i < 5; i++)
        ck_assert_str_eq(read_on(s, 0), "s0p");
    /* One read's override, on a session that reads replicas. */
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    sr_read_opts o = SR_READ_OPTS_INIT;
    o.consistency = SR_CONSISTENCY_PRIMARY;
    ck_assert_str_eq(read_opts(s, 0, &o), "s0p");
    ck_assert_str_ne(read_on(s, 0), "s0p");
    ck_assert_int_eq(ok_on("s0p"), 6);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- health: ejection and fallback ---- */

START_TEST(a_failing_replica_is_ejected_and_reads_fall_back)
{
    const char *opts[] = {"health.fail_threshold", "2", NULL};
    sr_router *r = open_router(1, 2, opts);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->fail_execs, -1);

    /* Every read succeeds (a read that hit r1 was retried on r2) ... */
    for (int i = 0; i < 10; i++)
        ck_assert_str_eq(read_on(s, 0), "s0r2");
    /* ... and r1 was tried exactly fail_threshold times, then ejected. */
    ck_assert_int_eq(sent_to("s0r1"), 2);
    ck_assert_int_eq(ok_on("s0r2"), 10);
    ck_assert_int_eq(sent_to("s0p"), 0);
    sr_node_info ni = node_info(r, 0, 1);
    ck_assert_int_eq(ni.healthy, 0);
    ck_assert_int_eq((int)ni.ejections, 1);
    ck_assert_int_ge((int)ni.errors, 2);
    ck_assert_int_eq(node_info(r, 0, 2).healthy, 1);
    ck_assert_int_eq(atomic_load(&ejected_lines), 1);

    /* The other replica fails too: its reads go to the primary, then it is ejected. */
    atomic_store(&N("s0r2")->fail_execs, -1);
    for (int i = 0; i < 10; i++)
        ck_assert_str_eq(read_on(s, 0), "s0p");
    ck_assert_int_eq(sent_to("s0r2"), 10 + 2);
    ck_assert_int_eq(sent_to("s0r1"), 2);
    ck_assert_int_eq(ok_on("s0p"), 10);
    ck_assert_int_eq(node_info(r, 0, 2).healthy, 0);
    ck_assert_int_eq(atomic_load(&ejected_lines), 2);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(an_ejected_replica_is_probed_back_after_the_backoff)
{
    const char *opts[] = {"health.fail_threshold", "1", "health.retry_ms", "50",
                          "health.retry_max_ms", "50", NULL};
    sr_router *r = open_router(1, 2, opts);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->fail_connects, -1);
    for (int i = 0; i < 4; i++)
        ck_assert_str_eq(read_on(s, 0), "s0r2");
    ck_assert_int_eq(node_info(r, 0, 1).healthy, 0);
    ck_assert_int_eq(sent_to("s0r1"), 0); /* nothing was sent: connects failed */

    atomic_store(&N("s0r1")->fail_connects, 0);
    int64_t give_up = now_ms() + slack_ms();
    while (ok_on("s0r1") == 0 && now_ms() < give_up) {
        read_on(s, 0);
        pause_ms(5);
    }
    ck_assert_msg(ok_on("s0r1") > 0, "the replica was never probed back");
    ck_assert_int_eq(node_info(r, 0, 1).healthy, 1);
    ck_assert_int_eq((int)node_info(r, 0, 1).ejections, 1);
    ck_assert_int_eq(sent_to("s0p"), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(no_healthy_replica_reads_the_primary_unless_forbidden)
{
    /* Every replica's connects fail and one failure ejects. */
    const char *fallback[] = {"health.fail_threshold", "1", NULL};
    sr_router *r = open_router(1, 2, fallback);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->fail_connects, -1);
    atomic_store(&N("s0r2")->fail_connects, -1);
    for (int i = 0; i < 3; i++)
        ck_assert_str_eq(read_on(s, 0), "s0p");
    ck_assert_int_eq(node_info(r, 0, 1).healthy, 0);
    ck_assert_int_eq(node_info(r, 0, 2).healthy, 0);
    ck_assert_int_eq(ok_on("s0p"), 3);
    sr_session_free(s);
    sr_router_close(r);

    /* balance.primary_reads = never: the read fails and says why each node was skipped. */
    route_driver_reset();
    const char *never[] = {"health.fail_threshold", "1", "balance.primary_reads", "never", NULL};
    r = open_router(1, 2, never);
    s = new_session(r);
    atomic_store(&N("s0r1")->fail_connects, -1);
    atomic_store(&N("s0r2")->fail_connects, -1);
    read_fails(s, 0, NULL); /* the read that finds them down and ejects them */
    ck_assert_int_eq(node_info(r, 0, 1).healthy, 0);
    ck_assert_int_eq(node_info(r, 0, 2).healthy, 0);
    ck_assert_int_eq(read_fails(s, 0, NULL), SR_EUNAVAILABLE);
    const char *msg = sr_session_errmsg(s);
    ASSERT_CONTAINS(msg, "s0");
    ASSERT_CONTAINS(msg, "never");
    ASSERT_CONTAINS(msg, "fake://127.0.0.1/s0r1");
    ASSERT_CONTAINS(msg, "ejected");
    ck_assert_int_eq(atomic_load(&N("s0p")->connect_calls), 0);
    /* Writes are not reads: the primary still takes them. */
    write_on(s, 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_primary_that_reports_another_role_refuses_writes)
{
    sr_router *r = open_router(1, 1, NULL);
    sr_session *s = new_session(r);
    atomic_store(&N("s0p")->role, SR_REPLICA);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(node_info(r, 0, 0).role_mismatch, 1);
    ck_assert_int_eq(sr_exec(s, K(0), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL),
                     SR_EUNAVAILABLE);
    ASSERT_CONTAINS(sr_session_errmsg(s), "s0");
    ck_assert_int_eq(sent_to("s0p"), 0);
    ck_assert_str_eq(read_on(s, 0), "s0r1"); /* reads go on */

    atomic_store(&N("s0p")->role, SR_PRIMARY);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(node_info(r, 0, 0).role_mismatch, 0);
    write_on(s, 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- replica lag ---- */

START_TEST(a_replica_over_the_lag_bound_is_skipped)
{
    const char *opts[] = {"replica.max_lag_ms", "100", NULL};
    sr_router *r = open_router(1, 2, opts);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->lag_ms, 500);
    atomic_store(&N("s0r2")->lag_ms, 10);
    for (int i = 0; i < 10; i++)
        ck_assert_str_eq(read_on(s, 0), "s0r2");
    ck_assert_int_eq(sent_to("s0r1"), 0);
    ck_assert_int_ge(atomic_load(&N("s0r1")->lag_reads), 1);
    ck_assert_int_eq((int)node_info(r, 0, 1).lag_ms, 500);

    /* A looser bound for one read, none at all, and for the session. */
    sr_read_opts o = SR_READ_OPTS_INIT;
    o.max_lag_ms = 1000;
    int before = ok_on("s0r1");
    for (int i = 0; i < 4; i++)
        read_opts(s, 0, &o);
    ck_assert_int_eq(ok_on("s0r1") - before, 2);
    o.max_lag_ms = 0;
    for (int i = 0; i < 4; i++)
        read_opts(s, 0, &o);
    ck_assert_int_eq(ok_on("s0r1") - before, 4);
    ck_assert_int_eq(sr_session_set(s, "max_lag_ms", "1000"), SR_OK);
    for (int i = 0; i < 4; i++)
        read_on(s, 0);
    ck_assert_int_eq(ok_on("s0r1") - before, 6);
    ck_assert_int_eq(sr_session_set(s, "max_lag_ms", "default"), SR_OK);
    for (int i = 0; i < 4; i++)
        ck_assert_str_eq(read_on(s, 0), "s0r2");
    /* A tighter bound for one read than the router's. */
    o.max_lag_ms = 5;
    ck_assert_str_eq(read_opts(s, 0, &o), "s0p");
    ck_assert_int_eq(ok_on("s0r1") - before, 6);
    ck_assert_int_eq(sent_to("s0p"), 1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(every_replica_lagging_reads_the_primary_or_fails)
{
    const char *opts[] = {"replica.max_lag_ms", "100", NULL};
    sr_router *r = open_router(1, 2, opts);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->lag_ms, 500);
    atomic_store(&N("s0r2")->lag_ms, -1); /* replication broken */
    for (int i = 0; i < 3; i++)
        ck_assert_str_eq(read_on(s, 0), "s0p");
    ck_assert_int_eq(sent_to("s0r1") + sent_to("s0r2"), 0);
    sr_session_free(s);
    sr_router_close(r);

    route_driver_reset();
    const char *never[] = {"replica.max_lag_ms", "100", "balance.primary_reads", "never", NULL};
    r = open_router(1, 2, never);
    s = new_session(r);
    atomic_store(&N("s0r1")->lag_ms, 500);
    atomic_store(&N("s0r2")->lag_ms, 500);
    ck_assert_int_eq(read_fails(s, 0, NULL), SR_EUNAVAILABLE);
    ASSERT_CONTAINS(sr_session_errmsg(s), "s0");
    ck_assert_int_eq(sent_to("s0p") + sent_to("s0r1") + sent_to("s0r2"), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(lag_is_measured_again_and_a_recovered_replica_serves)
{
    const char *opts[] = {"replica.max_lag_ms", "100", "replica.lag_refresh_ms", "1", NULL};
    sr_router *r = open_router(1, 2, opts);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->lag_ms, 5000);
    for (int i = 0; i < 4; i++)
        ck_assert_str_eq(read_on(s, 0), "s0r2");
    atomic_store(&N("s0r1")->lag_ms, 0);
    int64_t give_up = now_ms() + slack_ms();
    while (ok_on("s0r1") == 0 && now_ms() < give_up) {
        read_on(s, 0);
        pause_ms(2);
    }
    ck_assert_msg(ok_on("s0r1") > 0, "the caught-up replica never served a read");
    ck_assert_int_eq(sent_to("s0p"), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_broken_replica_found_by_the_prober_is_skipped_without_a_bound)
{
    sr_router *r = open_router(1, 2, NULL); /* replica.max_lag_ms = 0: no bound */
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->lag_ms, -1);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq((int)node_info(r, 0, 1).lag_ms, -1);
    for (int i = 0; i < 6; i++)
        ck_assert_str_eq(read_on(s, 0), "s0r2");
    ck_assert_int_eq(sent_to("s0r1"), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(with_the_primary_gone_too_a_broken_replica_serves_reads_that_it_can)
{
    sr_router *r = open_router(1, 2, NULL);
    sr_session *s = new_session(r);
    ck_assert_int_eq(sr_exec(s, K(0), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL), SR_OK);
    /* The primary dies: the replicas' replication breaks with it. */
    atomic_store(&N("s0r1")->lag_ms, -1);
    atomic_store(&N("s0r2")->lag_ms, -1);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_str_eq(read_on(s, 0), "s0p"); /* while the primary is there, it serves */
    atomic_store(&N("s0p")->down, 1);
    /* The session's write is on neither replica: no read may pretend it is. */
    ck_assert_int_eq(read_fails(s, 0, NULL), SR_EUNAVAILABLE);
    /* s0r1 had replayed it before the primary died: it serves the session, */
    atomic_store(&N("s0r1")->position, 1);
    for (int i = 0; i < 4; i++)
        ck_assert_str_eq(read_on(s, 0), "s0r1");
    /* and a session that needs nothing reads either. */
    sr_session *any = new_session(r);
    for (int i = 0; i < 4; i++) {
        const char *w = read_on(any, 0);
        ck_assert_msg(strcmp(w, "s0r1") == 0 || strcmp(w, "s0r2") == 0, "%s", w);
    }
    sr_session_free(any);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- positions: read-your-writes, monotonic, waiting, SR_ESTALE ---- */

/*
 * Reads shard `shard` until `want` serves it (at most 2 s), every other read
 * from the primary or `also` (NULL: none). A replica found behind a session's write is not asked
 * again until the write is older than the delay it was found behind at
 * (twice that: node.c's replay-delay estimate), so the read right after the
 * replica replays may still go to the primary. Returns who served last.
 */
static const char *read_until_served_by(sr_session *s, int shard, const char *want,
                                        const char *also)
{
    const char *who = "";
    int64_t until = now_ms() + 2000;
    while (now_ms() < until) {
        who = read_on(s, shard);
        if (strcmp(who, want) == 0)
            break;
        ck_assert_msg(who[strlen(who) - 1] == 'p' || (also && strcmp(who, also) == 0),
                      "a read went to %s", who);
        pause_ms(1);
    }
    return who;
}

START_TEST(read_your_writes_skips_a_replica_that_has_not_replayed)
{
    sr_router *r = open_router(1, 2, NULL);
    sr_session *s = new_session(r);
    /* Before the session writes, it reads like `any`: both replicas. */
    for (int i = 0; i < 4; i++)
        read_on(s, 0);
    ck_assert_int_eq(ok_on("s0r1"), 2);
    ck_assert_int_eq(ok_on("s0r2"), 2);

    write_on(s, 0); /* the primary is at position 1 */
    ck_assert_int_eq(position_of("s0p"), 1);
    ck_assert_int_eq(atomic_load(&N("s0p")->write_position_reads), 1); /* one per write */
    atomic_store(&N("s0r1")->position, 1);
    ck_assert_str_eq(read_on(s, 0), "s0r1");
    /* Once r1 is known to be past the position, it is not asked again; r2 still is. */
    int asked_r1 = atomic_load(&N("s0r1")->position_reads);
    int asked_r2 = atomic_load(&N("s0r2")->position_reads);
    for (int i = 0; i < 9; i++)
        ck_assert_str_eq(read_on(s, 0), "s0r1");
    ck_assert_int_eq(atomic_load(&N("s0r1")->position_reads), asked_r1);
    ck_assert_int_gt(atomic_load(&N("s0r2")->position_reads), asked_r2);
    ck_assert_int_eq(ok_on("s0r2"), 2);
    ck_assert_int_eq(ok_on("s0p"), 1);

    /* Another session that did not write still reads both. */
    sr_session *other = new_session(r);
    for (int i = 0; i < 4; i++)
        read_on(other, 0);
    ck_assert_int_eq(ok_on("s0r2"), 4);

    /* Once r2 has replayed it, it serves this session again (as soon as the write is older
     * than the delay r2 was last found behind at). */
    atomic_store(&N("s0r2")->position, 1);
    ck_assert_str_eq(read_until_served_by(s, 0, "s0r2", "s0r1"), "s0r2");
    sr_session_free(other);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* Replicas' exec_at calls and the stale ones among them. */
static int replica_exec_ats(void)
{
    return atomic_load(&N("s0r1")->exec_ats) + atomic_load(&N("s0r2")->exec_ats);
}
static int replica_stale_checks(void)
{
    return atomic_load(&N("s0r1")->stale_checks) + atomic_load(&N("s0r2")->stale_checks);
}

START_TEST(exec_at_carries_the_write_position_and_the_replica_check)
{
    scheme = "fakeat";
    sr_router *r = open_router(1, 2, NULL);
    sr_session *s = new_session(r);
    write_on(s, 0);
    /* The position came with the write: no second call to the primary. */
    ck_assert_int_eq(atomic_load(&N("s0p")->exec_ats), 1);
    ck_assert_int_eq(atomic_load(&N("s0p")->write_position_reads), 0);
    ASSERT_CONTAINS(sr_session_token(s), ";s0=1");
    atomic_store(&N("s0r1")->position, 1);
    atomic_store(&N("s0r2")->position, 1);
    /* Both replicas have replayed it: each read is one exec_at, never a separate check. */
    for (int i = 0; i < 4; i++)
        ck_assert_str_ne(read_on(s, 0), "s0p");
    ck_assert_int_eq(ok_on("s0r1"), 2);
    ck_assert_int_eq(ok_on("s0r2"), 2);
    ck_assert_int_eq(atomic_load(&N("s0r1")->position_reads) +
                         atomic_load(&N("s0r2")->position_reads), 0);
    /* The first read on each replica checked in its exchange; after that the cached position
     * covers the write and the read is a plain exec. */
    ck_assert_int_eq(replica_exec_ats(), 2);
    ck_assert_int_eq(replica_stale_checks(), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_stale_check_in_the_exchange_falls_back_to_the_primary)
{
    scheme = "fakeat";
    sr_router *r = open_router(1, 1, NULL);
    sr_session *s = new_session(r);
    char trace[256];
    write_on(s, 0);
    route_trace_take(trace, sizeof trace);
    /* Behind: one exchange with the replica that serves nothing, then the primary. */
    ck_assert_str_eq(read_on(s, 0), "s0p");
    ck_assert_str_eq(route_trace_take(trace, sizeof trace), "s0r1? s0p");
    ck_assert_int_eq(ok_on("s0r1"), 0);
    ck_assert_int_eq(atomic_load(&N("s0r1")->position_reads), 0); /* no separate check */
    ck_assert_uint_eq(node_info(r, 0, 1).statements, 0);       /* served nothing */
    ck_assert_int_eq(node_info(r, 0, 1).healthy, 1);           /* and is no failure */
    ck_assert_uint_eq(node_info(r, 0, 1).position_checks, 1);
    ck_assert_uint_eq(node_info(r, 0, 1).stale_checks, 1);
    /* A caller built against version 1 of sr_node_info gets none of the version 2 fields. */
    sr_node_info v1 = SR_NODE_INFO_INIT;
    v1.version = 1;
    v1.position_checks = v1.stale_checks = 777;
    v1.replay_delay_us = 777;
    ck_assert_int_eq(sr_router_node_info(r, 0, 1, &v1), SR_OK);
    ck_assert_uint_eq(v1.statements, 0);
    ck_assert_uint_eq(v1.position_checks, 777);
    ck_assert_uint_eq(v1.stale_checks, 777);
    ck_assert_int_eq(v1.replay_delay_us, 777);
    /* Caught up (and the write old enough for the replay-delay estimate): the replica serves,
     * its check in the same exchange. */
    atomic_store(&N("s0r1")->position, 1);
    ck_assert_str_eq(read_until_served_by(s, 0, "s0r1", NULL), "s0r1");
    int ats = atomic_load(&N("s0r1")->exec_ats);
    /* Now its cached position covers the write: plain reads, no check at all. */
    for (int i = 0; i < 3; i++)
        ck_assert_str_eq(read_on(s, 0), "s0r1");
    ck_assert_int_eq(atomic_load(&N("s0r1")->exec_ats), ats);
    /* primary_reads = never: the miss fails with SR_ESTALE after the wait (100 ms by default). */
    sr_session_free(s);
    sr_router_close(r);
    route_driver_reset();
    const char *never[] = {"consistency.wait_ms", "-1", "balance.primary_reads", "never", NULL};
    r = open_router(1, 1, never);
    s = new_session(r);
    write_on(s, 0);
    int64_t t0 = now_ms();
    ck_assert_int_eq(read_fails(s, 0, NULL), SR_ESTALE);
    int64_t took = now_ms() - t0;
    ck_assert_int_eq(atomic_load(&N("s0r1")->stale_checks), 1);
    ck_assert_int_eq(atomic_load(&N("s0r1")->waits), 1);
    ck_assert_msg(took >= 90 && took < 100 + slack_ms(), "took %lld ms", (long long)took);
    ASSERT_CONTAINS(sr_session_errmsg(s), "waited up to 100 ms");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_write_younger_than_the_replay_delay_reads_the_primary_unasked)
{
    scheme = "fakeat";
    sr_router *r = open_router(1, 2, NULL);
    sr_session *s = new_session(r);
    /* Teach both replicas a long replay delay: each is found behind a write 200 ms old. */
    write_on(s, 0);
    pause_ms(200);
    ck_assert_str_eq(read_on(s, 0), "s0p");
    ck_assert_str_eq(read_on(s, 0), "s0p");
    ck_assert_int_eq(atomic_load(&N("s0r1")->stale_checks), 1);
    ck_assert_int_eq(atomic_load(&N("s0r2")->stale_checks), 1);
    /* Found behind a write at least 200 ms old: the estimate is at least twice that. */
    ck_assert_int_ge(node_info(r, 0, 1).replay_delay_us, 400000);
    ck_assert_int_ge(node_info(r, 0, 2).replay_delay_us, 400000);
    ck_assert_uint_eq(node_info(r, 0, 1).stale_checks, 1);
    /* A fresh write: reads go straight to the primary without asking either replica (one
     * exchange each, as with `any`), as long as the write is younger than 400 ms. */
    write_on(s, 0);
    int before = replica_exec_ats();
    int64_t t0 = now_ms();
    for (int i = 0; i < 10; i++)
        ck_assert_str_eq(read_on(s, 0), "s0p");
    int64_t took = now_ms() - t0;
    if (took < 300) /* a machine that stalled the burst for longer proves nothing here */
        ck_assert_int_eq(replica_exec_ats(), before);
    /* The estimate decays (each skip by 1/64, each successful check by 1/16) and follows the
     * replicas back once they replay quickly again. */
    atomic_store(&N("s0r1")->position, 2);
    atomic_store(&N("s0r2")->position, 2);
    ck_assert_str_eq(read_until_served_by(s, 0, "s0r1", "s0r2"), "s0r1");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_write_whose_exchange_brings_no_position_asks_for_it)
{
    scheme = "fakeat";
    sr_router *r = open_router(1, 1, NULL);
    sr_session *s = new_session(r);
    atomic_store(&N("s0p")->fail_write_position, 1); /* "" from exec_at, and the ask fails */
    write_on(s, 0);
    ck_assert_int_eq(atomic_load(&N("s0p")->write_position_reads), 1);
    atomic_store(&N("s0r1")->position, 5);
    ck_assert_str_eq(read_on(s, 0), "s0p"); /* unknown position: only the primary will do */
    atomic_store(&N("s0p")->fail_write_position, 0);
    write_on(s, 0);
    ck_assert_int_eq(atomic_load(&N("s0p")->write_position_reads), 1); /* not asked again */
    ASSERT_CONTAINS(sr_session_token(s), ";s0=2");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_write_that_committed_before_its_connection_was_lost_succeeds)
{
    scheme = "fakeat";
    const char *opts[] = {"health.fail_threshold", "1", NULL};
    sr_router *r = open_router(1, 1, opts);
    sr_session *s = new_session(r);
    atomic_store(&N("s0p")->lose_after_write, 1);
    write_on(s, 0); /* SR_OK: the write happened (a retry would write twice) */
    ck_assert_int_eq(position_of("s0p"), 1);
    ck_assert_int_eq(atomic_load(&N("s0p")->closes), 1);     /* the lost connection is dropped */
    ck_assert_int_eq(node_info(r, 0, 0).healthy, 1);          /* and is no failure of the node */
    ck_assert_uint_eq(node_info(r, 0, 0).errors, 0);
    /* Its position is unknown: the session reads that shard from the primary ... */
    atomic_store(&N("s0r1")->position, 5);
    ck_assert_str_eq(read_on(s, 0), "s0p");
    /* ... until the next write brings one. */
    write_on(s, 0);
    ck_assert_str_eq(read_until_served_by(s, 0, "s0r1", NULL), "s0r1");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_driver_of_abi_4_is_never_asked_for_exec_at)
{
    scheme = "fake4";
    sr_router *r = open_router(1, 1, NULL);
    sr_session *s = new_session(r);
    write_on(s, 0);
    ck_assert_int_eq(atomic_load(&N("s0p")->write_position_reads), 1);
    atomic_store(&N("s0r1")->position, 1);
    ck_assert_str_eq(read_until_served_by(s, 0, "s0r1", NULL), "s0r1");
    ck_assert_int_ge(atomic_load(&N("s0r1")->position_reads), 1); /* checked on its own */
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(read_your_writes_waits_for_a_replica_to_catch_up)
{
    const char *opts[] = {"consistency.wait_ms", "5000", NULL};
    sr_router *r = open_router(1, 2, opts);
    sr_session *s = new_session(r);
    write_on(s, 0);
    atomic_store(&N("s0r1")->catch_up_ms, 20);
    atomic_store(&N("s0r2")->catch_up_ms, 20);
    int64_t t0 = now_ms();
    const char *who = read_on(s, 0);
    int64_t took = now_ms() - t0;
    ck_assert_msg(strcmp(who, "s0r1") == 0 || strcmp(who, "s0r2") == 0, "read on %s", who);
    ck_assert_int_eq(atomic_load(&N("s0r1")->waits) + atomic_load(&N("s0r2")->waits), 1);
    ck_assert_int_eq(ok_on("s0p"), 1); /* the write only */
    ck_assert_msg(took < 5000, "the wait took %lld ms, past consistency.wait_ms", (long long)took);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(read_your_writes_reads_the_primary_when_the_wait_expires)
{
    const char *opts[] = {"consistency.wait_ms", "50", NULL};
    sr_router *r = open_router(1, 2, opts);
    sr_session *s = new_session(r);
    write_on(s, 0);
    int64_t t0 = now_ms();
    ck_assert_str_eq(read_on(s, 0), "s0p"); /* catch_up_ms = -1: the replicas never catch up */
    int64_t took = now_ms() - t0;
    ck_assert_int_eq(atomic_load(&N("s0r1")->waits) + atomic_load(&N("s0r2")->waits), 1);
    ck_assert_int_eq(ok_on("s0r1") + ok_on("s0r2"), 0);
    ck_assert_msg(took < 50 + slack_ms(), "took %lld ms", (long long)took);
    /* Without a wait (consistency.wait_ms = 0) nothing waits: straight to the primary. */
    sr_session_free(s);
    sr_router_close(r);
    route_driver_reset();
    r = open_router(1, 2, NULL);
    s = new_session(r);
    write_on(s, 0);
    ck_assert_str_eq(read_on(s, 0), "s0p");
    ck_assert_int_eq(atomic_load(&N("s0r1")->waits) + atomic_load(&N("s0r2")->waits), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(stale_when_no_replica_caught_up_and_primary_reads_are_never)
{
    const char *opts[] = {"consistency.wait_ms", "20", "balance.primary_reads", "never", NULL};
    sr_router *r = open_router(1, 2, opts);
    sr_session *s = new_session(r);
    write_on(s, 0);
    ck_assert_int_eq(read_fails(s, 0, NULL), SR_ESTALE);
    const char *msg = sr_session_errmsg(s);
    ASSERT_CONTAINS(msg, "s0");
    ASSERT_CONTAINS(msg, "needed 1"); /* the position it needed */
    ck_assert_int_eq(ok_on("s0p"), 1); /* the write only */
    ck_assert_int_eq(ok_on("s0r1") + ok_on("s0r2"), 0);
    /* The session stays usable: `any` for one read takes a replica ... */
    sr_read_opts o = SR_READ_OPTS_INIT;
    o.consistency = SR_CONSISTENCY_ANY;
    ck_assert_str_ne(read_opts(s, 0, &o), "s0p");
    /* ... and once one replica has replayed the write, it serves. */
    atomic_store(&N("s0r2")->position, 1);
    ck_assert_str_eq(read_on(s, 0), "s0r2");
    ck_assert_str_eq(sr_session_errmsg(s), "");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(any_ignores_positions)
{
    sr_router *r = open_router(1, 2, NULL);
    sr_session *s = new_session(r);
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    write_on(s, 0);
    ck_assert_int_eq(atomic_load(&N("s0p")->write_position_reads), 0); /* no extra round trip */
    for (int i = 0; i < 4; i++)
        ck_assert_str_ne(read_on(s, 0), "s0p");
    ck_assert_int_eq(atomic_load(&N("s0r1")->position_reads) +
                         atomic_load(&N("s0r2")->position_reads),
                     0);
    ck_assert_int_eq(ok_on("s0r1"), 2);
    ck_assert_int_eq(ok_on("s0r2"), 2);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(monotonic_never_reads_an_older_state)
{
    sr_router *r = open_router(1, 2, NULL);
    sr_session *s = new_session(r);
    ck_assert_int_eq(sr_session_set(s, "consistency", "monotonic"), SR_OK);
    atomic_store(&N("s0p")->position, 5);
    atomic_store(&N("s0r1")->position, 5);
    atomic_store(&N("s0r2")->position, 3);
    /* Within two reads round_robin lands on r1, which has seen position 5 ... */
    for (int i = 0; i < 2 && ok_on("s0r1") == 0; i++)
        read_on(s, 0);
    ck_assert_int_eq(ok_on("s0r1"), 1);
    /* ... after which r2 (at 3) would go back in time. */
    int r2 = ok_on("s0r2");
    for (int i = 0; i < 10; i++)
        ck_assert_str_eq(read_on(s, 0), "s0r1");
    ck_assert_int_eq(ok_on("s0r2"), r2);
    atomic_store(&N("s0r2")->position, 5);
    /* The session sticks to the replica it read at, whose state never goes back, asking its
     * position only every 8th read in a row (SR_STICKY_READS), and once more when it moves
     * on to another replica (this driver checks in a call of its own). */
    int asked = atomic_load(&N("s0r1")->position_reads) + atomic_load(&N("s0r2")->position_reads);
    for (int i = 0; i < 16; i++)
        read_on(s, 0);
    int asks = atomic_load(&N("s0r1")->position_reads) + atomic_load(&N("s0r2")->position_reads) -
               asked;
    ck_assert_msg(asks >= 2 && asks <= 4, "%d position asks in 16 reads", asks);
    ck_assert_int_gt(ok_on("s0r2"), r2); /* the spread comes back */
    ck_assert_int_eq(sent_to("s0p"), 0);
    /* When that replica cannot serve, the read goes to the primary (never to another replica
     * that might be behind what it showed), and the session sticks to the primary, which
     * never goes back either, until the 8th read in a row there asks its position ... */
    const char *last = read_on(s, 0);
    atomic_store(&N(last)->fail_execs, 1);
    for (int i = 0; i < 8; i++)
        ck_assert_str_eq(read_on(s, 0), "s0p");
    ck_assert_int_eq(atomic_load(&N("s0p")->write_position_reads), 1);
    /* ... and from there the replicas serve again. */
    for (int i = 0; i < 4; i++)
        ck_assert_str_ne(read_on(s, 0), "s0p");
    ck_assert_int_eq(sent_to("s0p"), 8);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- tokens ---- */

START_TEST(tokens_carry_the_position_between_sessions_and_routers)
{
    sr_router *r = open_router(2, 1, NULL);
    sr_session *a = new_session(r);
    const char *t = sr_session_token(a);
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t, ""); /* no write yet */
    write_on(a, 0);
    write_on(a, 0);
    t = sr_session_token(a);
    ck_assert_ptr_nonnull(t);
    ck_assert_msg(strncmp(t, "sr1;", 4) == 0, "token '%s'", t);
    ASSERT_CONTAINS(t, "s0=2");
    char token[1024];
    snprintf(token, sizeof token, "%s", t);

    /* A session given the token reads s0 where the write is: the primary. */
    sr_session *b = new_session(r);
    ck_assert_int_eq(sr_session_set_token(b, token), SR_OK);
    ck_assert_str_eq(read_on(b, 0), "s0p");
    ck_assert_str_eq(read_on(b, 1), "s1r1"); /* nothing written on s1 */
    ck_assert_str_eq(sr_session_token(b), token);
    /* One without it reads the replica. */
    sr_session *c = new_session(r);
    ck_assert_str_eq(read_on(c, 0), "s0r1");

    /* Another router of the same topology (another process): the same. */
    sr_router *r2 = open_router(2, 1, NULL);
    sr_session *d = new_session(r2);
    ck_assert_int_eq(sr_session_set_token(d, token), SR_OK);
    ck_assert_str_eq(read_on(d, 0), "s0p");
    atomic_store(&N("s0r1")->position, 1); /* behind still */
    ck_assert_str_eq(read_on(d, 0), "s0p");
    atomic_store(&N("s0r1")->position, 2);
    ck_assert_str_eq(read_on(d, 0), "s0r1");
    ck_assert_str_eq(read_on(b, 0), "s0r1");

    /* A malformed token changes nothing. */
    sr_session *e = new_session(r2);
    ck_assert_int_eq(sr_session_set_token(e, "sr1;c=zz;s0=1"), SR_EINVAL);
    ck_assert_str_eq(sr_session_token(e), "");
    sr_session_free(a);
    sr_session_free(b);
    sr_session_free(c);
    sr_session_free(d);
    sr_session_free(e);
    sr_router_close(r2);
    sr_router_close(r);
}
END_TEST

START_TEST(an_unknown_write_position_reads_the_primary_and_gives_no_token)
{
    sr_router *r = open_router(1, 1, NULL);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->position, 1000); /* far ahead: would cover any position */
    atomic_store(&N("s0p")->fail_write_position, 1);
    write_on(s, 0); /* the write itself succeeded */
    ck_assert_ptr_null(sr_session_token(s));
    ASSERT_CONTAINS(sr_session_errmsg(s), "s0");
    for (int i = 0; i < 3; i++)
        ck_assert_str_eq(read_on(s, 0), "s0p");
    /* The next write that records a position makes everything normal again. */
    atomic_store(&N("s0p")->fail_write_position, 0);
    write_on(s, 0);
    const char *t = sr_session_token(s);
    ck_assert_ptr_nonnull(t);
    ASSERT_CONTAINS(t, "s0=2");
    ck_assert_str_eq(read_on(s, 0), "s0r1");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- deadlines ---- */

START_TEST(a_stalled_replica_times_out_at_the_statement_deadline)
{
    const char *opts[] = {"statement_timeout_ms", "300", NULL};
    sr_router *r = open_router(1, 1, opts);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->stall_ms, -1);
    int64_t t0 = now_ms();
    ck_assert_int_eq(read_fails(s, 0, NULL), SR_ETIMEOUT);
    int64_t took = now_ms() - t0;
    ck_assert_msg(took < 300 + slack_ms(), "took %lld ms", (long long)took);
    ASSERT_CONTAINS(sr_session_errmsg(s), "s0r1");
    /* The deadline is used up: the read is not sent again elsewhere. */
    ck_assert_str_eq(TRACE(), "s0r1~");
    ck_assert_int_eq(sent_to("s0p"), 0);
    /* The session and router stay usable. */
    atomic_store(&N("s0r1")->stall_ms, 0);
    ck_assert_str_eq(read_on(s, 0), "s0r1");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_hung_replica_is_ejected_after_threshold_timeouts)
{
    const char *opts[] = {"statement_timeout_ms", "200", "health.fail_threshold", "2", NULL};
    sr_router *r = open_router(1, 2, opts);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->stall_ms, -1);
    int timeouts = 0;
    for (int i = 0; i < 8; i++) {
        sr_result *res = NULL;
        int rc = sr_exec(s, K(0), SR_READ, "SELECT node FROM t", 0, NULL, &res);
        if (rc == SR_ETIMEOUT) {
            timeouts++;
            continue;
        }
        ck_assert_msg(rc == SR_OK, "%s: %s", sr_strerror(rc), sr_session_errmsg(s));
        ck_assert_str_eq(sr_result_value(res, 0, 0), "s0r2");
        sr_result_free(res);
    }
    /* One thread: exactly fail_threshold calls paid the timeout. */
    ck_assert_int_eq(timeouts, 2);
    ck_assert_int_eq(node_info(r, 0, 1).healthy, 0);
    ck_assert_int_eq(ok_on("s0r2"), 6);
    ck_assert_int_eq(sent_to("s0p"), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_stalled_primary_times_out_a_write_once)
{
    const char *opts[] = {"statement_timeout_ms", "300", NULL};
    sr_router *r = open_router(1, 1, opts);
    sr_session *s = new_session(r);
    atomic_store(&N("s0p")->stall_ms, -1);
    int64_t t0 = now_ms();
    ck_assert_int_eq(sr_exec(s, K(0), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL),
                     SR_ETIMEOUT);
    int64_t took = now_ms() - t0;
    ck_assert_msg(took < 300 + slack_ms(), "took %lld ms", (long long)took);
    ck_assert_str_eq(TRACE(), "s0p~");
    ck_assert_int_eq(sent_to("s0r1"), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_stalled_connect_times_out_at_connect_timeout)
{
    const char *opts[] = {"connect_timeout_ms", "200", "statement_timeout_ms", "60000", NULL};
    sr_router *r = open_router(1, 1, opts);
    sr_session *s = new_session(r);
    atomic_store(&N("s0p")->connect_stall_ms, -1);
    int64_t t0 = now_ms();
    ck_assert_int_eq(sr_exec(s, K(0), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL),
                     SR_ETIMEOUT);
    int64_t took = now_ms() - t0;
    ck_assert_msg(took < 200 + slack_ms(), "took %lld ms", (long long)took);
    ck_assert_int_eq(sent_to("s0p"), 0);
    ck_assert_int_eq(atomic_load(&N("s0p")->connect_calls), 1); /* not retried */
    /* A read whose replica cannot connect in time goes elsewhere: nothing was sent. */
    atomic_store(&N("s0p")->connect_stall_ms, 0);
    atomic_store(&N("s0r1")->connect_stall_ms, -1);
    ck_assert_str_eq(read_on(s, 0), "s0p");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(the_consistency_wait_never_outlives_the_statement_deadline)
{
    const char *opts[] = {"consistency.wait_ms", "60000", "statement_timeout_ms", "300", NULL};
    sr_router *r = open_router(1, 1, opts);
    sr_session *s = new_session(r);
    write_on(s, 0);
    int64_t t0 = now_ms();
    ck_assert_int_eq(read_fails(s, 0, NULL), SR_ETIMEOUT);
    int64_t took = now_ms() - t0;
    ck_assert_msg(took < 300 + slack_ms(), "took %lld ms", (long long)took);
    ck_assert_int_eq(atomic_load(&N("s0r1")->waits), 1);
    ck_assert_int_eq(ok_on("s0p"), 1); /* the write: a late read is not sent */
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_full_pool_is_busy_after_the_checkout_timeout_and_not_a_failure)
{
    const char *opts[] = {"pool.max_size", "1", "pool.checkout_timeout_ms", "100",
                          "health.fail_threshold", "1", NULL};
    sr_router *r = open_router(1, 1, opts);
    sr_session *a = new_session(r);
    sr_session *b = new_session(r);
    ck_assert_int_eq(sr_begin(a, K(0)), SR_OK); /* holds the primary's only connection */
    int64_t t0 = now_ms();
    ck_assert_int_eq(sr_exec(b, K(0), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL), SR_EBUSY);
    int64_t took = now_ms() - t0;
    ck_assert_msg(took < 100 + slack_ms(), "took %lld ms", (long long)took);
    ck_assert_int_eq(node_info(r, 0, 0).healthy, 1);
    ck_assert_int_eq(sr_commit(a), SR_OK);
    write_on(b, 0);
    sr_session_free(a);
    sr_session_free(b);
    sr_router_close(r);
}
END_TEST

/* ---- retries ---- */

START_TEST(a_read_failing_transiently_is_retried_once_on_another_replica)
{
    const char *opts[] = {"health.fail_threshold", "1000", NULL};
    sr_router *r = open_router(1, 2, opts);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->fail_execs, -1);
    int retried = 0;
    for (int i = 0; i < 6; i++) {
        ck_assert_str_eq(read_on(s, 0), "s0r2");
        const char *t = TRACE();
        ck_assert_msg(strcmp(t, "s0r2") == 0 || strcmp(t, "s0r1! s0r2") == 0, "trace '%s'", t);
        retried += strcmp(t, "s0r1! s0r2") == 0;
    }
    ck_assert_int_ge(retried, 1);
    ck_assert_int_eq(sent_to("s0p"), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_read_retried_with_no_other_replica_goes_to_the_primary)
{
    sr_router *r = open_router(1, 1, NULL);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->fail_execs, 1);
    ck_assert_str_eq(read_on(s, 0), "s0p");
    ck_assert_str_eq(TRACE(), "s0r1! s0p");
    ck_assert_str_eq(sr_session_errmsg(s), "");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_read_is_retried_only_once)
{
    sr_router *r = open_router(1, 2, NULL);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->fail_execs, 1);
    atomic_store(&N("s0r2")->fail_execs, 1);
    atomic_store(&N("s0p")->fail_execs, 1);
    ck_assert_int_eq(read_fails(s, 0, NULL), SR_ECONNECT);
    const char *t = TRACE();
    ck_assert_msg(strcmp(t, "s0r1! s0r2!") == 0 || strcmp(t, "s0r2! s0r1!") == 0, "trace '%s'", t);
    ck_assert_int_eq(sent_to("s0p"), 0);
    ASSERT_CONTAINS(sr_session_errmsg(s), "retried");
    ck_assert_str_eq(sr_session_sqlstate(s), "08006");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(an_sql_error_is_not_retried)
{
    sr_router *r = open_router(1, 2, NULL);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->fail_kind, ROUTE_FAIL_SQL);
    atomic_store(&N("s0r1")->fail_execs, -1);
    atomic_store(&N("s0r2")->fail_kind, ROUTE_FAIL_SQL);
    atomic_store(&N("s0r2")->fail_execs, -1);
    ck_assert_int_eq(read_fails(s, 0, NULL), SR_EQUERY);
    const char *t = TRACE();
    ck_assert_msg(strcmp(t, "s0r1!") == 0 || strcmp(t, "s0r2!") == 0, "trace '%s'", t);
    ck_assert_str_eq(sr_session_sqlstate(s), "42P01");
    ASSERT_CONTAINS(sr_session_errmsg(s), "does not exist");
    /* SQL errors prove a node alive: never an ejection, whatever the count. */
    for (int i = 0; i < 10; i++)
        read_fails(s, 0, NULL);
    ck_assert_int_eq(node_info(r, 0, 1).healthy, 1);
    ck_assert_int_eq(node_info(r, 0, 2).healthy, 1);
    ck_assert_int_eq(sent_to("s0p"), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_write_is_never_retried)
{
    sr_router *r = open_router(1, 1, NULL);
    sr_session *s = new_session(r);
    atomic_store(&N("s0p")->fail_execs, 1);
    ck_assert_int_eq(sr_exec(s, K(0), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL),
                     SR_ECONNECT);
    ck_assert_str_eq(TRACE(), "s0p!");
    ASSERT_CONTAINS(sr_session_errmsg(s), "s0p");
    ck_assert_str_eq(sr_session_sqlstate(s), "08006");
    /* A connect that fails is not retried either. */
    atomic_store(&N("s0p")->fail_connects, 1);
    int calls = atomic_load(&N("s0p")->connect_calls);
    ck_assert_int_eq(sr_exec(s, K(0), SR_AUTO, "INSERT INTO t VALUES (1)", 0, NULL, NULL),
                     SR_ECONNECT);
    ck_assert_int_eq(atomic_load(&N("s0p")->connect_calls) - calls, 1);
    ck_assert_int_eq(sent_to("s0p"), 1);
    ck_assert_int_eq(sent_to("s0r1"), 0);
    write_on(s, 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- transactions ---- */

START_TEST(a_transaction_pins_the_primary_of_its_shard)
{
    sr_router *r = open_router(2, 1, NULL);
    sr_session *s = new_session(r);
    ck_assert_int_eq(sr_begin(s, K(0)), SR_OK);
    ck_assert_int_eq(sr_in_transaction(s), 1);
    ck_assert_int_eq(atomic_load(&N("s0p")->begins), 1);
    ck_assert_str_eq(read_on(s, 0), "s0p");
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s, K(0), SR_AUTO, "SELECT node FROM t", 0, NULL, &res), SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "s0p");
    sr_result_free(res);
    write_on(s, 0);

    /* A key of another shard: SR_ETXN, nothing sent, the transaction still open. */
    ck_assert_int_eq(sr_exec(s, K(1), SR_READ, "SELECT node FROM t", 0, NULL, NULL), SR_ETXN);
    ASSERT_CONTAINS(sr_session_errmsg(s), "s1");
    ASSERT_CONTAINS(sr_session_errmsg(s), "s0");
    ck_assert_int_eq(sr_exec(s, K(1), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL), SR_ETXN);
    ck_assert_int_eq(sr_exec_shard(s, 1, SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL),
                     SR_ETXN);
    ck_assert_int_eq(sr_exec_all(s, SR_READ, "SELECT node FROM t", 0, NULL, NULL), SR_ETXN);
    ck_assert_int_eq(sr_begin(s, K(1)), SR_ETXN);
    ck_assert_int_eq(sr_begin(s, K(0)), SR_ETXN);
    ck_assert_int_eq(sr_in_transaction(s), 1);
    ck_assert_int_eq(sent_to("s1p") + sent_to("s1r1") + sent_to("s0r1"), 0);
    ck_assert_int_eq(atomic_load(&N("s1p")->connect_calls), 0);

    ck_assert_int_eq(sr_commit(s), SR_OK);
    ck_assert_int_eq(sr_in_transaction(s), 0);
    ck_assert_int_eq(atomic_load(&N("s0p")->commits), 1);
    ck_assert_int_eq(atomic_load(&N("s0p")->connects), 1); /* one pinned connection */
    ck_assert_int_eq(ok_on("s0p"), 3);
    ck_assert_int_eq(sr_commit(s), SR_ETXN);
    ck_assert_int_eq(sr_rollback(s), SR_ETXN);

    /* The commit recorded the write: the replica that has not replayed it is skipped. */
    ck_assert_str_eq(read_on(s, 0), "s0p");
    atomic_store(&N("s0r1")->position, 1);
    ck_assert_str_eq(read_until_served_by(s, 0, "s0r1", NULL), "s0r1");
    ck_assert_str_eq(read_on(s, 1), "s1r1");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_connection_lost_in_a_transaction_ends_it)
{
    sr_router *r = open_router(1, 1, NULL);
    sr_session *s = new_session(r);
    ck_assert_int_eq(sr_begin_shard(s, 0), SR_OK);
    atomic_store(&N("s0p")->fail_execs, 1);
    ck_assert_int_eq(sr_exec(s, K(0), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL),
                     SR_ECONNECT);
    ck_assert_int_eq(sr_in_transaction(s), 0);
    ASSERT_CONTAINS(sr_session_errmsg(s), "aborted");
    ck_assert_str_eq(TRACE(), "s0p!"); /* not retried */
    ck_assert_int_eq(sr_commit(s), SR_ETXN);
    /* An SQL error leaves it open. */
    ck_assert_int_eq(sr_begin(s, K(0)), SR_OK);
    atomic_store(&N("s0p")->fail_kind, ROUTE_FAIL_SQL);
    atomic_store(&N("s0p")->fail_execs, 1);
    ck_assert_int_eq(sr_exec(s, K(0), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL),
                     SR_EQUERY);
    ck_assert_int_eq(sr_in_transaction(s), 1);
    ck_assert_int_eq(sr_rollback(s), SR_OK);
    ck_assert_int_eq(atomic_load(&N("s0p")->rollbacks), 1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_read_only_transaction_runs_on_a_replica)
{
    sr_router *r = open_router(1, 2, NULL);
    sr_session *s = new_session(r);
    ck_assert_int_eq(sr_begin_read_only(s, K(0)), SR_OK);
    const char *who = read_on(s, 0);
    ck_assert_msg(strcmp(who, "s0r1") == 0 || strcmp(who, "s0r2") == 0, "read on %s", who);
    char pinned[32];
    snprintf(pinned, sizeof pinned, "%s", who);
    for (int i = 0; i < 4; i++)
        ck_assert_str_eq(read_on(s, 0), pinned);
    ck_assert_int_eq(atomic_load(&N(pinned)->read_only_begins), 1);
    ck_assert_int_eq(atomic_load(&N("s0p")->begins), 0);
    ck_assert_int_eq(sr_commit(s), SR_OK);
    ck_assert_int_eq(atomic_load(&N(pinned)->commits), 1);
    ck_assert_int_eq(sent_to("s0p"), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- scatter ---- */

START_TEST(scatter_reads_every_shard_in_order)
{
    sr_router *r = open_router(3, 1, NULL);
    sr_session *s = new_session(r);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec_all(s, SR_READ, "SELECT node FROM t", 0, NULL, &res), SR_OK);
    ck_assert_int_eq(sr_result_nrows(res), 3);
    for (int i = 0; i < 3; i++) {
        char want[16];
        snprintf(want, sizeof want, "s%dr1", i);
        ck_assert_int_eq(sr_result_shard(res, i), i);
        ck_assert_str_eq(sr_result_value(res, i, 0), want);
    }
    sr_result_free(res);
    /* A scatter write: every primary once, the affected rows summed. */
    ck_assert_int_eq(sr_exec_all(s, SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, &res), SR_OK);
    ck_assert_int_eq((int)sr_result_affected(res), 3);
    sr_result_free(res);
    for (int i = 0; i < 3; i++) {
        char p[16];
        snprintf(p, sizeof p, "s%dp", i);
        ck_assert_int_eq(ok_on(p), 1);
    }
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(scatter_with_one_shard_failing_is_partial)
{
    sr_router *r = open_router(3, 1, NULL);
    sr_session *s = new_session(r);
    atomic_store(&N("s1r1")->fail_kind, ROUTE_FAIL_SQL);
    atomic_store(&N("s1r1")->fail_execs, -1);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec_all(s, SR_READ, "SELECT node FROM t", 0, NULL, &res), SR_EPARTIAL);
    ck_assert_ptr_null(res); /* no result */
    const char *msg = sr_session_errmsg(s);
    ASSERT_CONTAINS(msg, "1 of 3 shards failed");
    ASSERT_CONTAINS(msg, "[s1]");
    ASSERT_CONTAINS(msg, "does not exist");
    ck_assert_msg(strstr(msg, "[s0]") == NULL && strstr(msg, "[s2]") == NULL, "%s", msg);
    /* The other shards did run. */
    ck_assert_int_eq(ok_on("s0r1"), 1);
    ck_assert_int_eq(ok_on("s2r1"), 1);

    /* A shard whose every node is down fails the same way (transient, after the retry). */
    atomic_store(&N("s1r1")->fail_execs, 0);
    atomic_store(&N("s2r1")->fail_execs, -1);
    atomic_store(&N("s2p")->fail_execs, -1);
    ck_assert_int_eq(sr_exec_all(s, SR_READ, "SELECT node FROM t", 0, NULL, &res), SR_EPARTIAL);
    ck_assert_ptr_null(res);
    ASSERT_CONTAINS(sr_session_errmsg(s), "[s2]");
    ck_assert_msg(strstr(sr_session_errmsg(s), "[s1]") == NULL, "%s", sr_session_errmsg(s));

    /* Every shard failing is that failure, not a partial one. */
    for (int i = 0; i < 3; i++) {
        char n[16];
        snprintf(n, sizeof n, "s%dr1", i);
        atomic_store(&N(n)->fail_kind, ROUTE_FAIL_SQL);
        atomic_store(&N(n)->fail_execs, -1);
    }
    ck_assert_int_eq(sr_exec_all(s, SR_READ, "SELECT node FROM t", 0, NULL, &res), SR_EQUERY);
    ck_assert_ptr_null(res);
    ASSERT_CONTAINS(sr_session_errmsg(s), "3 of 3 shards failed");
    ck_assert_str_eq(sr_session_sqlstate(s), "42P01");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- scatter through the steps of driver ABI 6 (the fanout) ---- */

START_TEST(scatter_in_steps_sends_every_shard_and_keeps_shard_order)
{
    scheme = "fakestep";
    sr_router *r = open_router(3, 1, NULL);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->rows, 2);
    atomic_store(&N("s1r1")->rows, 0); /* an empty shard */
    atomic_store(&N("s2r1")->rows, 3);
    sr_result *res = NULL;
    sr_scatter_opts o = SR_SCATTER_OPTS_INIT;
    o.merge = SR_MERGE_CONCAT;
    ck_assert_msg(sr_exec_all_values(s, SR_READ, &o, "SELECT node FROM t", 0, NULL, &res) == SR_OK,
                  "%s", sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_nrows(res), 5);
    const char *want[] = {"s0r1", "s0r1", "s2r1", "s2r1", "s2r1"};
    const int shard[] = {0, 0, 2, 2, 2};
    for (int i = 0; i < 5; i++) {
        ck_assert_str_eq(sr_result_value(res, i, 0), want[i]);
        ck_assert_int_eq(sr_result_shard(res, i), shard[i]);
    }
    ck_assert_int_eq(sr_result_coltype(res, 0), SR_TYPE_TEXT);
    sr_result_free(res);
    for (int i = 0; i < 3; i++) {
        char n[16];
        snprintf(n, sizeof n, "s%dr1", i);
        ck_assert_int_eq(atomic_load(&N(n)->sends), 1);
        ck_assert_int_eq(atomic_load(&N(n)->execs), 1); /* through send, not exec */
    }
    /* A write on every primary: affected rows summed, the connections reused. */
    ck_assert_int_eq(sr_exec_all(s, SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, &res), SR_OK);
    ck_assert_int_eq((int)sr_result_affected(res), 3);
    sr_result_free(res);
    ck_assert_int_eq(sr_exec_all(s, SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL), SR_OK);
    ck_assert_int_eq(position_of("s1p"), 2);
    ck_assert_int_eq(atomic_load(&N("s1p")->connects), 1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(scatter_in_steps_partial_results_on_request)
{
    scheme = "fakestep";
    sr_router *r = open_router(3, 1, NULL);
    sr_session *s = new_session(r);
    atomic_store(&N("s1r1")->rows, 5);
    atomic_store(&N("s1r1")->fail_after_rows, 2); /* lost in the middle of its rows */
    sr_result *res = NULL;
    /* Lost before any row was handed out: the read is sent once more, to the primary (the
     * only other node), and the half-read rows of the first attempt are not kept. */
    ck_assert_msg(sr_exec_all(s, SR_READ, "SELECT node FROM t", 0, NULL, &res) == SR_OK, "%s",
                  sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_nrows(res), 3);
    ck_assert_str_eq(sr_result_value(res, 1, 0), "s1p");
    sr_result_free(res);
    res = NULL;
    /* The primary lost as well: no result by default, the failed shard named. */
    atomic_store(&N("s1p")->rows, 5);
    atomic_store(&N("s1p")->fail_after_rows, 2);
    ck_assert_int_eq(sr_exec_all(s, SR_READ, "SELECT node FROM t", 0, NULL, &res), SR_EPARTIAL);
    ck_assert_ptr_null(res);
    ASSERT_CONTAINS(sr_session_errmsg(s), "1 of 3 shards failed");
    ASSERT_CONTAINS(sr_session_errmsg(s), "[s1]");
    /* Opted in: the rows of the shards that answered, the failed one listed, none of its
     * rows (half a shard would look like a whole one). */
    sr_scatter_opts o = SR_SCATTER_OPTS_INIT;
    o.partial = 1;
    o.merge = SR_MERGE_CONCAT;
    ck_assert_int_eq(sr_exec_all_values(s, SR_READ, &o, "SELECT node FROM t", 0, NULL, &res),
                     SR_EPARTIAL);
    ck_assert_ptr_nonnull(res);
    ASSERT_CONTAINS(sr_session_errmsg(s), "[s1]");
    ck_assert_int_eq(sr_result_nrows(res), 2);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "s0r1");
    ck_assert_str_eq(sr_result_value(res, 1, 0), "s2r1");
    ck_assert_int_eq(sr_result_failed_shard(res, 0), 1);
    ck_assert_int_eq(sr_result_failed_shard(res, 1), -1);
    sr_result_free(res);
    /* Nothing failed: no failed shard listed. */
    atomic_store(&N("s1r1")->fail_after_rows, 0);
    atomic_store(&N("s1p")->fail_after_rows, 0);
    ck_assert_int_eq(sr_exec_all_values(s, SR_READ, &o, "SELECT node FROM t", 0, NULL, &res),
                     SR_OK);
    ck_assert_int_eq(sr_result_nrows(res), 7);
    ck_assert_int_eq(sr_result_failed_shard(res, 0), -1);
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_cursor_streams_in_batches_and_cancels_when_closed_early)
{
    scheme = "fakestep";
    sr_router *r = open_router(3, 1, NULL);
    sr_session *s = new_session(r);
    for (int i = 0; i < 3; i++) {
        char n[16];
        snprintf(n, sizeof n, "s%dr1", i);
        atomic_store(&N(n)->rows, 200);
    }
    sr_scatter_opts o = SR_SCATTER_OPTS_INIT;
    o.merge = SR_MERGE_CONCAT;
    sr_cursor *c = NULL;
    ck_assert_msg(sr_cursor_open_all(s, SR_READ, &o, "SELECT node FROM t", 0, NULL, &c) == SR_OK,
                  "%s", sr_session_errmsg(s));
    int row = -2, n = 0, last_shard = 0;
    int rc;
    while ((rc = sr_cursor_next(c)) == 1) {
        const sr_result *res = sr_cursor_row(c, &row);
        ck_assert_ptr_nonnull(res);
        int sh = sr_result_shard(res, row);
        ck_assert_int_ge(sh, last_shard); /* concatenation: shard order */
        last_shard = sh;
        char want[16];
        snprintf(want, sizeof want, "s%dr1", sh);
        ck_assert_str_eq(sr_result_value(res, row, 0), want);
        /* Never more than a batch of a shard held at once. */
        ck_assert_int_le(sr_result_nrows(res), 64);
        n++;
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(n, 600);
    ck_assert_int_eq(sr_cursor_next(c), 0); /* stays ended */
    ck_assert_ptr_nonnull(sr_cursor_row(c, &row)); /* the columns stay readable */
    ck_assert_int_eq(row, -1);
    sr_cursor_close(c);

    /* Closed after 10 rows: every shard still running is cancelled, its connection kept. */
    ck_assert_int_eq(sr_cursor_open_all(s, SR_READ, &o, "SELECT node FROM t", 0, NULL, &c), SR_OK);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(sr_cursor_next(c), 1);
    sr_cursor_close(c);
    int cancels = 0, closes = 0;
    for (int i = 0; i < 3; i++) {
        char nn[16];
        snprintf(nn, sizeof nn, "s%dr1", i);
        cancels += atomic_load(&N(nn)->cancels);
        closes += atomic_load(&N(nn)->closes);
    }
    ck_assert_int_eq(cancels, 3);
    ck_assert_int_eq(closes, 0);
    /* The session and the pools are usable after. */
    ck_assert_int_eq(sr_exec(s, K(1), SR_READ, "SELECT node FROM t", 0, NULL, NULL), SR_OK);
    ck_assert_int_eq(atomic_load(&N("s1r1")->connects), 1);

    /* A single-shard cursor, and one inside a transaction refused. */
    sr_value v = sr_value_int(7);
    ck_assert_int_eq(sr_cursor_open(s, K(2), SR_READ, NULL, "SELECT node FROM t WHERE x = ?", 1,
                                    &v, &c),
                     SR_OK);
    n = 0;
    while (sr_cursor_next(c) == 1)
        n++;
    ck_assert_int_eq(n, 200);
    sr_cursor_close(c);
    ck_assert_int_eq(sr_begin(s, K(0)), SR_OK);
    c = NULL;
    ck_assert_int_eq(sr_cursor_open(s, K(0), SR_READ, NULL, "SELECT node FROM t", 0, NULL, &c),
                     SR_ETXN);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(sr_rollback(s), SR_OK);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(typed_parameters_need_a_driver_with_steps_and_valid_values)
{
    sr_router *r = open_router(1, 0, NULL); /* "fake": no steps */
    sr_session *s = new_session(r);
    sr_value v[2] = {sr_value_int(1), sr_value_bytes("a\0b", 3)};
    ck_assert_int_eq(sr_exec_values(s, K(0), SR_WRITE, NULL, "INSERT INTO t VALUES (?, ?)", 2, v,
                                    NULL),
                     SR_EDRIVER);
    ASSERT_CONTAINS(sr_session_errmsg(s), "takes no typed parameters");
    /* With no parameters any driver will do. */
    ck_assert_int_eq(sr_exec_values(s, K(0), SR_WRITE, NULL, "INSERT INTO t VALUES (1)", 0, NULL,
                                    NULL),
                     SR_OK);
    /* Bad values are refused before anything is sent. */
    int before = sent_to("s0p");
    sr_value bad = sr_value_text("x");
    bad.len = 3; /* "x\0" and beyond: a NUL byte in text */
    const char buf[3] = {'x', 0, 'y'};
    bad.p = buf;
    ck_assert_int_eq(sr_exec_values(s, K(0), SR_WRITE, NULL, "SELECT ?", 1, &bad, NULL),
                     SR_EINVAL);
    ASSERT_CONTAINS(sr_session_errmsg(s), "parameter 1");
    sr_value unknown = {.type = (sr_type)99};
    ck_assert_int_eq(sr_exec_values(s, K(0), SR_WRITE, NULL, "SELECT ?", 1, &unknown, NULL),
                     SR_EINVAL);
    ck_assert_int_eq(sr_exec_values(s, K(0), SR_WRITE, NULL, "SELECT ?", 1, NULL, NULL),
                     SR_EINVAL);
    ck_assert_int_eq(sent_to("s0p"), before);
    sr_session_free(s);
    sr_router_close(r);

    /* The same typed statement on a driver with steps. */
    scheme = "fakestep";
    r = open_router(1, 0, NULL);
    s = new_session(r);
    ck_assert_int_eq(sr_exec_values(s, K(0), SR_WRITE, NULL, "INSERT INTO t VALUES (?, ?)", 2, v,
                                    NULL),
                     SR_OK);
    ck_assert_int_eq(atomic_load(&N("s0p")->sends), 1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(read_your_writes_never_reads_stale_when_the_primary_is_down)
{
    /* Fallback to the primary allowed, but the primary cannot be reached: the read
     * fails with the primary's error rather than reading a replica behind the write. */
    const char *opts[] = {"health.fail_threshold", "1", NULL};
    sr_router *r = open_router(1, 2, opts);
    sr_session *s = new_session(r);
    write_on(s, 0);
    atomic_store(&N("s0p")->fail_execs, -1);
    ck_assert_int_eq(read_fails(s, 0, NULL), SR_ECONNECT);
    ASSERT_CONTAINS(sr_session_errmsg(s), "s0p");
    ck_assert_int_eq(node_info(r, 0, 0).healthy, 0);
    /* Once it is ejected, at once. */
    ck_assert_int_eq(read_fails(s, 0, NULL), SR_EUNAVAILABLE);
    ASSERT_CONTAINS(sr_session_errmsg(s), "s0p");
    ck_assert_int_eq(sent_to("s0p"), 2); /* the write and the first read */
    ck_assert_int_eq(ok_on("s0r1") + ok_on("s0r2"), 0);
    /* A replica that has replayed the write serves it. */
    atomic_store(&N("s0r1")->position, 1);
    ck_assert_str_eq(read_on(s, 0), "s0r1");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_read_only_transaction_is_stale_when_no_replica_caught_up)
{
    const char *opts[] = {"balance.primary_reads", "never", NULL};
    sr_router *r = open_router(1, 1, opts);
    sr_session *s = new_session(r);
    write_on(s, 0);
    ck_assert_int_eq(sr_begin_read_only(s, K(0)), SR_ESTALE);
    ck_assert_int_eq(sr_in_transaction(s), 0);
    ck_assert_int_eq(atomic_load(&N("s0r1")->begins) + atomic_load(&N("s0p")->begins), 0);
    atomic_store(&N("s0r1")->position, 1);
    ck_assert_int_eq(sr_begin_read_only(s, K(0)), SR_OK);
    ck_assert_int_eq(atomic_load(&N("s0r1")->read_only_begins), 1);
    ck_assert_int_eq(sr_rollback(s), SR_OK);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_retry_keeps_the_first_attempts_deadline)
{
    const char *opts[] = {"statement_timeout_ms", "60000", NULL};
    sr_router *r = open_router(1, 1, opts);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->fail_execs, 1);
    int64_t t0 = sr_clock_ns();
    ck_assert_str_eq(read_on(s, 0), "s0p");
    int64_t t1 = sr_clock_ns();
    int64_t first = atomic_load(&N("s0r1")->last_exec_deadline_ns);
    int64_t retry = atomic_load(&N("s0p")->last_exec_deadline_ns);
    ck_assert_msg(first == retry, "the retry got a new deadline (%lld ns later)",
                  (long long)(retry - first));
    /* statement_timeout_ms from the call. */
    ck_assert(first >= t0 + (int64_t)60000 * 1000000);
    ck_assert(first <= t1 + (int64_t)60000 * 1000000);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_pool_checkout_never_outlives_the_statement_deadline)
{
    const char *opts[] = {"pool.max_size", "1", "pool.checkout_timeout_ms", "60000",
                          "statement_timeout_ms", "300", NULL};
    sr_router *r = open_router(1, 1, opts);
    sr_session *a = new_session(r);
    sr_session *b = new_session(r);
    ck_assert_int_eq(sr_begin(a, K(0)), SR_OK);
    int64_t t0 = now_ms();
    int rc = sr_exec(b, K(0), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL);
    int64_t took = now_ms() - t0;
    /* Still "no free connection" (SR_EBUSY), only sooner than checkout_timeout_ms. */
    ck_assert_msg(rc == SR_EBUSY, "%s: %s", sr_strerror(rc), sr_session_errmsg(b));
    ck_assert_msg(took < 300 + slack_ms(), "took %lld ms", (long long)took);
    ck_assert_int_eq(sr_rollback(a), SR_OK);
    sr_session_free(a);
    sr_session_free(b);
    sr_router_close(r);
}
END_TEST

START_TEST(scatter_reads_follow_each_shards_position)
{
    sr_router *r = open_router(3, 1, NULL);
    sr_session *s = new_session(r);
    write_on(s, 1);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec_all(s, SR_AUTO, "SELECT node FROM t", 0, NULL, &res), SR_OK);
    ck_assert_int_eq(sr_result_nrows(res), 3);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "s0r1");
    ck_assert_str_eq(sr_result_value(res, 1, 0), "s1p"); /* s1r1 has not replayed the write */
    ck_assert_str_eq(sr_result_value(res, 2, 0), "s2r1");
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(bad_read_options_are_refused)
{
    sr_router *r = open_router(1, 1, NULL);
    sr_session *s = new_session(r);
    sr_read_opts o = SR_READ_OPTS_INIT;
    o.consistency = 42;
    ck_assert_int_eq(read_fails(s, 0, &o), SR_EINVAL);
    o = (sr_read_opts)SR_READ_OPTS_INIT;
    o.max_lag_ms = -5;
    ck_assert_int_eq(read_fails(s, 0, &o), SR_EINVAL);
    ck_assert_int_eq(sr_session_set(s, "consistency", "fresh"), SR_EINVAL);
    ck_assert_int_eq(sent_to("s0p") + sent_to("s0r1"), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- threads: a router shared, a session per thread ---- */

enum { WORKERS = 4, WORKER_READS = 200, WORKER_WRITES = 20 };

typedef struct worker {
    sr_router *r;
    int shard;
    int reads;     /* answered by a replica of its shard */
    int writes;
    int misrouted; /* answered by anything else */
    char err[256];
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    sr_session *s = NULL;
    if (sr_session_new(w->r, &s) != SR_OK) {
        snprintf(w->err, sizeof w->err, "sr_session_new failed");
        return NULL;
    }
    char replica[8], primary[8];
    snprintf(replica, sizeof replica, "s%dr", w->shard);
    snprintf(primary, sizeof primary, "s%dp", w->shard);
    for (int i = 0; i < WORKER_READS + WORKER_WRITES; i++) {
        int write = i % ((WORKER_READS + WORKER_WRITES) / WORKER_WRITES) == 0;
        sr_result *res = NULL;
        int rc = write ? sr_exec(s, K(w->shard), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, &res)
                       : sr_exec(s, K(w->shard), SR_READ, "SELECT node FROM t", 0, NULL, &res);
        if (rc != SR_OK) {
            snprintf(w->err, sizeof w->err, "%s: %s", sr_strerror(rc), sr_session_errmsg(s));
            break;
        }
        if (write) {
            w->writes++;
        } else {
            const char *who = sr_result_value(res, 0, 0);
            if (who && strncmp(who, replica, strlen(replica)) == 0)
                w->reads++;
            else
                w->misrouted++;
        }
        sr_result_free(res);
    }
    sr_session_free(s);
    return NULL;
}

static void run_workers(sr_router *r, worker *w)
{
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (worker){.r = r, .shard = i % 2};
        ck_assert_int_eq(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < WORKERS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < WORKERS; i++) {
        ck_assert_msg(w[i].err[0] == '\0', "worker %d: %s", i, w[i].err);
        ck_assert_int_eq(w[i].misrouted, 0);
        ck_assert_int_eq(w[i].reads, WORKER_READS);
        ck_assert_int_eq(w[i].writes, WORKER_WRITES);
    }
}

START_TEST(sessions_on_threads_route_like_one)
{
    const char *opts[] = {"consistency.mode", "any", NULL};
    sr_router *r = open_router(2, 2, opts);
    worker w[WORKERS];
    run_workers(r, w);
    for (int sh = 0; sh < 2; sh++) {
        char p[8], r1[8], r2[8];
        snprintf(p, sizeof p, "s%dp", sh);
        snprintf(r1, sizeof r1, "s%dr1", sh);
        snprintf(r2, sizeof r2, "s%dr2", sh);
        ck_assert_int_eq(ok_on(p), WORKER_WRITES * WORKERS / 2);
        ck_assert_int_eq(ok_on(r1) + ok_on(r2), WORKER_READS * WORKERS / 2);
        ck_assert_int_gt(ok_on(r1), 0);
        ck_assert_int_gt(ok_on(r2), 0);
    }
    sr_router_close(r);
}
END_TEST

START_TEST(a_failing_replica_under_threads_costs_at_most_threshold_plus_threads)
{
    const char *opts[] = {"consistency.mode", "any", "health.fail_threshold", "3", NULL};
    sr_router *r = open_router(2, 2, opts);
    atomic_store(&N("s0r1")->fail_execs, -1);
    worker w[WORKERS];
    run_workers(r, w); /* every read succeeds: the failed ones were retried */
    ck_assert_int_eq(node_info(r, 0, 1).healthy, 0);
    ck_assert_int_ge(sent_to("s0r1"), 3);
    ck_assert_int_le(sent_to("s0r1"), 3 + WORKERS);
    ck_assert_int_eq(ok_on("s0r2"), WORKER_READS * WORKERS / 2);
    ck_assert_int_eq(atomic_load(&ejected_lines), 1); /* logged once */
    sr_router_close(r);
}
END_TEST

static Suite *route_suite(void)
{
    Suite *su = suite_create("route");
    TCase *tc = tcase_create("route");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, writes_go_to_the_primary);
    tcase_add_test(tc, auto_reads_spread_over_the_replicas_in_turn);
    tcase_add_test(tc, other_policies_read_replicas_only);
    tcase_add_test(tc, primary_reads_always_makes_the_primary_a_candidate);
    tcase_add_test(tc, consistency_primary_reads_the_primary);
    tcase_add_test(tc, a_failing_replica_is_ejected_and_reads_fall_back);
    tcase_add_test(tc, an_ejected_replica_is_probed_back_after_the_backoff);
    tcase_add_test(tc, no_healthy_replica_reads_the_primary_unless_forbidden);
    tcase_add_test(tc, a_primary_that_reports_another_role_refuses_writes);
    tcase_add_test(tc, a_replica_over_the_lag_bound_is_skipped);
    tcase_add_test(tc, every_replica_lagging_reads_the_primary_or_fails);
    tcase_add_test(tc, lag_is_measured_again_and_a_recovered_replica_serves);
    tcase_add_test(tc, a_broken_replica_found_by_the_prober_is_skipped_without_a_bound);
    tcase_add_test(tc, with_the_primary_gone_too_a_broken_replica_serves_reads_that_it_can);
    tcase_add_test(tc, read_your_writes_skips_a_replica_that_has_not_replayed);
    tcase_add_test(tc, exec_at_carries_the_write_position_and_the_replica_check);
    tcase_add_test(tc, a_stale_check_in_the_exchange_falls_back_to_the_primary);
    tcase_add_test(tc, a_write_younger_than_the_replay_delay_reads_the_primary_unasked);
    tcase_add_test(tc, a_write_whose_exchange_brings_no_position_asks_for_it);
    tcase_add_test(tc, a_write_that_committed_before_its_connection_was_lost_succeeds);
    tcase_add_test(tc, a_driver_of_abi_4_is_never_asked_for_exec_at);
    tcase_add_test(tc, read_your_writes_waits_for_a_replica_to_catch_up);
    tcase_add_test(tc, read_your_writes_reads_the_primary_when_the_wait_expires);
    tcase_add_test(tc, stale_when_no_replica_caught_up_and_primary_reads_are_never);
    tcase_add_test(tc, any_ignores_positions);
    tcase_add_test(tc, monotonic_never_reads_an_older_state);
    tcase_add_test(tc, tokens_carry_the_position_between_sessions_and_routers);
    tcase_add_test(tc, an_unknown_write_position_reads_the_primary_and_gives_no_token);
    tcase_add_test(tc, a_stalled_replica_times_out_at_the_statement_deadline);
    tcase_add_test(tc, a_hung_replica_is_ejected_after_threshold_timeouts);
    tcase_add_test(tc, a_stalled_primary_times_out_a_write_once);
    tcase_add_test(tc, a_stalled_connect_times_out_at_connect_timeout);
    tcase_add_test(tc, the_consistency_wait_never_outlives_the_statement_deadline);
    tcase_add_test(tc, a_full_pool_is_busy_after_the_checkout_timeout_and_not_a_failure);
    tcase_add_test(tc, a_read_failing_transiently_is_retried_once_on_another_replica);
    tcase_add_test(tc, a_read_retried_with_no_other_replica_goes_to_the_primary);
    tcase_add_test(tc, a_read_is_retried_only_once);
    tcase_add_test(tc, an_sql_error_is_not_retried);
    tcase_add_test(tc, a_write_is_never_retried);
    tcase_add_test(tc, a_transaction_pins_the_primary_of_its_shard);
    tcase_add_test(tc, a_connection_lost_in_a_transaction_ends_it);
    tcase_add_test(tc, a_read_only_transaction_runs_on_a_replica);
    tcase_add_test(tc, scatter_reads_every_shard_in_order);
    tcase_add_test(tc, scatter_with_one_shard_failing_is_partial);
    tcase_add_test(tc, scatter_in_steps_sends_every_shard_and_keeps_shard_order);
    tcase_add_test(tc, scatter_in_steps_partial_results_on_request);
    tcase_add_test(tc, a_cursor_streams_in_batches_and_cancels_when_closed_early);
    tcase_add_test(tc, typed_parameters_need_a_driver_with_steps_and_valid_values);
    tcase_add_test(tc, read_your_writes_never_reads_stale_when_the_primary_is_down);
    tcase_add_test(tc, a_read_only_transaction_is_stale_when_no_replica_caught_up);
    tcase_add_test(tc, a_retry_keeps_the_first_attempts_deadline);
    tcase_add_test(tc, a_pool_checkout_never_outlives_the_statement_deadline);
    tcase_add_test(tc, scatter_reads_follow_each_shards_position);
    tcase_add_test(tc, bad_read_options_are_refused);
    tcase_add_test(tc, sessions_on_threads_route_like_one);
    tcase_add_test(tc, a_failing_replica_under_threads_costs_at_most_threshold_plus_threads);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(route_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
