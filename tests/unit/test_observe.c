/*
 * Metrics and routing events through the public API (issue 14), on the
 * fake per-node driver of tests/support/route_driver.c: which counter moves
 * and which event says what, for routing decisions set up node by node. The
 * metrics text of real servers is checked by `promtool` in the postgres
 * suite's observability cases; here it is parsed for exact values.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shardroute.h>

#include "route_driver.h"

/* ---- events, as the callback saw them (copied: the event is borrowed) ---- */

#define MAX_EVENTS 64

typedef struct seen_event {
    sr_event_kind kind;
    int shard, node, status, retries;
    sr_intent intent;
    int64_t wait_us, duration_us;
    char shard_name[32], node_uri[128], reason[128], skipped[1024], sql[128], health[32],
        detail[256], sqlstate[6];
} seen_event;

static pthread_mutex_t events_lock = PTHREAD_MUTEX_INITIALIZER;
static seen_event events[MAX_EVENTS];
static int nevents;
static _Atomic int delivered; /* statement events, all of them (the copies stop at MAX_EVENTS) */

static void on_event(void *ud, const sr_event *ev)
{
    (void)ud;
    ck_assert_int_eq(ev->version, SR_EVENT_VERSION);
    if (ev->kind == SR_EVENT_STATEMENT)
        atomic_fetch_add(&delivered, 1);
    pthread_mutex_lock(&events_lock);
    if (nevents < MAX_EVENTS) {
        seen_event *e = &events[nevents++];
        e->kind = ev->kind;
        e->shard = ev->shard;
        e->node = ev->node;
        e->status = ev->status;
        e->retries = ev->retries;
        e->intent = ev->intent;
        e->wait_us = ev->wait_us;
        e->duration_us = ev->duration_us;
        snprintf(e->shard_name, sizeof e->shard_name, "%s", ev->shard_name);
        snprintf(e->node_uri, sizeof e->node_uri, "%s", ev->node_uri);
        snprintf(e->reason, sizeof e->reason, "%s", ev->reason);
        snprintf(e->skipped, sizeof e->skipped, "%s", ev->skipped);
        snprintf(e->sql, sizeof e->sql, "%s", ev->sql);
        snprintf(e->health, sizeof e->health, "%s", ev->health);
        snprintf(e->detail, sizeof e->detail, "%s", ev->detail);
        snprintf(e->sqlstate, sizeof e->sqlstate, "%s", ev->sqlstate);
    }
    pthread_mutex_unlock(&events_lock);
}

/* The last statement event (fails the test when there is none). */
static const seen_event *last_statement_event(void)
{
    for (int i = nevents - 1; i >= 0; i--)
        if (events[i].kind == SR_EVENT_STATEMENT)
            return &events[i];
    ck_abort_msg("no statement event");
    return NULL;
}

static int count_events(sr_event_kind kind)
{
    int n = 0;
    for (int i = 0; i < nevents; i++)
        n += events[i].kind == kind;
    return n;
}

#define ASSERT_CONTAINS(hay, needle) \
    ck_assert_msg(strstr((hay), (needle)) != NULL, "'%s' does not contain '%s'", (hay), (needle))

/* ---- a router of fake nodes: shards s0.. (range 0..99 is s0, 100..199 s1, ...) ---- */

static const char *scheme = "fake";

static void config_set(sr_config *c, const char *k, const char *v)
{
    ck_assert_msg(sr_config_set(c, k, v) == SR_OK, "%s = %s: %s", k, v, sr_config_errmsg(c));
}

static sr_router *open_router(int nshards, int nreplicas, bool with_events, const char *const *opts)
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
    if (with_events)
        ck_assert_int_eq(sr_config_set_event_fn(c, on_event, NULL), SR_OK);
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
            if (j)
                snprintf(node, sizeof node, "s%dr%d", i, j);
            else
                snprintf(node, sizeof node, "s%dp", i);
            if (!route_node_find(node))
                route_node_add(node, j == 0 ? SR_PRIMARY : SR_REPLICA);
            snprintf(uri, sizeof uri, "%s://127.0.0.1/%s", scheme, node);
            ck_assert_msg(sr_config_add_node(c, shard, j ? SR_REPLICA : SR_PRIMARY, uri, 1) == SR_OK,
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

static sr_key K(int shard) { return sr_key_int((int64_t)shard * 100 + 1); }

static route_node *N(const char *name)
{
    route_node *n = route_node_find(name);
    ck_assert_msg(n != NULL, "no fake node %s", name);
    return n;
}

static int run(sr_session *s, int shard, sr_intent intent, const char *sql)
{
    sr_result *res = NULL;
    int rc = sr_exec(s, K(shard), intent, sql, 0, NULL, &res);
    sr_result_free(res);
    return rc;
}

static void read_ok(sr_session *s, int shard)
{
    int rc = run(s, shard, SR_READ, "SELECT node FROM t");
    ck_assert_msg(rc == SR_OK, "read: %s: %s", sr_strerror(rc), sr_session_errmsg(s));
}

static void write_ok(sr_session *s, int shard)
{
    int rc = run(s, shard, SR_WRITE, "INSERT INTO t VALUES (1)");
    ck_assert_msg(rc == SR_OK, "write: %s: %s", sr_strerror(rc), sr_session_errmsg(s));
}

/* ---- the metrics text ---- */

/* The whole text (it may grow between the sizing call and the copy: then again, larger). */
static char *metrics(sr_router *r)
{
    int len = sr_router_metrics_text(r, NULL, 0);
    for (;;) {
        ck_assert_int_gt(len, 0);
        char *buf = malloc((size_t)len + 1);
        ck_assert_ptr_nonnull(buf);
        int got = sr_router_metrics_text(r, buf, (size_t)len + 1);
        if (got <= len) {
            ck_assert_uint_eq(strlen(buf), (size_t)got);
            return buf;
        }
        free(buf);
        len = got + 256;
    }
}

/* The value of the series written exactly as `series` ("name{labels}"); -1 when absent. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static double node_series(const char *text, const char *name, const char *node, const char *role,
                          const char *more)
{
    char series[512];
    snprintf(series, sizeof series, "%s{shard=\"s%c\",node=\"%s://127.0.0.1/%s\",role=\"%s\"%s%s}",
             name, node[1], scheme, node, role, more ? "," : "", more ? more : "");
    return value_of(text, series);
}

static void setup(void)
{
    route_driver_reset();
    scheme = "fake";
    pthread_mutex_lock(&events_lock);
    nevents = 0;
    pthread_mutex_unlock(&events_lock);
    atomic_store(&delivered, 0);
}

/* ---- metrics ---- */

START_TEST(statements_are_counted_by_node_intent_and_outcome)
{
    const char *opts[] = {"consistency.mode", "any", NULL};
    sr_router *r = open_router(1, 2, false, opts);
    sr_session *s = new_session(r);
    write_ok(s, 0);
    write_ok(s, 0);
    for (int i = 0; i < 4; i++)
        read_ok(s, 0); /* round robin: two on each replica */
    atomic_store(&N("s0r1")->fail_execs, 1);
    atomic_store(&N("s0r1")->fail_kind, 1); /* an SQL error: not retried */
    atomic_store(&N("s0r2")->fail_execs, 1);
    atomic_store(&N("s0r2")->fail_kind, 1);
    ck_assert_int_eq(run(s, 0, SR_READ, "SELECT node FROM t"), SR_EQUERY);
    char *m = metrics(r);
    ck_assert_double_eq(node_series(m, "shardroute_statements_total", "s0p", "primary",
                                    "intent=\"write\",outcome=\"ok\""), 2);
    ck_assert_double_eq(node_series(m, "shardroute_statements_total", "s0p", "primary",
                                    "intent=\"read\",outcome=\"ok\""), 0);
    double r1 = node_series(m, "shardroute_statements_total", "s0r1", "replica",
                            "intent=\"read\",outcome=\"ok\"");
    double r2 = node_series(m, "shardroute_statements_total", "s0r2", "replica",
                            "intent=\"read\",outcome=\"ok\"");
    ck_assert_double_eq(r1 + r2, 4);
    double e1 = node_series(m, "shardroute_statements_total", "s0r1", "replica",
                            "intent=\"read\",outcome=\"sql_error\"");
    double e2 = node_series(m, "shardroute_statements_total", "s0r2", "replica",
                            "intent=\"read\",outcome=\"sql_error\"");
    ck_assert_double_eq(e1 + e2, 1);
    /* The latency histogram samples (the first statement of a session always). */
    ck_assert_double_ge(node_series(m, "shardroute_statement_duration_seconds_count", "s0p",
                                    "primary", NULL), 1);
    ck_assert_double_eq(node_series(m, "shardroute_node_up", "s0r1", "replica", NULL), 1);
    ASSERT_CONTAINS(m, "# TYPE shardroute_statements_total counter\n");
    ASSERT_CONTAINS(m, "# TYPE shardroute_statement_duration_seconds histogram\n");
    ASSERT_CONTAINS(m, "shardroute_info{version=\"" SR_VERSION_STRING "\"} 1\n");
    free(m);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(reads_on_the_primary_are_counted_with_their_reason)
{
    const char *opts[] = {"replica.max_lag_ms", "100", "replica.lag_refresh_ms", "1", NULL};
    scheme = "fakeat";
    sr_router *r = open_router(1, 2, false, opts);
    sr_session *s = new_session(r);
    /* read_your_writes: after a write, replicas behind its position send the read on. */
    write_ok(s, 0);
    read_ok(s, 0);
    /* consistency = primary */
    ck_assert_int_eq(sr_session_set(s, "consistency", "primary"), SR_OK);
    read_ok(s, 0);
    /* any, but every replica over the lag bound */
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    atomic_store(&N("s0r1")->lag_ms, 500);
    atomic_store(&N("s0r2")->lag_ms, 500);
    struct timespec ms2 = {0, 2000000};
    nanosleep(&ms2, NULL); /* past replica.lag_refresh_ms: the read measures the lag again */
    read_ok(s, 0);
    char *m = metrics(r);
    ck_assert_double_eq(value_of(m, "shardroute_primary_reads_total{shard=\"s0\",reason=\"stale\"}"), 1);
    ck_assert_double_eq(
        value_of(m, "shardroute_primary_reads_total{shard=\"s0\",reason=\"consistency_primary\"}"), 1);
    ck_assert_double_eq(value_of(m, "shardroute_primary_reads_total{shard=\"s0\",reason=\"lag\"}"), 1);
    ck_assert_double_eq(
        value_of(m, "shardroute_primary_reads_total{shard=\"s0\",reason=\"no_replica\"}"), 0);
    ck_assert_double_eq(node_series(m, "shardroute_replica_lag_seconds", "s0r1", "replica", NULL),
                        0.5);
    free(m);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(aggregate_sums_per_shard_series_without_the_shard_label)
{
    const char *opts[] = {"metrics.shards", "aggregate", NULL};
    sr_router *r = open_router(3, 0, false, opts);
    sr_session *s = new_session(r);
    for (int i = 0; i < 3; i++)
        read_ok(s, i); /* no replica: each on its primary */
    char *m = metrics(r);
    ck_assert_double_eq(value_of(m, "shardroute_primary_reads_total{reason=\"no_replica\"}"), 3);
    ck_assert_ptr_null(strstr(m, "shardroute_primary_reads_total{shard="));
    ck_assert_ptr_null(strstr(m, "shardroute_consistency_waits_total{shard="));
    /* Per-node series keep their shard. */
    ck_assert_double_eq(node_series(m, "shardroute_statements_total", "s2p", "primary",
                                    "intent=\"read\",outcome=\"ok\""), 1);
    free(m);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

static int refuse_third(void *ud, const char *data, size_t len)
{
    (void)data, (void)len;
    return ++*(int *)ud >= 3;
}

static int count_bytes(void *ud, const char *data, size_t len)
{
    (void)data;
    *(size_t *)ud += len;
    return 0;
}

START_TEST(the_text_call_behaves_like_snprintf_and_the_sink_can_stop)
{
    sr_router *r = open_router(8, 1, false, NULL); /* longer than one 16 KiB chunk */
    char *m = metrics(r);
    int len = (int)strlen(m);
    ck_assert_int_gt(len, 16384);
    char small[100];
    ck_assert_int_eq(sr_router_metrics_text(r, small, sizeof small), len);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
    ck_assert_int_eq(memcmp(small, m, sizeof small - 1), 0);
    size_t total = 0;
    ck_assert_int_eq(sr_router_metrics(r, count_bytes, &total), SR_OK);
    ck_assert_uint_eq(total, (size_t)len);
    int calls = 0;
    ck_assert_int_eq(sr_router_metrics(r, refuse_third, &calls), SR_EINVAL);
    ck_assert_int_eq(calls, 3);
    ck_assert_int_eq(sr_router_metrics(NULL, count_bytes, &total), SR_EINVAL);
    ck_assert_int_eq(sr_router_metrics(r, NULL, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_router_metrics_text(NULL, small, sizeof small), SR_EINVAL);
    ck_assert_int_eq(sr_router_metrics_text(r, NULL, 10), SR_EINVAL);
    free(m);
    sr_router_close(r);
}
END_TEST

START_TEST(label_values_are_escaped)
{
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_add_shard(c, "a\"b\\c"), SR_OK);
    route_node_add("quoted", SR_PRIMARY);
    ck_assert_int_eq(sr_config_add_node(c, "a\"b\\c", SR_PRIMARY, "fake://127.0.0.1/quoted", 1),
                     SR_OK);
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    char *m = metrics(r);
    ASSERT_CONTAINS(m, "shardroute_node_up{shard=\"a\\\"b\\\\c\",node=\"fake://127.0.0.1/quoted\","
                       "role=\"primary\"} 1\n");
    free(m);
    sr_router_close(r);
}
END_TEST

START_TEST(pool_exhaustion_and_checkout_waits_are_counted)
{
    const char *opts[] = {"pool.max_size", "1", "pool.checkout_timeout_ms", "30", NULL};
    sr_router *r = open_router(1, 0, false, opts);
    sr_session *a = new_session(r), *b = new_session(r);
    ck_assert_int_eq(sr_begin(a, K(0)), SR_OK); /* holds the primary's only connection */
    ck_assert_int_eq(run(b, 0, SR_WRITE, "INSERT INTO t VALUES (1)"), SR_EBUSY);
    char *m = metrics(r);
    ck_assert_double_eq(node_series(m, "shardroute_pool_exhausted_total", "s0p", "primary", NULL), 1);
    ck_assert_double_eq(node_series(m, "shardroute_pool_checkout_wait_seconds_count", "s0p",
                                    "primary", NULL), 1);
    ck_assert_double_eq(node_series(m, "shardroute_pool_connections", "s0p", "primary",
                                    "state=\"in_use\""), 1);
    ck_assert_double_eq(node_series(m, "shardroute_pool_max_connections", "s0p", "primary", NULL),
                        1);
    /* The wait lasted about checkout_timeout_ms: it is in a bucket above 25 ms. */
    ck_assert_double_eq(node_series(m, "shardroute_pool_checkout_wait_seconds_bucket", "s0p",
                                    "primary", "le=\"0.025\""), 0);
    free(m);
    ck_assert_int_eq(sr_rollback(a), SR_OK);
    sr_session_free(a);
    sr_session_free(b);
    sr_router_close(r);
}
END_TEST

START_TEST(ejections_probes_and_scatter_are_counted)
{
    const char *opts[] = {"health.fail_threshold", "1", NULL};
    scheme = "fakestep"; /* scatter in steps: its parts are reported by the fanout */
    sr_router *r = open_router(2, 1, true, opts);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->fail_connects, -1);
    read_ok(s, 0); /* r1 fails to connect, is ejected; the read is served elsewhere */
    ck_assert_int_eq(count_events(SR_EVENT_HEALTH), 1);
    const seen_event *h = events[0].kind == SR_EVENT_HEALTH ? &events[0] : &events[1];
    ck_assert_str_eq(h->health, "ejected");
    ck_assert_str_eq(h->node_uri, "fakestep://127.0.0.1/s0r1");
    ck_assert_int_eq(h->node, 1);
    ck_assert_int_eq(h->shard, 0);
    ck_assert_str_ne(h->detail, "");
    /* Scatter: one statement over both shards, one of which fails. */
    atomic_store(&N("s1p")->fail_execs, 1);
    atomic_store(&N("s1p")->fail_kind, 1);
    atomic_store(&N("s1r1")->fail_execs, 1);
    atomic_store(&N("s1r1")->fail_kind, 1);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec_all(s, SR_READ, "SELECT node FROM t", 0, NULL, &res), SR_EPARTIAL);
    /* One event per shard part, in shard order, after the statement. */
    ck_assert_int_ge(nevents, 2);
    const seen_event *p0 = &events[nevents - 2], *p1 = &events[nevents - 1];
    ck_assert_int_eq(p0->kind, SR_EVENT_STATEMENT);
    ck_assert_int_eq(p0->shard, 0);
    ck_assert_int_eq(p0->status, SR_OK);
    ck_assert_str_eq(p0->sql, "SELECT node FROM t");
    ck_assert_int_eq(p1->shard, 1);
    ck_assert_int_eq(p1->status, SR_EQUERY);
    ck_assert_str_eq(p1->sqlstate, "42P01");
    ck_assert_str_eq(p1->node_uri, "fakestep://127.0.0.1/s1r1");
    char *m = metrics(r);
    ck_assert_double_eq(node_series(m, "shardroute_node_up", "s0r1", "replica", NULL), 0);
    ck_assert_double_eq(node_series(m, "shardroute_node_ejections_total", "s0r1", "replica", NULL), 1);
    ck_assert_double_ge(node_series(m, "shardroute_node_errors_total", "s0r1", "replica", NULL), 1);
    ck_assert_double_eq(value_of(m, "shardroute_scatter_statements_total"), 1);
    ck_assert_double_eq(value_of(m, "shardroute_scatter_shards_total"), 2);
    ck_assert_double_eq(value_of(m, "shardroute_scatter_shard_failures_total"), 1);
    ck_assert_double_eq(value_of(m, "shardroute_scatter_partial_failures_total"), 1);
    free(m);
    /* Two rounds of checks: the ejected node is not due (retry_ms is an hour); s1p, never
     * connected yet, cannot connect: it fails its first check and is ejected. */
    atomic_store(&N("s1p")->fail_connects, -1);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    m = metrics(r);
    ck_assert_double_eq(node_series(m, "shardroute_node_probes_total", "s0p", "primary",
                                    "result=\"ok\""), 2);
    ck_assert_double_eq(node_series(m, "shardroute_node_probes_total", "s0r1", "replica",
                                    "result=\"ok\""), 0);
    ck_assert_double_eq(node_series(m, "shardroute_node_probes_total", "s1p", "primary",
                                    "result=\"failed\""), 1);
    ck_assert_double_eq(node_series(m, "shardroute_node_probes_total", "s1p", "primary",
                                    "result=\"ok\""), 0);
    free(m);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_consistency_wait_is_counted_and_reported)
{
    const char *opts[] = {"consistency.wait_ms", "5000", NULL};
    sr_router *r = open_router(1, 2, true, opts);
    sr_session *s = new_session(r);
    write_ok(s, 0);
    atomic_store(&N("s0r1")->catch_up_ms, 20);
    atomic_store(&N("s0r2")->catch_up_ms, 20);
    read_ok(s, 0);
    const seen_event *e = last_statement_event();
    ck_assert_int_eq(e->node > 0, 1);
    ck_assert_int_ge(e->wait_us, 10000);
    ck_assert_int_ge(e->duration_us, e->wait_us);
    char *m = metrics(r);
    ck_assert_double_eq(
        value_of(m, "shardroute_consistency_waits_total{shard=\"s0\",outcome=\"caught_up\"}"), 1);
    ck_assert_double_eq(
        value_of(m, "shardroute_consistency_waits_total{shard=\"s0\",outcome=\"timed_out\"}"), 0);
    ck_assert_double_ge(value_of(m, "shardroute_consistency_wait_seconds_total{shard=\"s0\"}"), 0.01);
    free(m);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- events ---- */

START_TEST(events_say_where_a_statement_went_and_why)
{
    sr_router *r = open_router(1, 2, true, NULL);
    sr_session *s = new_session(r);
    write_ok(s, 0);
    const seen_event *e = last_statement_event();
    ck_assert_int_eq(e->intent, SR_WRITE);
    ck_assert_str_eq(e->reason, "write");
    ck_assert_int_eq(e->node, 0);
    ck_assert_str_eq(e->node_uri, "fake://127.0.0.1/s0p");
    ck_assert_str_eq(e->shard_name, "s0");
    ck_assert_str_eq(e->sql, "INSERT INTO t VALUES (1)");
    ck_assert_str_eq(e->skipped, "");
    ck_assert_int_eq(e->status, SR_OK);
    ck_assert_int_ge(e->duration_us, 0);

    /* `any`: a replica; the other one was passed over by the policy. */
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    read_ok(s, 0);
    e = last_statement_event();
    ck_assert_int_eq(e->intent, SR_READ);
    ck_assert_str_eq(e->reason, "replica");
    ck_assert_int_ge(e->node, 1);
    ASSERT_CONTAINS(e->skipped, "not chosen by the balance policy");

    ck_assert_int_eq(sr_session_set(s, "consistency", "primary"), SR_OK);
    read_ok(s, 0);
    e = last_statement_event();
    ck_assert_str_eq(e->reason, "primary: consistency = primary");
    ck_assert_str_eq(e->skipped, "");

    /* A failed statement: its status and SQLSTATE. */
    atomic_store(&N("s0p")->fail_execs, 1);
    atomic_store(&N("s0p")->fail_kind, 1);
    ck_assert_int_eq(run(s, 0, SR_WRITE, "INSERT INTO t VALUES (2)"), SR_EQUERY);
    e = last_statement_event();
    ck_assert_int_eq(e->status, SR_EQUERY);
    ck_assert_str_eq(e->sqlstate, "42P01");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(events_say_why_each_other_node_was_skipped)
{
    const char *opts[] = {"replica.max_lag_ms", "100", "health.fail_threshold", "1", NULL};
    sr_router *r = open_router(1, 3, true, opts);
    sr_session *s = new_session(r);
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    atomic_store(&N("s0r1")->fail_connects, -1);
    atomic_store(&N("s0r2")->lag_ms, 340);
    atomic_store(&N("s0r3")->fail_execs, 1); /* transient: the read moves on */
    /* Round robin: whichever replica is tried first, the read ends on the primary. */
    read_ok(s, 0);
    read_ok(s, 0);
    const seen_event *e = last_statement_event();
    ck_assert_str_eq(e->node_uri, "fake://127.0.0.1/s0p");
    ck_assert_str_eq(e->reason, "primary: no replica within the lag bound");
    ASSERT_CONTAINS(e->skipped, "fake://127.0.0.1/s0r1: ejected");
    ASSERT_CONTAINS(e->skipped, "fake://127.0.0.1/s0r2: lag 340 ms over 100 ms");
    ASSERT_CONTAINS(e->skipped, "fake://127.0.0.1/s0r3: ejected");
    /* The first of the two reads retried after r3 failed; its event says so. */
    int retried = 0;
    for (int i = 0; i < nevents; i++)
        if (events[i].kind == SR_EVENT_STATEMENT && events[i].retries == 1) {
            retried++;
            ASSERT_CONTAINS(events[i].skipped, "fake://127.0.0.1/s0r3: failed: ");
        }
    ck_assert_int_eq(retried, 1);
    ck_assert_int_eq(count_events(SR_EVENT_HEALTH), 2); /* r1 and r3 ejected */
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(events_report_replicas_behind_the_sessions_position)
{
    scheme = "fakeat";
    sr_router *r = open_router(1, 2, true, NULL);
    sr_session *s = new_session(r);
    write_ok(s, 0);
    read_ok(s, 0);
    const seen_event *e = last_statement_event();
    ck_assert_str_eq(e->reason, "primary: replicas behind the session's position");
    ASSERT_CONTAINS(e->skipped, "behind the session's position");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(events_are_sampled_one_in_n)
{
    const char *opts[] = {"events.sample", "4", NULL};
    sr_router *r = open_router(1, 1, true, opts);
    sr_session *s = new_session(r);
    for (int i = 0; i < 20; i++)
        read_ok(s, 0);
    ck_assert_int_eq(count_events(SR_EVENT_STATEMENT), 5);
    sr_session_free(s);
    sr_router_close(r);
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_set(c, "events.sample", "0"), SR_EINVAL);
    ck_assert_int_eq(sr_config_set_event_fn(NULL, on_event, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_config_set_event_fn(c, NULL, NULL), SR_OK);
    sr_config_free(c);
}
END_TEST

START_TEST(no_callback_no_events)
{
    sr_router *r = open_router(1, 1, false, NULL);
    sr_session *s = new_session(r);
    write_ok(s, 0);
    read_ok(s, 0);
    ck_assert_int_eq(nevents, 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- cases a review found ---- */

START_TEST(one_key_cursors_and_read_only_begins_count_as_what_they_are)
{
    sr_router *r = open_router(2, 0, false, NULL);
    sr_session *s = new_session(r);
    sr_cursor *c = NULL;
    ck_assert_int_eq(sr_cursor_open(s, K(0), SR_READ, NULL, "SELECT node FROM t", 0, NULL, &c),
                     SR_OK);
    while (sr_cursor_next(c) > 0)
        ;
    sr_cursor_close(c);
    ck_assert_int_eq(sr_begin_read_only(s, K(1)), SR_OK); /* no replica: on the primary */
    ck_assert_int_eq(sr_commit(s), SR_OK);
    char *m = metrics(r);
    ck_assert_double_eq(value_of(m, "shardroute_scatter_statements_total"), 0);
    /* The cursor's read counts; the BEGIN is no read. */
    ck_assert_double_eq(
        value_of(m, "shardroute_primary_reads_total{shard=\"s0\",reason=\"no_replica\"}"), 1);
    ck_assert_double_eq(
        value_of(m, "shardroute_primary_reads_total{shard=\"s1\",reason=\"no_replica\"}"), 0);
    free(m);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_scatter_on_the_one_shard_path_is_sampled_once)
{
    const char *opts[] = {"events.sample", "2", NULL};
    sr_router *r = open_router(2, 0, true, opts); /* "fake": no steps, the one-shard path */
    sr_session *s = new_session(r);
    for (int i = 0; i < 4; i++) {
        sr_result *res = NULL;
        ck_assert_int_eq(sr_exec_all(s, SR_READ, "SELECT node FROM t", 0, NULL, &res), SR_OK);
        sr_result_free(res);
    }
    /* Two of the four statements, each with both of its parts. */
    ck_assert_int_eq(atomic_load(&delivered), 4);
    ck_assert_int_eq(events[0].shard, 0);
    ck_assert_int_eq(events[1].shard, 1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(events_name_no_node_for_a_refused_statement_and_unknown_lag)
{
    const char *opts[] = {"replica.max_lag_ms", "100", "consistency.mode", "any", NULL};
    sr_router *r = open_router(2, 1, true, opts);
    sr_session *s = new_session(r);
    ck_assert_int_eq(sr_begin(s, K(0)), SR_OK);
    ck_assert_int_eq(run(s, 1, SR_WRITE, "INSERT INTO t VALUES (1)"), SR_ETXN);
    const seen_event *e = last_statement_event();
    ck_assert_int_eq(e->shard, 1);
    ck_assert_int_eq(e->node, -1);
    ck_assert_str_eq(e->node_uri, "");
    ck_assert_int_eq(e->status, SR_ETXN);
    ck_assert_int_eq(sr_rollback(s), SR_OK);
    /* A replica whose lag cannot be measured (it cannot be reached) is not "over the bound". */
    atomic_store(&N("s1r1")->fail_connects, -1);
    read_ok(s, 1);
    e = last_statement_event();
    ck_assert_str_eq(e->reason, "primary: no healthy replica");
    ASSERT_CONTAINS(e->skipped, "fake://127.0.0.1/s1r1: lag unknown (not measured)");
    char *m = metrics(r);
    ck_assert_double_eq(value_of(m, "shardroute_primary_reads_total{shard=\"s1\",reason=\"lag\"}"), 0);
    ck_assert_double_eq(
        value_of(m, "shardroute_primary_reads_total{shard=\"s1\",reason=\"no_replica\"}"), 1);
    free(m);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_position_checked_in_the_statements_exchange_is_said)
{
    scheme = "fakeat";
    sr_router *r = open_router(1, 1, true, NULL);
    sr_session *s = new_session(r);
    write_ok(s, 0);
    atomic_store(&N("s0r1")->position, 1); /* has replayed the write */
    read_ok(s, 0);
    const seen_event *e = last_statement_event();
    ck_assert_str_eq(e->node_uri, "fakeat://127.0.0.1/s0r1");
    ck_assert_str_eq(e->reason, "replica (position checked)");
    /* Known from the cache now: asked no more. */
    read_ok(s, 0);
    ck_assert_str_eq(last_statement_event()->reason, "replica");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- threads: counters, rendering and events at once (run under TSan by CI) ---- */

enum { THREADS = 4, PER_THREAD = 2000 };

static sr_router *shared_router;
static _Atomic int render_stop;

static void *statements_thread(void *arg)
{
    (void)arg;
    sr_session *s = new_session(shared_router);
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    for (int i = 0; i < PER_THREAD; i++) {
        if (i % 10 == 0)
            write_ok(s, i % 2);
        else
            read_ok(s, i % 2);
    }
    sr_session_free(s);
    return NULL;
}

static void *render_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&render_stop))
        free(metrics(shared_router));
    return NULL;
}

START_TEST(counting_rendering_and_events_on_many_threads)
{
    const char *opts[] = {"events.sample", "7", NULL};
    shared_router = open_router(2, 2, true, opts);
    atomic_store(&render_stop, 0);
    pthread_t t[THREADS], renderer;
    ck_assert_int_eq(pthread_create(&renderer, NULL, render_thread, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, statements_thread, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    atomic_store(&render_stop, 1);
    pthread_join(renderer, NULL);
    char *m = metrics(shared_router);
    double total = 0;
    const char *names[] = {"s0p", "s0r1", "s0r2", "s1p", "s1r1", "s1r2"};
    for (int i = 0; i < 6; i++)
        for (int w = 0; w < 2; w++) {
            char more[64];
            snprintf(more, sizeof more, "intent=\"%s\",outcome=\"ok\"", w ? "write" : "read");
            double v = node_series(m, "shardroute_statements_total", names[i],
                                   names[i][2] == 'p' ? "primary" : "replica", more);
            ck_assert_double_ge(v, 0);
            total += v;
        }
    ck_assert_double_eq(total, THREADS * PER_THREAD);
    /* One in 7 by a counter the threads share: ticks 0, 7, 14, ... of 8000 statements. */
    ck_assert_int_eq(atomic_load(&delivered), (THREADS * PER_THREAD + 6) / 7);
    free(m);
    sr_router_close(shared_router);
}
END_TEST

static Suite *observe_suite(void)
{
    Suite *su = suite_create("observe");
    TCase *tc = tcase_create("metrics");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, statements_are_counted_by_node_intent_and_outcome);
    tcase_add_test(tc, reads_on_the_primary_are_counted_with_their_reason);
    tcase_add_test(tc, aggregate_sums_per_shard_series_without_the_shard_label);
    tcase_add_test(tc, the_text_call_behaves_like_snprintf_and_the_sink_can_stop);
    tcase_add_test(tc, label_values_are_escaped);
    tcase_add_test(tc, pool_exhaustion_and_checkout_waits_are_counted);
    tcase_add_test(tc, ejections_probes_and_scatter_are_counted);
    tcase_add_test(tc, a_consistency_wait_is_counted_and_reported);
    suite_add_tcase(su, tc);
    tc = tcase_create("events");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, events_say_where_a_statement_went_and_why);
    tcase_add_test(tc, events_say_why_each_other_node_was_skipped);
    tcase_add_test(tc, events_report_replicas_behind_the_sessions_position);
    tcase_add_test(tc, events_are_sampled_one_in_n);
    tcase_add_test(tc, no_callback_no_events);
    suite_add_tcase(su, tc);
    tc = tcase_create("review");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, one_key_cursors_and_read_only_begins_count_as_what_they_are);
    tcase_add_test(tc, a_scatter_on_the_one_shard_path_is_sampled_once);
    tcase_add_test(tc, events_name_no_node_for_a_refused_statement_and_unknown_lag);
    tcase_add_test(tc, a_position_checked_in_the_statements_exchange_is_said);
    suite_add_tcase(su, tc);
    tc = tcase_create("threads");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, counting_rendering_and_events_on_many_threads);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(observe_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
