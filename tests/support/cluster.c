/*
 * The test clusters' servers: environment, processes, health (cluster.h).
 */
#include "cluster.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shardroute.h>

static const char *getenv_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/*
 * Fills one server from PREFIX, PREFIX_PORT, PREFIX_START, a pid file and its
 * data directory (dir_var's value + dir_suffix); 0 when incomplete.
 */
static int server_from_env(server *sv, const char *name, const char *prefix, const char *pidfile_var,
                           const char *pidfile_suffix, const char *dir_var, const char *dir_suffix)
{
    char var[64];
    sv->name = name;
    sv->uri = getenv_nonempty(prefix);
    snprintf(var, sizeof var, "%s_PORT", prefix);
    const char *port = getenv_nonempty(var);
    snprintf(var, sizeof var, "%s_START", prefix);
    sv->start = getenv_nonempty(var);
    const char *pf = getenv_nonempty(pidfile_var);
    const char *dir = getenv_nonempty(dir_var);
    if (!sv->uri || !port || !sv->start || !pf || !dir)
        return 0;
    sv->port = atoi(port);
    snprintf(sv->pidfile, sizeof sv->pidfile, "%s%s", pf, pidfile_suffix);
    snprintf(sv->marker, sizeof sv->marker, "%s%s", dir, dir_suffix);
    return sv->port > 0;
}

int cluster_load_pg(backend *b)
{
    b->label = "postgres";
    b->nsrv = 3;
    b->who_sql = "SELECT inet_server_port(), "
                 "CASE WHEN pg_is_in_recovery() THEN 'replica' ELSE 'primary' END";
    b->create_sql = "CREATE TABLE IF NOT EXISTS sr_faults (id bigserial PRIMARY KEY, v int)";
    b->durable_sql = "SET LOCAL synchronous_commit = on";
    b->insert_sql = "INSERT INTO sr_faults (v) VALUES (?)";
    b->streaming_sql = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'";
    b->replicating_sql = "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'";
    b->replica_ok = "1";
    /* A postmaster's command line is "postgres -D DATA" (pg_ctl); its backends' are not. */
    return server_from_env(&b->srv[0], "primary", "SR_PG_PRIMARY", "SR_PG_PRIMARY_DATA",
                           "/postmaster.pid", "SR_PG_PRIMARY_DATA", "") &&
           server_from_env(&b->srv[1], "replica1", "SR_PG_REPLICA1", "SR_PG_REPLICA1_DATA",
                           "/postmaster.pid", "SR_PG_REPLICA1_DATA", "") &&
           server_from_env(&b->srv[2], "replica2", "SR_PG_REPLICA2", "SR_PG_REPLICA2_DATA",
                           "/postmaster.pid", "SR_PG_REPLICA2_DATA", "");
}

int cluster_load_my(backend *b)
{
    b->label = "mariadb";
    b->nsrv = 2;
    /* mariadb_cluster.sh gives the primary server-id 1 and the replica 2. */
    b->who_sql = "SELECT @@port, IF(@@server_id = 1, 'primary', 'replica')";
    b->create_sql = "CREATE TABLE IF NOT EXISTS sr_faults (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                    "v INT)";
    b->durable_sql = NULL; /* InnoDB flushes at commit (innodb_flush_log_at_trx_commit = 1) */
    b->insert_sql = "INSERT INTO sr_faults (v) VALUES (?)";
    b->streaming_sql = NULL; /* the replica says it instead */
    b->replicating_sql = "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                         "WHERE VARIABLE_NAME = 'SLAVE_RUNNING'";
    b->replica_ok = "ON";
    /* mariadb_cluster.sh starts each server with --datadir=SR_MY_DIR/NAME/data. */
    return server_from_env(&b->srv[0], "primary", "SR_MY_PRIMARY", "SR_MY_PRIMARY_PIDFILE", "",
                           "SR_MY_DIR", "/primary/data") &&
           server_from_env(&b->srv[1], "replica", "SR_MY_REPLICA", "SR_MY_REPLICA_PIDFILE", "",
                           "SR_MY_DIR", "/replica/data");
}


/*
 * The server as it runs now (tests/support/proc.h: a PID read from its pid
 * file, checked to be a live process whose command line names the server's
 * data directory, with its start time); {0, 0} when it is down. A bare PID
 * would do until the kernel hands a dead server's PID to another process.
 */
static tp_proc server_proc(const server *sv) { return tp_from_pidfile(sv->pidfile, sv->marker); }

int server_alive(const server *sv) { return server_proc(sv).pid != 0; }

/*
 * The server's processes: its main process first, then its children (a
 * PostgreSQL postmaster's backends and helpers, which put themselves in
 * sessions of their own, so a process group would not reach them; MariaDB is
 * one process).
 */
static int server_procs(tp_proc main, tp_proc *out, int max)
{
    if (!tp_alive(main) || max < 1)
        return 0;
    out[0] = main;
    return 1 + tp_children(main, out + 1, max - 1);
}

/* Every process this test stopped, so that they are always continued. */
static tp_proc frozen[MAXPROCS * MAXSRV];
static int nfrozen;

void thaw_frozen(void)
{
    for (int i = 0; i < nfrozen; i++)
        tp_signal(frozen[i], SIGCONT);
    nfrozen = 0;
}

/* Continues the server and every child it has now (idempotent). */
static void thaw_server(const server *sv)
{
    tp_proc procs[MAXPROCS];
    int n = server_procs(server_proc(sv), procs, MAXPROCS);
    for (int i = 0; i < n; i++)
        tp_signal(procs[i], SIGCONT);
}

/*
 * Freezes the whole server: the main process first, so that it forks
 * nothing while its children are stopped; then every child, so that
 * connections that are already open hang too.
 */
void freeze_server(const server *sv)
{
    tp_proc p = server_proc(sv);
    ck_assert_msg(p.pid != 0, "%s is not running (pid file %s)", sv->name, sv->pidfile);
    ck_assert_int_lt(nfrozen, (int)(sizeof frozen / sizeof frozen[0]));
    frozen[nfrozen++] = p;
    ck_assert_int_eq(tp_signal(p, SIGSTOP), 0);
    ck_assert_msg(tp_wait_stopped(&p, 1, 2000), "%s (pid %ld) did not stop", sv->name,
                  (long)p.pid);
    tp_proc procs[MAXPROCS];
    int n = server_procs(p, procs, MAXPROCS);
    for (int i = 1; i < n && nfrozen < (int)(sizeof frozen / sizeof frozen[0]); i++) {
        frozen[nfrozen++] = procs[i];
        tp_signal(procs[i], SIGSTOP);
    }
    ck_assert_msg(tp_wait_stopped(procs, n, 2000), "%s: not every process stopped", sv->name);
}

/* Continues what freeze_server() stopped (and any child the server has now). */
void thaw(const server *sv)
{
    thaw_frozen();
    thaw_server(sv);
}

/* Kills the server and all its processes at once, as a crash would. */
void crash_server(const server *sv)
{
    tp_proc p = server_proc(sv);
    ck_assert_msg(p.pid != 0, "%s is not running (pid file %s)", sv->name, sv->pidfile);
    /* Stopped first, so that it neither forks nor reaps while its children are listed. */
    tp_signal(p, SIGSTOP);
    tp_wait_stopped(&p, 1, 2000);
    tp_proc procs[MAXPROCS];
    int n = server_procs(p, procs, MAXPROCS);
    for (int i = n - 1; i >= 0; i--)
        tp_signal(procs[i], SIGKILL);
    /* Gone, or zombies: nobody here reaps them (their parent is PID 1 or the script's shell). */
    ck_assert_msg(tp_wait_gone(procs, n, 5000), "%s: processes still alive 5 s after SIGKILL",
                  sv->name);
}

/* Runs the cluster script's start command for a server: 0, else -1 with the reason. */
static int start_server(const server *sv, char *why, size_t whylen)
{
    return tp_start_server(sv->start, sv->pidfile, sv->marker, 60000, why, whylen).pid ? 0 : -1;
}

void restart_server(const server *sv)
{
    char why[1024] = "";
    ck_assert_msg(start_server(sv, why, sizeof why) == 0, "starting %s again: %s", sv->name, why);
}

/*
 * One statement on one server of the backend, through a router of its own
 * (so it does not disturb the router under test): the first value of the
 * first row into `out`. 0 on success, else the status with the message in
 * `out`. Used for the health of the cluster, so it never asserts.
 */
static int server_value(const backend *b, int idx, const char *sql, char *out, size_t len)
{
    sr_config *c = sr_config_new();
    sr_router *r = NULL;
    sr_session *s = NULL;
    sr_result *res = NULL;
    char uri[512];
    int rc = c ? SR_OK : SR_ENOMEM;
    if (rc == SR_OK)
        rc = sr_config_set(c, "balance.primary_reads", "never");
    if (rc == SR_OK)
        rc = sr_config_set(c, "connect_timeout_ms", "2000");
    if (rc == SR_OK)
        rc = sr_config_set(c, "statement_timeout_ms", "5000");
    if (rc == SR_OK)
        rc = sr_config_add_shard(c, "shard0");
    snprintf(uri, sizeof uri, "%s/shard0", b->srv[0].uri);
    if (rc == SR_OK)
        rc = sr_config_add_node(c, "shard0", SR_PRIMARY, uri, 1);
    snprintf(uri, sizeof uri, "%s/shard0", b->srv[idx].uri);
    if (rc == SR_OK && idx > 0)
        rc = sr_config_add_node(c, "shard0", SR_REPLICA, uri, 1);
    if (rc == SR_OK)
        rc = sr_router_open(c, &r);
    if (rc == SR_OK)
        rc = sr_session_new(r, &s);
    if (rc == SR_OK)
        rc = sr_exec_shard(s, 0, idx == 0 ? SR_WRITE : SR_READ, sql, 0, NULL, &res);
    if (rc == SR_OK) {
        const char *v = sr_result_nrows(res) > 0 ? sr_result_value(res, 0, 0) : NULL;
        snprintf(out, len, "%s", v ? v : "(none)");
    } else {
        snprintf(out, len, "%s", s ? sr_session_errmsg(s) : c ? sr_config_errmsg(c) : "no memory");
    }
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
    sr_config_free(c);
    return rc;
}

/* 1 when every server answers and every replica replicates from the primary. */
static int cluster_healthy(const backend *b, char *why, size_t len)
{
    char v[512];
    for (int i = 0; i < b->nsrv; i++) {
        if (server_value(b, i, "SELECT 1", v, sizeof v) != SR_OK) {
            snprintf(why, len, "%s does not answer: %s", b->srv[i].name, v);
            return 0;
        }
    }
    if (b->streaming_sql) {
        if (server_value(b, 0, b->streaming_sql, v, sizeof v) != SR_OK ||
            atoi(v) != b->nsrv - 1) {
            snprintf(why, len, "replicas streaming from the primary: %s (want %d)", v,
                     b->nsrv - 1);
            return 0;
        }
    }
    for (int i = 1; i < b->nsrv; i++) {
        if (server_value(b, i, b->replicating_sql, v, sizeof v) != SR_OK ||
            strcmp(v, b->replica_ok) != 0) {
            snprintf(why, len, "%s does not replicate: %s", b->srv[i].name, v);
            return 0;
        }
    }
    return 1;
}

/*
 * Puts the backend back as the scenarios expect it: every process
 * continued, every server that is down started again, replication running.
 * Never asserts (it also runs in the parent, as the tcase's teardown);
 * 0 when healthy, else -1 with the reason.
 */
static int restore(const backend *b, char *why, size_t len)
{
    thaw_frozen();
    for (int i = 0; i < b->nsrv; i++)
        thaw_server(&b->srv[i]);
    for (int i = 0; i < b->nsrv; i++) {
        if (!server_alive(&b->srv[i]) && start_server(&b->srv[i], why, len) != 0)
            return -1;
    }
    /* A PostgreSQL replica retries its primary every 5 s (wal_retrieve_retry_interval). */
    for (double t0 = tp_now_ms(); tp_now_ms() - t0 < 20000; tp_sleep_ms(200))
        if (cluster_healthy(b, why, len))
            return 0;
    return -1;
}

void require_healthy(const backend *b)
{
    ck_assert_msg(!b->broken, "the %s cluster could not be restored after an earlier scenario: %s",
                  b->label, b->broken_why);
    char why[600] = "";
    int ok = 0;
    for (double t0 = tp_now_ms(); !ok && tp_now_ms() - t0 < 15000; tp_sleep_ms(200))
        ok = cluster_healthy(b, why, sizeof why);
    ck_assert_msg(ok, "%s cluster not healthy before the scenario: %s", b->label, why);
}

void restore_or_fail(const backend *b)
{
    char why[600] = "";
    ck_assert_msg(restore(b, why, sizeof why) == 0, "%s cluster not restored: %s", b->label, why);
}

void teardown_backend(backend *b)
{
    if (b->broken)
        return;
    if (restore(b, b->broken_why, sizeof b->broken_why) != 0) {
        b->broken = 1;
        fprintf(stderr, "test_faults: could not restore the %s cluster: %s\n", b->label,
                b->broken_why);
    }
}

