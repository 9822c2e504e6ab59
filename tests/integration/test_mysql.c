/*
 * Integration tests of the MySQL/MariaDB driver against a real MariaDB
 * primary and GTID replica (tests/env/mariadb_cluster.sh run ...). Two shards
 * live on the pair as databases shard0 and shard1. Everything goes through
 * the public API (shardroute.h, and shardroute/driver.h for the replication
 * hooks); placement and server state are checked with direct libmariadb
 * connections, not through the library. What every driver must do alike
 * (placement, the read/write split, errors, timeouts, white space, schema
 * changes) is in test_conformance.c; this suite keeps what is MariaDB's own.
 *
 * Environment (written by the script): SR_MY_PRIMARY, SR_MY_REPLICA (the
 * application user), SR_MY_ADMIN_PRIMARY, SR_MY_ADMIN_REPLICA (a user that may
 * stop replication), SR_MY_REPLICA_PID. Without them the suite is skipped
 * (exit 77): it needs the servers.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <mysql.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <shardroute.h>
#include <shardroute/driver.h>

#include "my_direct.h"
#include "result.h" /* sr__result_builder_*: to call the driver's exec_at directly */
#include "testutil.h"

#define NSHARDS 2
static const char *const shard_names[NSHARDS] = {"shard0", "shard1"};

/* ------------------------------------------------------------------------ */
/* Environment and direct connections                                       */
/* ------------------------------------------------------------------------ */

/* Waits (bounded) until the replica has applied everything the primary wrote. */
static void replica_catch_up(void)
{
    MYSQL *p = my_direct("SR_MY_ADMIN_PRIMARY", NULL);
    MYSQL *r = my_direct("SR_MY_ADMIN_REPLICA", NULL);
    char *pos = my_direct_value(p, "SELECT @@gtid_binlog_pos");
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT MASTER_GTID_WAIT('%s', 20)", pos ? pos : "");
    ck_assert_int_eq(my_direct_long(r, sql), 0);
    free(pos);
    mysql_close(p);
    mysql_close(r);
}

/* ------------------------------------------------------------------------ */
/* Routers                                                                  */
/* ------------------------------------------------------------------------ */

/* Two shards, each the primary and the replica, database shardN. Options are
 * name/value pairs ending with NULL. */
static sr_router *open_router_opts(const char *const *opts)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    for (int i = 0; opts && opts[i]; i += 2)
        ck_assert_msg(sr_config_set(c, opts[i], opts[i + 1]) == SR_OK, "%s", sr_config_errmsg(c));
    for (int i = 0; i < NSHARDS; i++) {
        char uri[512];
        ck_assert_int_eq(sr_config_add_shard(c, shard_names[i]), SR_OK);
        snprintf(uri, sizeof uri, "%s/%s", my_env("SR_MY_PRIMARY"), shard_names[i]);
        ck_assert_msg(sr_config_add_node(c, shard_names[i], SR_PRIMARY, uri, 1) == SR_OK, "%s",
                      sr_config_errmsg(c));
        /* The replica through the other scheme name: both are this driver's. */
        const char *rep = my_env("SR_MY_REPLICA");
        snprintf(uri, sizeof uri, "mariadb%s/%s", strstr(rep, "://"), shard_names[i]);
        ck_assert_msg(sr_config_add_node(c, shard_names[i], SR_REPLICA, uri, 1) == SR_OK, "%s",
                      sr_config_errmsg(c));
    }
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

static sr_router *open_router(void) { return open_router_opts(NULL); }

/* Runs a statement through the router and returns row 0, column 0 (a new
 * string, NULL for SQL NULL). */
static char *routed_value(sr_session *s, sr_key key, sr_intent intent, const char *sql,
                          int nparams, const char *const *params)
{
    sr_result *res = NULL;
    int rc = sr_exec(s, key, intent, sql, nparams, params, &res);
    ck_assert_msg(rc == SR_OK, "%s: %s (%s)", sql, sr_strerror(rc), sr_session_errmsg(s));
    ck_assert_int_ge(sr_result_nrows(res), 1);
    const char *v = sr_result_value(res, 0, 0);
    char *copy = v ? strdup(v) : NULL;
    sr_result_free(res);
    return copy;
}

/* Creates table `name` (k BIGINT PRIMARY KEY, v TEXT) afresh on every shard. */
static void create_table(sr_session *s, const char *name)
{
    char sql[256];
    for (int i = 0; i < NSHARDS; i++) {
        snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s", name);
        ck_assert_msg(sr_exec_shard(s, i, SR_WRITE, sql, 0, NULL, NULL) == SR_OK, "%s",
                      sr_session_errmsg(s));
        snprintf(sql, sizeof sql, "CREATE TABLE %s (k BIGINT PRIMARY KEY, v TEXT)", name);
        ck_assert_msg(sr_exec_shard(s, i, SR_WRITE, sql, 0, NULL, NULL) == SR_OK, "%s",
                      sr_session_errmsg(s));
    }
}

/* ------------------------------------------------------------------------ */
/* Placement, read/write split, transactions                                */
/* ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* The errors every driver reports alike: test_conformance.c. */
START_TEST(test_wrong_parameter_count_is_the_callers_error)
{
    sr_router *r = open_router_opts((const char *const[]){"pool.max_size", "1", NULL});
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_table(s, "errs");
    const char *p[] = {"1", "one"};
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE, "INSERT INTO errs VALUES (?, ?)", 2, p,
                             NULL),
                     SR_OK);
    /* A wrong parameter count is the caller's error, before the server runs anything. */
    const char *one[] = {"1"};
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE, "SELECT ?, ?", 1, one, NULL), SR_EINVAL);
    char *v = routed_value(s, sr_key_int(1), SR_WRITE, "SELECT COUNT(*) FROM errs", 0, NULL);
    ck_assert_str_eq(v, "1");
    free(v);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(test_lost_connection_is_transient_and_replaced)
{
    sr_router *r = open_router_opts((const char *const[]){"pool.max_size", "1", NULL});
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    char *id = routed_value(s, sr_key_int(3), SR_WRITE, "SELECT CONNECTION_ID()", 0, NULL);
    /* The server drops the pooled connection under the router. */
    MYSQL *admin = my_direct("SR_MY_ADMIN_PRIMARY", NULL);
    char sql[64];
    snprintf(sql, sizeof sql, "KILL CONNECTION %s", id);
    my_direct_exec(admin, sql);
    mysql_close(admin);
    int rc = sr_exec(s, sr_key_int(3), SR_WRITE, "SELECT CONNECTION_ID()", 0, NULL, NULL);
    ck_assert_msg(rc == SR_ECONNECT, "got %s (%s)", sr_strerror(rc), sr_session_errmsg(s));
    /* The broken connection was discarded: the next statement gets a new one. */
    char *id2 = routed_value(s, sr_key_int(3), SR_WRITE, "SELECT CONNECTION_ID()", 0, NULL);
    ck_assert_str_ne(id, id2);
    free(id);
    free(id2);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* The first value of `sql` on a one-node router on `uri` (testutil.h), or NULL with *rc set. */
static char *one_node_value(const char *uri, const char *sql, int *rc, char *errmsg, size_t errlen)
{
    char *v = NULL;
    *rc = one_node_exec(uri, NULL, sql, &v, NULL, errmsg, errlen);
    return v;
}

START_TEST(test_uri_parameters_and_passwords_reach_the_client)
{
    my_addr a;
    my_parse_addr(my_env("SR_MY_PRIMARY"), &a);
    char uri[512], msg[1024];
    int rc;
    /* charset: the session's client character set. */
    snprintf(uri, sizeof uri, "mysql://%s:%s@%s:%d/shard0?charset=latin1", a.user, a.password,
             a.host, a.port);
    char *v = one_node_value(uri, "SELECT @@character_set_client", &rc, msg, sizeof msg);
    ck_assert_msg(rc == SR_OK, "%s", msg);
    ck_assert_str_eq(v, "latin1");
    free(v);
    /* The ssl-* parameters: test_tls.c (this server offers TLS). */
    /* A bad ssl-mode value is the caller's error. */
    snprintf(uri, sizeof uri, "mysql://%s:%s@%s:%d/shard0?ssl-mode=sometimes", a.user, a.password,
             a.host, a.port);
    v = one_node_value(uri, "SELECT 1", &rc, msg, sizeof msg);
    ck_assert_msg(rc == SR_EINVAL && strstr(msg, "ssl-mode"), "got %s (%s)", sr_strerror(rc), msg);
    free(v);
    /* A password with URI-special characters, percent-encoded, and never shown. */
    MYSQL *admin = my_direct("SR_MY_ADMIN_PRIMARY", NULL);
    my_direct_exec(admin, "DROP USER IF EXISTS 'sr_special'@'127.0.0.1'");
    my_direct_exec(admin, "CREATE USER 'sr_special'@'127.0.0.1' IDENTIFIED BY 'p@ss:w/rd%?&#'");
    my_direct_exec(admin, "GRANT SELECT ON shard0.* TO 'sr_special'@'127.0.0.1'");
    snprintf(uri, sizeof uri, "mariadb://sr_special:p%%40ss%%3Aw%%2Frd%%25%%3F%%26%%23@%s:%d/shard0",
             a.host, a.port);
    v = one_node_value(uri, "SELECT CURRENT_USER()", &rc, msg, sizeof msg);
    ck_assert_msg(rc == SR_OK, "%s", msg);
    ck_assert_str_eq(v, "sr_special@127.0.0.1");
    free(v);
    v = one_node_value(uri, "SELECT * FROM no_such_table", &rc, msg, sizeof msg);
    ck_assert_int_eq(rc, SR_EQUERY);
    ck_assert_msg(!strstr(msg, "p@ss") && !strstr(msg, "p%40ss"), "password in: %s", msg);
    free(v);
    my_direct_exec(admin, "DROP USER 'sr_special'@'127.0.0.1'");
    mysql_close(admin);
    /* socket: the unix socket instead of TCP (root has no password on it). */
    snprintf(uri, sizeof uri, "mysql://root@localhost/shard0?socket=%s",
             my_env("SR_MY_PRIMARY_SOCKET"));
    v = one_node_value(uri, "SELECT @@server_id", &rc, msg, sizeof msg);
    ck_assert_msg(rc == SR_OK, "%s", msg);
    ck_assert_str_eq(v, "1");
    free(v);
}
END_TEST

START_TEST(test_bad_password_and_unknown_parameter)
{
    my_addr a;
    my_parse_addr(my_env("SR_MY_PRIMARY"), &a);
    const char *variants[] = {"wrong-secret-xyz", NULL};
    for (int i = 0; i < 2; i++) {
        char uri[256];
        if (variants[i])
            snprintf(uri, sizeof uri, "mysql://%s:%s@%s:%d/shard0", a.user, variants[i], a.host,
                     a.port);
        else
            snprintf(uri, sizeof uri, "mysql://%s:%s@%s:%d/shard0?no_such_option=1", a.user,
                     a.password, a.host, a.port);
        char msg[1024];
        int rc = one_node_exec(uri, NULL, "SELECT 1", NULL, NULL, msg, sizeof msg);
        if (variants[i]) {
            ck_assert_msg(rc == SR_ECONNECT, "got %s (%s)", sr_strerror(rc), msg);
            ck_assert_msg(strstr(msg, "1045"), "message: %s", msg);
            ck_assert_msg(!strstr(msg, variants[i]), "password in: %s", msg);
        } else {
            ck_assert_msg(rc == SR_EINVAL, "got %s (%s)", sr_strerror(rc), msg);
            ck_assert_msg(strstr(msg, "no_such_option"), "message: %s", msg);
            ck_assert_msg(!strstr(msg, a.password), "password in: %s", msg);
        }
    }
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Bounded waits                                                            */
/* ------------------------------------------------------------------------ */

/* kill() only queues SIGSTOP: waits (bounded) until every thread of pid is
 * stopped, so no thread can still answer a query. */
static int wait_stopped(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%ld/task", (long)pid);
    for (int tries = 0; tries < 200; tries++) {
        DIR *d = opendir(dir);
        if (!d)
            return 0;
        int running = 0;
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            char path[400], buf[512];
            snprintf(path, sizeof path, "%s/%s/stat", dir, de->d_name);
            FILE *f = fopen(path, "r");
            if (!f)
                continue;
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[n] = '\0';
            const char *close_paren = strrchr(buf, ')');
            if (close_paren && close_paren[1] == ' ' && close_paren[2] != 'T' &&
                close_paren[2] != 't')
                running = 1;
        }
        closedir(d);
        if (!running)
            return 1;
        usleep(5000);
    }
    return 0;
}

/*
 * The replica server's PID: from its pid file, which tracks restarts (the
 * faults suite kills and restarts the shared servers), else from
 * SR_MY_REPLICA_PID as exported when the cluster started.
 */
static pid_t replica_pid(void)
{
    const char *file = getenv("SR_MY_REPLICA_PIDFILE");
    FILE *f = file && *file ? fopen(file, "r") : NULL;
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    if (pid <= 0) {
        const char *env = getenv("SR_MY_REPLICA_PID");
        pid = env ? atol(env) : 0;
    }
    return (pid_t)pid;
}

START_TEST(test_stopped_server_cannot_hold_the_caller)
{
    pid_t pid = replica_pid();
    ck_assert_int_gt(pid, 0);
    sr_router *r = open_router_opts((const char *const[]){"statement_timeout_ms", "300",
                                                          "connect_timeout_ms", "300",
                                                          "balance.primary_reads", "never", NULL});
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    char *v = routed_value(s, sr_key_int(9), SR_READ, "SELECT @@server_id", 0, NULL);
    ck_assert_str_eq(v, "2");
    free(v);
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    if (!wait_stopped(pid)) {
        kill(pid, SIGCONT);
        ck_abort_msg("replica (pid %ld) did not stop", (long)pid);
    }
    double t0 = mono_ms();
    int rc = sr_exec(s, sr_key_int(9), SR_READ, "SELECT @@server_id", 0, NULL, NULL);
    double elapsed = mono_ms() - t0;
    kill(pid, SIGCONT);
    ck_assert_msg(rc == SR_ETIMEOUT || rc == SR_ECONNECT || rc == SR_EUNAVAILABLE, "got %s (%s)",
                  sr_strerror(rc), sr_session_errmsg(s));
    /* 300 ms for the statement, at most 100 ms for the KILL QUERY attempt,
     * and scheduling slack. */
    ck_assert_msg(elapsed < 2000, "held for %.0f ms", elapsed);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Parameters and results                                                   */
/* ------------------------------------------------------------------------ */

START_TEST(test_parameters_round_trip)
{
    sr_router *r = open_router();
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    const char *tricky[] = {"it's", "back\\slash", "\\'", "quote\"d", "?", "", "line\nbreak",
                            "caf\xc3\xa9 \xe2\x82\xac", "'; DROP TABLE x; --"};
    const int ntricky = (int)(sizeof tricky / sizeof tricky[0]);
    for (int i = 0; i < ntricky; i++) {
        const char *p[] = {tricky[i], NULL};
        sr_result *res = NULL;
        ck_assert_int_eq(sr_exec(s, sr_key_int(i), SR_READ, "SELECT ? AS a, ? AS b, 'x?y' AS c",
                                 2, p, &res),
                         SR_OK);
        ck_assert_int_eq(sr_result_ncols(res), 3);
        ck_assert_str_eq(sr_result_colname(res, 0), "a");
        ck_assert_str_eq(sr_result_value(res, 0, 0), tricky[i]);
        ck_assert_uint_eq(sr_result_length(res, 0, 0), strlen(tricky[i]));
        ck_assert_ptr_null(sr_result_value(res, 0, 1));
        ck_assert_int_eq(sr_result_is_null(res, 0, 1), 1);
        ck_assert_str_eq(sr_result_value(res, 0, 2), "x?y");
        sr_result_free(res);
    }
    /* Stored and read back from the table, compared with a direct read. */
    create_table(s, "params");
    for (int i = 0; i < ntricky; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", i);
        const char *p[] = {k, tricky[i]};
        ck_assert_int_eq(sr_exec(s, sr_key_int(i), SR_WRITE, "INSERT INTO params VALUES (?, ?)", 2,
                                 p, NULL),
                         SR_OK);
        char *v = routed_value(s, sr_key_int(i), SR_WRITE, "SELECT v FROM params WHERE k = ?", 1,
                               p);
        ck_assert_str_eq(v, tricky[i]);
        free(v);
        MYSQL *m = my_direct("SR_MY_PRIMARY", shard_names[sr_router_shard_for(r, sr_key_int(i))]);
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT v FROM params WHERE k = %d", i);
        v = my_direct_value(m, sql);
        ck_assert_str_eq(v, tricky[i]);
        free(v);
        mysql_close(m);
    }
    const char *nullp[] = {"100", NULL};
    ck_assert_int_eq(sr_exec(s, sr_key_int(100), SR_WRITE, "INSERT INTO params VALUES (?, ?)", 2,
                             nullp, NULL),
                     SR_OK);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s, sr_key_int(100), SR_WRITE,
                             "SELECT v, v IS NULL FROM params WHERE k = ?", 1, nullp, &res),
                     SR_OK);
    ck_assert_ptr_null(sr_result_value(res, 0, 0));
    ck_assert_str_eq(sr_result_value(res, 0, 1), "1");
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(test_results_values_and_affected_rows)
{
    sr_router *r = open_router_opts((const char *const[]){"pool.max_size", "1", NULL});
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_table(s, "res");
    int shard = sr_router_shard_for(r, sr_key_int(1));
    /* Several rows in one shard, written through sr_exec_shard. */
    for (int k = 1; k <= 3; k++) {
        char kb[8];
        snprintf(kb, sizeof kb, "%d", k);
        const char *p[] = {kb, "v"};
        ck_assert_int_eq(sr_exec_shard(s, shard, SR_WRITE, "INSERT INTO res VALUES (?, ?)", 2, p,
                                       NULL),
                         SR_OK);
    }
    sr_result *res = NULL;
    /* Matched rows, as the other drivers count them, even when the value does not change. */
    ck_assert_int_eq(sr_exec_shard(s, shard, SR_WRITE, "UPDATE res SET v = 'v'", 0, NULL, &res),
                     SR_OK);
    ck_assert_int_eq(sr_result_affected(res), 3);
    ck_assert_int_eq(sr_result_nrows(res), 0);
    sr_result_free(res);
    /* Values longer than the driver's first buffer, numbers, dates, binary;
     * read on the replica once it has the rows. */
    replica_catch_up();
    ck_assert_int_eq(sr_exec_shard(s, shard, SR_READ,
                                   "SELECT REPEAT('ab', 5000) AS big, 42 AS i, 1.5 AS d, "
                                   "DATE('2024-02-29') AS dt, X'00FF00' AS bin, k FROM res ORDER BY k",
                                   0, NULL, &res),
                     SR_OK);
    ck_assert_int_eq(sr_result_nrows(res), 3);
    ck_assert_int_eq(sr_result_ncols(res), 6);
    for (int row = 0; row < 3; row++) {
        ck_assert_uint_eq(sr_result_length(res, row, 0), 10000);
        ck_assert_int_eq(strncmp(sr_result_value(res, row, 0), "abab", 4), 0);
        ck_assert_str_eq(sr_result_value(res, row, 1), "42");
        ck_assert_str_eq(sr_result_value(res, row, 2), "1.5");
        ck_assert_str_eq(sr_result_value(res, row, 3), "2024-02-29");
        ck_assert_uint_eq(sr_result_length(res, row, 4), 3);
        ck_assert_int_eq(memcmp(sr_result_value(res, row, 4), "\0\xff\0", 3), 0);
        char kb[8];
        snprintf(kb, sizeof kb, "%d", row + 1);
        ck_assert_str_eq(sr_result_value(res, row, 5), kb);
    }
    ck_assert_str_eq(sr_result_colname(res, 3), "dt");
    sr_result_free(res);
    /* A SQL-level PREPARE cannot itself be prepared (ER_UNSUPPORTED_PS): it
     * runs as a text query; EXECUTE likewise, on the same pooled connection. */
    ck_assert_msg(sr_exec_shard(s, shard, SR_WRITE, "PREPARE sr_p FROM 'SELECT 6 * 7'", 0, NULL,
                                NULL) == SR_OK,
                  "%s", sr_session_errmsg(s));
    ck_assert_int_eq(sr_exec_shard(s, shard, SR_WRITE, "EXECUTE sr_p", 0, NULL, &res), SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "42");
    sr_result_free(res);
    /* With parameters there is no text fall-back: the error is reported. */
    const char *one[] = {"1"};
    ck_assert_int_eq(sr_exec_shard(s, shard, SR_WRITE, "EXECUTE sr_p USING ?", 1, one, NULL),
                     SR_EQUERY);
    ck_assert_msg(strstr(sr_session_errmsg(s), "1295"), "%s", sr_session_errmsg(s));
    /* A procedure's result set through a prepared CALL; the trailing status
     * result is drained, so the connection stays in step. */
    ck_assert_int_eq(sr_exec_shard(s, shard, SR_WRITE, "DROP PROCEDURE IF EXISTS sr_proc", 0, NULL,
                                   NULL),
                     SR_OK);
    ck_assert_int_eq(sr_exec_shard(s, shard, SR_WRITE,
                                   "CREATE PROCEDURE sr_proc(IN x INT) SELECT x * 2 AS twice", 0,
                                   NULL, NULL),
                     SR_OK);
    /* Twice: the cached CALL statement is executed again. */
    const char *args[2][1] = {{"21"}, {"50"}};
    const char *want[2] = {"42", "100"};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(sr_exec_shard(s, shard, SR_WRITE, "CALL sr_proc(?)", 1, args[i], &res),
                         SR_OK);
        ck_assert_str_eq(sr_result_colname(res, 0), "twice");
        ck_assert_str_eq(sr_result_value(res, 0, 0), want[i]);
        sr_result_free(res);
    }
    ck_assert_int_eq(sr_exec_shard(s, shard, SR_WRITE, "SELECT 'in step'", 0, NULL, &res), SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "in step");
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(test_prepared_statements_cached_and_bounded)
{
    sr_router *r = open_router_opts(
        (const char *const[]){"pool.max_size", "1", "stmt_cache.max_size", "2", NULL});
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    const char *status = "SHOW SESSION STATUS LIKE 'Com_stmt_prepare'";
    sr_result *res = NULL;
    /* The one pooled primary connection of shard 0. */
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "SELECT 1 + ?", 1,
                                       (const char *const[]){"1"}, NULL),
                         SR_OK);
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, status, 0, NULL, &res), SR_OK);
    long before = atol(sr_result_value(res, 0, 1));
    sr_result_free(res);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "SELECT 1 + ?", 1,
                                       (const char *const[]){"1"}, NULL),
                         SR_OK);
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, status, 0, NULL, &res), SR_OK);
    long after = atol(sr_result_value(res, 0, 1));
    sr_result_free(res);
    /* A repeated statement is parsed once per connection. */
    ck_assert_int_eq(after, before);
    /* Distinct statements: the cache keeps at most two prepared on the
     * server, closing the least recently used ones. (The count is global;
     * sessions of earlier tests may take a moment to go away, hence the
     * bounded wait.) */
    MYSQL *admin = my_direct("SR_MY_ADMIN_PRIMARY", NULL);
    for (int i = 0; i < 6; i++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT %d", i);
        ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, sql, 0, NULL, NULL), SR_OK);
    }
    const char *count_sql = "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                            "WHERE VARIABLE_NAME = 'PREPARED_STMT_COUNT'";
    long count = my_direct_long(admin, count_sql);
    for (int i = 0; i < 200 && count != 2; i++) {
        usleep(10000);
        count = my_direct_long(admin, count_sql);
    }
    ck_assert_int_eq(count, 2);
    mysql_close(admin);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct worker {
    sr_router *r;
    int id;
    int ok;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    sr_session *s = NULL;
    if (sr_session_new(w->r, &s) != SR_OK)
        return NULL;
    /* Placement: reads on the replica even right after this session's SR_WRITEs. */
    if (sr_session_set(s, "consistency", "any") != SR_OK) {
        sr_session_free(s);
        return NULL;
    }
    for (int i = 0; i < 100; i++) {
        char v[32];
        snprintf(v, sizeof v, "t%d-%d", w->id, i);
        const char *p[] = {v};
        sr_result *res = NULL;
        /* Reads on the replica and writes' reads on the primary, interleaved. */
        sr_intent intent = i % 2 ? SR_READ : SR_WRITE;
        if (sr_exec(s, sr_key_int(w->id * 1000 + i), intent, "SELECT ?, @@server_id", 1, p, &res) !=
            SR_OK)
            break;
        int good = sr_result_nrows(res) == 1 && strcmp(sr_result_value(res, 0, 0), v) == 0 &&
                   strcmp(sr_result_value(res, 0, 1), intent == SR_READ ? "2" : "1") == 0;
        sr_result_free(res);
        if (!good)
            break;
        w->ok++;
    }
    sr_session_free(s);
    return NULL;
}

START_TEST(test_threads_share_the_router)
{
    /* Fewer pooled connections than threads: checkouts wait and connections
     * are reused across threads. */
    sr_router *r = open_router_opts((const char *const[]){"pool.max_size", "3", NULL});
    enum { NTHREADS = 8 };
    pthread_t t[NTHREADS];
    worker w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (worker){r, i, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < NTHREADS; i++)
        ck_assert_msg(w[i].ok == 100, "thread %d: %d of 100 statements right", i, w[i].ok);
    sr_router_close(r);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Replication hooks (through the driver interface)                         */
/* ------------------------------------------------------------------------ */

typedef struct hook_conn {
    const sr_driver *d;
    sr_driver_conn *c;
    char redacted[256];
    sr_uri uri;
    my_addr a;
} hook_conn;

static void hook_open(hook_conn *h, const char *env_name, sr_role role)
{
    memset(h, 0, sizeof *h);
    h->d = sr_driver_find("mysql");
    ck_assert_ptr_nonnull(h->d);
    ck_assert_ptr_eq(sr_driver_find("mariadb"), h->d);
    ck_assert(h->d->write_position && h->d->has_replayed && h->d->replica_lag_ms && h->d->server_role);
    my_parse_addr(my_env(env_name), &h->a);
    snprintf(h->redacted, sizeof h->redacted, "mysql://%s:***@%s:%d/shard0", h->a.user, h->a.host,
             h->a.port);
    h->uri.scheme = "mysql";
    h->uri.user = h->a.user;
    h->uri.password = h->a.password;
    h->uri.host = h->a.host;
    h->uri.port = h->a.port;
    h->uri.database = "shard0";
    h->uri.redacted = h->redacted;
    sr_driver_connect_args args = {.uri = &h->uri, .role = role, .connect_timeout_ms = 2000,
                                   .statement_timeout_ms = 2000, .stmt_cache_size = 4,
                                   .stmt_cache_bytes = 8u << 20};
    sr_driver_error e;
    memset(&e, 0, sizeof e);
    ck_assert_msg(h->d->connect(&args, &h->c, &e) == SR_OK, "%s", e.message);
}

static int64_t soon(void) { return sr_clock_ns() + 2000LL * 1000000; }

static void hook_write(hook_conn *p, char *pos, size_t len)
{
    sr_driver_error e;
    memset(&e, 0, sizeof e);
    const char *v[] = {"x"};
    ck_assert_int_eq(p->d->exec(p->c, "CREATE TABLE IF NOT EXISTS gtid_t (v TEXT)", 0, NULL, soon(),
                                NULL, &e),
                     SR_OK);
    ck_assert_msg(p->d->exec(p->c, "INSERT INTO gtid_t VALUES (?)", 1, v, soon(), NULL, &e) == SR_OK,
                  "%s", e.message);
    ck_assert_msg(p->d->write_position(p->c, soon(), pos, len, &e) == SR_OK, "%s", e.message);
    ck_assert_msg(strlen(pos) > 0, "empty write position");
}

static int hook_replayed(hook_conn *r, const char *pos)
{
    sr_driver_error e;
    memset(&e, 0, sizeof e);
    int done = -1;
    ck_assert_msg(r->d->has_replayed(r->c, pos, soon(), &done, &e) == SR_OK, "%s", e.message);
    ck_assert(done == 0 || done == 1);
    return done;
}

/* Polls (bounded) until the replica reports pos as applied. */
static int hook_wait_replayed(hook_conn *r, const char *pos)
{
    for (int i = 0; i < 1000; i++) {
        if (hook_replayed(r, pos))
            return 1;
        usleep(10000);
    }
    return 0;
}

static int64_t hook_lag(hook_conn *h)
{
    sr_driver_error e;
    memset(&e, 0, sizeof e);
    int64_t lag = -2;
    ck_assert_msg(h->d->replica_lag_ms(h->c, soon(), &lag, &e) == SR_OK, "%s", e.message);
    return lag;
}

/* ---- two-phase commit through the driver (ABI 7) ---- */

/* Whether XA RECOVER, filtered by `prefix`, lists `gid`. */
static int xa_listed(hook_conn *h, const char *prefix, const char *gid)
{
    sr_result_builder rb;
    ck_assert_int_eq(sr__result_builder_init(&rb, 0), SR_OK);
    sr_driver_error e;
    memset(&e, 0, sizeof e);
    int rc = h->d->list_prepared(h->c, prefix, soon(), &rb, &e);
    ck_assert_msg(rc == SR_OK, "list_prepared: %s", e.message);
    sr_result *res = sr__result_builder_finish(&rb);
    ck_assert_str_eq(sr_result_colname(res, 0), "gid");
    int found = 0;
    for (int i = 0; i < sr_result_nrows(res); i++) {
        ck_assert_msg(strncmp(sr_result_value(res, i, 0), prefix, strlen(prefix)) == 0,
                      "listed %s for prefix %s", sr_result_value(res, i, 0), prefix);
        found |= strcmp(sr_result_value(res, i, 0), gid) == 0;
    }
    sr_result_free(res);
    return found;
}

static void xa_ok(int rc, const sr_driver_error *e, const char *what)
{
    ck_assert_msg(rc == SR_OK, "%s: %s (%s)", what, sr_strerror(rc), e->message);
}

static void xa_insert(hook_conn *h, const char *id)
{
    sr_driver_error e;
    memset(&e, 0, sizeof e);
    const char *v[] = {id};
    xa_ok(h->d->exec(h->c, "INSERT INTO xa_t VALUES (?)", 1, v, soon(), NULL, &e), &e, "insert");
}

START_TEST(test_two_phase_commit_through_the_driver)
{
    MYSQL *m = my_direct("SR_MY_PRIMARY", "shard0");
    my_direct_exec(m, "CREATE TABLE IF NOT EXISTS xa_t (id INT PRIMARY KEY)");
    my_direct_exec(m, "DELETE FROM xa_t");
    hook_conn a, b;
    hook_open(&a, "SR_MY_PRIMARY", SR_PRIMARY);
    ck_assert(sr_driver_has_two_phase(a.d));
    sr_driver_error e;
    memset(&e, 0, sizeof e);
    int found = -1;

    /* Prepared, listed, committed on the same connection. */
    xa_ok(a.d->begin_global(a.c, "srtest:1", soon(), &e), &e, "begin_global");
    xa_insert(&a, "1");
    xa_ok(a.d->prepare(a.c, "srtest:1", soon(), &e), &e, "prepare");
    ck_assert(xa_listed(&a, "srtest:", "srtest:1"));
    ck_assert_int_eq(my_direct_long(m, "SELECT COUNT(*) FROM xa_t"), 0);
    xa_ok(a.d->commit_prepared(a.c, "srtest:1", soon(), &found, &e), &e, "commit_prepared");
    ck_assert_int_eq(found, 1);
    ck_assert_int_eq(my_direct_long(m, "SELECT COUNT(*) FROM xa_t WHERE id = 1"), 1);
    xa_ok(a.d->commit_prepared(a.c, "srtest:1", soon(), &found, &e), &e, "commit again");
    ck_assert_int_eq(found, 0);

    /* Prepared, then the connection is gone: the transaction survives, detached, and
     * another connection finds it and rolls it back. */
    xa_ok(a.d->begin_global(a.c, "srtest:2", soon(), &e), &e, "begin_global");
    xa_insert(&a, "2");
    xa_ok(a.d->prepare(a.c, "srtest:2", soon(), &e), &e, "prepare");
    a.d->close(a.c);
    hook_open(&b, "SR_MY_PRIMARY", SR_PRIMARY);
    int seen = 0;
    for (int i = 0; i < 200 && !seen; i++) { /* the server detaches it as it sees the close */
        seen = xa_listed(&b, "srtest:", "srtest:2");
        if (!seen)
            usleep(10000);
    }
    ck_assert_msg(seen, "the prepared transaction did not survive its connection");
    ck_assert(xa_listed(&b, "", "srtest:2"));
    ck_assert(!xa_listed(&b, "other:", "srtest:2"));
    xa_ok(b.d->rollback_prepared(b.c, "srtest:2", soon(), &found, &e), &e, "rollback_prepared");
    ck_assert_int_eq(found, 1);
    xa_ok(b.d->rollback_prepared(b.c, "srtest:2", soon(), &found, &e), &e, "rollback again");
    ck_assert_int_eq(found, 0);
    ck_assert_int_eq(my_direct_long(m, "SELECT COUNT(*) FROM xa_t WHERE id = 2"), 0);

    /* One phase: begun as global, ended by the plain commit and rollback. */
    xa_ok(b.d->begin_global(b.c, "srtest:3", soon(), &e), &e, "begin_global");
    xa_insert(&b, "3");
    xa_ok(b.d->commit(b.c, soon(), &e), &e, "commit");
    xa_ok(b.d->begin_global(b.c, "srtest:4", soon(), &e), &e, "begin_global");
    xa_insert(&b, "4");
    xa_ok(b.d->rollback(b.c, soon(), &e), &e, "rollback");
    ck_assert_int_eq(my_direct_long(m, "SELECT COUNT(*) FROM xa_t"), 2);
    ck_assert_int_eq(my_direct_long(m, "SELECT SUM(id) FROM xa_t"), 4); /* 1 and 3 */
    /* ... and the connection takes plain statements again. */
    xa_insert(&b, "5");
    ck_assert_int_eq(my_direct_long(m, "SELECT COUNT(*) FROM xa_t WHERE id = 5"), 1);

    /* Preparing what was not begun here is refused, nothing sent. */
    ck_assert_int_eq(b.d->prepare(b.c, "srtest:9", soon(), &e), SR_EINVAL);
    const char *bad[] = {"", "a'b", "a b", "x;DROP",
                         "gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg", NULL};
    for (int i = 0; bad[i]; i++) {
        ck_assert_int_eq(b.d->begin_global(b.c, bad[i], soon(), &e), SR_EINVAL);
        ck_assert_int_eq(b.d->commit_prepared(b.c, bad[i], soon(), &found, &e), SR_EINVAL);
        ck_assert_int_eq(b.d->rollback_prepared(b.c, bad[i], soon(), &found, &e), SR_EINVAL);
    }
    xa_insert(&b, "6"); /* still usable */
    b.d->close(b.c);
    mysql_close(m);
}
END_TEST

/* Restores replication and the replica process whatever a test left. */
static void restore_replica(void)
{
    pid_t pid = replica_pid();
    if (pid > 0)
        kill(pid, SIGCONT);
    my_addr a;
    const char *uri = getenv("SR_MY_ADMIN_REPLICA");
    if (!uri)
        return;
    my_parse_addr(uri, &a);
    MYSQL *m = mysql_init(NULL);
    if (m && mysql_real_connect(m, a.host, a.user, a.password, NULL, (unsigned)a.port, NULL, 0)) {
        mysql_query(m, "START SLAVE");
        my_replication_running(m);
    }
    mysql_close(m);
}

/* Before a test that reads on the replica: replication runs. */
static void replication_ready(void)
{
    MYSQL *m = my_direct("SR_MY_ADMIN_REPLICA", NULL);
    ck_assert_msg(my_replication_running(m), "replication is not running on the replica");
    mysql_close(m);
}

START_TEST(test_role_of_each_server)
{
    hook_conn p, r;
    hook_open(&p, "SR_MY_PRIMARY", SR_PRIMARY);
    hook_open(&r, "SR_MY_REPLICA", SR_REPLICA);
    sr_driver_error e;
    memset(&e, 0, sizeof e);
    sr_role role = SR_REPLICA;
    ck_assert_int_eq(p.d->server_role(p.c, soon(), &role, &e), SR_OK);
    ck_assert_int_eq(role, SR_PRIMARY);
    ck_assert_int_eq(r.d->server_role(r.c, soon(), &role, &e), SR_OK);
    ck_assert_int_eq(role, SR_REPLICA);
    /* A primary is no replica: never an eligible lag. */
    ck_assert_int_eq(hook_lag(&p), -1);
    ck_assert_int_ge(hook_lag(&r), 0);
    p.d->close(p.c);
    r.d->close(r.c);
}
END_TEST

START_TEST(test_gtid_applied_and_held_back)
{
    hook_conn p, r;
    hook_open(&p, "SR_MY_PRIMARY", SR_PRIMARY);
    hook_open(&r, "SR_MY_REPLICA", SR_REPLICA);
    char pos[512];

    /* A write is eventually reported as applied on the replica. */
    hook_write(&p, pos, sizeof pos);
    ck_assert_msg(hook_wait_replayed(&r, pos), "position %s never applied", pos);

    /* With the SQL thread stopped, a new write is not applied... */
    MYSQL *admin = my_direct("SR_MY_ADMIN_REPLICA", NULL);
    my_direct_exec(admin, "STOP SLAVE SQL_THREAD");
    char held[512];
    hook_write(&p, held, sizeof held);
    ck_assert_str_ne(held, pos);
    ck_assert_int_eq(hook_replayed(&r, held), 0);
    /* ...the earlier one still is... */
    ck_assert_int_eq(hook_replayed(&r, pos), 1);
    /* ...waiting for it ends at the deadline with "no", and the connection
     * stays usable... */
    sr_driver_error e0;
    memset(&e0, 0, sizeof e0);
    int waited = -1;
    ck_assert_msg(r.d->wait_replayed(r.c, held, sr_clock_ns() + 300LL * 1000000, &waited, &e0) ==
                      SR_OK,
                  "%s", e0.message);
    ck_assert_int_eq(waited, 0);
    char rpos[512];
    ck_assert_int_eq(r.d->replay_position(r.c, soon(), rpos, sizeof rpos, &e0), SR_OK);
    ck_assert_int_eq(r.d->position_covers(rpos, pos), 1);
    ck_assert_int_eq(r.d->position_covers(rpos, held), 0);
    /* ...and the replica is not eligible: stopped replication is no lag "0". */
    ck_assert_int_eq(hook_lag(&r), -1);
    usleep(100000);
    ck_assert_int_eq(hook_replayed(&r, held), 0);

    /* A write in a second replication domain: positions become lists, and
     * each domain is compared on its own. */
    MYSQL *padmin = my_direct("SR_MY_ADMIN_PRIMARY", "shard0");
    my_direct_exec(padmin, "SET SESSION gtid_domain_id = 7");
    my_direct_exec(padmin, "INSERT INTO gtid_t VALUES ('domain 7')");
    mysql_close(padmin);
    char multi[512];
    sr_driver_error e;
    memset(&e, 0, sizeof e);
    ck_assert_int_eq(p.d->write_position(p.c, soon(), multi, sizeof multi, &e), SR_OK);
    ck_assert_msg(strstr(multi, ",") && strstr(multi, "7-1-"), "position %s", multi);
    ck_assert_int_eq(hook_replayed(&r, multi), 0);
    /* Domain 0 applied up to `pos`, domain 7 not at all: not applied. */
    char mixed[1100];
    const char *d7 = strstr(multi, "7-1-");
    snprintf(mixed, sizeof mixed, "%s,%.*s", pos, (int)strcspn(d7, ","), d7);
    ck_assert_int_eq(hook_replayed(&r, mixed), 0);

    /* Replication resumes: a wait sees it applied, and so do the checks. */
    my_direct_exec(admin, "START SLAVE SQL_THREAD");
    waited = -1;
    ck_assert_msg(r.d->wait_replayed(r.c, multi, sr_clock_ns() + 20000LL * 1000000, &waited, &e0) ==
                      SR_OK,
                  "%s", e0.message);
    ck_assert_int_eq(waited, 1);
    ck_assert_int_eq(r.d->replay_position(r.c, soon(), rpos, sizeof rpos, &e0), SR_OK);
    ck_assert_int_eq(r.d->position_covers(rpos, multi), 1);
    /* The primary has applied what it wrote. */
    ck_assert_int_eq(p.d->replay_position(p.c, soon(), rpos, sizeof rpos, &e0), SR_OK);
    ck_assert_int_eq(p.d->position_covers(rpos, multi), 1);
    ck_assert_msg(hook_wait_replayed(&r, held), "position %s never applied after restart", held);
    ck_assert_msg(hook_wait_replayed(&r, multi), "position %s never applied after restart", multi);
    ck_assert_int_eq(hook_replayed(&r, mixed), 1);
    int64_t lag = -1;
    for (int i = 0; i < 500 && lag < 0; i++) {
        lag = hook_lag(&r);
        if (lag < 0)
            usleep(10000);
    }
    ck_assert_int_ge(lag, 0);
    mysql_close(admin);
    p.d->close(p.c);
    r.d->close(r.c);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* exec_at: a statement with its write position or its replica check        */
/* ------------------------------------------------------------------------ */

/* exec_at on a hook connection with a fresh result builder; the rows go to
 * *res (freed by the caller) or are dropped. */
static int hook_exec_at(hook_conn *h, const char *sql, int np, const char *const *params,
                        const char *need, char *pos, int *stale, sr_result **res,
                        sr_driver_error *e)
{
    ck_assert_ptr_nonnull(h->d->exec_at);
    sr_result_builder rb;
    ck_assert_int_eq(sr__result_builder_init(&rb, 0), SR_OK);
    memset(e, 0, sizeof *e);
    *stale = -1;
    strcpy(pos, "junk");
    int rc = h->d->exec_at(h->c, sql, np, params, need, soon(), &rb, pos, SR_POSITION_MAX, stale, e);
    ck_assert_int_eq(*stale == 0 || *stale == 1, 1);
    sr_result *r = sr__result_builder_finish(&rb);
    ck_assert_ptr_nonnull(r);
    if (res)
        *res = r;
    else
        sr_result_free(r);
    return rc;
}

/* A write through exec_at that must succeed: its position in pos. */
static void at_write(hook_conn *p, const char *sql, int np, const char *const *params, char *pos,
                     int64_t affected)
{
    sr_driver_error e;
    int stale = -1;
    sr_result *res = NULL;
    ck_assert_msg(hook_exec_at(p, sql, np, params, NULL, pos, &stale, &res, &e) == SR_OK, "%s: %s",
                  sql, e.message);
    ck_assert_int_eq(stale, 0);
    ck_assert_int_eq(sr_result_affected(res), affected);
    sr_result_free(res);
}

/* The table the exec_at tests write, empty, on the primary and the replica. */
static void at_table(hook_conn *p)
{
    sr_driver_error e;
    memset(&e, 0, sizeof e);
    ck_assert_int_eq(p->d->exec(p->c, "DROP TABLE IF EXISTS at_t", 0, NULL, soon(), NULL, &e), SR_OK);
    ck_assert_int_eq(p->d->exec(p->c, "CREATE TABLE at_t (id INT PRIMARY KEY, v TEXT)", 0, NULL,
                                soon(), NULL, &e),
                     SR_OK);
    replica_catch_up();
}

/* The connection's own @@last_gtid, read back on the same connection. */
static char *session_last_gtid(hook_conn *p)
{
    sr_result_builder rb;
    ck_assert_int_eq(sr__result_builder_init(&rb, 0), SR_OK);
    sr_driver_error e;
    memset(&e, 0, sizeof e);
    ck_assert_int_eq(p->d->exec(p->c, "SELECT @@last_gtid", 0, NULL, soon(), &rb, &e), SR_OK);
    sr_result *r = sr__result_builder_finish(&rb);
    ck_assert_int_eq(sr_result_nrows(r), 1);
    char *v = strdup(sr_result_value(r, 0, 0));
    sr_result_free(r);
    return v;
}

/* A write's position comes with the write: exactly the GTID the statement
 * wrote (the session's @@last_gtid), newer than anything before it, covered
 * by the primary's binlog position, and a replica that reached it has the
 * row. */
START_TEST(test_exec_at_write_position)
{
    hook_conn p;
    hook_open(&p, "SR_MY_PRIMARY", SR_PRIMARY);
    at_table(&p);
    char before[SR_POSITION_MAX], pos[SR_POSITION_MAX];
    sr_driver_error e;
    memset(&e, 0, sizeof e);
    ck_assert_int_eq(p.d->write_position(p.c, soon(), before, sizeof before, &e), SR_OK);

    const char *v[] = {"1", "one"};
    at_write(&p, "INSERT INTO at_t VALUES (?, ?)", 2, v, pos, 1);
    ck_assert_msg(*pos, "no position from the OK packet");
    /* One GTID "domain-server-seq", the write's own. */
    ck_assert_ptr_null(strchr(pos, ','));
    char *last = session_last_gtid(&p);
    ck_assert_str_eq(pos, last);
    free(last);
    ck_assert_int_eq(p.d->position_covers(pos, pos), 1);
    ck_assert_int_eq(p.d->position_covers(before, pos), 0);

    MYSQL *pa = my_direct("SR_MY_ADMIN_PRIMARY", NULL);
    char *binlog = my_direct_value(pa, "SELECT @@gtid_binlog_pos");
    ck_assert_int_eq(p.d->position_covers(binlog, pos), 1);
    free(binlog);
    mysql_close(pa);

    /* A replica that reached pos has the row. */
    MYSQL *ra = my_direct("SR_MY_ADMIN_REPLICA", "shard0");
    char sql[SR_POSITION_MAX + 64];
    snprintf(sql, sizeof sql, "SELECT MASTER_GTID_WAIT('%s', 20)", pos);
    ck_assert_int_eq(my_direct_long(ra, sql), 0);
    char *row = my_direct_value(ra, "SELECT v FROM at_t WHERE id = 1");
    ck_assert_ptr_nonnull(row);
    ck_assert_str_eq(row, "one");
    free(row);
    mysql_close(ra);
    p.d->close(p.c);
}
END_TEST

/* A statement that writes nothing (an UPDATE that matches no row) has no GTID
 * of its own: pos is "", so the core falls back to write_position(), never
 * the GTID of the connection's earlier write. The same holds for a write
 * answered with rows (INSERT ... RETURNING): its answer ends without an OK
 * packet, so Connector/C 3.3 still holds the earlier statement's tracker. */
START_TEST(test_exec_at_no_new_gtid)
{
    hook_conn p;
    hook_open(&p, "SR_MY_PRIMARY", SR_PRIMARY);
    at_table(&p);
    char first[SR_POSITION_MAX], pos[SR_POSITION_MAX];
    const char *v[] = {"1", "one"};
    at_write(&p, "INSERT INTO at_t VALUES (?, ?)", 2, v, first, 1);
    ck_assert(*first);

    const char *none[] = {"-1"};
    at_write(&p, "UPDATE at_t SET v = 'x' WHERE id = ?", 1, none, pos, 0);
    ck_assert_str_eq(pos, "");
    at_write(&p, "UPDATE at_t SET v = 'x' WHERE id = -2", 0, NULL, pos, 0);
    ck_assert_str_eq(pos, "");

    /* A write answered with rows: it did write (a new GTID on the server),
     * but not in an OK packet. */
    at_write(&p, "INSERT INTO at_t VALUES (?, ?)", 2, (const char *const[]){"2", "two"}, first, 1);
    ck_assert(*first);
    sr_driver_error e;
    int stale = -1;
    sr_result *res = NULL;
    ck_assert_msg(hook_exec_at(&p, "INSERT INTO at_t VALUES (3, 'three') RETURNING id", 0, NULL,
                               NULL, pos, &stale, &res, &e) == SR_OK,
                  "%s", e.message);
    ck_assert_int_eq(sr_result_nrows(res), 1);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "3");
    sr_result_free(res);
    ck_assert_str_eq(pos, "");
    char *last = session_last_gtid(&p);
    ck_assert_str_ne(last, first); /* the server did write a new GTID */
    free(last);
    /* A read through the write path: no GTID either. */
    ck_assert_int_eq(hook_exec_at(&p, "SELECT COUNT(*) FROM at_t", 0, NULL, NULL, pos, &stale, &res,
                                  &e),
                     SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "3");
    sr_result_free(res);
    ck_assert_str_eq(pos, "");
    p.d->close(p.c);
}
END_TEST

/* Positions grow with each write on one connection, for a statement
 * prepared now and for the same one from the statement cache. */
START_TEST(test_exec_at_positions_increase)
{
    hook_conn p;
    hook_open(&p, "SR_MY_PRIMARY", SR_PRIMARY);
    at_table(&p);
    char a[SR_POSITION_MAX], b[SR_POSITION_MAX], c[SR_POSITION_MAX];
    at_write(&p, "INSERT INTO at_t VALUES (?, ?)", 2, (const char *const[]){"1", "a"}, a, 1);
    at_write(&p, "INSERT INTO at_t VALUES (?, ?)", 2, (const char *const[]){"2", "b"}, b, 1);
    at_write(&p, "UPDATE at_t SET v = 'c' WHERE id = 1", 0, NULL, c, 1);
    ck_assert(*a && *b && *c);
    ck_assert_int_eq(p.d->position_covers(b, a), 1);
    ck_assert_int_eq(p.d->position_covers(a, b), 0);
    ck_assert_int_eq(p.d->position_covers(c, b), 1);
    ck_assert_int_eq(p.d->position_covers(b, c), 0);
    p.d->close(p.c);
}
END_TEST

/* A replica read that needs a position: refused as stale (no rows, the
 * statement not run) while the replica's SQL thread is held back, answered
 * once it caught up; pos is the replica's applied position either way. */
START_TEST(test_exec_at_replica_read)
{
    hook_conn p, r;
    hook_open(&p, "SR_MY_PRIMARY", SR_PRIMARY);
    hook_open(&r, "SR_MY_REPLICA", SR_REPLICA);
    at_table(&p);
    char old[SR_POSITION_MAX], need[SR_POSITION_MAX], pos[SR_POSITION_MAX];
    at_write(&p, "INSERT INTO at_t VALUES (?, ?)", 2, (const char *const[]){"1", "old"}, old, 1);
    ck_assert(*old);
    ck_assert_msg(hook_wait_replayed(&r, old), "position %s never applied", old);

    MYSQL *admin = my_direct("SR_MY_ADMIN_REPLICA", NULL);
    my_direct_exec(admin, "STOP SLAVE SQL_THREAD");
    at_write(&p, "INSERT INTO at_t VALUES (?, ?)", 2, (const char *const[]){"2", "new"}, need, 1);
    ck_assert(*need);

    const char *sql = "SELECT v FROM at_t WHERE id = ?";
    const char *id2[] = {"2"}, *id1[] = {"1"};
    sr_driver_error e;
    int stale = -1;
    sr_result *res = NULL;
    ck_assert_msg(hook_exec_at(&r, sql, 1, id2, need, pos, &stale, &res, &e) == SR_OK, "%s",
                  e.message);
    ck_assert_int_eq(stale, 1);
    ck_assert_int_eq(sr_result_ncols(res), 0);
    ck_assert_int_eq(sr_result_nrows(res), 0);
    sr_result_free(res);
    ck_assert_msg(*pos, "no replica position");
    ck_assert_int_eq(r.d->position_covers(pos, old), 1);
    ck_assert_int_eq(r.d->position_covers(pos, need), 0);

    /* A position the replica has applied: read there at once. */
    ck_assert_int_eq(hook_exec_at(&r, sql, 1, id1, old, pos, &stale, &res, &e), SR_OK);
    ck_assert_int_eq(stale, 0);
    ck_assert_int_eq(sr_result_nrows(res), 1);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "old");
    sr_result_free(res);
    ck_assert_int_eq(r.d->position_covers(pos, old), 1);

    /* A malformed position is the caller's error; the connection stays. */
    ck_assert_int_eq(hook_exec_at(&r, sql, 1, id1, "not-a-gtid", pos, &stale, NULL, &e), SR_EINVAL);

    my_direct_exec(admin, "START SLAVE SQL_THREAD");
    stale = 1;
    for (int i = 0; i < 1000 && stale; i++) {
        ck_assert_msg(hook_exec_at(&r, sql, 1, id2, need, pos, &stale, &res, &e) == SR_OK, "%s",
                      e.message);
        if (stale) {
            ck_assert_int_eq(sr_result_nrows(res), 0);
            sr_result_free(res);
            usleep(10000);
        }
    }
    ck_assert_int_eq(stale, 0);
    ck_assert_int_eq(sr_result_nrows(res), 1);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "new");
    sr_result_free(res);
    ck_assert_int_eq(r.d->position_covers(pos, need), 1);
    ck_assert(my_replication_running(admin));
    mysql_close(admin);
    p.d->close(p.c);
    r.d->close(r.c);
}
END_TEST

/* SQL errors come back as exec reports them, and the connection goes on. */
START_TEST(test_exec_at_errors)
{
    hook_conn p, r;
    hook_open(&p, "SR_MY_PRIMARY", SR_PRIMARY);
    hook_open(&r, "SR_MY_REPLICA", SR_REPLICA);
    at_table(&p);
    char pos[SR_POSITION_MAX], need[SR_POSITION_MAX];
    const char *v[] = {"1", "one"};
    at_write(&p, "INSERT INTO at_t VALUES (?, ?)", 2, v, need, 1);
    ck_assert_msg(hook_wait_replayed(&r, need), "position %s never applied", need);

    sr_driver_error e;
    int stale = -1;
    ck_assert_int_eq(hook_exec_at(&p, "INSERT INTO at_t VALUES (?, ?)", 2, v, NULL, pos, &stale,
                                  NULL, &e),
                     SR_EQUERY);
    ck_assert_int_eq(e.native_code, 1062); /* ER_DUP_ENTRY */
    ck_assert_str_eq(e.sqlstate, "23000");
    ck_assert_int_eq(e.transient, 0);
    ck_assert_int_eq(hook_exec_at(&p, "INSERT INTO at_t VALUES (?, ?)", 1, v, NULL, pos, &stale,
                                  NULL, &e),
                     SR_EINVAL);
    /* Usable after: the next write and its position. */
    at_write(&p, "INSERT INTO at_t VALUES (?, ?)", 2, (const char *const[]){"2", "two"}, pos, 1);
    ck_assert(*pos);
    ck_assert_int_eq(p.d->position_covers(pos, need), 1);

    ck_assert_int_eq(hook_exec_at(&r, "SELECT v FROM no_such_table", 0, NULL, need, pos, &stale,
                                  NULL, &e),
                     SR_EQUERY);
    ck_assert_int_eq(e.native_code, 1146); /* ER_NO_SUCH_TABLE */
    ck_assert_str_eq(e.sqlstate, "42S02");
    ck_assert_int_eq(e.transient, 0);
    sr_result *res = NULL;
    ck_assert_int_eq(hook_exec_at(&r, "SELECT v FROM at_t WHERE id = 1", 0, NULL, need, pos, &stale,
                                  &res, &e),
                     SR_OK);
    ck_assert_int_eq(stale, 0);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "one");
    sr_result_free(res);
    p.d->close(p.c);
    r.d->close(r.c);
}
END_TEST

/* Whatever the server tracks by default, a primary connection adds
 * last_gtid and keeps the rest; "*" (everything) stays as it is. A server
 * whose global list is empty does not track for a session that sets its
 * own list (MariaDB 10.11.19, as observed): pos is then "" and the core
 * asks write_position(). */
START_TEST(test_exec_at_tracker_defaults)
{
    static const struct {
        const char *global, *session;
        int tracked;
    } cases[] = {{"*", "*", 1},
                 {"", "last_gtid", 0},
                 {"autocommit", "autocommit,last_gtid", 1},
                 {"last_gtid", "last_gtid", 1}};
    MYSQL *pa = my_direct("SR_MY_ADMIN_PRIMARY", NULL);
    char *orig = my_direct_value(pa, "SELECT @@GLOBAL.session_track_system_variables");
    ck_assert_ptr_nonnull(orig);
    hook_conn p;
    hook_open(&p, "SR_MY_PRIMARY", SR_PRIMARY);
    at_table(&p);
    p.d->close(p.c);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SET GLOBAL session_track_system_variables = '%s'",
                 cases[i].global);
        my_direct_exec(pa, sql);
        hook_open(&p, "SR_MY_PRIMARY", SR_PRIMARY);
        sr_result_builder rb;
        ck_assert_int_eq(sr__result_builder_init(&rb, 0), SR_OK);
        sr_driver_error e;
        memset(&e, 0, sizeof e);
        ck_assert_int_eq(p.d->exec(p.c, "SELECT @@session_track_system_variables", 0, NULL, soon(),
                                   &rb, &e),
                         SR_OK);
        sr_result *r = sr__result_builder_finish(&rb);
        ck_assert_str_eq(sr_result_value(r, 0, 0), cases[i].session);
        sr_result_free(r);
        char id[16], pos[SR_POSITION_MAX];
        snprintf(id, sizeof id, "%zu", i);
        at_write(&p, "INSERT INTO at_t VALUES (?, 'x')", 1, (const char *const[]){id}, pos, 1);
        char *last = session_last_gtid(&p);
        ck_assert_msg(strcmp(pos, cases[i].tracked ? last : "") == 0,
                      "global '%s': pos '%s', @@last_gtid '%s'", cases[i].global, pos, last);
        free(last);
        p.d->close(p.c);
    }
    char sql[512];
    snprintf(sql, sizeof sql, "SET GLOBAL session_track_system_variables = '%s'", orig);
    my_direct_exec(pa, sql);
    free(orig);
    mysql_close(pa);
}
END_TEST

/* The replica check is bounded by the caller's deadline like any statement:
 * a replica that stopped answering costs a timeout (transient, connection
 * given up), not a hang. */
START_TEST(test_exec_at_deadline)
{
    pid_t pid = replica_pid();
    ck_assert_int_gt(pid, 0);
    hook_conn p, r;
    hook_open(&p, "SR_MY_PRIMARY", SR_PRIMARY);
    hook_open(&r, "SR_MY_REPLICA", SR_REPLICA);
    at_table(&p);
    char need[SR_POSITION_MAX], pos[SR_POSITION_MAX];
    at_write(&p, "INSERT INTO at_t VALUES (1, 'one')", 0, NULL, need, 1);
    ck_assert(*need);
    ck_assert_msg(hook_wait_replayed(&r, need), "position %s never applied", need);
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    if (!wait_stopped(pid)) {
        kill(pid, SIGCONT);
        ck_abort_msg("replica (pid %ld) did not stop", (long)pid);
    }
    sr_driver_error e;
    memset(&e, 0, sizeof e);
    int stale = -1;
    double t0 = mono_ms();
    int rc = r.d->exec_at(r.c, "SELECT v FROM at_t WHERE id = 1", 0, NULL, need,
                          sr_clock_ns() + 300LL * 1000000, NULL, pos, sizeof pos, &stale, &e);
    double elapsed = mono_ms() - t0;
    kill(pid, SIGCONT);
    ck_assert_msg(rc == SR_ETIMEOUT, "got %s (%s)", sr_strerror(rc), e.message);
    ck_assert_int_eq(e.transient, 1);
    /* 300 ms, at most 50 ms for the KILL QUERY attempt, and slack. */
    ck_assert_msg(elapsed >= 290 && elapsed < 2000, "held for %.0f ms", elapsed);
    /* The handle was given up: refused at once, never reused. */
    ck_assert_int_eq(r.d->exec_at(r.c, "SELECT 1", 0, NULL, need, soon(), NULL, pos, sizeof pos,
                                  &stale, &e),
                     SR_ECONNECT);
    p.d->close(p.c);
    r.d->close(r.c);
}
END_TEST

START_TEST(test_position_algebra)
{
    const sr_driver *d = sr_driver_find("mysql");
    ck_assert_ptr_nonnull(d);
    ck_assert(d->abi_version >= 2 && d->position_covers && d->position_merge);
    /* MariaDB: per domain, by seq_no. */
    ck_assert_int_eq(d->position_covers("0-1-10", "0-1-10"), 1);
    ck_assert_int_eq(d->position_covers("0-1-10", "0-1-11"), 0);
    ck_assert_int_eq(d->position_covers("0-2-12", "0-1-11"), 1); /* another server, same domain */
    ck_assert_int_eq(d->position_covers("0-1-10,7-1-3", "7-1-3,0-1-9"), 1);
    ck_assert_int_eq(d->position_covers("0-1-10", "0-1-9,7-1-1"), 0); /* domain 7 never seen */
    ck_assert_int_eq(d->position_covers("", "0-1-1"), 0);
    ck_assert_int_eq(d->position_covers("0-1-1", ""), 1);
    ck_assert_int_lt(d->position_covers("0-1", "0-1-1"), 0);
    ck_assert_int_lt(d->position_covers("0-1-1", "x"), 0);
    char buf[256];
    ck_assert_int_eq(d->position_merge("0-1-10,7-1-3", "7-2-5,0-1-4,9-1-1", buf, sizeof buf), SR_OK);
    ck_assert_str_eq(buf, "0-1-10,7-2-5,9-1-1");
    ck_assert_int_eq(d->position_merge("", "0-1-4", buf, sizeof buf), SR_OK);
    ck_assert_str_eq(buf, "0-1-4");
    ck_assert_int_lt(d->position_merge("0-1-10", "0-1-4", buf, 3), 0);
    /* MySQL GTID sets: superset and union. */
    const char *u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    char have[256], want[256];
    snprintf(have, sizeof have, "%s:1-5:7-9,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:1", u);
    snprintf(want, sizeof want, "%s:2-4:8", u);
    ck_assert_int_eq(d->position_covers(have, want), 1);
    snprintf(want, sizeof want, "%s:5-7", u);
    ck_assert_int_eq(d->position_covers(have, want), 0);
    snprintf(want, sizeof want, "%s:tag:1", u);
    ck_assert_int_eq(d->position_covers(have, want), 0);
    ck_assert_int_lt(d->position_covers(have, "0-1-1"), 0);
    char a[128], b[128];
    snprintf(a, sizeof a, "%s:1-3", u);
    snprintf(b, sizeof b, "%s:4-6:9", u);
    ck_assert_int_eq(d->position_merge(a, b, buf, sizeof buf), SR_OK);
    snprintf(want, sizeof want, "%s:1-6:9", u);
    ck_assert_str_eq(buf, want);
}
END_TEST

/* A read right after a write sees it: from the replica once it has applied
 * the write's GTID, else (within consistency.wait_ms) from the primary. With
 * the replica's SQL thread stopped the answer must come from the primary; a
 * session that asks for "any" consistency reads the stale replica instead,
 * which proves the reads really go there. */
START_TEST(test_read_your_writes)
{
    sr_router *r = open_router_opts((const char *const[]){"consistency.wait_ms", "200", NULL});
    sr_session *s = NULL, *any = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_session_new(r, &any), SR_OK);
    ck_assert_int_eq(sr_session_set(any, "consistency", "any"), SR_OK);
    create_table(s, "ryw");
    replica_catch_up();
    for (int k = 0; k < 20; k++) {
        char kb[16];
        snprintf(kb, sizeof kb, "%d", k);
        const char *p[] = {kb, "fresh"};
        ck_assert_int_eq(sr_exec(s, sr_key_int(k), SR_WRITE, "INSERT INTO ryw VALUES (?, ?)", 2, p,
                                 NULL),
                         SR_OK);
        char *v = routed_value(s, sr_key_int(k), SR_READ, "SELECT v FROM ryw WHERE k = ?", 1, p);
        ck_assert_str_eq(v, "fresh");
        free(v);
    }
    MYSQL *admin = my_direct("SR_MY_ADMIN_REPLICA", NULL);
    my_direct_exec(admin, "STOP SLAVE SQL_THREAD");
    const char *p[] = {"100", "held back"};
    ck_assert_int_eq(sr_exec(s, sr_key_int(100), SR_WRITE, "INSERT INTO ryw VALUES (?, ?)", 2, p,
                             NULL),
                     SR_OK);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s, sr_key_int(100), SR_READ, "SELECT v, @@server_id FROM ryw WHERE k = ?",
                             1, p, &res),
                     SR_OK);
    ck_assert_int_eq(sr_result_nrows(res), 1);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "held back");
    ck_assert_str_eq(sr_result_value(res, 0, 1), "1"); /* the primary */
    sr_result_free(res);
    ck_assert_int_eq(sr_exec(any, sr_key_int(100), SR_READ,
                             "SELECT COUNT(*), @@server_id FROM ryw WHERE k = ?", 1, p, &res),
                     SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "0"); /* the replica has not applied it */
    ck_assert_str_eq(sr_result_value(res, 0, 1), "2");
    sr_result_free(res);
    my_direct_exec(admin, "START SLAVE SQL_THREAD");
    ck_assert(my_replication_running(admin));
    mysql_close(admin);
    sr_session_free(any);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(test_stopped_replication_not_eligible)
{
    hook_conn r;
    hook_open(&r, "SR_MY_REPLICA", SR_REPLICA);
    MYSQL *admin = my_direct("SR_MY_ADMIN_REPLICA", NULL);
    my_direct_exec(admin, "STOP SLAVE");
    ck_assert_int_eq(hook_lag(&r), -1);
    my_direct_exec(admin, "START SLAVE");
    int64_t lag = -1;
    for (int i = 0; i < 1000 && lag < 0; i++) {
        lag = hook_lag(&r);
        if (lag < 0)
            usleep(10000);
    }
    ck_assert_int_ge(lag, 0);
    /* Only the IO thread stopped (the primary unreachable): also not eligible. */
    my_direct_exec(admin, "STOP SLAVE IO_THREAD");
    ck_assert_int_eq(hook_lag(&r), -1);
    my_direct_exec(admin, "START SLAVE IO_THREAD");
    ck_assert(my_replication_running(admin));
    mysql_close(admin);
    r.d->close(r.c);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The statement cache's byte bound                                         */
/* ------------------------------------------------------------------------ */

/* Runs "SELECT id, length('xxx...')" (a literal of `bytes` bytes) on shard 0's primary. */
static void run_big_on_shard0(sr_session *s, int id, size_t bytes)
{
    char *sql = malloc(bytes + 64);
    ck_assert_ptr_nonnull(sql);
    int n = snprintf(sql, 64, "SELECT %d, length('", id);
    memset(sql + n, 'x', bytes);
    memcpy(sql + n + bytes, "')", 3);
    sr_result *res = NULL;
    ck_assert_msg(sr_exec_shard(s, 0, SR_WRITE, sql, 0, NULL, &res) == SR_OK, "%s",
                  sr_session_errmsg(s));
    ck_assert_int_eq(atoi(sr_result_value(res, 0, 0)), id);
    ck_assert_int_eq(atol(sr_result_value(res, 0, 1)), (long)bytes);
    sr_result_free(res);
    free(sql);
}

/* This session's Com_stmt_prepare, read through the router (its own statement is cached). */
static long session_prepares(sr_session *s)
{
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "SHOW SESSION STATUS LIKE 'Com_stmt_prepare'",
                                   0, NULL, &res),
                     SR_OK);
    long n = atol(sr_result_value(res, 0, 1));
    sr_result_free(res);
    return n;
}

/* The server's Prepared_stmt_count once it equals `want`, or its value after ~2 s
 * (sessions of earlier tests may take a moment to go away). */
static long prepared_stmt_count(MYSQL *admin, long want)
{
    const char *sql = "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                      "WHERE VARIABLE_NAME = 'PREPARED_STMT_COUNT'";
    long count = my_direct_long(admin, sql);
    for (int i = 0; i < 200 && count != want; i++) {
        usleep(10000);
        count = my_direct_long(admin, sql);
    }
    return count;
}

START_TEST(test_statement_cache_bounded_in_bytes)
{
    /* One pooled connection per node, 1 MiB of statements, and the default
     * count bound of 64 that alone would keep all 20. */
    sr_router *r = open_router_opts(
        (const char *const[]){"pool.max_size", "1", "stmt_cache.max_bytes", "1048576", NULL});
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    MYSQL *admin = my_direct("SR_MY_ADMIN_PRIMARY", NULL);
    for (int i = 0; i < 20; i++)
        run_big_on_shard0(s, i, 200000);
    /* The last five (5 x 200 KB) fit the bound: the server holds five, not 20. */
    ck_assert_int_eq(prepared_stmt_count(admin, 5), 5);

    /* A cached statement is reused: no new prepare on the session. */
    long before = session_prepares(s);
    run_big_on_shard0(s, 19, 200000);
    ck_assert_int_eq(session_prepares(s), before);

    /* A statement larger than the whole bound is prepared, run and closed:
     * one more prepare, nothing more held, nothing pushed out. */
    run_big_on_shard0(s, 99, 2000000);
    ck_assert_int_eq(session_prepares(s), before + 1);
    ck_assert_int_eq(prepared_stmt_count(admin, 6), 6); /* the five + SHOW STATUS */
    run_big_on_shard0(s, 19, 200000);
    run_big_on_shard0(s, 15, 200000);
    ck_assert_int_eq(session_prepares(s), before + 1);
    mysql_close(admin);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Trace context (sr_session_set_trace)                                     */
/* ------------------------------------------------------------------------ */

#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
/* What the session below appends to every statement it sends. */
#define TRACE_COMMENT "\n/*app='it%27s%20%2A%2F',traceparent='" TRACEPARENT "'*/"
#define OWN_QUERY "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"

static sr_session *traced_session(sr_router *r)
{
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    const char *tags[] = {"app", "it's */"};
    ck_assert_msg(sr_session_set_trace(s, TRACEPARENT, 1, tags) == SR_OK, "%s",
                  sr_session_errmsg(s));
    return s;
}

/* `seen` is `sql` with the trace comment after it, exactly. */
static void assert_traced(const char *seen, const char *sql)
{
    char want[1024];
    snprintf(want, sizeof want, "%s%s", sql, TRACE_COMMENT);
    ck_assert_str_eq(seen, want);
}

START_TEST(test_traced_statements_show_the_comment_in_the_process_list)
{
    sr_router *r = open_router();
    sr_session *s = traced_session(r);
    /* Read and write, and SQL that ends in a line comment or a semicolon. */
    const char *sqls[] = {OWN_QUERY, OWN_QUERY " -- the end", OWN_QUERY " # the end",
                          OWN_QUERY ";"};
    for (size_t i = 0; i < sizeof sqls / sizeof sqls[0]; i++) {
        for (int w = 0; w < 2; w++) {
            char *v = routed_value(s, sr_key_int(7), w ? SR_WRITE : SR_AUTO, sqls[i], 0, NULL);
            assert_traced(v, sqls[i]);
            free(v);
        }
    }
    /* With parameters (a prepared statement: the server shows its text). */
    char *v = routed_value(s, sr_key_int(7), SR_READ, OWN_QUERY " AND ? = ?", 2,
                           (const char *const[]){"a", "a"});
    assert_traced(v, OWN_QUERY " AND ? = ?");
    free(v);
    /* In a transaction, scatter, a cursor. */
    ck_assert_int_eq(sr_begin(s, sr_key_int(7)), SR_OK);
    v = routed_value(s, sr_key_int(7), SR_AUTO, OWN_QUERY, 0, NULL);
    assert_traced(v, OWN_QUERY);
    free(v);
    ck_assert_int_eq(sr_commit(s), SR_OK);
    sr_result *res = NULL;
    ck_assert_msg(sr_exec_all(s, SR_AUTO, OWN_QUERY, 0, NULL, &res) == SR_OK, "%s",
                  sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_nrows(res), NSHARDS);
    for (int i = 0; i < NSHARDS; i++)
        assert_traced(sr_result_value(res, i, 0), OWN_QUERY);
    sr_result_free(res);
    sr_cursor *c = NULL;
    ck_assert_int_eq(sr_cursor_open(s, sr_key_int(7), SR_AUTO, NULL, OWN_QUERY, 0, NULL, &c),
                     SR_OK);
    ck_assert_int_eq(sr_cursor_next(c), 1);
    int row = -1;
    const sr_result *cur = sr_cursor_row(c, &row);
    assert_traced(sr_result_value(cur, row, 0), OWN_QUERY);
    sr_cursor_close(c);

    /* A refused context keeps the one before; cleared, the SQL goes as it is. */
    ck_assert_int_eq(sr_session_set_trace(s, "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                          0, NULL),
                     SR_EINVAL);
    ck_assert_msg(strstr(sr_session_errmsg(s), "version ff"), "%s", sr_session_errmsg(s));
    v = routed_value(s, sr_key_int(7), SR_AUTO, OWN_QUERY, 0, NULL);
    assert_traced(v, OWN_QUERY);
    free(v);
    ck_assert_int_eq(sr_session_set_trace(s, NULL, 0, NULL), SR_OK);
    v = routed_value(s, sr_key_int(7), SR_AUTO, OWN_QUERY, 0, NULL);
    ck_assert_str_eq(v, OWN_QUERY);
    free(v);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/*
 * SR_AUTO is decided from the caller's SQL, not the text sent: an unclosed
 * comment makes this statement "not certainly a read" (the primary), while
 * with the trace comment after it MariaDB's lexer (no nesting) would read it
 * as a closed comment and a plain SELECT (a replica).
 */
START_TEST(test_traced_statements_are_classified_by_the_callers_sql)
{
    sr_router *r = open_router();
    sr_session *s = traced_session(r);
    char *v = routed_value(s, sr_key_int(7), SR_AUTO, "SELECT @@read_only /* open", 0, NULL);
    ck_assert_str_eq(v, "0");
    free(v);
    v = routed_value(s, sr_key_int(7), SR_AUTO, "SELECT @@read_only", 0, NULL);
    ck_assert_str_eq(v, "1");
    free(v);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* A session without a trace keeps hitting the statement cache; a traced statement (a new
 * text per traceparent) is prepared and closed each time, never cached, so it evicts nothing. */
START_TEST(test_statements_without_a_trace_still_hit_the_statement_cache)
{
    sr_router *r = open_router_opts((const char *const[]){"pool.max_size", "1", NULL});
    sr_session *plain = NULL;
    ck_assert_int_eq(sr_session_new(r, &plain), SR_OK);
    sr_session *traced = traced_session(r);
    const char *sql = "SELECT 1 + ?";
    const char *one[] = {"1"};
    ck_assert_int_eq(sr_exec_shard(plain, 0, SR_WRITE, sql, 1, one, NULL), SR_OK);
    ck_assert_int_eq(sr_exec_shard(traced, 0, SR_WRITE, sql, 1, one, NULL), SR_OK);
    long before = session_prepares(plain);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(sr_exec_shard(plain, 0, SR_WRITE, sql, 1, one, NULL), SR_OK);
        ck_assert_int_eq(sr_exec_shard(traced, 0, SR_WRITE, sql, 1, one, NULL), SR_OK);
    }
    /* The untraced text is cached: only the five traced runs prepared. */
    ck_assert_int_eq(session_prepares(plain), before + 5);
    before += 5;
    /* A new traceparent: a new text, one prepare. */
    ck_assert_int_eq(sr_session_set_trace(traced, "00-4bf92f3577b34da6a3ce929d0e0e4736-"
                                                  "00f067aa0ba902b8-01", 0, NULL),
                     SR_OK);
    ck_assert_int_eq(sr_exec_shard(traced, 0, SR_WRITE, sql, 1, one, NULL), SR_OK);
    ck_assert_int_eq(session_prepares(plain), before + 1);
    ck_assert_int_eq(sr_exec_shard(plain, 0, SR_WRITE, sql, 1, one, NULL), SR_OK);
    ck_assert_int_eq(session_prepares(plain), before + 1);
    sr_session_free(plain);
    sr_session_free(traced);
    sr_router_close(r);
}
END_TEST

/* ------------------------------------------------------------------------ */

static Suite *mysql_suite(void)
{
    Suite *s = suite_create("mysql");
    TCase *tc = tcase_create("routing");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, replication_ready, NULL);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_wrong_parameter_count_is_the_callers_error);
    tcase_add_test(tc, test_lost_connection_is_transient_and_replaced);
    tcase_add_test(tc, test_bad_password_and_unknown_parameter);
    tcase_add_test(tc, test_uri_parameters_and_passwords_reach_the_client);
    suite_add_tcase(s, tc);

    tc = tcase_create("values");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, replication_ready, NULL);
    tcase_add_test(tc, test_parameters_round_trip);
    tcase_add_test(tc, test_results_values_and_affected_rows);
    tcase_add_test(tc, test_prepared_statements_cached_and_bounded);
    tcase_add_test(tc, test_statement_cache_bounded_in_bytes);
    tcase_add_test(tc, test_threads_share_the_router);
    suite_add_tcase(s, tc);

    tc = tcase_create("two_phase");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_two_phase_commit_through_the_driver);
    suite_add_tcase(s, tc);

    tc = tcase_create("trace");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, replication_ready, NULL);
    tcase_add_test(tc, test_traced_statements_show_the_comment_in_the_process_list);
    tcase_add_test(tc, test_traced_statements_are_classified_by_the_callers_sql);
    tcase_add_test(tc, test_statements_without_a_trace_still_hit_the_statement_cache);
    suite_add_tcase(s, tc);

    /* Tests that stop the replica or its replication: the teardown restarts
     * both in the parent process, even when a test failed half-way. */
    tc = tcase_create("replication");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, NULL, restore_replica);
    tcase_add_checked_fixture(tc, restore_replica, NULL);
    tcase_add_test(tc, test_stopped_server_cannot_hold_the_caller);
    tcase_add_test(tc, test_role_of_each_server);
    tcase_add_test(tc, test_gtid_applied_and_held_back);
    tcase_add_test(tc, test_stopped_replication_not_eligible);
    tcase_add_test(tc, test_read_your_writes);
    tcase_add_test(tc, test_position_algebra);
    tcase_add_test(tc, test_exec_at_write_position);
    tcase_add_test(tc, test_exec_at_no_new_gtid);
    tcase_add_test(tc, test_exec_at_positions_increase);
    tcase_add_test(tc, test_exec_at_replica_read);
    tcase_add_test(tc, test_exec_at_errors);
    tcase_add_test(tc, test_exec_at_tracker_defaults);
    tcase_add_test(tc, test_exec_at_deadline);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (!getenv("SR_MY_PRIMARY") || !getenv("SR_MY_REPLICA")) {
        fprintf(stderr, "test_mysql: SR_MY_PRIMARY/SR_MY_REPLICA not set; run it under "
                        "tests/env/mariadb_cluster.sh run (skipped)\n");
        return 77;
    }
    int failed = run_suite(mysql_suite());
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
