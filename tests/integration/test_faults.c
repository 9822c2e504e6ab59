/*
 * Fault injection against real servers: the PostgreSQL primary and two
 * streaming replicas of tests/env/pg_cluster.sh and the MariaDB primary and
 * GTID replica of tests/env/mariadb_cluster.sh are killed (SIGKILL of the
 * server and every process it has), frozen (SIGSTOP of all of them) and
 * started again while threads issue routed statements through one router.
 * Each scenario prints its figures (calls, failed calls, longest call, time
 * to eject, time to re-admit) and asserts the bounds of issue 5.
 *
 * Everything is bounded: reader loops stop by themselves after a few seconds
 * whatever happens, every wait has a deadline, and each tcase has a Check
 * timeout. Every scenario leaves the servers as it found them: it restores
 * them at its end, an atexit handler in the forked test continues whatever it
 * froze (also when an assertion fails), and each tcase's unchecked teardown
 * (in the parent, so it runs even when the test was killed) continues every
 * process of every server, starts again any server that is down and waits
 * for replication to resume.
 *
 * Which server answered a read is asked of the server itself (its port, and
 * pg_is_in_recovery() / @@server_id for its role), not taken from the library.
 *
 * Run: tests/env/pg_cluster.sh run tests/env/mariadb_cluster.sh run BUILD/test_faults
 * (either script alone runs that backend's scenarios). Without any cluster
 * the suite is skipped (77); under CI (env CI set) a missing cluster fails.
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <shardroute.h>

#include "cluster.h"
#include "logwatch.h"
#include "nodewatch.h"
#include "proc.h"
#include "testutil.h"

/* ---- the settings every scenario uses (small, so the suite is quick) ---- */

#define NTHREADS 4
#define FAIL_THRESHOLD 3
#define RETRY_MS 200
#define RETRY_MAX_MS 1000
#define CONNECT_TIMEOUT_MS 500
#define STATEMENT_TIMEOUT_MS 2000
#define FROZEN_STATEMENT_TIMEOUT_MS 300 /* scenario 2 */
#define CHECKOUT_TIMEOUT_MS 150         /* scenario 4 */
#define HOLD_MS 100                     /* scenario 4: how long a transaction is held */
/* The slack on a statement deadline. */
#define DEADLINE_SLACK_MS 100
/*
 * Scheduling slack for the recovery bounds ("within retry_max_ms + one
 * probe"): the machine running the suite may be busy (2 cores, sanitizers).
 */
#define RECOVERY_SLACK_MS 500
/*
 * The most a deadline bound allows for this process not getting a CPU: the
 * scheduling lag measured during the scenario (lag_probe) is added to the
 * deadline's slack, up to this much. On a loaded 2-core machine under
 * ThreadSanitizer a thread that should wake is often tens of milliseconds
 * late, which says nothing about the library. The cap keeps scenario 2's
 * bound (300 + 100 + at most 90 ms) below connect_timeout_ms (500 ms): a call
 * whose connect ignores the statement deadline still fails.
 */
#define SCHED_ALLOWANCE_MAX_MS 90
/* How long a scenario keeps a server down before bringing it back. */
#define OUTAGE_MS 1200
/* Hard bound on any reader loop, whatever else happens. */
#define READERS_HARD_STOP_MS 20000

#define MAXFAIL 512     /* failed calls remembered per thread */

/* ------------------------------------------------------------------------ */
/* The clusters, from the scripts' env.sh (tests/support/cluster.h)          */
/* ------------------------------------------------------------------------ */

static backend pg_backend, my_backend;
static int have_pg, have_my;

/* ------------------------------------------------------------------------ */
/* Routers                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct router_opts {
    int statement_timeout_ms;
    int retry_ms, retry_max_ms;
    int pool_max_size;
    int checkout_timeout_ms;
    const char *primary_reads;
    int replicas; /* how many of the backend's replicas are nodes; -1: all */
} router_opts;

static router_opts default_opts(void)
{
    router_opts o = {STATEMENT_TIMEOUT_MS, RETRY_MS, RETRY_MAX_MS, 0, 0, "fallback", -1};
    return o;
}

static void set_int(sr_config *c, const char *name, int v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%d", v);
    ck_assert_msg(sr_config_set(c, name, buf) == SR_OK, "%s", sr_config_errmsg(c));
}

/* One shard, shard0, on the backend's primary and replicas (node i is server i). */
static sr_router *open_router(const backend *b, router_opts o, lw_node *w)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sr_config_set(c, "balance.policy", "round_robin"), SR_OK);
    ck_assert_int_eq(sr_config_set(c, "balance.primary_reads", o.primary_reads), SR_OK);
    set_int(c, "health.fail_threshold", FAIL_THRESHOLD);
    set_int(c, "health.retry_ms", o.retry_ms);
    set_int(c, "health.retry_max_ms", o.retry_max_ms);
    set_int(c, "connect_timeout_ms", CONNECT_TIMEOUT_MS);
    set_int(c, "statement_timeout_ms", o.statement_timeout_ms);
    if (o.pool_max_size > 0)
        set_int(c, "pool.max_size", o.pool_max_size);
    if (o.checkout_timeout_ms > 0)
        set_int(c, "pool.checkout_timeout_ms", o.checkout_timeout_ms);
    ck_assert_int_eq(sr_config_add_shard(c, "shard0"), SR_OK);
    int nrep = o.replicas < 0 ? b->nsrv - 1 : o.replicas;
    for (int i = 0; i <= nrep; i++) {
        char *uri = xfmt("%s/shard0", b->srv[i].uri);
        ck_assert_msg(sr_config_add_node(c, "shard0", i == 0 ? SR_PRIMARY : SR_REPLICA, uri, 1) ==
                          SR_OK,
                      "%s", sr_config_errmsg(c));
        free(uri);
    }
    if (w)
        ck_assert_int_eq(sr_config_set_log_fn(c, lw_log, &w->lw), SR_OK);
    sr_router *r = NULL;
    int rc = sr_router_open(c, &r);
    ck_assert_msg(rc == SR_OK, "open: %s", sr_config_errmsg(c));
    sr_config_free(c);
    if (w)
        w->router = r;
    return r;
}

static sr_session *session(sr_router *r)
{
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    return s;
}

static sr_node_info node_info(const sr_router *r, int node)
{
    sr_node_info ni = SR_NODE_INFO_INIT;
    ck_assert_int_eq(sr_router_node_info(r, 0, node, &ni), SR_OK);
    return ni;
}

/* Index of the server listening on `port`, or MAXSRV when none. */
static int server_index(const backend *b, int port)
{
    for (int i = 0; i < b->nsrv; i++)
        if (b->srv[i].port == port)
            return i;
    return MAXSRV;
}

static void teardown_pg(void) { teardown_backend(&pg_backend); }
static void teardown_my(void) { teardown_backend(&my_backend); }

/* ------------------------------------------------------------------------ */
/* Reader threads: routed reads, every call measured                        */
/* ------------------------------------------------------------------------ */

typedef struct call_rec {
    double start, end;
    int rc;
} call_rec;

typedef struct run run;

typedef struct reader {
    pthread_t th;
    run *run;
    sr_session *s;
    int id;
    _Atomic long calls;
    _Atomic long served[MAXSRV + 1]; /* successful reads by answering server; [MAXSRV]: unknown */
    _Atomic long wrong_role;         /* answers whose role column does not match the server */
    double longest_ms;               /* read after join */
    char longest_what[400];          /* how the longest call ended */
    double longest_start;
    call_rec fails[MAXFAIL];
    int nfails;                      /* remembered */
    long failed;                     /* all */
    char first_error[400];
} reader;

struct run {
    const backend *b;
    sr_router *r;
    atomic_int stop;
    double hard_stop; /* absolute: readers stop by themselves then */
    int nreaders;
    reader readers[NTHREADS];
};

static void *reader_main(void *arg)
{
    reader *rd = arg;
    run *ru = rd->run;
    const backend *b = ru->b;
    for (long i = 0; !atomic_load(&ru->stop) && tp_now_ms() < ru->hard_stop; i++) {
        sr_result *res = NULL;
        double t0 = tp_now_ms();
        int rc = sr_exec(rd->s, sr_key_int((int64_t)rd->id * 1000000 + i), SR_READ, b->who_sql, 0,
                         NULL, &res);
        double t1 = tp_now_ms();
        atomic_fetch_add(&rd->calls, 1);
        if (t1 - t0 > rd->longest_ms) {
            rd->longest_ms = t1 - t0;
            rd->longest_start = t0;
            snprintf(rd->longest_what, sizeof rd->longest_what, "%s%s%s", sr_strerror(rc),
                     rc ? ": " : "", rc ? sr_session_errmsg(rd->s) : "");
        }
        if (rc == SR_OK) {
            const char *port = sr_result_value(res, 0, 0);
            const char *role = sr_result_value(res, 0, 1);
            int idx = server_index(b, port ? atoi(port) : 0);
            atomic_fetch_add(&rd->served[idx], 1);
            if (idx < MAXSRV && role && strcmp(role, idx == 0 ? "primary" : "replica") != 0)
                atomic_fetch_add(&rd->wrong_role, 1);
            sr_result_free(res);
        } else {
            if (rd->failed++ == 0)
                snprintf(rd->first_error, sizeof rd->first_error, "%s: %s", sr_strerror(rc),
                         sr_session_errmsg(rd->s));
            if (rd->nfails < MAXFAIL)
                rd->fails[rd->nfails++] = (call_rec){t0, t1, rc};
        }
        /* Continuous load, with a breath so that 4 threads do not starve a 2-core machine. */
        tp_sleep_ms(1);
    }
    return NULL;
}

static void readers_start(run *ru, const backend *b, sr_router *r, int n)
{
    memset(ru, 0, sizeof *ru);
    ru->b = b;
    ru->r = r;
    ru->nreaders = n;
    ru->hard_stop = tp_now_ms() + READERS_HARD_STOP_MS;
    atomic_init(&ru->stop, 0);
    for (int i = 0; i < n; i++) {
        reader *rd = &ru->readers[i];
        rd->run = ru;
        rd->id = i + 1;
        rd->s = session(r);
        ck_assert_int_eq(pthread_create(&rd->th, NULL, reader_main, rd), 0);
    }
}

static void readers_stop(run *ru)
{
    atomic_store(&ru->stop, 1);
    for (int i = 0; i < ru->nreaders; i++) {
        pthread_join(ru->readers[i].th, NULL);
        sr_session_free(ru->readers[i].s);
        ru->readers[i].s = NULL;
    }
}

static long served_by(run *ru, int idx)
{
    long n = 0;
    for (int i = 0; i < ru->nreaders; i++)
        n += atomic_load(&ru->readers[i].served[idx]);
    return n;
}

typedef struct totals {
    long calls, failed, wrong_role;
    double longest_ms;
    const char *longest_what;
    double longest_start;
    const char *first_error;
} totals;

static totals readers_totals(run *ru)
{
    totals t = {0, 0, 0, 0.0, "", 0.0, ""};
    for (int i = 0; i < ru->nreaders; i++) {
        reader *rd = &ru->readers[i];
        t.calls += atomic_load(&rd->calls);
        t.failed += rd->failed;
        t.wrong_role += atomic_load(&rd->wrong_role);
        if (rd->longest_ms > t.longest_ms) {
            t.longest_ms = rd->longest_ms;
            t.longest_what = rd->longest_what;
            t.longest_start = rd->longest_start;
        }
        if (rd->failed && !t.first_error[0])
            t.first_error = rd->first_error;
    }
    return t;
}

/* Failed calls that started before `t` (all remembered ones when t is 0). */
static long failed_started_before(run *ru, double t, int *other_status)
{
    long n = 0;
    for (int i = 0; i < ru->nreaders; i++) {
        reader *rd = &ru->readers[i];
        for (int k = 0; k < rd->nfails; k++) {
            if (t > 0 && rd->fails[k].start >= t)
                continue;
            n++;
            if (other_status && rd->fails[k].rc != SR_ETIMEOUT)
                *other_status = rd->fails[k].rc;
        }
    }
    return n;
}

/* Waits until every server has answered reads of this run (bounded); 1 when they have. */
static int wait_all_serving(run *ru, int first, int timeout_ms)
{
    for (double t0 = tp_now_ms(); tp_now_ms() - t0 < timeout_ms; tp_sleep_ms(10)) {
        int all = 1;
        for (int i = first; i < ru->b->nsrv; i++)
            if (served_by(ru, i) == 0)
                all = 0;
        if (all)
            return 1;
    }
    return 0;
}

/*
 * Scheduling lag: how late a thread of this process that sleeps 2 ms wakes,
 * at most, while a scenario runs (the readers' calls are late by as much).
 */
typedef struct lag_probe {
    pthread_t th;
    atomic_int stop;
    _Atomic double max_ms;
} lag_probe;

static void *lag_main(void *arg)
{
    lag_probe *lp = arg;
    double hard_stop = tp_now_ms() + READERS_HARD_STOP_MS;
    while (!atomic_load(&lp->stop) && tp_now_ms() < hard_stop) {
        double t0 = tp_now_ms();
        tp_sleep_ms(2);
        double late = tp_now_ms() - t0 - 2;
        if (late > atomic_load(&lp->max_ms))
            atomic_store(&lp->max_ms, late);
    }
    return NULL;
}

static void lag_start(lag_probe *lp)
{
    atomic_init(&lp->stop, 0);
    atomic_init(&lp->max_ms, 0.0);
    ck_assert_int_eq(pthread_create(&lp->th, NULL, lag_main, lp), 0);
}

/* Stops the probe; the allowance for scheduling (at most SCHED_ALLOWANCE_MAX_MS). */
static double lag_stop(lag_probe *lp, double *measured)
{
    atomic_store(&lp->stop, 1);
    pthread_join(lp->th, NULL);
    *measured = atomic_load(&lp->max_ms);
    return *measured < SCHED_ALLOWANCE_MAX_MS ? *measured : SCHED_ALLOWANCE_MAX_MS;
}

/* ------------------------------------------------------------------------ */
/* Scenario 1: SIGKILL one replica under load                               */
/* ------------------------------------------------------------------------ */

static void kill_one_replica(const backend *b)
{
    require_healthy(b);
    const int victim = 1;
    const server *sv = &b->srv[victim];
    lw_node w;
    lw_node_init(&w, sv->port, victim);
    sr_router *r = open_router(b, default_opts(), &w);
    run ru;
    readers_start(&ru, b, r, NTHREADS);
    ck_assert_msg(wait_all_serving(&ru, 1, 5000), "the replicas did not all serve reads");

    double t_fault = tp_now_ms();
    crash_server(sv);
    lw_node_counts c = lw_node_wait(&w, 1, 0, 5000);
    char tail[1400];
    ck_assert_msg(c.ejected, "%s was never ejected after SIGKILL%s", sv->name,
                  lw_node_tail(&w, tail, sizeof tail));
    sr_node_info down = node_info(r, victim);
    /* Down for a while: the probes fail and the back-off grows. */
    double left = OUTAGE_MS - (tp_now_ms() - t_fault);
    if (left > 0)
        tp_sleep_ms((int)left);
    int still_unhealthy = node_info(r, victim).healthy == 0;

    /*
     * The server is back somewhere between the start command's beginning and
     * its return (which polls for readiness), so the re-admission is timed
     * from its return; it may even come first.
     */
    double t_restart = tp_now_ms();
    restart_server(sv);
    double t_back = tp_now_ms();
    c = lw_node_wait(&w, 1, 1, RETRY_MAX_MS + CONNECT_TIMEOUT_MS + 5000);
    ck_assert_msg(c.readmitted, "%s was not re-admitted after its restart%s", sv->name,
                  lw_node_tail(&w, tail, sizeof tail));
    /* Serving again: its statement counter and the reads it answers both grow. */
    uint64_t stmts_at_readmit = node_info(r, victim).statements;
    long served_at_readmit = served_by(&ru, victim);
    int serving = 0;
    for (double t0 = tp_now_ms(); !serving && tp_now_ms() - t0 < 3000; tp_sleep_ms(10))
        serving = node_info(r, victim).statements > stmts_at_readmit &&
                  served_by(&ru, victim) > served_at_readmit;
    readers_stop(&ru);
    totals t = readers_totals(&ru);
    sr_node_info after = node_info(r, victim);
    c = lw_node_get(&w);

    double to_eject = c.t_ejected - t_fault, to_readmit = c.t_readmitted - t_back;
    printf("[faults] %s s1 SIGKILL %s: %ld reads by %d threads, %ld failed, longest %.0f ms; "
           "ejected %.0f ms after the kill after %d failed attempts (errors counter %llu, "
           "healthy %d), %d failed probes; restarted in %.0f ms, re-admitted %.0f ms after "
           "that (bound %d ms)\n",
           b->label, sv->name, t.calls, NTHREADS, t.failed, t.longest_ms, to_eject,
           c.failed_before_eject, (unsigned long long)c.errors_at_eject, c.healthy_at_eject,
           c.still_down, t_back - t_restart, to_readmit,
           RETRY_MAX_MS + CONNECT_TIMEOUT_MS + RECOVERY_SLACK_MS);
    fflush(stdout);

    ck_assert_msg(t.failed == 0, "%ld reads failed; the first: %s", t.failed, t.first_error);
    ck_assert_int_eq(t.wrong_role, 0);
    ck_assert_msg(c.ejected == 1, "%s ejected %d times during one outage", sv->name, c.ejected);
    /*
     * The kill fails every statement in flight on the node at once: besides
     * the fail_threshold failures that eject it, each other thread may have
     * one failure of its own logged (or counted) before the ejection line.
     * The exact count is checked single-threaded in scenario 5.
     */
    ck_assert_msg(c.failed_before_eject <= FAIL_THRESHOLD + NTHREADS - 1,
                  "%d failed attempts on %s before it was ejected (fail_threshold %d)",
                  c.failed_before_eject, sv->name, FAIL_THRESHOLD);
    ck_assert_msg(c.errors_at_eject <= FAIL_THRESHOLD + NTHREADS - 1,
                  "errors counter %llu when %s was ejected",
                  (unsigned long long)c.errors_at_eject, sv->name);
    ck_assert_int_eq(c.healthy_at_eject, 0);
    ck_assert_int_eq(down.healthy, 0);
    ck_assert_msg(still_unhealthy, "%s counted as healthy while it was down", sv->name);
    ck_assert_uint_ge(after.ejections, 1);
    ck_assert_int_eq(c.other_ejected, 0);
    ck_assert_msg(to_readmit <= RETRY_MAX_MS + CONNECT_TIMEOUT_MS + RECOVERY_SLACK_MS,
                  "re-admitted %.0f ms after the restart", to_readmit);
    ck_assert_msg(serving, "%s re-admitted but not serving reads again", sv->name);
    ck_assert_int_eq(after.healthy, 1);

    sr_router_close(r);
    lw_node_free(&w);
    restore_or_fail(b);
}

/* ------------------------------------------------------------------------ */
/* Scenario 2: SIGSTOP one replica (a hung server) under load               */
/* ------------------------------------------------------------------------ */

static void freeze_one_replica(const backend *b)
{
    require_healthy(b);
    const int victim = 1;
    const server *sv = &b->srv[victim];
    lw_node w;
    lw_node_init(&w, sv->port, victim);
    router_opts o = default_opts();
    o.statement_timeout_ms = FROZEN_STATEMENT_TIMEOUT_MS;
    sr_router *r = open_router(b, o, &w);
    run ru;
    readers_start(&ru, b, r, NTHREADS);
    lag_probe lp;
    lag_start(&lp);
    ck_assert_msg(wait_all_serving(&ru, 1, 5000), "the replicas did not all serve reads");

    double t_fault = tp_now_ms();
    freeze_server(sv);
    lw_node_counts c = lw_node_wait(&w, 1, 0, 5000);
    char tail[1400];
    ck_assert_msg(c.ejected, "%s was never ejected while frozen%s", sv->name,
                  lw_node_tail(&w, tail, sizeof tail));
    double left = OUTAGE_MS - (tp_now_ms() - t_fault);
    if (left > 0)
        tp_sleep_ms((int)left);
    int still_unhealthy = node_info(r, victim).healthy == 0;

    thaw(sv);
    double t_back = tp_now_ms();
    c = lw_node_wait(&w, 1, 1, RETRY_MAX_MS + FROZEN_STATEMENT_TIMEOUT_MS + 5000);
    ck_assert_msg(c.readmitted, "%s was not re-admitted after SIGCONT%s", sv->name,
                  lw_node_tail(&w, tail, sizeof tail));
    long served_at_readmit = served_by(&ru, victim);
    int serving = 0;
    for (double t0 = tp_now_ms(); !serving && tp_now_ms() - t0 < 3000; tp_sleep_ms(10))
        serving = served_by(&ru, victim) > served_at_readmit;
    readers_stop(&ru);
    double lag_ms = 0;
    const double bound = FROZEN_STATEMENT_TIMEOUT_MS + DEADLINE_SLACK_MS + lag_stop(&lp, &lag_ms);
    totals t = readers_totals(&ru);
    c = lw_node_get(&w);
    int other_status = SR_OK;
    long paid_before = failed_started_before(&ru, c.t_ejected, &other_status);
    failed_started_before(&ru, 0, &other_status);

    double to_eject = c.t_ejected - t_fault, to_readmit = c.t_readmitted - t_back;
    printf("[faults] %s s2 SIGSTOP %s (statement_timeout_ms %d): %ld reads by %d threads, "
           "%ld failed (%ld started before the ejection, bound %d; %d failed probes after), "
           "longest %.0f ms (bound %.0f = %d + slack %d + scheduling lag %.0f, measured %.0f; %s); "
           "%d other nodes ejected; ejected %.0f ms after the freeze; re-admitted %.0f ms "
           "after SIGCONT (bound %d ms)\n",
           b->label, sv->name, FROZEN_STATEMENT_TIMEOUT_MS, t.calls, NTHREADS, t.failed,
           paid_before, FAIL_THRESHOLD + NTHREADS, c.still_down, t.longest_ms, bound,
           FROZEN_STATEMENT_TIMEOUT_MS, DEADLINE_SLACK_MS, bound - FROZEN_STATEMENT_TIMEOUT_MS -
           DEADLINE_SLACK_MS, lag_ms, t.longest_what, c.other_ejected,
           to_eject, to_readmit,
           RETRY_MAX_MS + FROZEN_STATEMENT_TIMEOUT_MS + RECOVERY_SLACK_MS);
    fflush(stdout);

    /*
     * KNOWN LIBRARY ISSUE (fails as of this writing, both backends): a call
     * that has to open a connection to the frozen server waits
     * connect_timeout_ms (500 ms) whatever is left of the statement deadline:
     * sr__pool_checkout() -> open_new() -> driver->connect(args) is bounded by
     * connect_timeout_ms alone (lib/pool.c: "connect() has its own bound").
     * Then sr__read_acquire() (lib/read.c) leaves its candidate loop because
     * the deadline has passed and still falls back to the primary, which runs
     * the read with the expired deadline and fails it with SR_ETIMEOUT, a
     * transient failure charged to the primary (see the other_ejected check
     * below: three of them eject a healthy primary). The bound is the
     * statement deadline: the connect should get min(deadline, connect
     * timeout) and no node should be tried once the deadline has passed.
     */
    if (t.longest_ms > bound) {
        char trace[16000];
        fprintf(stderr, "[faults] %s s2: the longest call started %+.0f ms after the freeze "
                        "(SIGCONT at %+.0f ms); the router logged meanwhile:%s\n",
                b->label, t.longest_start - t_fault, t_back - t_fault,
                lw_node_lines(&w, t.longest_start, t.longest_start + t.longest_ms, t_fault, trace,
                            sizeof trace));
    }
    /*
     * The behaviour under test (no call outlives its deadline by more than
     * the slack), so the bound stays; only this process's measured
     * lack of CPU is added to it, capped.
     */
    ck_assert_msg(t.longest_ms <= bound,
                  "a call took %.0f ms with statement_timeout_ms = %d (bound %.0f, scheduling "
                  "lag %.0f ms; %s)", t.longest_ms, FROZEN_STATEMENT_TIMEOUT_MS, bound, lag_ms,
                  t.longest_what);
    ck_assert_msg(paid_before <= FAIL_THRESHOLD + NTHREADS,
                  "%ld calls paid the timeout before the ejection (bound %d)", paid_before,
                  FAIL_THRESHOLD + NTHREADS);
    ck_assert_msg(t.failed > 0, "no call noticed the frozen server");
    ck_assert_msg(other_status == SR_OK, "a frozen server failed a call with %s, not a timeout",
                  sr_strerror(other_status));
    ck_assert_int_eq(t.wrong_role, 0);
    ck_assert_msg(still_unhealthy, "%s counted as healthy while it was frozen", sv->name);
    /* A hung replica must cost no other node its health (the primary least of all). */
    ck_assert_msg(c.other_ejected == 0, "%d other nodes were ejected while %s was frozen",
                  c.other_ejected, sv->name);
    ck_assert_msg(to_readmit <= RETRY_MAX_MS + FROZEN_STATEMENT_TIMEOUT_MS + RECOVERY_SLACK_MS,
                  "re-admitted %.0f ms after SIGCONT", to_readmit);
    ck_assert_msg(serving, "%s re-admitted but not serving reads again", sv->name);

    sr_router_close(r);
    lw_node_free(&w);
    restore_or_fail(b);
}

/* ------------------------------------------------------------------------ */
/* Scenario 3: SIGKILL the primary                                          */
/* ------------------------------------------------------------------------ */

typedef struct writer {
    pthread_t th;
    sr_session *s;
    atomic_int *stop;
    double hard_stop;
    _Atomic long ok;
    _Atomic double recovered_at; /* the first success after a failure */
    _Atomic double last_ok_at;
    long calls, failed, bad_status;
    int first_bad;
    double longest_ms, longest_failed_ms;
    char first_error[400], first_bad_error[400];
} writer;

static const backend *writer_backend;

static void *writer_main(void *arg)
{
    writer *wr = arg;
    for (long i = 0; !atomic_load(wr->stop) && tp_now_ms() < wr->hard_stop; i++) {
        char v[32];
        snprintf(v, sizeof v, "%ld", i);
        const char *params[1] = {v};
        double t0 = tp_now_ms();
        int rc = sr_exec(wr->s, sr_key_int(i), SR_WRITE, writer_backend->insert_sql, 1, params,
                         NULL);
        double t1 = tp_now_ms();
        wr->calls++;
        if (t1 - t0 > wr->longest_ms)
            wr->longest_ms = t1 - t0;
        if (rc == SR_OK) {
            atomic_fetch_add(&wr->ok, 1);
            atomic_store(&wr->last_ok_at, t1);
            if (wr->failed > 0 && atomic_load(&wr->recovered_at) == 0)
                atomic_store(&wr->recovered_at, t1);
        } else {
            if (wr->failed++ == 0)
                snprintf(wr->first_error, sizeof wr->first_error, "%s: %s", sr_strerror(rc),
                         sr_session_errmsg(wr->s));
            if (t1 - t0 > wr->longest_failed_ms)
                wr->longest_failed_ms = t1 - t0;
            if (rc != SR_ECONNECT && rc != SR_EUNAVAILABLE && wr->bad_status++ == 0) {
                wr->first_bad = rc;
                snprintf(wr->first_bad_error, sizeof wr->first_bad_error, "%.0f ms after the "
                         "previous success: %s", t1 - atomic_load(&wr->last_ok_at),
                         sr_session_errmsg(wr->s));
            }
        }
        tp_sleep_ms(10);
    }
    return NULL;
}

static void kill_primary(const backend *b)
{
    require_healthy(b);
    const server *sv = &b->srv[0];
    lw_node w;
    lw_node_init(&w, sv->port, 0);
    sr_router *r = open_router(b, default_opts(), &w);
    sr_session *s = session(r);
    ck_assert_msg(sr_begin_shard(s, 0) == SR_OK, "%s", sr_session_errmsg(s));
    if (b->durable_sql)
        ck_assert_msg(sr_exec_shard(s, 0, SR_WRITE, b->durable_sql, 0, NULL, NULL) == SR_OK, "%s",
                      sr_session_errmsg(s));
    ck_assert_msg(sr_exec_shard(s, 0, SR_WRITE, b->create_sql, 0, NULL, NULL) == SR_OK, "%s",
                  sr_session_errmsg(s));
    ck_assert_msg(sr_commit(s) == SR_OK, "%s", sr_session_errmsg(s));
    sr_session_free(s);

    run ru;
    readers_start(&ru, b, r, 2);
    writer wr;
    memset(&wr, 0, sizeof wr);
    writer_backend = b;
    wr.s = session(r);
    wr.stop = &ru.stop;
    wr.hard_stop = ru.hard_stop;
    ck_assert_int_eq(pthread_create(&wr.th, NULL, writer_main, &wr), 0);
    int warm = 0;
    for (double t0 = tp_now_ms(); !warm && tp_now_ms() - t0 < 5000; tp_sleep_ms(10))
        warm = atomic_load(&wr.ok) > 0 && served_by(&ru, 1) > 0;
    ck_assert_msg(warm, "no write and read succeeded before the fault");

    long served_primary_before = served_by(&ru, 0);
    double t_fault = tp_now_ms();
    crash_server(sv);
    double left = OUTAGE_MS - (tp_now_ms() - t_fault);
    if (left > 0)
        tp_sleep_ms((int)left);
    double t_restart = tp_now_ms();
    restart_server(sv);
    double t_back = tp_now_ms();
    int again = 0;
    for (double t0 = tp_now_ms(); !again && tp_now_ms() - t0 < RETRY_MAX_MS + 5000; tp_sleep_ms(5))
        again = atomic_load(&wr.recovered_at) > 0;
    /* Timed from the start command's return, like re-admissions in scenario 1. */
    double to_write = again ? atomic_load(&wr.recovered_at) - t_back : -1.0;
    readers_stop(&ru);
    pthread_join(wr.th, NULL);
    sr_session_free(wr.s);
    totals t = readers_totals(&ru);
    lw_node_counts c = lw_node_get(&w);

    printf("[faults] %s s3 SIGKILL primary: %ld writes, %ld failed (longest failed %.0f ms, "
           "bound %d), longest write %.0f ms; ejected %.0f ms after the kill; "
           "%ld reads by 2 threads, %ld failed, longest %.0f ms; restarted in %.0f ms, "
           "first write that succeeded %.0f ms after that (bound %d ms)\n",
           b->label, wr.calls, wr.failed, wr.longest_failed_ms,
           CONNECT_TIMEOUT_MS + DEADLINE_SLACK_MS, wr.longest_ms,
           c.ejected ? c.t_ejected - t_fault : -1.0, t.calls, t.failed, t.longest_ms,
           t_back - t_restart, to_write,
           RETRY_MAX_MS + CONNECT_TIMEOUT_MS + RECOVERY_SLACK_MS);
    fflush(stdout);

    ck_assert_msg(wr.failed > 0, "no write noticed the primary was down");
    ck_assert_msg(wr.bad_status == 0, "%ld writes failed with another status than "
                  "SR_ECONNECT / SR_EUNAVAILABLE, the first %s (%s)", wr.bad_status,
                  sr_strerror(wr.first_bad), wr.first_bad_error);
    ck_assert_msg(wr.longest_failed_ms <= CONNECT_TIMEOUT_MS + DEADLINE_SLACK_MS,
                  "a write to the dead primary took %.0f ms", wr.longest_failed_ms);
    ck_assert_msg(t.failed == 0, "%ld reads failed while the primary was down; the first: %s",
                  t.failed, t.first_error);
    /* Reads stayed on the replicas (the primary is a fallback only). */
    ck_assert_int_eq(served_by(&ru, 0), served_primary_before);
    ck_assert_int_eq(t.wrong_role, 0);
    ck_assert_msg(again, "no write succeeded after the primary was restarted (%s)",
                  wr.first_error);
    ck_assert_msg(to_write <= RETRY_MAX_MS + CONNECT_TIMEOUT_MS + RECOVERY_SLACK_MS,
                  "writes came back %.0f ms after the restart", to_write);

    sr_router_close(r);
    lw_node_free(&w);
    restore_or_fail(b);
}

/* ------------------------------------------------------------------------ */
/* Scenario 4: pool exhaustion                                              */
/* ------------------------------------------------------------------------ */

#define TXN_THREADS 8
#define TXN_ROUNDS 6

typedef struct txn_worker {
    pthread_t th;
    sr_session *s;
    int id;
    atomic_int *finished;
    long committed, busy, other;
    int first_other;
    double busy_min_ms, busy_max_ms;
    char first_error[400];
} txn_worker;

static void *txn_main(void *arg)
{
    txn_worker *tw = arg;
    tw->busy_min_ms = 1e9;
    double hard_stop = tp_now_ms() + 15000;
    for (int i = 0; i < TXN_ROUNDS && tp_now_ms() < hard_stop; i++) {
        double t0 = tp_now_ms();
        int rc = sr_begin(tw->s, sr_key_int(tw->id));
        double took = tp_now_ms() - t0;
        if (rc == SR_EBUSY) {
            tw->busy++;
            if (took < tw->busy_min_ms)
                tw->busy_min_ms = took;
            if (took > tw->busy_max_ms)
                tw->busy_max_ms = took;
            continue;
        }
        if (rc == SR_OK)
            rc = sr_exec(tw->s, sr_key_int(tw->id), SR_AUTO, "SELECT 1", 0, NULL, NULL);
        if (rc == SR_OK) {
            tp_sleep_ms(HOLD_MS);
            rc = sr_commit(tw->s);
        }
        if (rc == SR_OK) {
            tw->committed++;
        } else {
            if (tw->other++ == 0) {
                tw->first_other = rc;
                snprintf(tw->first_error, sizeof tw->first_error, "%s",
                         sr_session_errmsg(tw->s));
            }
            if (sr_in_transaction(tw->s))
                sr_rollback(tw->s);
        }
    }
    atomic_fetch_add(tw->finished, 1);
    return NULL;
}

static void exhaust_pool(const backend *b)
{
    require_healthy(b);
    lw_node w;
    lw_node_init(&w, b->srv[0].port, 0);
    router_opts o = default_opts();
    o.pool_max_size = 2;
    o.checkout_timeout_ms = CHECKOUT_TIMEOUT_MS;
    sr_router *r = open_router(b, o, &w);
    atomic_int finished;
    atomic_init(&finished, 0);
    txn_worker tw[TXN_THREADS];
    memset(tw, 0, sizeof tw);
    double t_start = tp_now_ms();
    for (int i = 0; i < TXN_THREADS; i++) {
        tw[i].s = session(r);
        tw[i].id = i + 1;
        tw[i].finished = &finished;
        ck_assert_int_eq(pthread_create(&tw[i].th, NULL, txn_main, &tw[i]), 0);
    }
    /* No deadlock: every thread finishes, well within its own 15 s bound. */
    int done = 0;
    for (double t0 = tp_now_ms(); (done = atomic_load(&finished)) < TXN_THREADS &&
                               tp_now_ms() - t0 < 20000;
         tp_sleep_ms(10)) {
    }
    ck_assert_msg(done == TXN_THREADS, "%d of %d threads finished in 20 s: deadlock?", done,
                  TXN_THREADS);
    double took = tp_now_ms() - t_start;
    long committed = 0, busy = 0, other = 0;
    double busy_min = 1e9, busy_max = 0;
    const char *err = "";
    int first_other = SR_OK;
    for (int i = 0; i < TXN_THREADS; i++) {
        pthread_join(tw[i].th, NULL);
        sr_session_free(tw[i].s);
        committed += tw[i].committed;
        busy += tw[i].busy;
        if (tw[i].other && !other) {
            err = tw[i].first_error;
            first_other = tw[i].first_other;
        }
        other += tw[i].other;
        if (tw[i].busy && tw[i].busy_min_ms < busy_min)
            busy_min = tw[i].busy_min_ms;
        if (tw[i].busy_max_ms > busy_max)
            busy_max = tw[i].busy_max_ms;
    }
    sr_node_info p = node_info(r, 0);
    lw_node_counts c = lw_node_get(&w);
    printf("[faults] %s s4 pool.max_size 2, %d threads x %d transactions held %d ms: "
           "%ld committed, %ld SR_EBUSY (waited %.0f..%.0f ms, checkout_timeout_ms %d), "
           "%ld other failures; all threads done in %.0f ms; %llu connections open\n",
           b->label, TXN_THREADS, TXN_ROUNDS, HOLD_MS, committed, busy,
           busy ? busy_min : 0.0, busy_max, CHECKOUT_TIMEOUT_MS, other, took,
           (unsigned long long)p.connections);
    fflush(stdout);

    ck_assert_msg(other == 0, "%ld transactions failed otherwise than SR_EBUSY, the first %s: %s",
                  other, sr_strerror(first_other), err);
    ck_assert_msg(busy > 0, "no SR_EBUSY from a pool of 2 shared by %d threads", TXN_THREADS);
    ck_assert_msg(committed > 0, "no transaction committed");
    ck_assert_int_eq(committed + busy, TXN_THREADS * TXN_ROUNDS);
    /* SR_EBUSY comes after the checkout timeout, not before, and not much later. */
    ck_assert_msg(busy_min >= CHECKOUT_TIMEOUT_MS - 5, "SR_EBUSY after %.0f ms", busy_min);
    ck_assert_msg(busy_max <= CHECKOUT_TIMEOUT_MS + DEADLINE_SLACK_MS, "SR_EBUSY after %.0f ms",
                  busy_max);
    ck_assert_uint_le(p.connections, 2);
    /* A full pool says nothing about the node. */
    ck_assert_int_eq(p.healthy, 1);
    ck_assert_int_eq(c.ejected + c.other_ejected, 0);
    sr_router_close(r);
    lw_node_free(&w);
}

/* ------------------------------------------------------------------------ */
/* Scenario 5: every replica down                                           */
/* ------------------------------------------------------------------------ */

static int replicas_ejected(const sr_router *r, const backend *b)
{
    for (int i = 1; i < b->nsrv; i++)
        if (node_info(r, i).healthy)
            return 0;
    return 1;
}

static void all_replicas_down(const backend *b)
{
    require_healthy(b);
    sr_router *fb = open_router(b, default_opts(), NULL);
    router_opts o = default_opts();
    o.primary_reads = "never";
    /* No probe during the check: each read must meet the ejected replicas. */
    o.retry_ms = o.retry_max_ms = 60000;
    sr_router *nv = open_router(b, o, NULL);
    sr_session *sfb = session(fb), *snv = session(nv);
    /* Both routers have live connections to the replicas before they die. */
    for (int i = 0; i < 2 * b->nsrv; i++) {
        ck_assert_msg(sr_exec(sfb, sr_key_int(i), SR_READ, b->who_sql, 0, NULL, NULL) == SR_OK,
                      "%s", sr_session_errmsg(sfb));
        ck_assert_msg(sr_exec(snv, sr_key_int(i), SR_READ, b->who_sql, 0, NULL, NULL) == SR_OK,
                      "%s", sr_session_errmsg(snv));
    }
    for (int i = 1; i < b->nsrv; i++)
        crash_server(&b->srv[i]);

    /* fallback: failures only until every replica is ejected, then the primary answers. */
    long fb_failed_first = 0, fb_calls = 0, fb_failed_after = 0, fb_primary = 0, fb_other = 0;
    char first_after[400] = "";
    double t0 = tp_now_ms(), t_ejected = 0;
    while (tp_now_ms() - t0 < 5000 && !replicas_ejected(fb, b)) {
        if (sr_exec(sfb, sr_key_int(fb_calls++), SR_READ, b->who_sql, 0, NULL, NULL) != SR_OK)
            fb_failed_first++;
        tp_sleep_ms(1);
    }
    int fb_ejected = replicas_ejected(fb, b);
    t_ejected = tp_now_ms();
    /* Long enough for the ejected replicas to be probed a few times (and fail). */
    while (fb_ejected && tp_now_ms() - t_ejected < 1500) {
        sr_result *res = NULL;
        int rc = sr_exec(sfb, sr_key_int(fb_calls++), SR_READ, b->who_sql, 0, NULL, &res);
        if (rc == SR_OK) {
            const char *port = sr_result_value(res, 0, 0);
            const char *role = sr_result_value(res, 0, 1);
            if (port && atoi(port) == b->srv[0].port && role && strcmp(role, "primary") == 0)
                fb_primary++;
            else
                fb_other++;
            sr_result_free(res);
        } else if (fb_failed_after++ == 0) {
            snprintf(first_after, sizeof first_after, "%s: %s", sr_strerror(rc),
                     sr_session_errmsg(sfb));
        }
        tp_sleep_ms(2);
    }

    /* never: connection errors until every replica is ejected, then SR_EUNAVAILABLE. */
    long nv_failed_first = 0, nv_calls = 0, nv_ok = 0, nv_unavailable = 0, nv_named = 0;
    char nv_msg[600] = "";
    double t1 = tp_now_ms();
    while (tp_now_ms() - t1 < 5000 && !replicas_ejected(nv, b)) {
        int rc = sr_exec(snv, sr_key_int(nv_calls++), SR_READ, b->who_sql, 0, NULL, NULL);
        if (rc == SR_OK)
            nv_ok++;
        else
            nv_failed_first++;
        tp_sleep_ms(1);
    }
    int nv_ejected = replicas_ejected(nv, b);
    for (int i = 0; nv_ejected && i < 5; i++) {
        int rc = sr_exec(snv, sr_key_int(nv_calls++), SR_READ, b->who_sql, 0, NULL, NULL);
        if (rc == SR_OK)
            nv_ok++;
        if (rc == SR_EUNAVAILABLE)
            nv_unavailable++;
        snprintf(nv_msg, sizeof nv_msg, "%s", sr_session_errmsg(snv));
        if (strstr(nv_msg, "shard0"))
            nv_named++;
    }
    /* Writes are not affected by replicas being down. */
    ck_assert_msg(sr_exec(snv, sr_key_int(1), SR_WRITE, "SELECT 1", 0, NULL, NULL) == SR_OK, "%s",
                  sr_session_errmsg(snv));

    printf("[faults] %s s5 every replica down: primary_reads=fallback: %ld reads, %ld failed "
           "before every replica was ejected (bound %d), then %ld answered by the primary, "
           "%ld by another server, %ld failed; primary_reads=never: %ld failed before the "
           "ejection, then %ld of 5 SR_EUNAVAILABLE: %s\n",
           b->label, fb_calls, fb_failed_first, FAIL_THRESHOLD, fb_primary, fb_other,
           fb_failed_after, nv_failed_first, nv_unavailable, nv_msg);
    fflush(stdout);

    ck_assert_msg(fb_ejected, "fallback router: the replicas were not all ejected in 5 s");
    ck_assert_msg(fb_failed_first <= FAIL_THRESHOLD, "%ld reads failed before the ejection",
                  fb_failed_first);
    /*
     * The replicas' probes fall due while these reads run (often together,
     * as they were ejected together); a failed probe must fall through to the
     * primary, not fail the read.
     */
    ck_assert_msg(fb_failed_after == 0,
                  "%ld reads failed with the primary up and primary_reads = fallback; the "
                  "first: %s",
                  fb_failed_after, first_after);
    ck_assert_msg(fb_primary > 0 && fb_other == 0, "%ld reads by the primary, %ld by others",
                  fb_primary, fb_other);
    ck_assert_msg(nv_ejected, "never router: the replicas were not all ejected in 5 s");
    /* Each of those reads failed once on every replica: ejection at exactly the threshold. */
    ck_assert_int_eq(nv_failed_first, FAIL_THRESHOLD);
    ck_assert_int_eq(nv_ok, 0);
    ck_assert_msg(nv_unavailable == 5, "%ld of 5 reads were SR_EUNAVAILABLE; last: %s",
                  nv_unavailable, nv_msg);
    ck_assert_msg(nv_named == 5, "SR_EUNAVAILABLE does not name the shard: %s", nv_msg);

    sr_session_free(sfb);
    sr_session_free(snv);
    sr_router_close(fb);
    sr_router_close(nv);
    restore_or_fail(b);
}

/* ------------------------------------------------------------------------ */
/* Suite                                                                    */
/* ------------------------------------------------------------------------ */

START_TEST(pg_sigkill_replica) { kill_one_replica(&pg_backend); }
END_TEST
START_TEST(pg_sigstop_replica) { freeze_one_replica(&pg_backend); }
END_TEST
START_TEST(pg_sigkill_primary) { kill_primary(&pg_backend); }
END_TEST
START_TEST(pg_pool_exhaustion) { exhaust_pool(&pg_backend); }
END_TEST
START_TEST(pg_every_replica_down) { all_replicas_down(&pg_backend); }
END_TEST
START_TEST(my_sigkill_replica) { kill_one_replica(&my_backend); }
END_TEST
START_TEST(my_sigstop_replica) { freeze_one_replica(&my_backend); }
END_TEST
START_TEST(my_sigkill_primary) { kill_primary(&my_backend); }
END_TEST
START_TEST(my_pool_exhaustion) { exhaust_pool(&my_backend); }
END_TEST
START_TEST(my_every_replica_down) { all_replicas_down(&my_backend); }
END_TEST

/* One tcase per scenario, so each gets the restoring teardown (in the parent). */
static void add_case(Suite *s, const char *name, const TTest *test, void (*teardown)(void))
{
    TCase *t = tcase_create(name);
    tcase_add_unchecked_fixture(t, NULL, teardown);
    tcase_add_test(t, test);
    tcase_set_timeout(t, 90); /* every wait inside is shorter: a hang fails, never stalls */
    suite_add_tcase(s, t);
}

static Suite *faults_suite(void)
{
    Suite *s = suite_create("faults");
    if (have_pg) {
        add_case(s, "pg_sigkill_replica", pg_sigkill_replica, teardown_pg);
        add_case(s, "pg_sigstop_replica", pg_sigstop_replica, teardown_pg);
        add_case(s, "pg_sigkill_primary", pg_sigkill_primary, teardown_pg);
        add_case(s, "pg_pool_exhaustion", pg_pool_exhaustion, teardown_pg);
        add_case(s, "pg_every_replica_down", pg_every_replica_down, teardown_pg);
    }
    if (have_my) {
        add_case(s, "my_sigkill_replica", my_sigkill_replica, teardown_my);
        add_case(s, "my_sigstop_replica", my_sigstop_replica, teardown_my);
        add_case(s, "my_sigkill_primary", my_sigkill_primary, teardown_my);
        add_case(s, "my_pool_exhaustion", my_pool_exhaustion, teardown_my);
        add_case(s, "my_every_replica_down", my_every_replica_down, teardown_my);
    }
    return s;
}

int main(void)
{
    have_pg = cluster_load_pg(&pg_backend);
    have_my = cluster_load_my(&my_backend);
    int ci = getenv("CI") != NULL;
    if (!have_pg)
        fprintf(stderr, "test_faults: no PostgreSQL cluster in the environment (run under "
                        "tests/env/pg_cluster.sh run)\n");
    if (!have_my)
        fprintf(stderr, "test_faults: no MariaDB cluster in the environment (run under "
                        "tests/env/mariadb_cluster.sh run)\n");
    if (!have_pg && !have_my)
        return ci ? 1 : 77;
    /* Whatever a forked test froze is continued when it exits, failed assertion or not. */
    atexit(thaw_frozen);
    /* Reads print figures while the servers are being killed: keep the lines whole. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    int failed = run_suite(faults_suite());
    if (ci && (!have_pg || !have_my))
        failed++;
    return failed == 0 ? 0 : 1;
}
