/*
 * The MySQL / MariaDB driver: the sr_driver vtable on MariaDB Connector/C,
 * opening and closing connections, transactions and ping. The statement path
 * is exec.c, statements in steps steps.c, types types.c, the replication
 * hooks replication.c.
 *
 * Every wait goes through the non-blocking API and ends at the caller's
 * deadline (wait.c); a statement that passes it is killed on the server and
 * its connection discarded.
 */
#include "my_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void my_close(sr_driver_conn *c)
{
    if (!c)
        return;
    /* A statement in steps the core stopped waiting for (its deadline passed)
     * would run on in the server after the socket closes: stopped there too,
     * best effort, as exec's timeouts are. */
    int running = sr__my_step_running(c);
    if (running && c->thread_id)
        (void)sr__my_kill_query(&c->params, c->thread_id,
                                sr_deadline_after_ms(SR_MY_KILL_BUDGET_MS));
    /* The handle goes first: Connector/C then detaches the statements, which
     * are freed without a COM_STMT_CLOSE each (the server drops them with the
     * session). */
    sr__my_close_handle(c->my, c->broken || running);
    sr_stmt_cache_free(c->cache);
    if (c->orphan)
        mysql_stmt_close(c->orphan);
    sr__my_step_free(c);
    sr__my_scratch_free(&c->scratch);
    sr__my_params_free(&c->params);
    free(c);
}

/*
 * A statement run while setting up a new connection failed: the connection
 * is unusable, so anything but a timeout is reported as a transient connect
 * error, keeping the server's message and SQLSTATE.
 */
static int setup_failed(sr_driver_conn *c, int rc, const char *what, sr_driver_error *err)
{
    if (rc == SR_ETIMEOUT)
        return rc;
    char why[sizeof err->message], state[sizeof err->sqlstate];
    memcpy(why, err->message, sizeof why);
    memcpy(state, err->sqlstate, sizeof state);
    return sr_driver_error_set(err, SR_ECONNECT, 1, state, err->native_code, "%s %s: %.300s",
                               what, c->params.redacted, why);
}

/*
 * The server's actual role checked against the configured one: a read-only
 * server configured as the primary, or a writable one configured as a
 * replica, is reported rather than used.
 */
static int check_role(sr_driver_conn *c, sr_role role, int64_t deadline, sr_driver_error *err)
{
    sr_role actual;
    int rc = sr__my_server_role(c, deadline, &actual, err);
    if (rc != SR_OK)
        return setup_failed(c, rc, "cannot check the role of", err);
    if (actual == role)
        return SR_OK;
    return sr_driver_error_set(err, SR_ECONNECT, 1, "", 0,
                               "%s is configured as a %s but the server is %s", c->params.redacted,
                               role == SR_PRIMARY ? "primary" : "replica",
                               actual == SR_REPLICA ? "read-only (@@read_only = 1, a replica)"
                                                    : "writable (@@read_only = 0, a primary)");
}

/*
 * The session settings, in one SET so that they cost one round trip:
 *  - MariaDB with a statement timeout: max_statement_time, a server-side
 *    backstop for the client deadline (should the KILL QUERY of a timed-out
 *    statement not get through, the server still stops it at the same bound);
 *  - on a primary: the session tracks the GTID of each write, which the OK
 *    packet then carries (exec_at.c). MariaDB: last_gtid added to
 *    session_track_system_variables, keeping the variables the server
 *    tracks by default (10.11: autocommit, the character sets and
 *    time_zone; Connector/C follows character_set_client through it). A
 *    list of '*' (everything, last_gtid included) stays as it is: the
 *    server refuses "*,last_gtid". Adding a name already listed is fine.
 *    MySQL 5.7+: session_track_gtids = OWN_GTID (untested here).
 * Nothing to set: no round trip at all.
 */
static int session_setup(sr_driver_conn *c, const sr_driver_connect_args *args, int64_t deadline,
                         sr_driver_error *err)
{
    char sql[384];
    int n = snprintf(sql, sizeof sql, "SET SESSION ");
    const char *sep = "";
    if (c->flavour == SR_MY_MARIADB && args->statement_timeout_ms > 0) {
        n += snprintf(sql + n, sizeof sql - (size_t)n, "max_statement_time = %d.%03d",
                      args->statement_timeout_ms / 1000, args->statement_timeout_ms % 1000);
        sep = ", ";
    }
    if (args->role == SR_PRIMARY && c->flavour == SR_MY_MARIADB && c->server_version >= 100300) {
        n += snprintf(sql + n, sizeof sql - (size_t)n,
                      "%ssession_track_system_variables = "
                      "IF(@@session_track_system_variables = '*', '*', CONCAT_WS(',', "
                      "NULLIF(@@session_track_system_variables, ''), 'last_gtid'))",
                      sep);
        sep = ", ";
    } else if (args->role == SR_PRIMARY && c->flavour == SR_MY_MYSQL &&
               c->server_version >= 50706) {
        n += snprintf(sql + n, sizeof sql - (size_t)n, "%ssession_track_gtids = OWN_GTID", sep);
        sep = ", ";
    }
    if (!*sep)
        return SR_OK;
    return sr__my_text_query(c, sql, deadline, NULL, err);
}

static int my_connect(const sr_driver_connect_args *args, sr_driver_conn **out,
                      sr_driver_error *err)
{
    if (!args || !args->uri || !out)
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "mysql connect: missing arguments");
    sr_driver_conn *c = calloc(1, sizeof *c);
    if (!c)
        return sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory");
    int rc = sr__my_params_from_uri(args->uri, &c->params, err);
    if (rc != SR_OK) {
        free(c);
        return rc;
    }
    if (sr_stmt_cache_new(args->stmt_cache_size > 0 ? args->stmt_cache_size : 0,
                          args->stmt_cache_bytes, sizeof(sr_my_stmt), sr__my_stmt_release, NULL,
                          &c->cache) != SR_OK) {
        my_close(c);
        return sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory");
    }
    int64_t deadline =
        args->connect_timeout_ms > 0 ? sr_deadline_after_ms(args->connect_timeout_ms) : 0;
    rc = sr__my_open(&c->params, deadline, &c->my, err);
    if (rc != SR_OK) {
        my_close(c);
        return rc;
    }
    c->thread_id = mysql_thread_id(c->my);
    c->server_version = mysql_get_server_version(c->my);
    const char *info = mysql_get_server_info(c->my);
    c->flavour = info && strstr(info, "MariaDB") ? SR_MY_MARIADB : SR_MY_MYSQL;
    rc = check_role(c, args->role, deadline, err);
    if (rc != SR_OK) {
        my_close(c);
        return rc;
    }
    rc = session_setup(c, args, deadline, err);
    if (rc != SR_OK) {
        rc = setup_failed(c, rc, "cannot set up", err);
        my_close(c);
        return rc;
    }
    *out = c;
    return SR_OK;
}

static int broken_error(sr_driver_error *err)
{
    return sr_driver_error_set(err, SR_ECONNECT, 1, "", 0,
                               "mysql connection is no longer usable (an earlier error broke it)");
}

int sr__my_txn_stmt(sr_driver_conn *c, const char *sql, int64_t deadline_ns, sr_driver_error *err)
{
    if (!c)
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "mysql: NULL connection");
    if (c->broken)
        return broken_error(err);
    return sr__my_text_query(c, sql, deadline_ns, NULL, err);
}

static int my_begin(sr_driver_conn *c, int read_only, int64_t deadline_ns, sr_driver_error *err)
{
    if (!read_only)
        return sr__my_txn_stmt(c, "START TRANSACTION", deadline_ns, err);
    /* A read-only transaction promises one snapshot: REPEATABLE READ whatever the
     * server's default isolation is (SET TRANSACTION applies to the next one). The
     * snapshot is taken at once, not at the first read. */
    int rc = sr__my_txn_stmt(c, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", deadline_ns, err);
    return rc != SR_OK ? rc
                       : sr__my_txn_stmt(c, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
                                  deadline_ns, err);
}

/* A transaction begun with begin_global() (xa.c) ends in one phase with the XA statements. */
static int my_commit(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    if (c && c->xa_active[0])
        return sr__my_xa_end_one_phase(c, 1, deadline_ns, err);
    return sr__my_txn_stmt(c, "COMMIT", deadline_ns, err);
}

static int my_rollback(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    if (c && c->xa_active[0])
        return sr__my_xa_end_one_phase(c, 0, deadline_ns, err);
    return sr__my_txn_stmt(c, "ROLLBACK", deadline_ns, err);
}

static int my_ping(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    if (!c)
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "mysql: NULL connection");
    if (c->broken)
        return broken_error(err);
    int prc = 1;
    int st = mysql_ping_start(&prc, c->my);
    SR_MY_AWAIT(c->my, deadline_ns, st, &prc, c->my, mysql_ping_cont);
    if (st != 0)
        return sr__my_timed_out(c, "ping", 0, err);
    if (prc != 0)
        return sr__my_fail_conn(c, "ping", err);
    return SR_OK;
}

static const char *const my_schemes[] = {"mysql", "mariadb", NULL};

const sr_driver sr__driver_mysql = {
    .abi_version = SR_DRIVER_ABI_VERSION,
    .name = "mysql",
    .schemes = my_schemes,
    .dialect = SR_SQL_MYSQL,
    .connect = my_connect,
    .close = my_close,
    .exec = sr__my_exec,
    .begin = my_begin,
    .commit = my_commit,
    .rollback = my_rollback,
    .ping = my_ping,
    .server_role = sr__my_server_role,
    .write_position = sr__my_write_position,
    .has_replayed = sr__my_has_replayed,
    .replica_lag_ms = sr__my_replica_lag_ms,
    .replay_position = sr__my_replay_position,
    .position_covers = sr__my_position_covers,
    .position_merge = sr__my_position_merge,
    .wait_replayed = sr__my_wait_replayed,
    .exec_at = sr__my_exec_at,
    .socket = sr__my_socket,
    .send = sr__my_send,
    .next_row = sr__my_next_row,
    .cancel = sr__my_cancel,
    .begin_global = sr__my_begin_global,
    .prepare = sr__my_prepare,
    .commit_prepared = sr__my_commit_prepared,
    .rollback_prepared = sr__my_rollback_prepared,
    .list_prepared = sr__my_list_prepared,
};
