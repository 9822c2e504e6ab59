/*
 * Integration tests against a real PostgreSQL 15 primary with two streaming
 * replicas (tests/env/pg_cluster.sh). Two shards are the databases shard0 and
 * shard1 of that cluster, each with the primary and both replicas as nodes.
 * Where a row landed, which server answered and what a replica has replayed
 * are checked with direct libpq connections, not through the library. What
 * every driver must do alike (placement, the read/write split, errors,
 * timeouts, white space, schema changes) is in test_conformance.c; this suite
 * keeps what is PostgreSQL's own.
 *
 * Run: tests/env/pg_cluster.sh run BUILD/tests/test_postgres
 * Without the cluster's environment the suite is skipped (77), except under
 * CI (env CI set), where a missing backend is a failure.
 */
#include <check.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <shardroute.h>
#include <shardroute/driver.h>

#include "pg_direct.h"
#include "result.h" /* the internal result builder that exec_at fills */

#define NSHARDS 2
static const char *const shard_db[NSHARDS] = {"shard0", "shard1"};

/* The cluster, from env.sh. */
static pg_cluster pg;

/* ---- helpers ------------------------------------------------------------- */

static long direct_long(PGconn *c, const char *sql)
{
    char *v = direct_value(c, sql);
    ck_assert_ptr_nonnull(v);
    long n = strtol(v, NULL, 10);
    free(v);
    return n;
}

typedef struct router_opts {
    const char *policy;      /* default round_robin */
    int replicas;            /* 0, 1 or 2 replicas per shard (as nodes 1, 2) */
    int only_replica2;       /* with replicas == 1: use replica2 instead of replica1 */
    int nshards;             /* default NSHARDS */
    int statement_timeout_ms;
    int connect_timeout_ms;
    int pool_max_size;
    int stmt_cache;          /* -1: default */
    const char *primary_uri; /* overrides the primary of shard 0 */
} router_opts;

static sr_router *open_router(router_opts o)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sr_config_set(c, "balance.policy", o.policy ? o.policy : "round_robin"),
                     SR_OK);
    char buf[32];
    if (o.statement_timeout_ms > 0) {
        snprintf(buf, sizeof buf, "%d", o.statement_timeout_ms);
        ck_assert_int_eq(sr_config_set(c, "statement_timeout_ms", buf), SR_OK);
    }
    if (o.connect_timeout_ms > 0) {
        snprintf(buf, sizeof buf, "%d", o.connect_timeout_ms);
        ck_assert_int_eq(sr_config_set(c, "connect_timeout_ms", buf), SR_OK);
    }
    if (o.pool_max_size > 0) {
        snprintf(buf, sizeof buf, "%d", o.pool_max_size);
        ck_assert_int_eq(sr_config_set(c, "pool.max_size", buf), SR_OK);
    }
    if (o.stmt_cache >= 0) {
        snprintf(buf, sizeof buf, "%d", o.stmt_cache);
        ck_assert_int_eq(sr_config_set(c, "stmt_cache.max_size", buf), SR_OK);
    }
    int nshards = o.nshards > 0 ? o.nshards : NSHARDS;
    for (int i = 0; i < nshards; i++) {
        ck_assert_int_eq(sr_config_add_shard(c, shard_db[i]), SR_OK);
        char *uri = i == 0 && o.primary_uri ? strdup(o.primary_uri)
                                            : xfmt("%s/%s", pg.primary, shard_db[i]);
        ck_assert_msg(sr_config_add_node(c, shard_db[i], SR_PRIMARY, uri, 1) == SR_OK, "%s",
                      sr_config_errmsg(c));
        free(uri);
        for (int r = 0; r < o.replicas; r++) {
            const char *base = (r == 0 && !o.only_replica2) ? pg.replica1 : pg.replica2;
            uri = xfmt("%s/%s", base, shard_db[i]);
            ck_assert_msg(sr_config_add_node(c, shard_db[i], SR_REPLICA, uri, 1) == SR_OK, "%s",
                          sr_config_errmsg(c));
            free(uri);
        }
    }
    sr_router *r = NULL;
    int rc = sr_router_open(c, &r);
    ck_assert_msg(rc == SR_OK, "open: %s", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

static router_opts defaults(void)
{
    router_opts o = {0};
    o.replicas = 2;
    o.stmt_cache = -1;
    return o;
}

/*
 * These suites test routing and the driver, so sessions read with
 * consistency "any": under the default read_your_writes a read right after
 * this session's DDL may rightly go to the primary (see test_consistency_pg.c).
 */
static sr_session *session(sr_router *r)
{
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    return s;
}

/* Runs a statement on a shard that must succeed. */
static sr_result *must_shard(sr_session *s, int shard, sr_intent intent, const char *sql, int n,
                             const char *const *params)
{
    sr_result *res = NULL;
    int rc = sr_exec_shard(s, shard, intent, sql, n, params, &res);
    ck_assert_msg(rc == SR_OK, "%s: %s (%s)", sql, sr_strerror(rc), sr_session_errmsg(s));
    return res;
}

static sr_result *must_key(sr_session *s, int64_t key, sr_intent intent, const char *sql, int n,
                           const char *const *params)
{
    sr_result *res = NULL;
    int rc = sr_exec(s, sr_key_int(key), intent, sql, n, params, &res);
    ck_assert_msg(rc == SR_OK, "%s: %s (%s)", sql, sr_strerror(rc), sr_session_errmsg(s));
    return res;
}

/* The single value of a routed one-row query, as a new string. */
static char *scalar_key(sr_session *s, int64_t key, sr_intent intent, const char *sql)
{
    sr_result *res = must_key(s, key, intent, sql, 0, NULL);
    ck_assert_int_eq(sr_result_nrows(res), 1);
    const char *v = sr_result_value(res, 0, 0);
    char *copy = v ? strdup(v) : NULL;
    sr_result_free(res);
    return copy;
}

/* Recreates `table` (with `columns`) on every shard through the router's primaries. */
static void recreate_table(sr_session *s, const char *table, const char *columns)
{
    /* Two statements in one string: sent with the simple protocol. */
    char *sql = xfmt("DROP TABLE IF EXISTS %s; CREATE TABLE %s (%s)", table, table, columns);
    for (int i = 0; i < NSHARDS; i++)
        sr_result_free(must_shard(s, i, SR_WRITE, sql, 0, NULL));
    free(sql);
}

/* Waits until `sql` on replica `base`/`db` returns "t" (bounded); 1 if it did. */
static int wait_replica_true(const char *base, const char *db, const char *sql, int max_ms)
{
    PGconn *c = direct(base, db);
    int ok = 0;
    for (double t0 = mono_ms(); mono_ms() - t0 < max_ms; sleep_ms(20)) {
        char *v = direct_value(c, sql);
        ok = v && strcmp(v, "t") == 0;
        free(v);
        if (ok)
            break;
    }
    PQfinish(c);
    return ok;
}

/* ---- placement and routing ---------------------------------------------- */

START_TEST(round_robin_uses_both_replicas)
{
    sr_router *r = open_router(defaults());
    sr_session *s = session(r);
    int seen1 = 0, seen2 = 0, seen_primary = 0;
    for (int i = 0; i < 12; i++) {
        char *v = scalar_key(s, 5, SR_READ, "SELECT inet_server_port()");
        int port = atoi(v);
        free(v);
        seen1 += port == pg.port_replica1;
        seen2 += port == pg.port_replica2;
        seen_primary += port == pg.port_primary;
    }
    ck_assert_int_eq(seen_primary, 0);
    ck_assert_int_eq(seen1 + seen2, 12);
    ck_assert_int_gt(seen1, 0);
    ck_assert_int_gt(seen2, 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

static void expect_sql_error(sr_session *s, int64_t key, sr_intent intent, const char *sql, int n,
                             const char *const *params, const char *sqlstate, const char *text)
{
    int rc = sr_exec(s, sr_key_int(key), intent, sql, n, params, NULL);
    ck_assert_msg(rc == SR_EQUERY, "%s: expected SR_EQUERY, got %s (%s)", sql, sr_strerror(rc),
                  sr_session_errmsg(s));
    ck_assert_str_eq(sr_session_sqlstate(s), sqlstate);
    ck_assert_msg(strstr(sr_session_errmsg(s), text), "message '%s' lacks '%s'",
                  sr_session_errmsg(s), text);
    /* The session (and the connection it used) keeps working. */
    char *v = scalar_key(s, key, intent, "SELECT 'still fine'");
    ck_assert_str_eq(v, "still fine");
    free(v);
    ck_assert_str_eq(sr_session_sqlstate(s), "");
}

/*
 * What PostgreSQL adds to the errors of test_conformance.c: an error at run
 * time (on cached statements too), the server refusing a parameter count, and
 * a transaction that failed.
 */
START_TEST(sql_errors_specific_to_postgres_leave_the_session_usable)
{
    router_opts o = defaults();
    o.pool_max_size = 1; /* the same connection is reused after each error */
    sr_router *r = open_router(o);
    sr_session *s = session(r);
    recreate_table(s, "sr_err", "id int PRIMARY KEY");
    const char *one[] = {"1"};
    sr_result_free(must_key(s, 7, SR_WRITE, "INSERT INTO sr_err VALUES (?)", 1, one));
    for (int round = 0; round < 2; round++) /* twice: errors on cached statements too */
        expect_sql_error(s, 7, SR_READ, "SELECT 1/0", 0, NULL, "22012", "division by zero");

    /* Too many parameters: refused before anything is sent (SR_EINVAL) for a statement the
     * connection has not prepared; for a prepared one (run once with the right count) the
     * server's 08P01 is the caller's mistake, not a lost connection. */
    char *pid = scalar_key(s, 7, SR_WRITE, "SELECT pg_backend_pid()");
    const char *two_params[] = {"1", "2"};
    ck_assert_int_eq(sr_exec(s, sr_key_int(7), SR_WRITE, "SELECT ?::int + 0", 2, two_params, NULL),
                     SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "1 placeholder(s) but 2"));
    ck_assert_int_eq(sr_exec(s, sr_key_int(7), SR_WRITE, "SELECT ?::int", 1, two_params, NULL),
                     SR_OK);
    expect_sql_error(s, 7, SR_WRITE, "SELECT ?::int", 2, two_params, "08P01", "bind message");
    char *pid_after = scalar_key(s, 7, SR_WRITE, "SELECT pg_backend_pid()");
    ck_assert_str_eq(pid_after, pid); /* the same connection: it was not discarded */
    free(pid);
    free(pid_after);

    /* A transaction that failed does not commit: COMMIT reports it, nothing was written. */
    ck_assert_int_eq(sr_begin(s, sr_key_int(7)), SR_OK);
    const char *two[] = {"2"};
    sr_result_free(must_key(s, 7, SR_WRITE, "INSERT INTO sr_err VALUES (?)", 1, two));
    ck_assert_int_eq(sr_exec(s, sr_key_int(7), SR_WRITE, "INSERT INTO sr_err VALUES (?)", 1, one,
                             NULL),
                     SR_EQUERY);
    ck_assert_str_eq(sr_session_sqlstate(s), "23505");
    ck_assert_int_eq(sr_commit(s), SR_EQUERY);
    ck_assert_str_eq(sr_session_sqlstate(s), "25P02");
    ck_assert_int_eq(sr_in_transaction(s), 0);
    char *v = scalar_key(s, 7, SR_WRITE, "SELECT count(*) FROM sr_err WHERE id = 2");
    ck_assert_str_eq(v, "0");
    free(v);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- bounded waits -------------------------------------------------------- */

START_TEST(a_timed_out_statement_is_abandoned_on_the_server)
{
    router_opts o = defaults();
    o.replicas = 0;
    o.statement_timeout_ms = 200;
    sr_router *r = open_router(o);
    sr_session *s = session(r);
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "SELECT pg_sleep(30) /* sr_abandon_marker */", 0,
                                   NULL, NULL),
                     SR_ETIMEOUT);
    /* The backend notices the closed socket and stops long before its 30 s sleep ends. */
    PGconn *c = direct(pg.primary, "shard0");
    long running = -1;
    for (double t0 = mono_ms(); mono_ms() - t0 < 15000; sleep_ms(100)) {
        running = direct_long(c, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                                 "'%sr_abandon_marker%' AND pid <> pg_backend_pid()");
        if (running == 0)
            break;
    }
    ck_assert_int_eq(running, 0);
    PQfinish(c);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_stopped_server_cannot_hold_a_statement)
{
    router_opts o = defaults();
    o.replicas = 0;
    o.nshards = 1;
    o.pool_max_size = 1;
    o.statement_timeout_ms = 300;
    sr_router *r = open_router(o);
    sr_session *s = session(r);
    char *pid = scalar_key(s, 1, SR_WRITE, "SELECT pg_backend_pid()");
    pid_t backend = (pid_t)atol(pid);
    free(pid);
    /* Freeze the backend of the pooled connection, as a hung server would be. */
    ck_assert_int_eq(kill(backend, SIGSTOP), 0);
    double t0 = mono_ms();
    int rc = sr_exec(s, sr_key_int(1), SR_WRITE, "SELECT 1", 0, NULL, NULL);
    double took = mono_ms() - t0;
    kill(backend, SIGCONT);
    ck_assert_msg(rc == SR_ETIMEOUT, "expected SR_ETIMEOUT, got %s (%s)", sr_strerror(rc),
                  sr_session_errmsg(s));
    ck_assert_msg(took < 1500.0, "a stopped backend held the caller %.0f ms", took);
    /* The frozen connection was discarded: the next statement gets a fresh backend. */
    char *again = scalar_key(s, 1, SR_WRITE, "SELECT pg_backend_pid()");
    ck_assert_int_ne(atol(again), (long)backend);
    free(again);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- parameters and URIs ------------------------------------------------- */

START_TEST(parameters_round_trip_unchanged)
{
    sr_router *r = open_router(defaults());
    sr_session *s = session(r);
    const char *tricky = "it's \"quoted\" \\ back\\slash $1 ? -- not a comment";
    const char *p[] = {tricky, NULL, "", "ünïcødé ✓"};
    for (int round = 0; round < 2; round++) { /* first prepared, then from the cache */
        sr_result *res = must_key(
            s, 9, SR_READ,
            "SELECT ?::text AS a, /* ? */ ?::text AS b, '?' AS lit, $$ ? $q$ $$ AS dq, "
            "$tag$ ?? $tag$ AS tagged, E'\\'?' AS esc, ?::text AS empty, ?::text AS uni, "
            "1 AS \"q?\" -- ?\n",
            4, p);
        ck_assert_int_eq(sr_result_nrows(res), 1);
        ck_assert_int_eq(sr_result_ncols(res), 9);
        ck_assert_str_eq(sr_result_value(res, 0, 0), tricky);
        ck_assert_uint_eq(sr_result_length(res, 0, 0), strlen(tricky));
        ck_assert_ptr_null(sr_result_value(res, 0, 1));
        ck_assert_int_eq(sr_result_is_null(res, 0, 1), 1);
        ck_assert_str_eq(sr_result_value(res, 0, 2), "?");
        ck_assert_str_eq(sr_result_value(res, 0, 3), " ? $q$ ");
        ck_assert_str_eq(sr_result_value(res, 0, 4), " ?? ");
        ck_assert_str_eq(sr_result_value(res, 0, 5), "'?");
        ck_assert_str_eq(sr_result_value(res, 0, 6), "");
        ck_assert_int_eq(sr_result_is_null(res, 0, 6), 0);
        ck_assert_str_eq(sr_result_value(res, 0, 7), "ünïcødé ✓");
        ck_assert_str_eq(sr_result_colname(res, 8), "q?");
        sr_result_free(res);
    }

    /* Native $n placeholders work as written. */
    const char *ab[] = {"a'", "\\b"};
    sr_result *res = must_key(s, 9, SR_READ, "SELECT $2::text || $1::text", 2, ab);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "\\ba'");
    sr_result_free(res);

    /* Without parameters a '?' is PostgreSQL's own (the jsonb operator). */
    char *v = scalar_key(s, 9, SR_READ, "SELECT '{\"a\": 1}'::jsonb ? 'a'");
    ck_assert_str_eq(v, "1"); /* a bool (SR_TYPE_BOOL: "1" / "0") */
    free(v);

    /* Written through the primary and read back from the database directly. */
    recreate_table(s, "sr_params", "k int PRIMARY KEY, v text");
    const char *w[] = {"1", tricky};
    sr_result_free(must_key(s, 9, SR_WRITE, "INSERT INTO sr_params VALUES (?, ?)", 2, w));
    const char *wn[] = {"2", NULL};
    sr_result_free(must_key(s, 9, SR_WRITE, "INSERT INTO sr_params VALUES (?, ?)", 2, wn));
    PGconn *c = direct(pg.primary, shard_db[sr_router_shard_for(r, sr_key_int(9))]);
    char *stored = direct_value(c, "SELECT v FROM sr_params WHERE k = 1");
    ck_assert_str_eq(stored, tricky);
    free(stored);
    ck_assert_int_eq(direct_long(c, "SELECT count(*) FROM sr_params WHERE k = 2 AND v IS NULL"), 1);
    PQfinish(c);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(uri_parameters_and_passwords_reach_libpq)
{
    router_opts o = defaults();
    o.replicas = 0;
    o.nshards = 1;
    char *uri = xfmt("postgresql://%s:%s@127.0.0.1:%d/shard0?application_name=sr_app_test&"
                     "sslmode=disable",
                     pg.pw_user, pg.pw_password, pg.port_primary);
    o.primary_uri = uri;
    sr_router *r = open_router(o);
    sr_session *s = session(r);
    sr_result *res = must_key(s, 1, SR_WRITE,
                              "SELECT current_user, current_setting('application_name'), "
                              "current_database()",
                              0, NULL);
    ck_assert_str_eq(sr_result_value(res, 0, 0), pg.pw_user);
    ck_assert_str_eq(sr_result_value(res, 0, 1), "sr_app_test");
    ck_assert_str_eq(sr_result_value(res, 0, 2), "shard0");
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
    free(uri);

    /* A wrong password: a connect error that names the node without the password. */
    uri = xfmt("postgresql://%s:wrong-pass-4711@127.0.0.1:%d/shard0", pg.pw_user, pg.port_primary);
    o.primary_uri = uri;
    r = open_router(o);
    s = session(r);
    int rc = sr_exec(s, sr_key_int(1), SR_WRITE, "SELECT 1", 0, NULL, NULL);
    ck_assert_int_eq(rc, SR_ECONNECT);
    const char *msg = sr_session_errmsg(s);
    ck_assert_msg(strstr(msg, "password authentication failed"), "%s", msg);
    ck_assert_msg(strstr(msg, ":***@127.0.0.1"), "%s", msg);
    ck_assert_msg(!strstr(msg, "wrong-pass-4711"), "the password leaked: %s", msg);
    sr_session_free(s);
    sr_router_close(r);
    free(uri);

    /* An unknown libpq keyword is refused by libpq, and said so. */
    uri = xfmt("%s/shard0?no_such_libpq_option=1", pg.primary);
    o.primary_uri = uri;
    r = open_router(o);
    s = session(r);
    rc = sr_exec(s, sr_key_int(1), SR_WRITE, "SELECT 1", 0, NULL, NULL);
    ck_assert_int_lt(rc, 0);
    ck_assert_msg(strstr(sr_session_errmsg(s), "no_such_libpq_option"), "%s",
                  sr_session_errmsg(s));
    sr_session_free(s);
    sr_router_close(r);
    free(uri);
}
END_TEST

/* ---- prepared-statement cache --------------------------------------------- */

/* A router with one shard, one primary and one pooled connection: what it caches is visible. */
static sr_router *single_connection_router(int stmt_cache)
{
    router_opts o = defaults();
    o.replicas = 0;
    o.nshards = 1;
    o.pool_max_size = 1;
    o.stmt_cache = stmt_cache;
    return open_router(o);
}

static long prepared_count(sr_session *s, const char *statement)
{
    const char *p[] = {statement};
    sr_result *res = must_key(s, 1, SR_WRITE,
                              statement ? "SELECT count(*) FROM pg_prepared_statements "
                                          "WHERE statement = ?"
                                        : "SELECT count(*) FROM pg_prepared_statements",
                              statement ? 1 : 0, p);
    long n = atol(sr_result_value(res, 0, 0));
    sr_result_free(res);
    return n;
}

START_TEST(a_repeated_statement_is_prepared_once_per_connection)
{
    sr_router *r = single_connection_router(16);
    sr_session *s = session(r);
    for (int i = 0; i < 5; i++) {
        char n[16];
        snprintf(n, sizeof n, "%d", i);
        const char *p[] = {n};
        sr_result *res = must_key(s, 1, SR_WRITE, "SELECT ?::int + 1", 1, p);
        ck_assert_int_eq(atoi(sr_result_value(res, 0, 0)), i + 1);
        sr_result_free(res);
    }
    /* Rewritten once to $1 and prepared once, under a generated name. */
    ck_assert_int_eq(prepared_count(s, "SELECT $1::int + 1"), 1);
    char *name = scalar_key(s, 1, SR_WRITE,
                            "SELECT name FROM pg_prepared_statements "
                            "WHERE statement = 'SELECT $1::int + 1'");
    ck_assert_msg(strncmp(name, "sr_", 3) == 0, "name %s", name);
    free(name);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(the_cache_is_bounded_and_deallocates_what_it_evicts)
{
    sr_router *r = single_connection_router(2);
    sr_session *s = session(r);
    const char *stmts[] = {"SELECT 'a'", "SELECT 'b'", "SELECT 'c'", "SELECT 'd'"};
    for (size_t i = 0; i < 4; i++)
        sr_result_free(must_key(s, 1, SR_WRITE, stmts[i], 0, NULL));
    /* Two entries: the last statement and the listing one; the others were deallocated. */
    const char *list = "SELECT statement FROM pg_prepared_statements ORDER BY statement";
    sr_result *res = must_key(s, 1, SR_WRITE, list, 0, NULL);
    ck_assert_int_eq(sr_result_nrows(res), 2);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "SELECT 'd'");
    ck_assert_str_eq(sr_result_value(res, 1, 0), list);
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);

    r = single_connection_router(0);
    s = session(r);
    for (size_t i = 0; i < 4; i++)
        sr_result_free(must_key(s, 1, SR_WRITE, stmts[i], 0, NULL));
    const char *one[] = {"1"};
    sr_result_free(must_key(s, 1, SR_WRITE, "SELECT ?::int", 1, one));
    ck_assert_int_eq(prepared_count(s, NULL), 0); /* size 0: nothing named is kept */
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(statements_survive_ddl_that_changes_their_columns)
{
    sr_router *r = single_connection_router(16);
    sr_session *s = session(r);
    sr_result_free(must_shard(s, 0, SR_WRITE,
                              "DROP TABLE IF EXISTS sr_ddl; CREATE TABLE sr_ddl (id int, a text); "
                              "INSERT INTO sr_ddl VALUES (1, 'x')",
                              0, NULL));
    const char *sql = "SELECT * FROM sr_ddl WHERE id = ?";
    const char *one[] = {"1"};
    sr_result *res = must_key(s, 1, SR_WRITE, sql, 1, one);
    ck_assert_int_eq(sr_result_ncols(res), 2);
    sr_result_free(res);

    sr_result_free(must_key(s, 1, SR_WRITE, "ALTER TABLE sr_ddl ADD COLUMN b text DEFAULT 'y'", 0,
                            NULL));
    res = must_key(s, 1, SR_WRITE, sql, 1, one); /* re-prepared transparently */
    ck_assert_int_eq(sr_result_ncols(res), 3);
    ck_assert_str_eq(sr_result_value(res, 0, 2), "y");
    sr_result_free(res);

    /* Inside a transaction the failed statement aborted it: reported, then fine after. */
    sr_result_free(must_key(s, 1, SR_WRITE, "ALTER TABLE sr_ddl DROP COLUMN b", 0, NULL));
    ck_assert_int_eq(sr_begin(s, sr_key_int(1)), SR_OK);
    int rc = sr_exec(s, sr_key_int(1), SR_WRITE, sql, 1, one, NULL);
    ck_assert_int_eq(rc, SR_EQUERY);
    ck_assert_str_eq(sr_session_sqlstate(s), "0A000");
    ck_assert_int_eq(sr_rollback(s), SR_OK);
    res = must_key(s, 1, SR_WRITE, sql, 1, one);
    ck_assert_int_eq(sr_result_ncols(res), 2);
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- replication hooks (through the driver interface) ---------------------- */

typedef struct node_conn {
    const sr_driver *d;
    sr_driver_conn *c;
    sr_uri uri;
    char redacted[128];
} node_conn;

static void node_open_cached(node_conn *n, int port, sr_role role, int stmt_cache_size)
{
    n->d = sr_driver_find("postgresql");
    ck_assert_ptr_nonnull(n->d);
    ck_assert_ptr_nonnull(sr_driver_find("postgres"));
    snprintf(n->redacted, sizeof n->redacted, "postgresql://postgres@127.0.0.1:%d/shard0", port);
    memset(&n->uri, 0, sizeof n->uri);
    n->uri.scheme = "postgresql";
    n->uri.user = "postgres";
    n->uri.host = "127.0.0.1";
    n->uri.port = port;
    n->uri.database = "shard0";
    n->uri.redacted = n->redacted;
    sr_driver_connect_args args = {.uri = &n->uri, .role = role, .connect_timeout_ms = 5000,
                                   .statement_timeout_ms = 5000,
                                   .stmt_cache_size = stmt_cache_size,
                                   .stmt_cache_bytes = 8u << 20};
    sr_driver_error e = {0};
    int rc = n->d->connect(&args, &n->c, &e);
    ck_assert_msg(rc == SR_OK, "connect %s: %s", n->redacted, e.message);
}

static void node_open(node_conn *n, int port, sr_role role)
{
    node_open_cached(n, port, role, 16);
}

static void node_close(node_conn *n) { n->d->close(n->c); }

static int64_t soon(void) { return sr_clock_ns() + 5000LL * 1000000; }

static int replayed(node_conn *n, const char *pos)
{
    int out = -1;
    sr_driver_error e = {0};
    int rc = n->d->has_replayed(n->c, pos, soon(), &out, &e);
    ck_assert_msg(rc == SR_OK, "has_replayed: %s", e.message);
    ck_assert(out == 0 || out == 1);
    return out;
}

static int64_t lag(node_conn *n)
{
    int64_t ms = -2;
    sr_driver_error e = {0};
    int rc = n->d->replica_lag_ms(n->c, soon(), &ms, &e);
    ck_assert_msg(rc == SR_OK, "replica_lag_ms: %s", e.message);
    return ms;
}

static int wait_replayed(node_conn *n, const char *pos)
{
    for (double t0 = mono_ms(); mono_ms() - t0 < 10000; sleep_ms(10))
        if (replayed(n, pos))
            return 1;
    return 0;
}

/* Writes on the primary (directly) and returns the driver's position after it. */
static void write_and_position(node_conn *primary, PGconn *direct_primary, int id, char *pos,
                               size_t len)
{
    char *sql = xfmt("INSERT INTO sr_lsn VALUES (%d)", id);
    direct_exec(direct_primary, sql);
    free(sql);
    sr_driver_error e = {0};
    int rc = primary->d->write_position(primary->c, soon(), pos, len, &e);
    ck_assert_msg(rc == SR_OK, "write_position: %s", e.message);
}

static void resume_replica2(void)
{
    PGconn *c = PQconnectdb(getenv("SR_PG_REPLICA2") ? getenv("SR_PG_REPLICA2") : "");
    if (PQstatus(c) == CONNECTION_OK)
        PQclear(PQexec(c, "SELECT pg_wal_replay_resume()"));
    PQfinish(c);
}

START_TEST(roles_and_positions_through_the_driver)
{
    node_conn p, r1;
    node_open(&p, pg.port_primary, SR_PRIMARY);
    node_open(&r1, pg.port_replica1, SR_REPLICA);
    sr_role role = SR_REPLICA;
    sr_driver_error e = {0};
    ck_assert_int_eq(p.d->server_role(p.c, soon(), &role, &e), SR_OK);
    ck_assert_int_eq(role, SR_PRIMARY);
    ck_assert_int_eq(r1.d->server_role(r1.c, soon(), &role, &e), SR_OK);
    ck_assert_int_eq(role, SR_REPLICA);

    PGconn *dp = direct(pg.primary, "shard0");
    direct_exec(dp, "DROP TABLE IF EXISTS sr_lsn; CREATE TABLE sr_lsn (id int)");
    char pos[64];
    write_and_position(&p, dp, 1, pos, sizeof pos);
    unsigned hi, lo;
    char tail;
    ck_assert_msg(sscanf(pos, "%X/%X%c", &hi, &lo, &tail) == 2, "position '%s'", pos);

    /* The replica gets there, and once it says so the row is visible on it. */
    ck_assert_msg(wait_replayed(&r1, pos), "replica1 never replayed %s", pos);
    PGconn *d1 = direct(pg.replica1, "shard0");
    ck_assert_int_eq(direct_long(d1, "SELECT count(*) FROM sr_lsn WHERE id = 1"), 1);
    PQfinish(d1);
    /* A caught-up replica is not lagging, however idle the primary is. */
    int64_t ms = -2;
    for (double t0 = mono_ms(); mono_ms() - t0 < 10000 && (ms = lag(&r1)) != 0; sleep_ms(10))
        ;
    ck_assert_int_eq(ms, 0);
    /* The primary follows nobody: not an eligible replica. */
    ck_assert_int_eq(lag(&p), -1);
    /* A position far in the future is not replayed; a malformed one is refused. */
    ck_assert_int_eq(replayed(&r1, "FFFFFFFF/0"), 0);
    ck_assert_int_eq(replayed(&r1, "0/0"), 1);
    int out;
    ck_assert_int_eq(r1.d->has_replayed(r1.c, "not-a-lsn", soon(), &out, &e), SR_EINVAL);
    /* A replica has no write position. */
    char buf[64];
    ck_assert_int_eq(r1.d->write_position(r1.c, soon(), buf, sizeof buf, &e), SR_EQUERY);
    ck_assert_int_eq(e.transient, 0);

    PQfinish(dp);
    node_close(&p);
    node_close(&r1);
}
END_TEST

START_TEST(a_paused_replica_does_not_report_the_write_as_replayed)
{
    node_conn p, r1, r2;
    node_open(&p, pg.port_primary, SR_PRIMARY);
    node_open(&r1, pg.port_replica1, SR_REPLICA);
    node_open(&r2, pg.port_replica2, SR_REPLICA);
    PGconn *dp = direct(pg.primary, "shard0");
    PGconn *d2 = direct(pg.replica2, "shard0");
    direct_exec(dp, "DROP TABLE IF EXISTS sr_lsn; CREATE TABLE sr_lsn (id int)");
    char before[64];
    write_and_position(&p, dp, 1, before, sizeof before);
    ck_assert(wait_replayed(&r2, before));

    direct_exec(d2, "SELECT pg_wal_replay_pause()");
    ck_assert(wait_replica_true(pg.replica2, "shard0",
                                "SELECT pg_get_wal_replay_pause_state() = 'paused'", 10000));
    sleep_ms(30); /* so that the last replayed transaction is measurably old */
    char pos[64];
    write_and_position(&p, dp, 2, pos, sizeof pos);

    /* replica1 replays it; replica2 receives it but, paused, does not replay it. */
    ck_assert(wait_replayed(&r1, pos));
    char *received = xfmt("SELECT pg_last_wal_receive_lsn() >= '%s'::pg_lsn", pos);
    ck_assert(wait_replica_true(pg.replica2, "shard0", received, 10000));
    free(received);
    ck_assert_int_eq(replayed(&r2, pos), 0);
    ck_assert_int_eq(replayed(&r2, before), 1);
    ck_assert_int_gt(lag(&r2), 0);
    ck_assert_int_eq(direct_long(d2, "SELECT count(*) FROM sr_lsn WHERE id = 2"), 0);

    direct_exec(d2, "SELECT pg_wal_replay_resume()");
    ck_assert(wait_replayed(&r2, pos));
    ck_assert_int_eq(direct_long(d2, "SELECT count(*) FROM sr_lsn WHERE id = 2"), 1);

    PQfinish(d2);
    PQfinish(dp);
    node_close(&p);
    node_close(&r1);
    node_close(&r2);
}
END_TEST

/* ---- exec_at: the statement and its position in one exchange (ABI 5) ---------- */

/* What one exec_at call gave back; `res` is NULL unless rc == SR_OK. */
typedef struct at_out {
    int rc;
    int stale;
    char pos[SR_POSITION_MAX];
    sr_result *res;
    sr_driver_error e;
} at_out;

static at_out run_at(node_conn *n, const char *sql, int np, const char *const *p, const char *need,
                     int64_t deadline)
{
    at_out o;
    memset(&o, 0, sizeof o);
    memset(o.pos, 'x', sizeof o.pos - 1); /* exec_at must write it */
    o.stale = -1;
    sr_result_builder rb;
    ck_assert_int_eq(sr__result_builder_init(&rb, 0), SR_OK);
    o.rc = n->d->exec_at(n->c, sql, np, p, need, deadline, &rb, o.pos, sizeof o.pos, &o.stale,
                         &o.e);
    if (o.rc == SR_OK) {
        o.res = sr__result_builder_finish(&rb);
        ck_assert_ptr_nonnull(o.res);
    } else {
        sr__result_builder_discard(&rb);
    }
    return o;
}

static at_out must_at(node_conn *n, const char *sql, int np, const char *const *p, const char *need)
{
    at_out o = run_at(n, sql, np, p, need, soon());
    ck_assert_msg(o.rc == SR_OK, "exec_at %s: %s (%s)", sql, sr_strerror(o.rc), o.e.message);
    ck_assert_int_ge(o.stale, 0);
    ck_assert_int_le(o.stale, 1);
    return o;
}

/* Through the driver's plain exec(); returns the single value of a one-row result. */
static char *exec_value(node_conn *n, const char *sql)
{
    sr_result_builder rb;
    ck_assert_int_eq(sr__result_builder_init(&rb, 0), SR_OK);
    sr_driver_error e = {0};
    int rc = n->d->exec(n->c, sql, 0, NULL, soon(), &rb, &e);
    ck_assert_msg(rc == SR_OK, "exec %s: %s", sql, e.message);
    sr_result *res = sr__result_builder_finish(&rb);
    ck_assert_int_eq(sr_result_nrows(res), 1);
    char *v = strdup(sr_result_value(res, 0, 0));
    sr_result_free(res);
    return v;
}

/* ---- two-phase commit through the driver (ABI 7) ---- */

/* Whether the prepared transactions of shard0 whose gid starts with `prefix` include `gid`. */
static int listed(node_conn *n, const char *prefix, const char *gid)
{
    sr_result_builder rb;
    ck_assert_int_eq(sr__result_builder_init(&rb, 0), SR_OK);
    sr_driver_error e = {0};
    int rc = n->d->list_prepared(n->c, prefix, soon(), &rb, &e);
    ck_assert_msg(rc == SR_OK, "list_prepared: %s", e.message);
    sr_result *res = sr__result_builder_finish(&rb);
    ck_assert_int_eq(sr_result_ncols(res), 1);
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

/* Asserts that a one-value direct query returns `want`. */
static void direct_is(PGconn *d, const char *sql, const char *want)
{
    char *v = direct_value(d, sql);
    ck_assert_msg(v && strcmp(v, want) == 0, "%s: %s, not %s", sql, v ? v : "NULL", want);
    free(v);
}

static void must_drv(int rc, const sr_driver_error *e, const char *what)
{
    ck_assert_msg(rc == SR_OK, "%s: %s (%s)", what, sr_strerror(rc), e->message);
}

START_TEST(two_phase_commit_through_the_driver)
{
    PGconn *d = direct(pg.primary, "shard0");
    direct_exec(d, "CREATE TABLE IF NOT EXISTS sr_2pc (id int PRIMARY KEY)");
    direct_exec(d, "TRUNCATE sr_2pc");
    node_conn a, b;
    node_open(&a, pg.port_primary, SR_PRIMARY);
    ck_assert(sr_driver_has_two_phase(a.d));
    sr_driver_error e = {0};
    int found = -1;

    /* Prepared, listed, committed from the same connection. */
    must_drv(a.d->begin_global(a.c, "srtest:1", soon(), &e), &e, "begin_global");
    free(exec_value(&a, "INSERT INTO sr_2pc VALUES (1) RETURNING id"));
    must_drv(a.d->prepare(a.c, "srtest:1", soon(), &e), &e, "prepare");
    ck_assert(listed(&a, "srtest:", "srtest:1"));
    direct_is(d, "SELECT count(*) FROM sr_2pc", "0");
    must_drv(a.d->commit_prepared(a.c, "srtest:1", soon(), &found, &e), &e, "commit_prepared");
    ck_assert_int_eq(found, 1);
    direct_is(d, "SELECT count(*) FROM sr_2pc WHERE id = 1", "1");
    /* Again: already resolved, not an error. */
    must_drv(a.d->commit_prepared(a.c, "srtest:1", soon(), &found, &e), &e, "commit again");
    ck_assert_int_eq(found, 0);
    ck_assert(!listed(&a, "srtest:", "srtest:1"));

    /* Prepared, then its connection is gone: another one finds and rolls it back. */
    must_drv(a.d->begin_global(a.c, "srtest:2", soon(), &e), &e, "begin_global");
    free(exec_value(&a, "INSERT INTO sr_2pc VALUES (2) RETURNING id"));
    must_drv(a.d->prepare(a.c, "srtest:2", soon(), &e), &e, "prepare");
    node_close(&a);
    node_open(&b, pg.port_primary, SR_PRIMARY);
    ck_assert(listed(&b, "srtest:", "srtest:2"));
    ck_assert(listed(&b, "", "srtest:2"));
    ck_assert(!listed(&b, "other:", "srtest:2"));
    must_drv(b.d->rollback_prepared(b.c, "srtest:2", soon(), &found, &e), &e, "rollback_prepared");
    ck_assert_int_eq(found, 1);
    must_drv(b.d->rollback_prepared(b.c, "srtest:2", soon(), &found, &e), &e, "rollback again");
    ck_assert_int_eq(found, 0);
    direct_is(d, "SELECT count(*) FROM sr_2pc WHERE id = 2", "0");

    /* One phase: begun as global, ended by the plain commit and rollback. */
    must_drv(b.d->begin_global(b.c, "srtest:3", soon(), &e), &e, "begin_global");
    free(exec_value(&b, "INSERT INTO sr_2pc VALUES (3) RETURNING id"));
    must_drv(b.d->commit(b.c, soon(), &e), &e, "commit");
    must_drv(b.d->begin_global(b.c, "srtest:4", soon(), &e), &e, "begin_global");
    free(exec_value(&b, "INSERT INTO sr_2pc VALUES (4) RETURNING id"));
    must_drv(b.d->rollback(b.c, soon(), &e), &e, "rollback");
    direct_is(d, "SELECT string_agg(id::text, ',' ORDER BY id) FROM sr_2pc", "1,3");

    /* A transaction that failed is not prepared; the connection is fine after. */
    must_drv(b.d->begin_global(b.c, "srtest:5", soon(), &e), &e, "begin_global");
    sr_result_builder rb;
    ck_assert_int_eq(sr__result_builder_init(&rb, 0), SR_OK);
    ck_assert_int_eq(b.d->exec(b.c, "INSERT INTO sr_2pc VALUES (1)", 0, NULL, soon(), &rb, &e),
                     SR_EQUERY); /* duplicate key */
    sr__result_builder_discard(&rb);
    ck_assert_int_eq(b.d->prepare(b.c, "srtest:5", soon(), &e), SR_EQUERY);
    ck_assert_ptr_nonnull(strstr(e.message, "rolled back"));
    ck_assert(!listed(&b, "srtest:", "srtest:5"));

    /* Global ids: 64 bytes of the safe characters, nothing else, nothing sent. */
    char longest[SR_GID_MAX + 2];
    memset(longest, 'g', SR_GID_MAX);
    longest[SR_GID_MAX] = '\0';
    ck_assert(sr_gid_valid(longest, 0));
    longest[SR_GID_MAX] = 'g', longest[SR_GID_MAX + 1] = '\0';
    ck_assert(!sr_gid_valid(longest, 0));
    const char *bad[] = {"", "a'b", "a b", "x;DROP", longest, NULL};
    for (int i = 0; bad[i]; i++) {
        ck_assert_int_eq(b.d->begin_global(b.c, bad[i], soon(), &e), SR_EINVAL);
        ck_assert_int_eq(b.d->prepare(b.c, bad[i], soon(), &e), SR_EINVAL);
        ck_assert_int_eq(b.d->commit_prepared(b.c, bad[i], soon(), &found, &e), SR_EINVAL);
        ck_assert_int_eq(b.d->rollback_prepared(b.c, bad[i], soon(), &found, &e), SR_EINVAL);
    }
    free(exec_value(&b, "SELECT 1")); /* still usable */
    node_close(&b);
    PQfinish(d);
}
END_TEST

static void assert_lsn(const char *pos)
{
    unsigned hi, lo;
    char tail;
    ck_assert_msg(sscanf(pos, "%X/%X%c", &hi, &lo, &tail) == 2, "position '%s'", pos);
}

static char *driver_position(node_conn *n)
{
    char buf[SR_POSITION_MAX];
    sr_driver_error e = {0};
    ck_assert_msg(n->d->replay_position(n->c, soon(), buf, sizeof buf, &e) == SR_OK, "%s",
                  e.message);
    return strdup(buf);
}

static int driver_wait(node_conn *n, const char *pos)
{
    int out = -1;
    sr_driver_error e = {0};
    int rc = n->d->wait_replayed(n->c, pos, sr_clock_ns() + 10000LL * 1000000, &out, &e);
    ck_assert_msg(rc == SR_OK, "wait_replayed: %s", e.message);
    return out;
}

static void fresh_at_table(PGconn *dp)
{
    direct_exec(dp, "DROP TABLE IF EXISTS sr_at; DROP TABLE IF EXISTS sr_at_late; "
                    "CREATE TABLE sr_at (id int PRIMARY KEY, v text)");
}

START_TEST(a_write_through_exec_at_reports_a_position_that_covers_its_commit)
{
    node_conn p, r1;
    node_open(&p, pg.port_primary, SR_PRIMARY);
    node_open(&r1, pg.port_replica1, SR_REPLICA);
    PGconn *dp = direct(pg.primary, "shard0");
    fresh_at_table(dp);
    direct_exec(dp, "CREATE EXTENSION IF NOT EXISTS pg_walinspect");

    /* Twice: the first prepares the statement (and fetches the WAL sizes), the second reuses it. */
    for (int i = 1; i <= 2; i++) {
        char id[8];
        snprintf(id, sizeof id, "%d", i);
        const char *args[] = {id};
        at_out w = must_at(&p,
                           "INSERT INTO sr_at VALUES (?, 'one') RETURNING "
                           "pg_current_wal_insert_lsn()::text, pg_current_xact_id()::text",
                           1, args, NULL);
        ck_assert_int_eq(w.stale, 0);
        ck_assert_int_eq(sr_result_affected(w.res), 1);
        ck_assert_int_eq(sr_result_nrows(w.res), 1);
        assert_lsn(w.pos);

        /* The commit record of that very transaction ends at or before `pos`. */
        char *sql = xfmt("SELECT max(end_lsn) FROM pg_get_wal_records_info('%s', "
                         "pg_current_wal_flush_lsn()) WHERE xid::text = '%s' AND "
                         "resource_manager = 'Transaction' AND record_type = 'COMMIT'",
                         sr_result_value(w.res, 0, 0), sr_result_value(w.res, 0, 1));
        char *commit_end = direct_value(dp, sql);
        free(sql);
        ck_assert_msg(commit_end, "no commit record for xid %s", sr_result_value(w.res, 0, 1));
        ck_assert_msg(p.d->position_covers(w.pos, commit_end) == 1, "pos %s < commit end %s",
                      w.pos, commit_end);
        free(commit_end);

        /* Not ahead of the server either: write_position() right after covers it. */
        char after[64];
        sr_driver_error e = {0};
        ck_assert_int_eq(p.d->write_position(p.c, soon(), after, sizeof after, &e), SR_OK);
        ck_assert_int_eq(p.d->position_covers(after, w.pos), 1);

        /* A replica that has replayed `pos` has the row. */
        ck_assert_int_eq(driver_wait(&r1, w.pos), 1);
        char *q = xfmt("SELECT count(*) FROM sr_at WHERE id = %d", i);
        char *count = exec_value(&r1, q);
        free(q);
        ck_assert_str_eq(count, "1");
        free(count);
        sr_result_free(w.res);
    }
    PQfinish(dp);
    node_close(&p);
    node_close(&r1);
}
END_TEST

START_TEST(a_stale_replica_reports_its_position_and_no_rows)
{
    node_conn p, r2;
    node_open(&p, pg.port_primary, SR_PRIMARY);
    node_open(&r2, pg.port_replica2, SR_REPLICA);
    PGconn *dp = direct(pg.primary, "shard0");
    PGconn *d2 = direct(pg.replica2, "shard0");
    fresh_at_table(dp);
    char before[64];
    sr_driver_error e = {0};
    ck_assert_int_eq(p.d->write_position(p.c, soon(), before, sizeof before, &e), SR_OK);
    ck_assert_int_eq(driver_wait(&r2, before), 1);

    direct_exec(d2, "SELECT pg_wal_replay_pause()");
    ck_assert(wait_replica_true(pg.replica2, "shard0",
                                "SELECT pg_get_wal_replay_pause_state() = 'paused'", 10000));
    char *paused_at = driver_position(&r2);
    at_out w = must_at(&p, "INSERT INTO sr_at VALUES (7, 'seven')", 0, NULL, NULL);
    ck_assert_int_eq(sr_result_affected(w.res), 1);
    sr_result_free(w.res);

    const char *sql = "SELECT v FROM sr_at WHERE id = ?";
    const char *seven[] = {"7"};
    at_out r = must_at(&r2, sql, 1, seven, w.pos);
    ck_assert_int_eq(r.stale, 1);
    ck_assert_int_eq(sr_result_ncols(r.res), 0);
    ck_assert_int_eq(sr_result_nrows(r.res), 0);
    /* The replica's own position, which is where replay stopped, behind the write. */
    ck_assert_str_eq(r.pos, paused_at);
    ck_assert_int_eq(p.d->position_covers(r.pos, w.pos), 0);
    ck_assert_int_eq(p.d->position_covers(r.pos, before), 1);
    sr_result_free(r.res);
    /* The statement behind a stale check still ran (its rows were dropped), and inside a
     * transaction (where a missing statement is not prepared again and retried) it runs. */
    sr_driver_error te = {0};
    ck_assert_int_eq(r2.d->begin(r2.c, 1, soon(), &te), SR_OK);
    sr_result_builder rb;
    ck_assert_int_eq(sr__result_builder_init(&rb, 0), SR_OK);
    int xrc = r2.d->exec(r2.c, sql, 1, seven, soon(), &rb, &te);
    ck_assert_msg(xrc == SR_OK, "exec after the stale read: %s", te.message);
    sr__result_builder_discard(&rb);
    ck_assert_int_eq(r2.d->rollback(r2.c, soon(), &te), SR_OK);
    /* The statement's own outcome does not count on a stale replica: not even an error. */
    at_out z = must_at(&r2, "SELECT 1/0", 0, NULL, w.pos);
    ck_assert_int_eq(z.stale, 1);
    ck_assert_str_eq(z.pos, paused_at);
    sr_result_free(z.res);
    /* Nor a table the write created, which the replica does not have yet. */
    at_out ddl = must_at(&p, "CREATE TABLE sr_at_late (x int)", 0, NULL, NULL);
    sr_result_free(ddl.res);
    z = must_at(&r2, "SELECT x FROM sr_at_late", 0, NULL, ddl.pos);
    ck_assert_int_eq(z.stale, 1);
    ck_assert_int_eq(sr_result_ncols(z.res), 0);
    sr_result_free(z.res);

    direct_exec(d2, "SELECT pg_wal_replay_resume()");
    ck_assert_int_eq(driver_wait(&r2, w.pos), 1);
    for (int round = 0; round < 2; round++) { /* prepared now, then from the cache */
        r = must_at(&r2, sql, 1, seven, w.pos);
        ck_assert_int_eq(r.stale, 0);
        ck_assert_int_eq(sr_result_nrows(r.res), 1);
        ck_assert_str_eq(sr_result_value(r.res, 0, 0), "seven");
        ck_assert_int_eq(p.d->position_covers(r.pos, w.pos), 1);
        sr_result_free(r.res);
    }
    /* One prepared statement on the server for it, not one per attempt. */
    char *prepared = exec_value(&r2, "SELECT count(*) FROM pg_prepared_statements "
                                     "WHERE statement = 'SELECT v FROM sr_at WHERE id = $1'");
    ck_assert_str_eq(prepared, "1");
    free(prepared);
    free(paused_at);
    PQfinish(d2);
    PQfinish(dp);
    node_close(&p);
    node_close(&r2);
}
END_TEST

START_TEST(a_read_at_a_position_on_the_primary_returns_its_rows)
{
    node_conn p;
    node_open(&p, pg.port_primary, SR_PRIMARY);
    PGconn *dp = direct(pg.primary, "shard0");
    fresh_at_table(dp);
    at_out w = must_at(&p, "INSERT INTO sr_at VALUES (3, 'three')", 0, NULL, NULL);
    sr_result_free(w.res);
    const char *three[] = {"3"};
    at_out r = must_at(&p, "SELECT v, pg_is_in_recovery() FROM sr_at WHERE id = ?", 1, three, w.pos);
    ck_assert_int_eq(r.stale, 0);
    ck_assert_int_eq(sr_result_nrows(r.res), 1);
    ck_assert_str_eq(sr_result_value(r.res, 0, 0), "three");
    ck_assert_str_eq(sr_result_value(r.res, 0, 1), "0");
    /* The primary's flush position, which covers what it wrote. */
    assert_lsn(r.pos);
    ck_assert_int_eq(p.d->position_covers(r.pos, w.pos), 1);
    sr_result_free(r.res);
    /* A malformed position is the caller's mistake: refused, nothing sent. */
    at_out bad = run_at(&p, "SELECT 1", 0, NULL, "not-a-lsn", soon());
    ck_assert_int_eq(bad.rc, SR_EINVAL);
    ck_assert_int_eq(bad.e.transient, 0);
    PQfinish(dp);
    node_close(&p);
}
END_TEST

static void expect_at_error(node_conn *n, const char *sql, int np, const char *const *p,
                            const char *need, const char *sqlstate)
{
    at_out o = run_at(n, sql, np, p, need, soon());
    ck_assert_msg(o.rc == SR_EQUERY, "%s: expected SR_EQUERY, got %s (%s)", sql, sr_strerror(o.rc),
                  o.e.message);
    ck_assert_str_eq(o.e.sqlstate, sqlstate);
    ck_assert_int_eq(o.e.transient, 0);
    /* The same connection runs the next statement, plain or pipelined. */
    char *v = exec_value(n, "SELECT 'still fine'");
    ck_assert_str_eq(v, "still fine");
    free(v);
}

START_TEST(sql_errors_in_exec_at_leave_the_connection_usable)
{
    node_conn p, r1;
    node_open(&p, pg.port_primary, SR_PRIMARY);
    node_open(&r1, pg.port_replica1, SR_REPLICA);
    PGconn *dp = direct(pg.primary, "shard0");
    fresh_at_table(dp);
    const char *one[] = {"1"};
    at_out w = must_at(&p, "INSERT INTO sr_at VALUES (?, 'x')", 1, one, NULL);
    char pos[SR_POSITION_MAX];
    snprintf(pos, sizeof pos, "%s", w.pos);
    sr_result_free(w.res);
    ck_assert_int_eq(driver_wait(&r1, pos), 1);

    for (int round = 0; round < 2; round++) { /* the cached statement fails too */
        expect_at_error(&p, "INSERT INTO sr_at VALUES (?, 'x')", 1, one, NULL, "23505");
        expect_at_error(&r1, "SELECT 1/(id - 1) FROM sr_at WHERE id = ?", 1, one, pos, "22012");
    }
    expect_at_error(&p, "SELEC 1", 0, NULL, NULL, "42601");  /* fails to prepare */
    expect_at_error(&r1, "SELEC 1", 0, NULL, pos, "42601");
    expect_at_error(&r1, "INSERT INTO sr_at VALUES (2, 'y')", 0, NULL, pos, "25006");
    /* Too many parameters: the server's 08P01 does not cost the connection. */
    const char *two[] = {"1", "2"};
    at_out once = run_at(&p, "SELECT ?::int", 1, two, NULL, soon()); /* prepared: cached */
    ck_assert_int_eq(once.rc, SR_OK);
    sr_result_free(once.res);
    expect_at_error(&p, "SELECT ?::int", 2, two, NULL, "08P01");

    /* Nothing of the failed statements was written; the pipeline still works after them. */
    const char *five[] = {"5"};
    w = must_at(&p, "INSERT INTO sr_at VALUES (?, 'x')", 1, five, NULL);
    assert_lsn(w.pos);
    sr_result_free(w.res);
    ck_assert_int_eq(direct_long(dp, "SELECT count(*) FROM sr_at"), 2);
    PQfinish(dp);
    node_close(&p);
    node_close(&r1);
}
END_TEST

START_TEST(exec_at_survives_ddl_that_changes_a_cached_statement)
{
    node_conn p;
    node_open(&p, pg.port_primary, SR_PRIMARY);
    PGconn *dp = direct(pg.primary, "shard0");
    direct_exec(dp, "DROP TABLE IF EXISTS sr_at_ddl; CREATE TABLE sr_at_ddl (id int, a text);"
                    "INSERT INTO sr_at_ddl VALUES (1, 'x')");
    const char *sql = "SELECT * FROM sr_at_ddl WHERE id = ?";
    const char *one[] = {"1"};
    char *pos = driver_position(&p);
    at_out r = must_at(&p, sql, 1, one, pos);
    ck_assert_int_eq(sr_result_ncols(r.res), 2);
    sr_result_free(r.res);
    direct_exec(dp, "ALTER TABLE sr_at_ddl ADD COLUMN b text DEFAULT 'y'");
    r = must_at(&p, sql, 1, one, pos); /* 0A000 on the cached plan: prepared again, rerun */
    ck_assert_int_eq(r.stale, 0);
    ck_assert_int_eq(sr_result_ncols(r.res), 3);
    ck_assert_str_eq(sr_result_value(r.res, 0, 2), "y");
    sr_result_free(r.res);
    direct_exec(dp, "ALTER TABLE sr_at_ddl DROP COLUMN b");
    r = must_at(&p, sql, 1, one, NULL); /* the same for a write's pipeline */
    ck_assert_int_eq(sr_result_ncols(r.res), 2);
    assert_lsn(r.pos);
    sr_result_free(r.res);
    free(pos);
    PQfinish(dp);
    node_close(&p);
}
END_TEST

START_TEST(exec_at_without_a_pipeline_and_inside_a_transaction)
{
    node_conn p, r1;
    node_open(&p, pg.port_primary, SR_PRIMARY);
    node_open(&r1, pg.port_replica1, SR_REPLICA);
    PGconn *dp = direct(pg.primary, "shard0");
    fresh_at_table(dp);
    /* Several statements in one string: no pipeline, so no position for a write. */
    at_out w = must_at(&p, "INSERT INTO sr_at VALUES (1, 'a'); INSERT INTO sr_at VALUES (2, 'b')",
                       0, NULL, NULL);
    ck_assert_str_eq(w.pos, "");
    sr_result_free(w.res);
    char *pos = driver_position(&p);
    ck_assert_int_eq(driver_wait(&r1, pos), 1);
    /* ... but a read is still checked (in a round trip of its own). */
    at_out r = must_at(&r1, "SELECT 1; SELECT count(*) FROM sr_at", 0, NULL, pos);
    ck_assert_int_eq(r.stale, 0);
    ck_assert_str_eq(sr_result_value(r.res, 0, 0), "2");
    ck_assert_int_eq(r1.d->position_covers(r.pos, pos), 1);
    sr_result_free(r.res);
    r = must_at(&r1, "SELECT 1; SELECT 2", 0, NULL, "FFFFFFFF/0");
    ck_assert_int_eq(r.stale, 1);
    ck_assert_int_eq(sr_result_nrows(r.res), 0);
    sr_result_free(r.res);

    /* Inside a transaction: a write runs without a position, a checked read is refused. */
    sr_driver_error e = {0};
    ck_assert_int_eq(p.d->begin(p.c, 0, soon(), &e), SR_OK);
    w = must_at(&p, "INSERT INTO sr_at VALUES (3, 'c')", 0, NULL, NULL);
    ck_assert_str_eq(w.pos, "");
    ck_assert_int_eq(sr_result_affected(w.res), 1);
    sr_result_free(w.res);
    at_out refused = run_at(&p, "SELECT 1", 0, NULL, pos, soon());
    ck_assert_int_eq(refused.rc, SR_EINVAL);
    ck_assert_int_eq(p.d->rollback(p.c, soon(), &e), SR_OK);
    ck_assert_int_eq(direct_long(dp, "SELECT count(*) FROM sr_at WHERE id = 3"), 0);
    free(pos);
    PQfinish(dp);
    node_close(&p);
    node_close(&r1);
}
END_TEST

START_TEST(exec_at_prepares_its_own_queries_only_where_the_cache_allows)
{
    node_conn p;
    node_open(&p, pg.port_primary, SR_PRIMARY);
    PGconn *dp = direct(pg.primary, "shard0");
    fresh_at_table(dp);
    char *pos = driver_position(&p);
    const char *one[] = {"1"};
    for (int i = 0; i < 3; i++) {
        at_out w = must_at(&p, "INSERT INTO sr_at VALUES (?, 'a') ON CONFLICT (id) DO NOTHING", 1,
                           one, NULL);
        assert_lsn(w.pos);
        sr_result_free(w.res);
        at_out r = must_at(&p, "SELECT count(*) FROM sr_at", 0, NULL, pos);
        ck_assert_str_eq(sr_result_value(r.res, 0, 0), "1");
        sr_result_free(r.res);
    }
    /* The two statements, the check, the (second form of the) position query and this
     * listing itself: each prepared once. */
    char *count = exec_value(&p, "SELECT count(*) FROM pg_prepared_statements");
    ck_assert_str_eq(count, "5");
    free(count);
    /* DISCARD ALL drops them all behind the driver's back: prepared again, no error. */
    sr_driver_error de = {0};
    sr_result_builder drb;
    ck_assert_int_eq(sr__result_builder_init(&drb, 0), SR_OK);
    ck_assert_int_eq(p.d->exec(p.c, "DISCARD ALL", 0, NULL, soon(), &drb, &de), SR_OK);
    sr__result_builder_discard(&drb);
    at_out r = must_at(&p, "SELECT count(*) FROM sr_at", 0, NULL, pos);
    ck_assert_int_eq(r.stale, 0);
    ck_assert_str_eq(sr_result_value(r.res, 0, 0), "1");
    sr_result_free(r.res);
    at_out w = must_at(&p, "INSERT INTO sr_at VALUES (?, 'a') ON CONFLICT (id) DO NOTHING", 1, one,
                       NULL);
    assert_lsn(w.pos);
    sr_result_free(w.res);
    node_close(&p);

    /* Without a cache nothing named is left on the server, exec_at's queries included. */
    node_open_cached(&p, pg.port_primary, SR_PRIMARY, 0);
    for (int i = 0; i < 2; i++) {
        w = must_at(&p, "INSERT INTO sr_at VALUES (?, 'a') ON CONFLICT (id) DO NOTHING", 1, one,
                    NULL);
        assert_lsn(w.pos);
        sr_result_free(w.res);
        r = must_at(&p, "SELECT count(*) FROM sr_at", 0, NULL, pos);
        ck_assert_int_eq(r.stale, 0);
        sr_result_free(r.res);
    }
    count = exec_value(&p, "SELECT count(*) FROM pg_prepared_statements");
    ck_assert_str_eq(count, "0");
    free(count);
    free(pos);
    PQfinish(dp);
    node_close(&p);
}
END_TEST

START_TEST(a_read_at_a_position_under_repeatable_read_runs_on_a_later_snapshot)
{
    /* The statement behind the check shares its snapshot: the driver runs it again. */
    node_conn p, r1;
    node_open(&p, pg.port_primary, SR_PRIMARY);
    node_open(&r1, pg.port_replica1, SR_REPLICA);
    free(exec_value(&r1, "SELECT set_config('default_transaction_isolation', 'repeatable read', "
                         "false)"));
    PGconn *dp = direct(pg.primary, "shard0");
    fresh_at_table(dp);
    at_out w = must_at(&p, "INSERT INTO sr_at VALUES (4, 'four')", 0, NULL, NULL);
    sr_result_free(w.res);
    ck_assert_int_eq(driver_wait(&r1, w.pos), 1);
    const char *four[] = {"4"};
    for (int round = 0; round < 2; round++) {
        at_out r = must_at(&r1, "SELECT v, current_setting('transaction_isolation') FROM sr_at "
                                "WHERE id = ?",
                           1, four, w.pos);
        ck_assert_int_eq(r.stale, 0);
        ck_assert_int_eq(sr_result_nrows(r.res), 1); /* once, not the dropped rows as well */
        ck_assert_str_eq(sr_result_value(r.res, 0, 0), "four");
        ck_assert_str_eq(sr_result_value(r.res, 0, 1), "repeatable read");
        ck_assert_int_eq(r1.d->position_covers(r.pos, w.pos), 1);
        sr_result_free(r.res);
    }
    at_out r = must_at(&r1, "SELECT 1", 0, NULL, "FFFFFFFF/0");
    ck_assert_int_eq(r.stale, 1);
    ck_assert_int_eq(sr_result_nrows(r.res), 0);
    sr_result_free(r.res);
    PQfinish(dp);
    node_close(&p);
    node_close(&r1);
}
END_TEST

/* Freezes the backend of `n`'s connection, runs exec_at with a 300 ms deadline, thaws it. */
static void expect_at_timeout(node_conn *n, const char *sql, const char *need)
{
    char *pid = exec_value(n, "SELECT pg_backend_pid()");
    pid_t backend = (pid_t)atol(pid);
    free(pid);
    ck_assert_int_eq(kill(backend, SIGSTOP), 0);
    double t0 = mono_ms();
    at_out o = run_at(n, sql, 0, NULL, need, sr_clock_ns() + 300LL * 1000000);
    double took = mono_ms() - t0;
    kill(backend, SIGCONT);
    ck_assert_msg(o.rc == SR_ETIMEOUT, "expected SR_ETIMEOUT, got %s (%s)", sr_strerror(o.rc),
                  o.e.message);
    ck_assert_int_eq(o.e.transient, 1);
    ck_assert_msg(took < 1500.0, "a stopped backend held exec_at %.0f ms", took);
    /* The connection was given up: the next call says so at once. */
    sr_result_builder rb;
    ck_assert_int_eq(sr__result_builder_init(&rb, 0), SR_OK);
    sr_driver_error e = {0};
    ck_assert_int_eq(n->d->exec(n->c, "SELECT 1", 0, NULL, soon(), &rb, &e), SR_ECONNECT);
    ck_assert_int_eq(e.transient, 1);
    sr__result_builder_discard(&rb);
}

START_TEST(a_stopped_server_cannot_hold_exec_at)
{
    node_conn p, r1;
    node_open(&p, pg.port_primary, SR_PRIMARY);
    node_open(&r1, pg.port_replica1, SR_REPLICA);
    expect_at_timeout(&p, "SELECT 1", NULL);
    expect_at_timeout(&r1, "SELECT 1", "0/0");
    node_close(&p);
    node_close(&r1);
}
END_TEST

/* primary_conninfo of replica2 before the test that stops its WAL receiver. */
static char *saved_conninfo;

static void restore_replica2_receiver(void)
{
    resume_replica2();
    if (!saved_conninfo)
        return;
    PGconn *c = PQconnectdb(getenv("SR_PG_REPLICA2"));
    if (PQstatus(c) == CONNECTION_OK) {
        char *lit = PQescapeLiteral(c, saved_conninfo, strlen(saved_conninfo));
        char *sql = xfmt("ALTER SYSTEM SET primary_conninfo = %s", lit);
        PQfreemem(lit);
        PQclear(PQexec(c, sql));
        free(sql);
        PQclear(PQexec(c, "SELECT pg_reload_conf()"));
    }
    PQfinish(c);
    free(saved_conninfo);
    saved_conninfo = NULL;
}

START_TEST(a_replica_without_a_wal_receiver_is_not_eligible)
{
    node_conn r2;
    node_open(&r2, pg.port_replica2, SR_REPLICA);
    PGconn *d2 = direct(pg.replica2, "postgres");
    saved_conninfo = direct_value(d2, "SHOW primary_conninfo");
    ck_assert_ptr_nonnull(saved_conninfo);
    direct_exec(d2, "ALTER SYSTEM SET primary_conninfo = ''");
    direct_exec(d2, "SELECT pg_reload_conf()");
    ck_assert(wait_replica_true(pg.replica2, "postgres",
                                "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver)", 10000));
    ck_assert_int_eq(lag(&r2), -1);

    restore_replica2_receiver();
    ck_assert(wait_replica_true(pg.replica2, "postgres",
                                "SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver "
                                "WHERE status = 'streaming')",
                                15000));
    int64_t ms = -1;
    for (double t0 = mono_ms(); mono_ms() - t0 < 10000 && (ms = lag(&r2)) != 0; sleep_ms(20))
        ;
    ck_assert_int_eq(ms, 0);
    PQfinish(d2);
    node_close(&r2);
}
END_TEST

/* ---- the statement cache's byte bound ------------------------------------ */

/* One shard, its primary, one pooled connection, and a byte bound on the cache. */
static sr_router *byte_bounded_router(const char *max_bytes)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sr_config_set(c, "pool.max_size", "1"), SR_OK);
    ck_assert_int_eq(sr_config_set(c, "stmt_cache.max_bytes", max_bytes), SR_OK);
    ck_assert_int_eq(sr_config_add_shard(c, shard_db[0]), SR_OK);
    char *uri = xfmt("%s/%s", pg.primary, shard_db[0]);
    ck_assert_msg(sr_config_add_node(c, shard_db[0], SR_PRIMARY, uri, 1) == SR_OK, "%s",
                  sr_config_errmsg(c));
    free(uri);
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "open: %s", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

/* Runs "SELECT id, length('xxx...')" with a literal of `bytes` bytes and checks its row. */
static void run_big(sr_session *s, int id, size_t bytes)
{
    char *sql = malloc(bytes + 64);
    ck_assert_ptr_nonnull(sql);
    int n = snprintf(sql, 64, "SELECT %d, length('", id);
    memset(sql + n, 'x', bytes);
    memcpy(sql + n + bytes, "')", 3);
    sr_result *res = must_key(s, 1, SR_WRITE, sql, 0, NULL);
    ck_assert_int_eq(atoi(sr_result_value(res, 0, 0)), id);
    ck_assert_int_eq(atol(sr_result_value(res, 0, 1)), (long)bytes);
    sr_result_free(res);
    free(sql);
}

/* "name@prepare_time" of the server-side statement that starts with `prefix`, or "". */
static char *prepared_identity(sr_session *s, const char *prefix)
{
    sr_result *res = must_key(s, 1, SR_WRITE,
                              "SELECT coalesce(max(name || '@' || prepare_time), '') "
                              "FROM pg_prepared_statements WHERE left(statement, length(?)) = ?",
                              2, (const char *const[]){prefix, prefix});
    char *v = strdup(sr_result_value(res, 0, 0));
    sr_result_free(res);
    return v;
}

START_TEST(the_cache_is_bounded_in_bytes_on_the_server)
{
    /* 1 MiB, and the default count bound of 64 that alone would keep all 20. */
    sr_router *r = byte_bounded_router("1048576");
    sr_session *s = session(r);
    for (int i = 0; i < 20; i++)
        run_big(s, i, 200000);
    sr_result *res = must_key(s, 1, SR_WRITE,
                              "SELECT count(*), coalesce(sum(length(statement)), 0) "
                              "FROM pg_prepared_statements",
                              0, NULL);
    long count = atol(sr_result_value(res, 0, 0));
    long bytes = atol(sr_result_value(res, 0, 1));
    sr_result_free(res);
    /* Without the byte bound the backend would hold 20 statements, ~4 MB. */
    ck_assert_msg(bytes <= 1048576, "the backend holds %ld bytes of prepared statements", bytes);
    /* The last five big ones fit (5 x 200 KB) and this query itself. */
    ck_assert_int_eq(count, 6);

    /* A cached statement is reused: same name, same prepare time. */
    char *first = prepared_identity(s, "SELECT 19, ");
    ck_assert_msg(strncmp(first, "sr_", 3) == 0, "%s", first);
    run_big(s, 19, 200000);
    char *again = prepared_identity(s, "SELECT 19, ");
    ck_assert_str_eq(again, first);
    free(again);

    /* A statement larger than the whole bound runs unnamed: nothing is
     * prepared for it and nothing is pushed out. */
    run_big(s, 99, 2000000);
    /* + prepared_identity's query and prepared_count's own: nothing for the big one. */
    ck_assert_int_eq(prepared_count(s, NULL), count + 2);
    char *none = prepared_identity(s, "SELECT 99, ");
    ck_assert_str_eq(none, "");
    free(none);
    again = prepared_identity(s, "SELECT 19, ");
    ck_assert_str_eq(again, first);
    free(again);
    free(first);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- trace context (sr_session_set_trace) --------------------------------- */

#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
/* What the session below appends to every statement it sends. */
#define TRACE_COMMENT "\n/*app='it%27s%20%2A%2F',traceparent='" TRACEPARENT "'*/"
#define OWN_QUERY "SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid()"

static void set_trace(sr_session *s)
{
    const char *tags[] = {"app", "it's */"};
    ck_assert_msg(sr_session_set_trace(s, TRACEPARENT, 1, tags) == SR_OK, "%s",
                  sr_session_errmsg(s));
}

/* The text the server shows for the statement `sql` itself, run on `key` with `intent`. */
static char *own_query(sr_session *s, sr_intent intent, const char *sql)
{
    return scalar_key(s, 7, intent, sql);
}

/* `seen` is `sql` with the trace comment after it, exactly. */
static void assert_traced(const char *seen, const char *sql)
{
    char *want = xfmt("%s%s", sql, TRACE_COMMENT);
    ck_assert_str_eq(seen, want);
    free(want);
}

START_TEST(a_traced_statement_shows_its_comment_in_pg_stat_activity)
{
    sr_router *r = open_router(defaults());
    sr_session *s = session(r);
    set_trace(s);
    /* SR_AUTO is read from the caller's SQL: a read, on a replica. */
    const char *sql = "SELECT query || pg_is_in_recovery()::text FROM pg_stat_activity "
                      "WHERE pid = pg_backend_pid()";
    char *v = own_query(s, SR_AUTO, sql);
    char *want = xfmt("%s%strue", sql, TRACE_COMMENT);
    ck_assert_str_eq(v, want);
    free(want);
    free(v);
    /* SQL that ends in a line comment or a semicolon; a write to the primary. */
    const char *ends[] = {OWN_QUERY " -- the end", OWN_QUERY ";", OWN_QUERY " ; -- x;"};
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        v = own_query(s, SR_AUTO, ends[i]);
        assert_traced(v, ends[i]);
        free(v);
        v = own_query(s, SR_WRITE, ends[i]);
        assert_traced(v, ends[i]);
        free(v);
    }
    /* With parameters (rewritten to $n, prepared). */
    sr_result *res = must_key(s, 7, SR_READ, OWN_QUERY " AND ? = ?", 2,
                              (const char *const[]){"a", "a"});
    assert_traced(sr_result_value(res, 0, 0), OWN_QUERY " AND $1 = $2");
    sr_result_free(res);
    /* On a shard by index. */
    res = must_shard(s, 1, SR_WRITE, OWN_QUERY, 0, NULL);
    assert_traced(sr_result_value(res, 0, 0), OWN_QUERY);
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(traced_transactions_scatter_and_cursors_carry_the_comment)
{
    sr_router *r = open_router(defaults());
    sr_session *s = session(r);
    set_trace(s);
    /* Inside a transaction: the statements carry it (BEGIN and COMMIT are the driver's). */
    ck_assert_int_eq(sr_begin(s, sr_key_int(7)), SR_OK);
    char *v = own_query(s, SR_AUTO, OWN_QUERY);
    assert_traced(v, OWN_QUERY);
    free(v);
    ck_assert_int_eq(sr_commit(s), SR_OK);

    /* Scatter: every shard's text. */
    sr_result *res = NULL;
    ck_assert_msg(sr_exec_all(s, SR_AUTO, OWN_QUERY, 0, NULL, &res) == SR_OK, "%s",
                  sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_nrows(res), NSHARDS);
    for (int i = 0; i < NSHARDS; i++)
        assert_traced(sr_result_value(res, i, 0), OWN_QUERY);
    sr_result_free(res);
    /* Pushed down (LIMIT n OFFSET m runs as LIMIT n+m): the comment is on the text sent. */
    ck_assert_msg(sr_exec_all(s, SR_AUTO, OWN_QUERY " LIMIT 4 OFFSET 1", 0, NULL, &res) == SR_OK,
                  "%s", sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_nrows(res), NSHARDS - 1);
    assert_traced(sr_result_value(res, 0, 0), OWN_QUERY " LIMIT 5");
    sr_result_free(res);

    /* Cursors, on one shard and on all. */
    sr_cursor *c = NULL;
    ck_assert_int_eq(sr_cursor_open(s, sr_key_int(7), SR_AUTO, NULL, OWN_QUERY, 0, NULL, &c),
                     SR_OK);
    ck_assert_int_eq(sr_cursor_next(c), 1);
    int row = -1;
    const sr_result *cur = sr_cursor_row(c, &row);
    assert_traced(sr_result_value(cur, row, 0), OWN_QUERY);
    ck_assert_int_eq(sr_cursor_next(c), 0);
    sr_cursor_close(c);
    ck_assert_int_eq(sr_cursor_open_all(s, SR_AUTO, NULL, OWN_QUERY, 0, NULL, &c), SR_OK);
    for (int i = 0; i < NSHARDS; i++) {
        ck_assert_int_eq(sr_cursor_next(c), 1);
        cur = sr_cursor_row(c, &row);
        assert_traced(sr_result_value(cur, row, 0), OWN_QUERY);
    }
    ck_assert_int_eq(sr_cursor_next(c), 0);
    sr_cursor_close(c);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_session_without_a_trace_sends_its_sql_unchanged)
{
    sr_router *r = open_router(defaults());
    sr_session *s = session(r);
    char *v = own_query(s, SR_AUTO, OWN_QUERY);
    ck_assert_str_eq(v, OWN_QUERY);
    free(v);

    set_trace(s);
    /* A refused context leaves the one before in place, and says what is wrong. */
    ck_assert_int_eq(sr_session_set_trace(s, "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                                          0, NULL),
                     SR_EINVAL);
    ck_assert_msg(strstr(sr_session_errmsg(s), "traceparent") &&
                      strstr(sr_session_errmsg(s), "lowercase"),
                  "%s", sr_session_errmsg(s));
    ck_assert_int_eq(sr_session_set_trace(s, TRACEPARENT, 1, (const char *const[]){"a b", "v"}),
                     SR_EINVAL);
    ck_assert_msg(strstr(sr_session_errmsg(s), "tag 1"), "%s", sr_session_errmsg(s));
    v = own_query(s, SR_AUTO, OWN_QUERY);
    assert_traced(v, OWN_QUERY);
    free(v);

    /* Cleared (NULL or ""): unchanged again. */
    ck_assert_int_eq(sr_session_set_trace(s, NULL, 0, NULL), SR_OK);
    v = own_query(s, SR_AUTO, OWN_QUERY);
    ck_assert_str_eq(v, OWN_QUERY);
    free(v);
    set_trace(s);
    ck_assert_int_eq(sr_session_set_trace(s, "", 0, NULL), SR_OK);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec_all(s, SR_AUTO, OWN_QUERY, 0, NULL, &res), SR_OK);
    for (int i = 0; i < NSHARDS; i++)
        ck_assert_str_eq(sr_result_value(res, i, 0), OWN_QUERY);
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* "name@prepare_time" of the server-side statement whose text is exactly `statement`, or "". */
static char *prepared_exactly(sr_session *s, const char *statement)
{
    sr_result *res = must_key(s, 1, SR_WRITE,
                              "SELECT coalesce(max(name || '@' || prepare_time), '') "
                              "FROM pg_prepared_statements WHERE statement = ?",
                              1, (const char *const[]){statement});
    char *v = strdup(sr_result_value(res, 0, 0));
    sr_result_free(res);
    return v;
}

/*
 * What a trace costs, and what sessions without one do not pay: a traced
 * text (new for every traceparent) runs as an unnamed statement, never
 * prepared under a name, so it evicts nothing; the untraced statement stays
 * prepared and is reused.
 */
START_TEST(statements_without_a_trace_still_hit_the_statement_cache)
{
    sr_router *r = single_connection_router(16);
    sr_session *plain = session(r), *traced = session(r);
    const char *sql = "SELECT ?::int + 1";
    const char *one[] = {"1"};
    sr_result_free(must_key(plain, 1, SR_WRITE, sql, 1, one));
    char *first = prepared_exactly(plain, "SELECT $1::int + 1");
    ck_assert_msg(strncmp(first, "sr_", 3) == 0, "%s", first);

    set_trace(traced);
    for (int i = 0; i < 3; i++) {
        sr_result_free(must_key(traced, 1, SR_WRITE, sql, 1, one));
        sr_result_free(must_key(plain, 1, SR_WRITE, sql, 1, one));
    }
    /* The untraced statement: still the one prepared first (a cache hit each time). */
    char *again = prepared_exactly(plain, "SELECT $1::int + 1");
    ck_assert_str_eq(again, first);
    free(again);
    /* The traced text is never prepared under a name... */
    ck_assert_int_eq(prepared_count(plain, "SELECT $1::int + 1" TRACE_COMMENT), 0);
    /* ...whatever its traceparent. */
    ck_assert_int_eq(sr_session_set_trace(traced, "00-4bf92f3577b34da6a3ce929d0e0e4736-"
                                                  "00f067aa0ba902b8-01", 0, NULL),
                     SR_OK);
    sr_result_free(must_key(traced, 1, SR_WRITE, sql, 1, one));
    ck_assert_int_eq(prepared_count(plain, "SELECT $1::int + 1\n/*traceparent='00-"
                                           "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-01'*/"),
                     0);
    again = prepared_exactly(plain, "SELECT $1::int + 1");
    ck_assert_str_eq(again, first);
    free(again);
    free(first);
    sr_session_free(plain);
    sr_session_free(traced);
    sr_router_close(r);
}
END_TEST

/* ---- suite ----------------------------------------------------------------- */

static Suite *postgres_suite(void)
{
    Suite *s = suite_create("postgres");
    TCase *t = tcase_create("routing");
    tcase_add_test(t, round_robin_uses_both_replicas);
    tcase_set_timeout(t, 60); /* the bounded waits inside are shorter: a hang fails, not stalls */
    suite_add_tcase(s, t);

    t = tcase_create("errors");
    tcase_add_test(t, sql_errors_specific_to_postgres_leave_the_session_usable);
    tcase_add_test(t, uri_parameters_and_passwords_reach_libpq);
    tcase_set_timeout(t, 60); /* the bounded waits inside are shorter: a hang fails, not stalls */
    suite_add_tcase(s, t);

    t = tcase_create("bounded_waits");
    tcase_add_test(t, a_timed_out_statement_is_abandoned_on_the_server);
    tcase_add_test(t, a_stopped_server_cannot_hold_a_statement);
    tcase_set_timeout(t, 60); /* the bounded waits inside are shorter: a hang fails, not stalls */
    suite_add_tcase(s, t);

    t = tcase_create("statements");
    tcase_add_test(t, parameters_round_trip_unchanged);
    tcase_add_test(t, a_repeated_statement_is_prepared_once_per_connection);
    tcase_add_test(t, the_cache_is_bounded_and_deallocates_what_it_evicts);
    tcase_add_test(t, statements_survive_ddl_that_changes_their_columns);
    tcase_add_test(t, the_cache_is_bounded_in_bytes_on_the_server);
    tcase_set_timeout(t, 60); /* the bounded waits inside are shorter: a hang fails, not stalls */
    suite_add_tcase(s, t);

    t = tcase_create("replication_hooks");
    tcase_add_unchecked_fixture(t, NULL, resume_replica2);
    tcase_add_test(t, roles_and_positions_through_the_driver);
    tcase_add_test(t, a_paused_replica_does_not_report_the_write_as_replayed);
    tcase_set_timeout(t, 60); /* the bounded waits inside are shorter: a hang fails, not stalls */
    suite_add_tcase(s, t);

    t = tcase_create("exec_at");
    tcase_add_unchecked_fixture(t, NULL, resume_replica2);
    tcase_add_test(t, a_write_through_exec_at_reports_a_position_that_covers_its_commit);
    tcase_add_test(t, a_stale_replica_reports_its_position_and_no_rows);
    tcase_add_test(t, a_read_at_a_position_on_the_primary_returns_its_rows);
    tcase_add_test(t, sql_errors_in_exec_at_leave_the_connection_usable);
    tcase_add_test(t, exec_at_survives_ddl_that_changes_a_cached_statement);
    tcase_add_test(t, exec_at_without_a_pipeline_and_inside_a_transaction);
    tcase_add_test(t, exec_at_prepares_its_own_queries_only_where_the_cache_allows);
    tcase_add_test(t, a_read_at_a_position_under_repeatable_read_runs_on_a_later_snapshot);
    tcase_add_test(t, a_stopped_server_cannot_hold_exec_at);
    tcase_set_timeout(t, 60); /* the bounded waits inside are shorter: a hang fails, not stalls */
    suite_add_tcase(s, t);

    t = tcase_create("two_phase");
    tcase_add_test(t, two_phase_commit_through_the_driver);
    tcase_set_timeout(t, 60);
    suite_add_tcase(s, t);

    t = tcase_create("trace");
    tcase_add_test(t, a_traced_statement_shows_its_comment_in_pg_stat_activity);
    tcase_add_test(t, traced_transactions_scatter_and_cursors_carry_the_comment);
    tcase_add_test(t, a_session_without_a_trace_sends_its_sql_unchanged);
    tcase_add_test(t, statements_without_a_trace_still_hit_the_statement_cache);
    tcase_set_timeout(t, 60);
    suite_add_tcase(s, t);

    /* Last: it reconfigures replica2 (and puts it back). */
    t = tcase_create("replica_receiver");
    tcase_add_unchecked_fixture(t, NULL, restore_replica2_receiver);
    tcase_add_test(t, a_replica_without_a_wal_receiver_is_not_eligible);
    tcase_set_timeout(t, 60); /* the bounded waits inside are shorter: a hang fails, not stalls */
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    if (!pg_cluster_from_env(&pg)) {
        fprintf(stderr, "test_postgres: no cluster in the environment; run it through "
                        "tests/env/pg_cluster.sh run\n");
        return getenv("CI") ? 1 : 77;
    }
    int failed = run_suite(postgres_suite());
    return failed == 0 ? 0 : 1;
}
