/*
 * Failover discovery on real servers (issue 15), each scenario on a cluster
 * of its own (tests/meson.build wraps each run in a fresh
 * tests/env/pg_cluster.sh or mariadb_cluster.sh: the shared clusters of the
 * other suites are never touched). CK_RUN_CASE picks the scenario:
 *
 *  - pg_async: PostgreSQL primary + 2 streaming replicas, asynchronous. A
 *    writer thread inserts numbered rows (autocommit), a reader thread reads
 *    throughout; the primary is SIGKILLed with all its processes and the
 *    replica that received the most WAL is promoted (pg_ctl promote). Writes
 *    must succeed on the new primary within health.probe_interval_ms + 1 s
 *    of the promotion; no write is sent twice (the ids are a primary key: a
 *    re-sent write would fail as a duplicate); acknowledged writes missing on
 *    the new primary are counted and printed (asynchronous replication's
 *    window).
 *  - pg_sync: the same with synchronous_standby_names naming the replica
 *    that is then promoted: 0 acknowledged writes lost (asserted).
 *  - mariadb: a planned switchover of the MariaDB primary and its GTID
 *    replica (old primary read_only = 1, replica catches up, STOP SLAVE,
 *    read_only = 0): writes move within the bound, none lost; the old primary,
 *    made a replica of the new one, serves reads; a forced split brain (both
 *    writable) refuses the shard's writes with a message naming both, until
 *    one steps down; and a router with failover.discovery = off does not
 *    follow.
 *
 * Every wait is bounded; the figures are printed on stdout.
 */
#include <check.h>
#include <libpq-fe.h>
#include <mysql.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shardroute.h>

#include "cluster.h"
#include "my_direct.h"
#include "pg_direct.h"
#include "proc.h"
#include "testutil.h"

#define PROBE_MS 100
#define BOUND_MS (PROBE_MS + 1000) /* writes resume within the probe interval + 1 s */
#define MAX_IDS 200000

/* ---- the workload: a writer and a reader on one router ---- */

typedef struct workload {
    sr_router *r;
    const char *insert_sql; /* one parameter: the id */
    const char *read_sql;
    _Atomic int stop;
    /* Writer. */
    unsigned char *acked; /* acked[id] = 1: the router returned SR_OK for id */
    _Atomic long next_id;
    _Atomic long writes_ok, writes_failed, duplicates;
    _Atomic long long last_ok_ms; /* mono_ms() of the last successful write, as an integer */
    _Atomic long long slowest_failure_ms; /* the longest a failed write took */
    /* Reader. */
    _Atomic long reads_ok, reads_failed;
    char first_read_error[512];
    pthread_mutex_t lock;
} workload;

static void *writer(void *arg)
{
    workload *w = arg;
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(w->r, &s), SR_OK);
    while (!atomic_load(&w->stop)) {
        long id = atomic_fetch_add(&w->next_id, 1);
        if (id >= MAX_IDS)
            break;
        char idtext[32];
        snprintf(idtext, sizeof idtext, "%ld", id);
        const char *params[] = {idtext};
        double t0 = mono_ms();
        int rc = sr_exec(s, sr_key_int(1), SR_WRITE, w->insert_sql, 1, params, NULL);
        long long took = (long long)(mono_ms() - t0);
        if (rc != SR_OK && took > atomic_load(&w->slowest_failure_ms))
            atomic_store(&w->slowest_failure_ms, took); /* one writer: no race */
        if (rc == SR_OK) {
            w->acked[id] = 1;
            atomic_fetch_add(&w->writes_ok, 1);
            atomic_store(&w->last_ok_ms, (long long)mono_ms());
        } else {
            atomic_fetch_add(&w->writes_failed, 1);
            const char *m = sr_session_errmsg(s);
            if (strstr(m, "duplicate") || strstr(m, "Duplicate"))
                atomic_fetch_add(&w->duplicates, 1);
            usleep(2000);
        }
    }
    sr_session_free(s);
    return NULL;
}

static void *reader(void *arg)
{
    workload *w = arg;
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(w->r, &s), SR_OK);
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    while (!atomic_load(&w->stop)) {
        sr_result *res = NULL;
        int rc = sr_exec(s, sr_key_int(1), SR_READ, w->read_sql, 0, NULL, &res);
        sr_result_free(res);
        if (rc == SR_OK) {
            atomic_fetch_add(&w->reads_ok, 1);
        } else {
            pthread_mutex_lock(&w->lock);
            if (!w->first_read_error[0])
                snprintf(w->first_read_error, sizeof w->first_read_error, "%s: %s",
                         sr_strerror(rc), sr_session_errmsg(s));
            pthread_mutex_unlock(&w->lock);
            atomic_fetch_add(&w->reads_failed, 1);
        }
        usleep(2000);
    }
    sr_session_free(s);
    return NULL;
}

static void workload_start(workload *w, pthread_t th[2])
{
    w->acked = calloc(MAX_IDS, 1);
    ck_assert_ptr_nonnull(w->acked);
    atomic_store(&w->next_id, 1);
    pthread_mutex_init(&w->lock, NULL);
    ck_assert_int_eq(pthread_create(&th[0], NULL, writer, w), 0);
    ck_assert_int_eq(pthread_create(&th[1], NULL, reader, w), 0);
}

static void workload_stop(workload *w, pthread_t th[2])
{
    atomic_store(&w->stop, 1);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
}

/* Waits (at most `bound_ms` + 5 s) for a write acknowledged after `since`; its delay. */
static double first_write_after(workload *w, double since, int bound_ms)
{
    double limit = since + bound_ms + 5000;
    while (mono_ms() < limit) {
        if ((double)atomic_load(&w->last_ok_ms) > since)
            return (double)atomic_load(&w->last_ok_ms) - since;
        usleep(1000);
    }
    return -1;
}

static sr_router *open_router(const char *const *uris, int n, const char *discovery)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    char probe[16];
    snprintf(probe, sizeof probe, "%d", PROBE_MS);
    const char *opts[] = {"health.probe_interval_ms", probe, "health.retry_ms", "50",
                          "health.retry_max_ms", "200", "connect_timeout_ms", "500",
                          "statement_timeout_ms", "2000", "consistency.wait_ms", "0",
                          "failover.discovery", discovery, "balance.policy", "round_robin"};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i += 2)
        ck_assert_msg(sr_config_set(c, opts[i], opts[i + 1]) == SR_OK, "%s", sr_config_errmsg(c));
    ck_assert_int_eq(sr_config_add_shard(c, "s"), SR_OK);
    for (int i = 0; i < n; i++)
        ck_assert_msg(sr_config_add_node(c, "s", i == 0 ? SR_PRIMARY : SR_REPLICA, uris[i], 1) ==
                          SR_OK,
                      "%s", sr_config_errmsg(c));
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

/* The configured primary of the current version (its redacted URI). */
static const char *primary_uri(sr_router *r)
{
    sr_node_info info = SR_NODE_INFO_INIT;
    ck_assert_int_eq(sr_router_node_info(r, 0, 0, &info), SR_OK);
    return info.uri;
}

/* ---- PostgreSQL: SIGKILL the primary, promote a replica ---- */

static long pg_long(PGconn *c, const char *sql)
{
    char *v = direct_value(c, sql);
    long n = v ? atol(v) : -1;
    free(v);
    return n;
}

static void pg_failover(int sync)
{
    backend b;
    memset(&b, 0, sizeof b);
    ck_assert_msg(cluster_load_pg(&b), "run under tests/env/pg_cluster.sh run");
    const char *bin = getenv("SR_PG_BIN");
    ck_assert_ptr_nonnull(bin);
    PGconn *p = direct(b.srv[0].uri, "shard0");
    direct_exec(p, "CREATE TABLE fo (id bigint PRIMARY KEY)");
    if (sync) {
        /* pg_cluster.sh names each node's cluster_name after it, and a standby's walreceiver
         * uses cluster_name as its application_name. */
        direct_exec(p, "ALTER SYSTEM SET synchronous_standby_names = 'replica1'");
        direct_exec(p, "SELECT pg_reload_conf()");
        int synced = 0;
        for (int i = 0; i < 500 && !synced; i++) {
            synced = pg_long(p, "SELECT count(*) FROM pg_stat_replication WHERE "
                                "application_name = 'replica1' AND sync_state = 'sync'") == 1;
            if (!synced)
                usleep(10000);
        }
        ck_assert_msg(synced, "replica1 never became the synchronous standby");
    }
    PQfinish(p);

    char u[3][600];
    for (int i = 0; i < 3; i++)
        snprintf(u[i], sizeof u[i], "%s/shard0", b.srv[i].uri);
    const char *uris[] = {u[0], u[1], u[2]};
    workload w = {.insert_sql = "INSERT INTO fo (id) VALUES (?)",
                  .read_sql = "SELECT count(*) FROM fo"};
    w.r = open_router(uris, 3, "on");
    const char *before = primary_uri(w.r);
    pthread_t th[2];
    workload_start(&w, th);
    usleep(800 * 1000); /* the workload runs on the healthy cluster first */
    long reads_before = atomic_load(&w.reads_ok);
    ck_assert_int_gt(atomic_load(&w.writes_ok), 10);

    /* The replicas fall behind (the primary's WAL senders frozen for 300 ms: freezing the
     * receivers would not do, the kernel would keep taking the WAL into their sockets)
     * while the writes go on, and the primary dies then, its senders with it:
     * asynchronous replication loses what they had not sent; synchronous replication
     * acknowledges nothing its standby has not received. */
    PGconn *pc = direct(b.srv[0].uri, "shard0");
    PGresult *senders = PQexec(pc, "SELECT pid FROM pg_stat_replication");
    ck_assert_int_eq(PQresultStatus(senders), PGRES_TUPLES_OK);
    ck_assert_int_eq(PQntuples(senders), 2);
    long acked_before_freeze = atomic_load(&w.writes_ok);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(kill((pid_t)atol(PQgetvalue(senders, i, 0)), SIGSTOP), 0);
    PQclear(senders);
    PQfinish(pc);
    usleep(300 * 1000);
    long acked_while_frozen = atomic_load(&w.writes_ok) - acked_before_freeze;
    double killed = mono_ms();
    crash_server(&b.srv[0]); /* SIGKILL ends the stopped senders too */
    /* The replica that received the most WAL, as an operator (or a tool) would choose;
     * the synchronous one when there is one. */
    int pick = 1;
    if (!sync) {
        PGconn *r1 = direct(b.srv[1].uri, "shard0"), *r2 = direct(b.srv[2].uri, "shard0");
        char *l1 = direct_value(r1, "SELECT pg_last_wal_receive_lsn()");
        char *cmp = xfmt("SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '%s') > 0", l1);
        char *ahead = direct_value(r2, cmp);
        pick = ahead && strcmp(ahead, "t") == 0 ? 2 : 1;
        free(l1), free(cmp), free(ahead);
        PQfinish(r1), PQfinish(r2);
    }
    char *data = strdup(b.srv[pick].marker);
    char *cmd = xfmt("%s %s/pg_ctl promote -D '%s' -w -t 30 >/dev/null",
                     geteuid() == 0 ? "runuser -u postgres --" : "", bin, data);
    char why[512] = "";
    /* From the moment the promotion is asked for: the prober may see the new primary
     * before pg_ctl, which polls, says it is done. */
    double promoting = mono_ms();
    ck_assert_msg(tp_run_command(cmd, 35000, why, sizeof why) == 0, "%s: %s", cmd, why);
    double promoted = mono_ms();
    double gap = first_write_after(&w, promoting, BOUND_MS);
    usleep(500 * 1000); /* and writes go on there */
    workload_stop(&w, th);
    long reads_during = atomic_load(&w.reads_ok) - reads_before;

    /* What the new primary has of the acknowledged writes. */
    PGconn *np = direct(b.srv[pick].uri, "shard0");
    PGresult *res = PQexec(np, "SELECT id FROM fo");
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    unsigned char *have = calloc(MAX_IDS, 1);
    for (int i = 0; i < PQntuples(res); i++) {
        long id = atol(PQgetvalue(res, i, 0));
        if (id > 0 && id < MAX_IDS)
            have[id] = 1;
    }
    PQclear(res);
    PQfinish(np);
    long acked = 0, lost = 0;
    for (long id = 1; id < MAX_IDS; id++) {
        acked += w.acked[id];
        lost += w.acked[id] && !have[id];
    }
    printf("postgres %s failover to %s: pg_ctl promote asked %.0f ms after the kill, done "
           "%.0f ms later; first write on the new primary %.0f ms after it was asked (bound %d "
           "ms); writes: %ld acknowledged, "
           "%ld failed (the slowest in %lld ms), %ld duplicates, %ld acknowledged writes lost; "
           "reads: %ld succeeded "
           "between the kill and the end, %ld failed (first: %s); %ld writes acknowledged while "
           "the primary's WAL senders were frozen (300 ms before the kill)\n",
           sync ? "synchronous" : "asynchronous", b.srv[pick].name, promoting - killed,
           promoted - promoting, gap, BOUND_MS, acked, atomic_load(&w.writes_failed),
           atomic_load(&w.slowest_failure_ms), atomic_load(&w.duplicates), lost,
           reads_during, atomic_load(&w.reads_failed),
           w.first_read_error[0] ? w.first_read_error : "none", acked_while_frozen);
    fflush(stdout);

    ck_assert_msg(gap >= 0 && gap <= BOUND_MS, "writes resumed %.0f ms after the promotion", gap);
    char new_port[16];
    snprintf(new_port, sizeof new_port, ":%d/", b.srv[pick].port);
    ck_assert_str_ne(primary_uri(w.r), before);
    ck_assert_msg(strstr(primary_uri(w.r), new_port) != NULL, "primary now %s",
                  primary_uri(w.r));
    ck_assert_int_eq(atomic_load(&w.duplicates), 0); /* no write was sent twice */
    /* A write that finds no primary fails fast: within the connect timeout, not the
     * statement timeout (2 s), with slack for a loaded machine. */
    ck_assert_int_le(atomic_load(&w.slowest_failure_ms), 1000);
    ck_assert_int_gt(reads_during, 0);
    ck_assert_int_eq(atomic_load(&w.reads_failed), 0); /* the replicas served throughout */
    if (sync) {
        ck_assert_int_eq(lost, 0);
    } else {
        /* The check can fail the other way too: asynchronous commits acknowledged while
         * nothing replicated are gone. */
        ck_assert_int_gt(acked_while_frozen, 0);
        ck_assert_int_gt(lost, 0);
    }
    /* The failover is counted. */
    static char text[1 << 16];
    ck_assert_int_lt(sr_router_metrics_text(w.r, text, sizeof text), (int)sizeof text);
    ck_assert_ptr_nonnull(strstr(text, "shardroute_failovers_total{shard=\"s\"} 1"));
    sr_router_close(w.r);
    free(have), free(w.acked), free(data), free(cmd);
}

START_TEST(pg_async_kill_and_promote)
{
    pg_failover(0);
}
END_TEST

START_TEST(pg_sync_kill_and_promote_loses_nothing)
{
    pg_failover(1);
}
END_TEST

/* ---- MariaDB: a switchover, the old primary back as a replica, a split brain ---- */

static void wait_caught_up(MYSQL *primary, MYSQL *replica)
{
    char *want = my_direct_value(primary, "SELECT @@GLOBAL.gtid_binlog_pos");
    char *sql = xfmt("SELECT MASTER_GTID_WAIT('%s', 10)", want ? want : "");
    ck_assert_int_eq(my_direct_long(replica, sql), 0);
    free(want), free(sql);
}

/* Writes until one fails with SR_EUNAVAILABLE (at most 3 s); its message, or "". */
static void write_until_refused(sr_session *s, char *msg, size_t cap)
{
    msg[0] = '\0';
    for (double end = mono_ms() + 3000; mono_ms() < end;) {
        const char *params[] = {"-1"};
        int rc = sr_exec(s, sr_key_int(1), SR_WRITE, "UPDATE fo SET id = id WHERE id = ?", 1,
                         params, NULL);
        if (rc == SR_EUNAVAILABLE) {
            snprintf(msg, cap, "%s", sr_session_errmsg(s));
            return;
        }
        usleep(20000);
    }
}

/* Writes until one succeeds (at most `ms`); how long it took, -1 if none did. */
static double write_until_ok(sr_session *s, int ms)
{
    double t0 = mono_ms();
    while (mono_ms() < t0 + ms) {
        const char *params[] = {"-1"};
        if (sr_exec(s, sr_key_int(1), SR_WRITE, "UPDATE fo SET id = id WHERE id = ?", 1, params,
                    NULL) == SR_OK)
            return mono_ms() - t0;
        usleep(10000);
    }
    return -1;
}

START_TEST(mariadb_switchover_split_brain_and_discovery_off)
{
    backend b;
    memset(&b, 0, sizeof b);
    ck_assert_msg(cluster_load_my(&b), "run under tests/env/mariadb_cluster.sh run");
    MYSQL *ap = my_direct("SR_MY_ADMIN_PRIMARY", "shard0");
    MYSQL *ar = my_direct("SR_MY_ADMIN_REPLICA", "shard0");
    ck_assert(my_replication_running(ar));
    my_direct_exec(ap, "CREATE TABLE fo (id BIGINT PRIMARY KEY)");
    wait_caught_up(ap, ar);

    char u[2][600];
    for (int i = 0; i < 2; i++)
        snprintf(u[i], sizeof u[i], "%s/shard0", b.srv[i].uri);
    const char *uris[] = {u[0], u[1]};
    workload w = {.insert_sql = "INSERT INTO fo (id) VALUES (?)",
                  .read_sql = "SELECT COUNT(*) FROM fo"};
    w.r = open_router(uris, 2, "on");
    sr_router *off = open_router(uris, 2, "off"); /* with discovery off: does not follow */
    pthread_t th[2];
    workload_start(&w, th);
    usleep(800 * 1000);
    ck_assert_int_gt(atomic_load(&w.writes_ok), 10);
    long reads_before = atomic_load(&w.reads_ok);

    /* The planned switchover of docs/topology.md: stop writes on the old primary, let the
     * replica catch up, make it the primary. */
    double started = mono_ms();
    my_direct_exec(ap, "SET GLOBAL read_only = 1");
    wait_caught_up(ap, ar);
    my_direct_exec(ar, "STOP SLAVE");
    my_direct_exec(ar, "SET GLOBAL read_only = 0");
    double switched = mono_ms();
    double gap = first_write_after(&w, switched, BOUND_MS);
    /* The old primary follows the new one: it is a replica now. */
    char *change = xfmt("CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = %d, "
                        "MASTER_USER = 'sr_repl', MASTER_PASSWORD = 'sr_repl_pw_9Wd', "
                        "MASTER_USE_GTID = slave_pos",
                        b.srv[1].port);
    my_direct_exec(ap, "SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos");
    my_direct_exec(ap, change);
    my_direct_exec(ap, "START SLAVE");
    free(change);
    ck_assert(my_replication_running(ap));
    usleep(500 * 1000);
    workload_stop(&w, th);
    long reads_during = atomic_load(&w.reads_ok) - reads_before;

    long acked = 0, lost = 0;
    wait_caught_up(ar, ap);
    for (long id = 1; id < MAX_IDS; id++) {
        if (!w.acked[id])
            continue;
        acked++;
        char *q = xfmt("SELECT COUNT(*) FROM fo WHERE id = %ld", id);
        lost += my_direct_long(ar, q) != 1;
        free(q);
    }
    printf("mariadb switchover: read_only = 1 on the old primary to read_only = 0 on the new "
           "one %.0f ms; first write on the new primary %.0f ms after (bound %d ms); writes: "
           "%ld acknowledged, %ld failed, %ld duplicates, %ld acknowledged writes lost; reads: "
           "%ld succeeded from the switch to the end, %ld failed (first: %s)\n",
           switched - started, gap, BOUND_MS, acked, atomic_load(&w.writes_failed),
           atomic_load(&w.duplicates), lost, reads_during, atomic_load(&w.reads_failed),
           w.first_read_error[0] ? w.first_read_error : "none");
    fflush(stdout);
    ck_assert_msg(gap >= 0 && gap <= BOUND_MS, "writes resumed %.0f ms after the switch", gap);
    ck_assert_int_eq(lost, 0);
    ck_assert_int_eq(atomic_load(&w.duplicates), 0);
    ck_assert_int_gt(reads_during, 0);
    ck_assert_int_eq(atomic_load(&w.reads_failed), 0);
    char new_port[16];
    snprintf(new_port, sizeof new_port, ":%d/", b.srv[1].port);
    ck_assert_msg(strstr(primary_uri(w.r), new_port) != NULL, "primary now %s",
                  primary_uri(w.r));

    /* The old primary serves reads as a replica (server_id 1 answers). */
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(w.r, &s), SR_OK);
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    int old_answered = 0;
    for (double end = mono_ms() + 3000; mono_ms() < end && !old_answered;) {
        sr_result *res = NULL;
        if (sr_exec(s, sr_key_int(1), SR_READ, "SELECT @@server_id", 0, NULL, &res) == SR_OK)
            old_answered = strcmp(sr_result_value(res, 0, 0), "1") == 0;
        sr_result_free(res);
        usleep(10000);
    }
    ck_assert_msg(old_answered, "the old primary never served a read as a replica");

    /* A forced split brain: the old primary writable again. */
    my_direct_exec(ap, "STOP SLAVE");
    my_direct_exec(ap, "SET GLOBAL read_only = 0");
    char msg[1024];
    write_until_refused(s, msg, sizeof msg);
    printf("mariadb split brain: %s\n", msg);
    ck_assert_ptr_nonnull(strstr(msg, "split brain"));
    char port0[16], port1[16];
    snprintf(port0, sizeof port0, ":%d", b.srv[0].port);
    snprintf(port1, sizeof port1, ":%d", b.srv[1].port);
    ck_assert_ptr_nonnull(strstr(msg, port0));
    ck_assert_ptr_nonnull(strstr(msg, port1));
    /* One steps down: writes go to the other again. */
    my_direct_exec(ap, "SET GLOBAL read_only = 1");
    double back = write_until_ok(s, 3000);
    printf("mariadb split brain over: writes succeed %.0f ms after read_only = 1\n", back);
    ck_assert_msg(back >= 0 && back <= BOUND_MS, "writes came back after %.0f ms", back);
    sr_session_free(s);

    /* The router with discovery off still sends writes to the configured (read-only) node. */
    ck_assert_int_eq(sr_router_version(off), 1);
    sr_session *so = NULL;
    ck_assert_int_eq(sr_session_new(off, &so), SR_OK);
    const char *params[] = {"-1"};
    ck_assert_int_ne(sr_exec(so, sr_key_int(1), SR_WRITE, "UPDATE fo SET id = id WHERE id = ?", 1,
                             params, NULL),
                     SR_OK);
    ck_assert_int_eq(sr_router_version(off), 1);
    sr_session_free(so);
    sr_router_close(off);
    sr_router_close(w.r);
    free(w.acked);
    mysql_close(ap);
    mysql_close(ar);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("failover");
    TCase *tc = tcase_create("pg_async");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, pg_async_kill_and_promote);
    suite_add_tcase(s, tc);
    tc = tcase_create("pg_sync");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, pg_sync_kill_and_promote_loses_nothing);
    suite_add_tcase(s, tc);
    tc = tcase_create("mariadb");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, mariadb_switchover_split_brain_and_discovery_off);
    suite_add_tcase(s, tc);
    return run_suite(s) ? EXIT_FAILURE : EXIT_SUCCESS;
}
