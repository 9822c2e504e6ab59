/*
 * Driver conformance: the same cases against every built driver, so that
 * what a user relies on holds whatever the backend. Each driver is one Check
 * test case (named after it) running the cases that apply to it, on:
 *   postgres  the PostgreSQL 15 primary and replicas of tests/env/pg_cluster.sh
 *   mysql     the MariaDB primary and GTID replica of tests/env/mariadb_cluster.sh
 *   sqlite    two shard files in a temporary directory (no server, no replica)
 * Two shards in every case: the databases (files) shard0 and shard1. What
 * differs between backends (URIs, SQL dialect, SQLSTATEs and messages, and
 * which capabilities a backend has) is in one table, `backends` below; a case
 * a backend lacks the capability for is left out of its test case. Where a
 * row landed is checked with a direct connection of the backend's own client
 * library, never through shardroute.
 *
 * What only one backend has stays in its own suite (test_postgres.c,
 * test_mysql.c, test_sqlite.c): replication hooks, statement caches on the
 * server, parameters in the dialect's quoting, frozen servers.
 *
 * Run: tests/env/with_servers.sh BUILD/tests/test_conformance. A server
 * backend whose driver is built but whose servers are not in the environment
 * is skipped, except under CI (env CI set), where that is a failure.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <shardroute.h>

#include "testutil.h"

#if SR_HAVE_POSTGRES
#include "pg_direct.h"
#endif
#if SR_HAVE_MYSQL
#include "my_direct.h"
#endif
#if SR_HAVE_SQLITE
#include <sqlite3.h>
#endif

#define NSHARDS 2
static const char *const shard_db[NSHARDS] = {"shard0", "shard1"};

/* ---- the backends --------------------------------------------------------- */

/* One SQL error a backend must report with its SQLSTATE and its own words. */
typedef struct sql_error {
    sr_intent intent;
    const char *sql; /* %s: the table (k, v); two parameters: the key and value already there */
    const char *sqlstate;
    const char *text, *text2; /* in the message; text2 may be NULL */
} sql_error;

typedef struct backend {
    const char *name;
    int ok; /* built, and its servers (or directory) ready */
    char primary[512], replica[512]; /* base URIs without the database ("" replica: none) */
    /* Where a row is, without the library: the single value of `sql` on `db`'s primary. */
    long (*direct_long)(const struct backend *b, const char *db, const char *sql);
    /* Before a case that reads on a replica (NULL: nothing to wait for). */
    void (*ready)(void);

    /* One row, one column: "primary" or "replica", asked of the answering server. */
    const char *role_sql;
    /* A statement AUTO classifies as a write that returns role_sql's answer (NULL: none). */
    const char *auto_write_role_sql;
    const char *database_sql; /* the connection's database */
    const char *connection_id_sql;

    /* A node in the wrong role: what the refusal says (primary that is not, replica that is not). */
    const char *not_primary_text, *not_replica_text;

    sql_error errors[3];
    const char *no_table_sqlstate;

    /* Timeouts (NULL: the backend has no such statement). */
    const char *sleep_sql;               /* a statement that runs for 5 s */
    const char *server_timeout_query;    /* appended to the primary's URI */
    const char *server_timeout_sql;      /* stopped by the server's own limit */
    const char *server_timeout_sqlstate, *server_timeout_text;

    /* Network (0: a backend without a server). */
    int has_server;
    const char *scheme, *user;    /* for URIs the cases make on other ports */
    const char *password;         /* the primary's, never to be seen in a message ("": none) */
    const char *silent_query;     /* appended to the URI of a server that never speaks */

    /* Typed values: a table sr_cf_ty (k, i BIGINT, f, b, t, ok, d DATE, n DECIMAL(10,2)) in the
     * backend's spelling, and the type its boolean column reads back as. */
    const char *typed_ddl;
    sr_type bool_type;
    /* A statement that returns the 100,000 integers 1..100000 in order, column "x". */
    const char *many_rows_sql;

    /* White space after a statement: the tails tried, and how many first ones must succeed. */
    const char *const *ws_tails;
    int ws_tails_n, ws_must_succeed;
} backend;

static backend backends[3];
static int nbackends;

#if SR_HAVE_POSTGRES
static long pg_direct_long(const backend *b, const char *db, const char *sql)
{
    PGconn *c = direct(b->primary, db);
    char *v = direct_value(c, sql);
    ck_assert_msg(v != NULL, "%s returned NULL", sql);
    long n = atol(v);
    free(v);
    PQfinish(c);
    return n;
}

/* \f is white space to PostgreSQL's scanner; \v is not before PostgreSQL 16. */
static const char *const pg_ws_tails[] = {";\f",        ";\f\f", "\f;\f", "; \f-- done\f",
                                          ";\f/* c */", ";\v",   "\v"};

static void pg_backend(backend *b)
{
    const char *p = getenv("SR_PG_PRIMARY"), *r = getenv("SR_PG_REPLICA1");
    b->name = "postgres";
    b->ok = p && r;
    snprintf(b->primary, sizeof b->primary, "%s", p ? p : "");
    snprintf(b->replica, sizeof b->replica, "%s", r ? r : "");
    b->direct_long = pg_direct_long;
    b->role_sql = "SELECT CASE WHEN pg_is_in_recovery() THEN 'replica' ELSE 'primary' END";
    b->auto_write_role_sql = "WITH w AS (INSERT INTO sr_cf_rw VALUES (1, 'auto') RETURNING 1) "
                             "SELECT CASE WHEN pg_is_in_recovery() THEN 'replica' "
                             "ELSE 'primary' END FROM w";
    b->database_sql = "SELECT current_database()";
    b->connection_id_sql = "SELECT pg_backend_pid()";
    b->not_primary_text = "in recovery";
    b->not_replica_text = "not in recovery";
    b->errors[0] = (sql_error){SR_WRITE, "INSERT INTO %s VALUES (?, ?)", "23505", "duplicate key",
                               NULL};
    b->errors[1] = (sql_error){SR_READ, "SELECT * FROM sr_no_such_table", "42P01",
                               "sr_no_such_table", NULL};
    b->errors[2] = (sql_error){SR_WRITE, "SELEC 1", "42601", "syntax error", NULL};
    b->no_table_sqlstate = "42P01";
    b->sleep_sql = "SELECT pg_sleep(5)";
    b->server_timeout_query = "?options=-c%20statement_timeout%3D100";
    b->server_timeout_sql = "SELECT pg_sleep(2)";
    b->server_timeout_sqlstate = "57014";
    b->server_timeout_text = "statement timeout";
    b->has_server = 1;
    b->scheme = "postgresql";
    b->user = "postgres";
    b->password = ""; /* the cluster's application user has none (test_secrets.c has one) */
    b->silent_query = "?sslmode=disable";
    b->typed_ddl = "CREATE TABLE sr_cf_ty (k BIGINT PRIMARY KEY, i BIGINT, f DOUBLE PRECISION, "
                   "b BYTEA, t TEXT, ok BOOLEAN, d DATE, n NUMERIC(10,2))";
    b->bool_type = SR_TYPE_BOOL;
    b->many_rows_sql = "SELECT x FROM generate_series(1, 100000) AS x";
    b->ws_tails = pg_ws_tails;
    b->ws_tails_n = (int)(sizeof pg_ws_tails / sizeof pg_ws_tails[0]);
    b->ws_must_succeed = 5;
}
#endif

#if SR_HAVE_MYSQL
static long mysql_direct_long(const backend *b, const char *db, const char *sql)
{
    (void)b;
    MYSQL *m = my_direct("SR_MY_PRIMARY", db);
    long n = my_direct_long(m, sql);
    mysql_close(m);
    return n;
}

/* Before reads on the replica: both replication threads run (see test_mysql.c). */
static void mysql_ready(void)
{
    MYSQL *m = my_direct("SR_MY_ADMIN_REPLICA", NULL);
    ck_assert_msg(my_replication_running(m), "replication is not running on the replica");
    mysql_close(m);
}

/* MariaDB's lexer skips \t..\r, so \f and \v are white space too. */
static const char *const my_ws_tails[] = {";\f", ";\f\f", "\f;\f", "; \f-- done\f", ";\v", "\v"};

static void mysql_backend(backend *b)
{
    const char *p = getenv("SR_MY_PRIMARY"), *r = getenv("SR_MY_REPLICA");
    b->name = "mysql";
    b->ok = p && r && getenv("SR_MY_ADMIN_REPLICA");
    snprintf(b->primary, sizeof b->primary, "%s", p ? p : "");
    /* The replica through the other scheme name: both are this driver's. */
    const char *rest = r ? strstr(r, "://") : NULL;
    snprintf(b->replica, sizeof b->replica, "mariadb%s", rest ? rest : "://");
    b->direct_long = mysql_direct_long;
    b->ready = mysql_ready;
    /* mariadb_cluster.sh: the primary is server 1, the replica server 2 (read_only). */
    b->role_sql = "SELECT CASE WHEN @@server_id = 2 AND @@read_only = 1 THEN 'replica' "
                  "WHEN @@server_id = 1 AND @@read_only = 0 THEN 'primary' ELSE 'other' END";
    b->database_sql = "SELECT DATABASE()";
    b->connection_id_sql = "SELECT CONNECTION_ID()";
    b->not_primary_text = "read-only";
    b->not_replica_text = "writable";
    b->errors[0] = (sql_error){SR_WRITE, "INSERT INTO %s VALUES (?, ?)", "23000",
                               "Duplicate entry", "1062"};
    b->errors[1] = (sql_error){SR_READ, "SELECT * FROM no_such_table", "42S02", "doesn't exist",
                               "1146"};
    b->errors[2] = (sql_error){SR_WRITE, "SELEC 1", "42000", "SQL syntax", "1064"};
    b->no_table_sqlstate = "42S02";
    b->sleep_sql = "SELECT SLEEP(5)";
    b->server_timeout_query = "";
    b->server_timeout_sql = "SET STATEMENT max_statement_time = 0.1 FOR SELECT SLEEP(2)";
    b->server_timeout_sqlstate = "70100";
    b->server_timeout_text = "1969";
    b->has_server = 1;
    b->scheme = "mysql";
    /* "mysql://USER:PASSWORD@host:port": not my_parse_addr, which asserts (this runs before
     * any test). */
    static char user[64], password[64];
    const char *u = p ? strstr(p, "://") : NULL;
    const char *colon = u ? strchr(u + 3, ':') : NULL, *at = u ? strrchr(u, '@') : NULL;
    if (colon && at && colon < at) {
        snprintf(user, sizeof user, "%.*s", (int)(colon - (u + 3)), u + 3);
        snprintf(password, sizeof password, "%.*s", (int)(at - colon - 1), colon + 1);
    } else {
        b->ok = 0;
    }
    b->user = user;
    b->password = password;
    b->silent_query = "";
    b->typed_ddl = "CREATE TABLE sr_cf_ty (k BIGINT PRIMARY KEY, i BIGINT, f DOUBLE, b LONGBLOB, "
                   "t TEXT, ok BOOLEAN, d DATE, n DECIMAL(10,2))";
    b->bool_type = SR_TYPE_INT; /* BOOLEAN is TINYINT(1): no boolean type in the protocol */
    b->many_rows_sql = "SELECT seq AS x FROM seq_1_to_100000"; /* the SEQUENCE engine */
    b->ws_tails = my_ws_tails;
    b->ws_tails_n = (int)(sizeof my_ws_tails / sizeof my_ws_tails[0]);
    b->ws_must_succeed = 6;
}
#endif

#if SR_HAVE_SQLITE
static char sqlite_dir[64];

static long sqlite_direct_long(const backend *b, const char *db, const char *sql)
{
    (void)b;
    char *path = xfmt("%s/%s.db", sqlite_dir, db);
    sqlite3 *h = NULL;
    ck_assert_int_eq(sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    ck_assert_msg(sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(h));
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    long n = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    free(path);
    return n;
}

/*
 * SQLite's tokenizer takes \f as white space, \v not: "\v" right after a
 * statement is a syntax error before anything runs, and ";\v" ends the string
 * in the driver (it used to run the insert, then report "unrecognized
 * token": this suite found it).
 */
static const char *const sqlite_ws_tails[] = {";\f", ";\f\f", "\f;\f", "; \f-- done\f",
                                              ";\f/* c */", ";\v", "\v"};

static void sqlite_backend(backend *b)
{
    b->name = "sqlite";
    snprintf(sqlite_dir, sizeof sqlite_dir, "/tmp/sr_conformance_XXXXXX");
    b->ok = mkdtemp(sqlite_dir) != NULL;
    snprintf(b->primary, sizeof b->primary, "sqlite:%s", sqlite_dir);
    b->direct_long = sqlite_direct_long;
    b->database_sql = NULL;
    b->errors[0] = (sql_error){SR_WRITE, "INSERT INTO %s VALUES (?, ?)", "23505", "UNIQUE", NULL};
    b->errors[1] = (sql_error){SR_READ, "SELECT * FROM no_such_table", "", "no such table", NULL};
    b->errors[2] = (sql_error){SR_WRITE, "SELEC 1", "", "syntax error", NULL};
    b->no_table_sqlstate = "";
    b->password = "";
    b->typed_ddl = "CREATE TABLE sr_cf_ty (k INTEGER PRIMARY KEY, i BIGINT, f DOUBLE, b BLOB, "
                   "t TEXT, ok BOOLEAN, d DATE, n DECIMAL(10,2))";
    b->bool_type = SR_TYPE_BOOL;
    b->many_rows_sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                       "WHERE x < 100000) SELECT x FROM c";
    b->ws_tails = sqlite_ws_tails;
    b->ws_tails_n = (int)(sizeof sqlite_ws_tails / sizeof sqlite_ws_tails[0]);
    b->ws_must_succeed = 5;
}
#endif

/* ---- routers and statements ------------------------------------------------ */

/* "BASE/DB" for a server backend, "sqlite:DIR/DB.db" for SQLite. */
static char *node_uri(const backend *b, const char *base, const char *db, const char *query)
{
    if (!b->has_server)
        return xfmt("%s/%s.db%s", base, db, query ? query : "");
    return xfmt("%s/%s%s", base, db, query ? query : "");
}

/* Options for a router: name/value pairs ending with NULL. */
static sr_router *open_router_on(const backend *b, int nshards, int with_replica,
                                 const char *primary_query, const char *const *opts)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sr_config_set(c, "balance.policy", "round_robin"), SR_OK);
    for (int i = 0; opts && opts[i]; i += 2)
        ck_assert_msg(sr_config_set(c, opts[i], opts[i + 1]) == SR_OK, "%s", sr_config_errmsg(c));
    for (int i = 0; i < nshards; i++) {
        ck_assert_int_eq(sr_config_add_shard(c, shard_db[i]), SR_OK);
        char *uri = node_uri(b, b->primary, shard_db[i], i == 0 ? primary_query : NULL);
        ck_assert_msg(sr_config_add_node(c, shard_db[i], SR_PRIMARY, uri, 1) == SR_OK, "%s",
                      sr_config_errmsg(c));
        free(uri);
        if (with_replica && b->replica[0]) {
            uri = node_uri(b, b->replica, shard_db[i], NULL);
            ck_assert_msg(sr_config_add_node(c, shard_db[i], SR_REPLICA, uri, 1) == SR_OK, "%s",
                          sr_config_errmsg(c));
            free(uri);
        }
    }
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "open: %s", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

static sr_router *open_router(const backend *b, const char *const *opts)
{
    return open_router_on(b, NSHARDS, 1, NULL, opts);
}

/*
 * Routing and driver cases read with consistency "any": under the default
 * read_your_writes a read right after this session's DDL may rightly go to
 * the primary (test_consistency_*.c covers that).
 */
static sr_session *session(sr_router *r)
{
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    return s;
}

/* Row 0, column 0 of a routed statement that must succeed (a new string, NULL for SQL NULL). */
static char *value_at(sr_session *s, int64_t key, sr_intent intent, const char *sql, int n,
                      const char *const *params)
{
    sr_result *res = NULL;
    int rc = sr_exec(s, sr_key_int(key), intent, sql, n, params, &res);
    ck_assert_msg(rc == SR_OK, "%s: %s (%s)", sql, sr_strerror(rc), sr_session_errmsg(s));
    ck_assert_msg(sr_result_nrows(res) >= 1, "%s: no row", sql);
    const char *v = sr_result_value(res, 0, 0);
    char *copy = v ? strdup(v) : NULL;
    sr_result_free(res);
    return copy;
}

static char *scalar(sr_session *s, int64_t key, sr_intent intent, const char *sql)
{
    return value_at(s, key, intent, sql, 0, NULL);
}

static void expect_value(sr_session *s, int64_t key, sr_intent intent, const char *sql,
                         const char *want)
{
    char *v = scalar(s, key, intent, sql);
    ck_assert_msg(v && strcmp(v, want) == 0, "%s (%s): '%s', want '%s'", sql,
                  intent == SR_READ ? "read" : intent == SR_WRITE ? "write" : "auto",
                  v ? v : "NULL", want);
    free(v);
}

/* Table `name` (k BIGINT PRIMARY KEY, v TEXT), created afresh on every shard's primary. */
static void recreate_table(sr_session *s, const char *name)
{
    for (int i = 0; i < NSHARDS; i++) {
        char *sql = xfmt("DROP TABLE IF EXISTS %s", name);
        ck_assert_msg(sr_exec_shard(s, i, SR_WRITE, sql, 0, NULL, NULL) == SR_OK, "%s: %s", sql,
                      sr_session_errmsg(s));
        free(sql);
        sql = xfmt("CREATE TABLE %s (k BIGINT PRIMARY KEY, v TEXT)", name);
        ck_assert_msg(sr_exec_shard(s, i, SR_WRITE, sql, 0, NULL, NULL) == SR_OK, "%s: %s", sql,
                      sr_session_errmsg(s));
        free(sql);
    }
}

/*
 * A TCP socket bound to 127.0.0.1 on a free port (*port), listening when
 * `listen_too` (the kernel then completes connections nobody accepts).
 */
static int loopback_socket(int listen_too, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    if (listen_too)
        ck_assert_int_eq(listen(fd, 8), 0);
    socklen_t len = sizeof a;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* ---- placement --------------------------------------------------------------- */

START_TEST(rows_land_in_the_shard_the_router_names)
{
    const backend *b = &backends[_i];
    sr_router *r = open_router(b, NULL);
    sr_session *s = session(r);
    recreate_table(s, "sr_cf_place");
    enum { N = 40 };
    for (int k = 0; k < N; k++) {
        char ks[24], vs[32];
        snprintf(ks, sizeof ks, "%d", k);
        snprintf(vs, sizeof vs, "value-%d", k);
        const char *p[] = {ks, vs};
        sr_result *res = NULL;
        int rc = sr_exec(s, sr_key_int(k), SR_AUTO, "INSERT INTO sr_cf_place (k, v) VALUES (?, ?)",
                         2, p, &res);
        ck_assert_msg(rc == SR_OK, "%s", sr_session_errmsg(s));
        ck_assert_int_eq(sr_result_affected(res), 1);
        sr_result_free(res);
    }
    /* Checked on each shard's primary, without the library. */
    int per_shard[NSHARDS] = {0};
    for (int k = 0; k < N; k++) {
        int want = sr_router_shard_for(r, sr_key_int(k));
        ck_assert_int_ge(want, 0);
        ck_assert_int_lt(want, NSHARDS);
        per_shard[want]++;
        char *sql = xfmt("SELECT COUNT(*) FROM sr_cf_place WHERE k = %d AND v = 'value-%d'", k, k);
        for (int i = 0; i < NSHARDS; i++)
            ck_assert_msg(b->direct_long(b, shard_db[i], sql) == (i == want),
                          "key %d: expected only in %s, found %s in %s", k, shard_db[want],
                          i == want ? "nothing" : "a row", shard_db[i]);
        free(sql);
    }
    for (int i = 0; i < NSHARDS; i++)
        ck_assert_msg(per_shard[i] > 0, "no key of %d landed on %s", N, shard_db[i]);

    /* Scatter on the primaries, rows as they come: one count per shard, in shard order. */
    sr_result *all = NULL;
    sr_scatter_opts concat = SR_SCATTER_OPTS_INIT;
    concat.merge = SR_MERGE_CONCAT;
    ck_assert_int_eq(sr_exec_all_values(s, SR_WRITE, &concat, "SELECT COUNT(*) FROM sr_cf_place",
                                        0, NULL, &all),
                     SR_OK);
    ck_assert_int_eq(sr_result_nrows(all), NSHARDS);
    for (int i = 0; i < NSHARDS; i++) {
        ck_assert_int_eq(sr_result_shard(all, i), i);
        ck_assert_int_eq(atol(sr_result_value(all, i, 0)), per_shard[i]);
    }
    sr_result_free(all);
    /* Merged (the default): one count, summing to N, combined from every shard. */
    ck_assert_msg(sr_exec_all(s, SR_WRITE, "SELECT COUNT(*) FROM sr_cf_place", 0, NULL, &all) ==
                      SR_OK,
                  "%s", sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_nrows(all), 1);
    ck_assert_int_eq(sr_result_shard(all, 0), -1);
    ck_assert_int_eq(atol(sr_result_value(all, 0, 0)), N);
    sr_result_free(all);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- the read/write split and transactions ----------------------------------- */

START_TEST(reads_go_to_replicas_writes_and_transactions_to_the_primary)
{
    const backend *b = &backends[_i];
    if (b->ready)
        b->ready();
    sr_router *r = open_router(b, NULL);
    sr_session *s = session(r);
    recreate_table(s, "sr_cf_rw");
    for (int key = 0; key < 6; key++) {
        expect_value(s, key, SR_READ, b->role_sql, "replica");
        expect_value(s, key, SR_AUTO, b->role_sql, "replica");
        expect_value(s, key, SR_WRITE, b->role_sql, "primary");
    }
    /* AUTO on a statement that writes goes to the primary. */
    if (b->auto_write_role_sql)
        expect_value(s, 1, SR_AUTO, b->auto_write_role_sql, "primary");
    /* A write the lexer classifies: only the primary accepts it (a replica refuses writes). */
    const char *p7[] = {"7", "seven"};
    ck_assert_msg(sr_exec(s, sr_key_int(7), SR_AUTO, "INSERT INTO sr_cf_rw VALUES (?, ?)", 2, p7,
                          NULL) == SR_OK,
                  "%s", sr_session_errmsg(s));
    /* The row reaches the replica, and a read finds it there (bounded wait). */
    const char *k7[] = {"7"};
    char *v = NULL;
    for (double t0 = mono_ms(); mono_ms() - t0 < 20000; sleep_ms(20)) {
        free(v);
        v = NULL;
        /* On a loaded machine the table itself may not have reached the replica yet. */
        sr_result *res = NULL;
        int rc = sr_exec(s, sr_key_int(7), SR_READ,
                         "SELECT COUNT(*) FROM sr_cf_rw WHERE k = ? AND v = 'seven'", 1, k7, &res);
        if (rc == SR_EQUERY && strcmp(sr_session_sqlstate(s), b->no_table_sqlstate) == 0)
            continue;
        ck_assert_msg(rc == SR_OK, "%s", sr_session_errmsg(s));
        v = strdup(sr_result_value(res, 0, 0));
        sr_result_free(res);
        if (strcmp(v, "1") == 0)
            break;
    }
    ck_assert_msg(v && strcmp(v, "1") == 0, "the replica did not show the row within 20 s");
    free(v);

    /* A transaction pins the session to its shard's primary, reads included. */
    int shard = sr_router_shard_for(r, sr_key_int(11));
    char *count = xfmt("SELECT COUNT(*) FROM sr_cf_rw WHERE k = 11");
    ck_assert_int_eq(sr_begin(s, sr_key_int(11)), SR_OK);
    expect_value(s, 11, SR_READ, b->role_sql, "primary");
    expect_value(s, 11, SR_READ, b->database_sql, shard_db[shard]);
    int64_t other = -1;
    for (int64_t k = 0; k < 100 && other < 0; k++)
        if (sr_router_shard_for(r, sr_key_int(k)) != shard)
            other = k;
    ck_assert_int_ge(other, 0);
    ck_assert_int_eq(sr_exec(s, sr_key_int(other), SR_READ, b->role_sql, 0, NULL, NULL), SR_ETXN);
    const char *p11[] = {"11", "rolled back"};
    ck_assert_int_eq(sr_exec(s, sr_key_int(11), SR_AUTO, "INSERT INTO sr_cf_rw VALUES (?, ?)", 2,
                             p11, NULL),
                     SR_OK);
    /* Uncommitted: invisible to another connection; rolled back: never there. */
    ck_assert_int_eq(b->direct_long(b, shard_db[shard], count), 0);
    ck_assert_int_eq(sr_rollback(s), SR_OK);
    ck_assert_int_eq(b->direct_long(b, shard_db[shard], count), 0);

    ck_assert_int_eq(sr_begin(s, sr_key_int(11)), SR_OK);
    const char *c11[] = {"11", "committed"};
    ck_assert_int_eq(sr_exec(s, sr_key_int(11), SR_AUTO, "INSERT INTO sr_cf_rw VALUES (?, ?)", 2,
                             c11, NULL),
                     SR_OK);
    ck_assert_int_eq(sr_commit(s), SR_OK);
    char *committed = xfmt("SELECT COUNT(*) FROM sr_cf_rw WHERE k = 11 AND v = 'committed'");
    ck_assert_int_eq(b->direct_long(b, shard_db[shard], committed), 1);
    free(committed);
    free(count);

    /* Out of the transaction, reads are back on replicas. */
    expect_value(s, 11, SR_READ, b->role_sql, "replica");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_node_in_the_wrong_role_is_reported_not_used)
{
    const backend *b = &backends[_i];
    /* A replica configured as the primary: writes are refused with the reason. */
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_add_shard(c, "shard0"), SR_OK);
    char *uri = node_uri(b, b->replica, "shard0", NULL);
    ck_assert_int_eq(sr_config_add_node(c, "shard0", SR_PRIMARY, uri, 1), SR_OK);
    free(uri);
    sr_router *r = NULL;
    ck_assert_int_eq(sr_router_open(c, &r), SR_OK);
    sr_config_free(c);
    sr_session *s = session(r);
    int rc = sr_exec(s, sr_key_int(1), SR_WRITE, "SELECT 1", 0, NULL, NULL);
    ck_assert_msg(rc == SR_ECONNECT, "got %s (%s)", sr_strerror(rc), sr_session_errmsg(s));
    ck_assert_msg(strstr(sr_session_errmsg(s), "configured as a primary") &&
                      strstr(sr_session_errmsg(s), b->not_primary_text),
                  "%s", sr_session_errmsg(s));
    sr_session_free(s);
    sr_router_close(r);

    /* The primary configured as a replica too: reads are not served by it. */
    c = sr_config_new();
    ck_assert_int_eq(sr_config_set(c, "balance.primary_reads", "never"), SR_OK);
    ck_assert_int_eq(sr_config_add_shard(c, "shard0"), SR_OK);
    uri = node_uri(b, b->primary, "shard0", NULL);
    ck_assert_int_eq(sr_config_add_node(c, "shard0", SR_PRIMARY, uri, 1), SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "shard0", SR_REPLICA, uri, 1), SR_OK);
    free(uri);
    ck_assert_int_eq(sr_router_open(c, &r), SR_OK);
    sr_config_free(c);
    s = session(r);
    rc = sr_exec(s, sr_key_int(1), SR_READ, "SELECT 1", 0, NULL, NULL);
    ck_assert_msg(rc == SR_ECONNECT, "got %s (%s)", sr_strerror(rc), sr_session_errmsg(s));
    ck_assert_msg(strstr(sr_session_errmsg(s), "configured as a replica") &&
                      strstr(sr_session_errmsg(s), b->not_replica_text),
                  "%s", sr_session_errmsg(s));
    /* Writes, to the correctly configured primary, are unaffected. */
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE, "SELECT 1", 0, NULL, NULL), SR_OK);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- errors -------------------------------------------------------------------- */

START_TEST(sql_errors_carry_sqlstate_and_leave_the_session_usable)
{
    const backend *b = &backends[_i];
    /* One pooled connection per node: the same connection is reused after each error. */
    sr_router *r = open_router(b, (const char *const[]){"pool.max_size", "1", NULL});
    sr_session *s = session(r);
    recreate_table(s, "sr_cf_err");
    const char *p[] = {"7", "seven"};
    ck_assert_int_eq(sr_exec(s, sr_key_int(7), SR_WRITE, "INSERT INTO sr_cf_err VALUES (?, ?)", 2,
                             p, NULL),
                     SR_OK);
    for (int round = 0; round < 2; round++) { /* twice: errors on cached statements too */
        for (int e = 0; e < 3; e++) {
            const sql_error *x = &b->errors[e];
            char *sql = xfmt(x->sql, "sr_cf_err");
            int n = strchr(sql, '?') ? 2 : 0;
            int rc = sr_exec(s, sr_key_int(7), x->intent, sql, n, n ? p : NULL, NULL);
            const char *msg = sr_session_errmsg(s);
            ck_assert_msg(rc == SR_EQUERY, "%s: got %s (%s)", sql, sr_strerror(rc), msg);
            ck_assert_msg(strcmp(sr_session_sqlstate(s), x->sqlstate) == 0,
                          "%s: SQLSTATE '%s', want '%s'", sql, sr_session_sqlstate(s), x->sqlstate);
            ck_assert_msg(strstr(msg, x->text), "%s: no '%s' in: %s", sql, x->text, msg);
            ck_assert_msg(!x->text2 || strstr(msg, x->text2), "%s: no '%s' in: %s", sql, x->text2,
                          msg);
            ck_assert_msg(!b->password[0] || !strstr(msg, b->password), "password in: %s", msg);
            /* Where it failed, without parsing the message: the key's shard, and the node
             * of the role the statement went to. */
            int where_shard = -2, where_node = -2;
            ck_assert_int_eq(sr_session_error_location(s, &where_shard, &where_node), SR_OK);
            ck_assert_int_eq(where_shard, sr_router_shard_for(r, sr_key_int(7)));
            sr_node_info info = SR_NODE_INFO_INIT;
            ck_assert_int_eq(sr_router_node_info(r, where_shard, where_node, &info), SR_OK);
            ck_assert_int_eq(info.role, x->intent == SR_READ && b->replica[0] ? SR_REPLICA
                                                                               : SR_PRIMARY);
            /* The session, and the connection, are still usable; the error is cleared. */
            expect_value(s, 7, x->intent, "SELECT 40 + 2", "42");
            ck_assert_str_eq(sr_session_sqlstate(s), "");
            ck_assert_str_eq(sr_session_errmsg(s), "");
            ck_assert_int_eq(sr_session_error_location(s, &where_shard, &where_node), SR_OK);
            ck_assert_int_eq(where_shard, -1);
            ck_assert_int_eq(where_node, -1);
            /* A parameter too many or too few: SR_EINVAL on every backend, typed or not. */
            sr_value two[2] = {sr_value_int(7), sr_value_int(8)};
            ck_assert_int_eq(sr_exec_values(s, sr_key_int(7), SR_WRITE, NULL,
                                            "SELECT v FROM sr_cf_err WHERE k = ?", 2, two, NULL),
                             SR_EINVAL);
            ck_assert_int_eq(sr_exec(s, sr_key_int(7), SR_WRITE,
                                     "SELECT v FROM sr_cf_err WHERE k = ? AND v = ?", 1, p, NULL),
                             SR_EINVAL);
            free(sql);
        }
    }
    expect_value(s, 7, SR_WRITE, "SELECT COUNT(*) FROM sr_cf_err", "1");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- bounded waits ------------------------------------------------------------- */

START_TEST(statement_timeout_returns_in_time_and_the_session_recovers)
{
    const backend *b = &backends[_i];
    sr_router *r = open_router(
        b, (const char *const[]){"statement_timeout_ms", "200", "pool.max_size", "1", NULL});
    sr_session *s = session(r);
    const sr_intent intents[] = {SR_READ, SR_WRITE};
    for (size_t i = 0; i < sizeof intents / sizeof intents[0]; i++) {
        /* Warm the pool so the timed statement is all that is measured. */
        expect_value(s, 5, intents[i], "SELECT 1", "1");
        double t0 = mono_ms();
        int rc = sr_exec(s, sr_key_int(5), intents[i], b->sleep_sql, 0, NULL, NULL);
        double took = mono_ms() - t0;
        ck_assert_msg(rc == SR_ETIMEOUT, "got %s (%s)", sr_strerror(rc), sr_session_errmsg(s));
        ck_assert_msg(took < 1000.0, "SR_ETIMEOUT after %.0f ms (statement_timeout_ms 200)", took);
        expect_value(s, 5, intents[i], "SELECT 42", "42");
    }
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(server_statement_timeout_is_a_timeout_on_a_reusable_connection)
{
    const backend *b = &backends[_i];
    sr_router *r = open_router_on(b, 1, 0, b->server_timeout_query,
                                  (const char *const[]){"pool.max_size", "1", NULL});
    sr_session *s = session(r);
    char *id = scalar(s, 1, SR_WRITE, b->connection_id_sql);
    int rc = sr_exec(s, sr_key_int(1), SR_WRITE, b->server_timeout_sql, 0, NULL, NULL);
    ck_assert_msg(rc == SR_ETIMEOUT, "got %s (%s)", sr_strerror(rc), sr_session_errmsg(s));
    ck_assert_str_eq(sr_session_sqlstate(s), b->server_timeout_sqlstate);
    ck_assert_msg(strstr(sr_session_errmsg(s), b->server_timeout_text), "%s",
                  sr_session_errmsg(s));
    /* The server stopped it and the connection survived: the same one serves next. */
    char *again = scalar(s, 1, SR_WRITE, b->connection_id_sql);
    ck_assert_str_eq(again, id);
    free(again);
    free(id);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(unreachable_port_is_a_connect_error_with_the_uri_redacted)
{
    const backend *b = &backends[_i];
    int port;
    close(loopback_socket(0, &port)); /* bound, then released: nothing listens there */
    char *uri = xfmt("%s://%s:hunter2-secret@127.0.0.1:%d/shard0", b->scheme, b->user, port);
    char msg[1024];
    double took;
    int rc = one_node_exec(uri, (const char *const[]){"connect_timeout_ms", "2000", NULL},
                           "SELECT 1", NULL, &took, msg, sizeof msg);
    ck_assert_msg(rc == SR_ECONNECT, "got %s (%s)", sr_strerror(rc), msg);
    ck_assert_msg(took < 2000.0, "took %.0f ms, connect_timeout_ms is 2000", took);
    char *redacted = xfmt("%s://%s:***@127.0.0.1:%d/shard0", b->scheme, b->user, port);
    ck_assert_msg(strstr(msg, redacted), "message '%s' lacks '%s'", msg, redacted);
    ck_assert_msg(!strstr(msg, "hunter2"), "the password leaked: %s", msg);
    free(redacted);
    free(uri);
}
END_TEST

START_TEST(a_server_that_never_answers_the_handshake_hits_the_connect_timeout)
{
    const backend *b = &backends[_i];
    /* Listening but never accepting: the kernel completes TCP, nobody speaks. */
    int port;
    int fd = loopback_socket(1, &port);
    char *uri = xfmt("%s://sr:secret-xyz@127.0.0.1:%d/shard0%s", b->scheme, port, b->silent_query);
    char msg[1024];
    double took;
    int rc = one_node_exec(uri, (const char *const[]){"connect_timeout_ms", "300", NULL},
                           "SELECT 1", NULL, &took, msg, sizeof msg);
    ck_assert_msg(rc == SR_ETIMEOUT, "got %s (%s)", sr_strerror(rc), msg);
    ck_assert_msg(took < 1500.0, "took %.0f ms, connect_timeout_ms is 300", took);
    ck_assert_msg(!strstr(msg, "secret-xyz"), "the password leaked: %s", msg);
    close(fd);
    free(uri);
}
END_TEST

/* ---- statements ------------------------------------------------------------------ */

START_TEST(a_cached_statement_follows_a_schema_change)
{
    const backend *b = &backends[_i];
    sr_router *r = open_router(b, (const char *const[]){"pool.max_size", "1", NULL});
    sr_session *s = session(r);
    recreate_table(s, "sr_cf_alt");
    const char *p[] = {"1", "one"};
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "INSERT INTO sr_cf_alt VALUES (?, ?)", 2, p,
                                   NULL),
                     SR_OK);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "SELECT * FROM sr_cf_alt", 0, NULL, &res),
                     SR_OK);
    ck_assert_int_eq(sr_result_ncols(res), 2);
    sr_result_free(res);
    /* The cached statement's result gains a column: it is prepared again. */
    ck_assert_msg(sr_exec_shard(s, 0, SR_WRITE,
                                "ALTER TABLE sr_cf_alt ADD COLUMN extra VARCHAR(8) DEFAULT 'new'",
                                0, NULL, NULL) == SR_OK,
                  "%s", sr_session_errmsg(s));
    ck_assert_msg(sr_exec_shard(s, 0, SR_WRITE, "SELECT * FROM sr_cf_alt", 0, NULL, &res) == SR_OK,
                  "%s", sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_ncols(res), 3);
    ck_assert_str_eq(sr_result_colname(res, 2), "extra");
    ck_assert_str_eq(sr_result_value(res, 0, 2), "new");
    sr_result_free(res);
    /* The table is gone: an SQL error, and the connection stays in step. */
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "DROP TABLE sr_cf_alt", 0, NULL, NULL), SR_OK);
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "SELECT * FROM sr_cf_alt", 0, NULL, NULL),
                     SR_EQUERY);
    ck_assert_str_eq(sr_session_sqlstate(s), b->no_table_sqlstate);
    res = NULL;
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "SELECT 'ok'", 0, NULL, &res), SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "ok");
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* The same through statements in steps (typed, and a scatter of text parameters), whose
 * cached statements must follow the schema change too. */
START_TEST(a_cached_statement_in_steps_follows_a_schema_change)
{
    const backend *b = &backends[_i];
    sr_router *r = open_router(b, (const char *const[]){"pool.max_size", "1", NULL});
    sr_session *s = session(r);
    recreate_table(s, "sr_cf_alt2");
    sr_value row[2] = {sr_value_int(1), sr_value_text("one")};
    ck_assert_int_eq(sr_exec_values(s, sr_key_int(1), SR_WRITE, NULL,
                                    "INSERT INTO sr_cf_alt2 VALUES (?, ?)", 2, row, NULL),
                     SR_OK);
    const char *sel = "SELECT * FROM sr_cf_alt2 WHERE k > ?";
    sr_value zero = sr_value_int(0);
    const char *zero_text[] = {"0"};
    for (int round = 0; round < 2; round++) {
        if (round == 1)
            ck_assert_msg(sr_exec_all(s, SR_WRITE,
                                      "ALTER TABLE sr_cf_alt2 ADD COLUMN extra VARCHAR(8) "
                                      "DEFAULT 'new'",
                                      0, NULL, NULL) == SR_OK,
                          "%s", sr_session_errmsg(s));
        for (int twice = 0; twice < 2; twice++) {
            sr_result *res = NULL;
            ck_assert_msg(sr_exec_values(s, sr_key_int(1), SR_WRITE, NULL, sel, 1, &zero, &res) ==
                              SR_OK,
                          "%s: %s", b->name, sr_session_errmsg(s));
            ck_assert_int_eq(sr_result_ncols(res), 2 + round);
            ck_assert_int_eq(sr_result_nrows(res), 1);
            if (round == 1)
                ck_assert_str_eq(sr_result_value(res, 0, 2), "new");
            sr_result_free(res);
            ck_assert_msg(sr_exec_all(s, SR_WRITE, sel, 1, zero_text, &res) == SR_OK, "%s: %s",
                          b->name, sr_session_errmsg(s));
            ck_assert_int_eq(sr_result_ncols(res), 2 + round);
            ck_assert_int_eq(sr_result_nrows(res), 1);
            sr_result_free(res);
        }
    }
    ck_assert_int_eq(sr_exec_all(s, SR_WRITE, "DROP TABLE sr_cf_alt2", 0, NULL, NULL), SR_OK);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/*
 * A statement that ran is never reported as failed, whatever white space
 * follows it: each insert either succeeds and is there exactly once, or fails
 * and is not there (a caller retrying a "failed" insert must not write twice).
 * The first ws_must_succeed tails are white space to the backend and must
 * succeed.
 */
START_TEST(trailing_white_space_never_turns_a_write_into_a_failure)
{
    const backend *b = &backends[_i];
    sr_router *r = open_router(b, NULL);
    sr_session *s = session(r);
    recreate_table(s, "sr_cf_ws");
    int ok = 0;
    for (int i = 0; i < b->ws_tails_n; i++) {
        for (int with_param = 0; with_param < 2; with_param++) {
            int k = 100 + 2 * i + with_param;
            char ks[16];
            snprintf(ks, sizeof ks, "%d", k);
            const char *p[] = {ks};
            char *sql = with_param
                            ? xfmt("INSERT INTO sr_cf_ws (k, v) VALUES (?, 'w')%s", b->ws_tails[i])
                            : xfmt("INSERT INTO sr_cf_ws (k, v) VALUES (%d, 'w')%s", k,
                                   b->ws_tails[i]);
            int rc = sr_exec(s, sr_key_int(k), SR_WRITE, sql, with_param, p, NULL);
            char *errmsg = strdup(sr_session_errmsg(s));
            char *count = xfmt("SELECT COUNT(*) FROM sr_cf_ws WHERE k = %d", k);
            char *n = scalar(s, k, SR_WRITE, count);
            ck_assert_msg(strcmp(n, rc == SR_OK ? "1" : "0") == 0,
                          "tail %d (param %d): %s, %s row(s): %s", i, with_param, sr_strerror(rc), n,
                          errmsg);
            if (i < b->ws_must_succeed)
                ck_assert_msg(rc == SR_OK, "tail %d (param %d): %s", i, with_param, errmsg);
            ok += rc == SR_OK;
            free(n);
            free(count);
            free(errmsg);
            free(sql);
        }
    }
    printf("%s: white-space tails: %d of %d inserts succeeded, none reported failed after "
           "running\n",
           b->name, ok, 2 * b->ws_tails_n);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- typed values and cursors ------------------------------------------------------ */

/* Row k of sr_cf_ty as typed reads must see it: sr_exec_values (steps) and sr_exec (text). */
static void check_typed_row(const backend *b, const sr_result *res, int k, const char *blob)
{
    const sr_type want[] = {SR_TYPE_INT,  SR_TYPE_INT,  SR_TYPE_FLOAT,    SR_TYPE_BYTES,
                            SR_TYPE_TEXT, b->bool_type, SR_TYPE_DATETIME, SR_TYPE_NUMERIC};
    ck_assert_int_eq(sr_result_nrows(res), 1);
    for (int c = 0; c < 8; c++)
        ck_assert_msg(sr_result_coltype(res, c) == want[c], "%s: column %d has type %d, want %d",
                      b->name, c, (int)sr_result_coltype(res, c), (int)want[c]);
    int64_t v;
    double f;
    size_t len;
    if (k == 3) {
        for (int c = 1; c < 8; c++) {
            ck_assert(sr_result_is_null(res, 0, c));
            ck_assert_int_eq(sr_result_int64(res, 0, c, &v), SR_EINVAL);
        }
        return;
    }
    ck_assert_int_eq(sr_result_int64(res, 0, 0, &v), SR_OK);
    ck_assert_int_eq(v, k);
    ck_assert_int_eq(sr_result_int64(res, 0, 1, &v), SR_OK);
    ck_assert(v == (k == 1 ? INT64_MAX : INT64_MIN));
    ck_assert_int_eq(sr_result_double(res, 0, 2, &f), SR_OK);
    ck_assert_double_eq(f, k == 1 ? 1.5 : -0.25);
    const void *bytes = sr_result_bytes(res, 0, 3, &len);
    ck_assert_ptr_nonnull(bytes); /* an empty blob is not NULL */
    ck_assert_uint_eq(len, k == 1 ? 5 : 0);
    ck_assert(memcmp(bytes, blob, len) == 0);
    ck_assert_str_eq(sr_result_value(res, 0, 4), k == 1 ? "h\xc3\xa9llo" : "");
    ck_assert_int_eq(sr_result_int64(res, 0, 5, &v), SR_OK);
    ck_assert_int_eq(v, k == 1);
    ck_assert_str_eq(sr_result_value(res, 0, 6), k == 1 ? "2026-12-02" : "2000-01-01");
    if (b->has_server) /* SQLite keeps a DECIMAL column's 12.50 as the REAL 12.5 */
        ck_assert_str_eq(sr_result_value(res, 0, 7), k == 1 ? "12.50" : "-3.00");
    ck_assert_int_eq(sr_result_double(res, 0, 7, &f), SR_OK);
    ck_assert_double_eq(f, k == 1 ? 12.5 : -3);
}

/*
 * Typed parameters round-trip exactly (int64 extremes, bytes with NUL bytes,
 * an empty blob apart from NULL) and every column reads back with its
 * portable type, through typed and text statements, one shard and all.
 */
START_TEST(typed_values_round_trip)
{
    const backend *b = &backends[_i];
    sr_router *r = open_router(b, NULL);
    sr_session *s = session(r);
    ck_assert_int_eq(sr_exec_all(s, SR_WRITE, "DROP TABLE IF EXISTS sr_cf_ty", 0, NULL, NULL),
                     SR_OK);
    ck_assert_msg(sr_exec_all(s, SR_WRITE, b->typed_ddl, 0, NULL, NULL) == SR_OK, "%s",
                  sr_session_errmsg(s));
    const char blob[] = {'a', '\0', 'b', '\0', '\xff'};
    const char *ins = "INSERT INTO sr_cf_ty VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
    sr_value rows[3][8] = {
        {sr_value_int(1), sr_value_int(INT64_MAX), sr_value_float(1.5), sr_value_bytes(blob, 5),
         sr_value_text("h\xc3\xa9llo"), sr_value_bool(1), sr_value_text("2026-12-02"),
         {SR_TYPE_NUMERIC, 0, 0, "12.50", 5}},
        {sr_value_int(2), sr_value_int(INT64_MIN), sr_value_float(-0.25), sr_value_bytes("", 0),
         sr_value_text(""), sr_value_bool(0), {SR_TYPE_DATETIME, 0, 0, "2000-01-01", 10},
         {SR_TYPE_NUMERIC, 0, 0, "-3", 2}},
        {sr_value_int(3), sr_value_null(), sr_value_null(), sr_value_null(), sr_value_null(),
         sr_value_null(), sr_value_null(), sr_value_null()},
    };
    for (int i = 0; i < 3; i++)
        ck_assert_msg(sr_exec_values(s, sr_key_int(i + 1), SR_WRITE, NULL, ins, 8, rows[i],
                                     NULL) == SR_OK,
                      "%s: %s", b->name, sr_session_errmsg(s));
    for (int k = 1; k <= 3; k++) {
        sr_result *res = NULL;
        sr_value key = sr_value_int(k);
        ck_assert_msg(sr_exec_values(s, sr_key_int(k), SR_WRITE, NULL,
                                     "SELECT k, i, f, b, t, ok, d, n FROM sr_cf_ty WHERE k = ?", 1,
                                     &key, &res) == SR_OK,
                      "%s", sr_session_errmsg(s));
        check_typed_row(b, res, k, blob);
        sr_result_free(res);
        char ks[8];
        snprintf(ks, sizeof ks, "%d", k);
        const char *p[] = {ks};
        ck_assert_int_eq(sr_exec(s, sr_key_int(k), SR_WRITE,
                                 "SELECT k, i, f, b, t, ok, d, n FROM sr_cf_ty WHERE k = ?", 1, p,
                                 &res),
                         SR_OK);
        check_typed_row(b, res, k, blob);
        sr_result_free(res);
    }
    /* Bytes with NUL bytes as a parameter of a scatter: found on the one shard that has them. */
    sr_result *res = NULL;
    sr_value bv = sr_value_bytes(blob, 5);
    ck_assert_msg(sr_exec_all_values(s, SR_WRITE, NULL, "SELECT count(*) FROM sr_cf_ty WHERE b = ?",
                                     1, &bv, &res) == SR_OK,
                  "%s", sr_session_errmsg(s));
    ck_assert_str_eq(sr_result_value(res, 0, 0), "1");
    ck_assert_int_eq(sr_result_coltype(res, 0), SR_TYPE_INT);
    sr_result_free(res);
    /* A bytes parameter one byte different matches nothing: compared as bytes, not as text. */
    const char other[] = {'a', '\0', 'c', '\0', '\xff'};
    bv = sr_value_bytes(other, 5);
    ck_assert_int_eq(sr_exec_all_values(s, SR_WRITE, NULL,
                                        "SELECT count(*) FROM sr_cf_ty WHERE b = ?", 1, &bv, &res),
                     SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "0");
    sr_result_free(res);
    ck_assert_int_eq(sr_exec_all(s, SR_WRITE, "DROP TABLE sr_cf_ty", 0, NULL, NULL), SR_OK);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/*
 * A cursor streams 100,000 rows in order; one closed after 10 rows returns
 * at once and leaves its connection (the pool's only one) usable, three
 * times over.
 */
START_TEST(cursors_stream_and_close_early)
{
    const backend *b = &backends[_i];
    sr_router *r = open_router(b, (const char *const[]){"pool.max_size", "1", NULL});
    sr_session *s = session(r);
    /* Writes then carry their position in the statement's exchange (exec_at). */
    ck_assert_int_eq(sr_session_set(s, "consistency", "read_your_writes"), SR_OK);
    sr_cursor *cur = NULL;
    ck_assert_msg(sr_cursor_open(s, sr_key_int(1), SR_WRITE, NULL, b->many_rows_sql, 0, NULL,
                                 &cur) == SR_OK,
                  "%s", sr_session_errmsg(s));
    long n = 0;
    int rc;
    while ((rc = sr_cursor_next(cur)) == 1) {
        int row;
        const sr_result *res = sr_cursor_row(cur, &row);
        int64_t v = 0;
        ck_assert_int_eq(sr_result_int64(res, row, 0, &v), SR_OK);
        ck_assert_int_eq(v, ++n);
    }
    ck_assert_msg(rc == 0, "%s", sr_session_errmsg(s));
    ck_assert_int_eq(n, 100000);
    sr_cursor_close(cur);
    /* A long stream (its rest cannot be read in the cancel's time: the connection is closed)
     * and a short one (read away: the connection is reused, and the cached statements run
     * after it must not see anything of it). */
    char *short_sql = xfmt("%s LIMIT 3000", b->many_rows_sql);
    for (int round = 0; round < 6; round++) {
        ck_assert_int_eq(sr_cursor_open(s, sr_key_int(1), SR_WRITE, NULL,
                                        round < 3 ? b->many_rows_sql : short_sql, 0, NULL, &cur),
                         SR_OK);
        for (int i = 0; i < 10; i++)
            ck_assert_int_eq(sr_cursor_next(cur), 1);
        double t0 = mono_ms();
        sr_cursor_close(cur);
        double took = mono_ms() - t0;
        ck_assert_msg(took < 1000, "%s: closing took %.0f ms", b->name, took);
        expect_value(s, 1, SR_WRITE, "SELECT 'after'", "after");
        expect_value(s, 1, SR_READ, "SELECT 'after'", "after");
    }
    free(short_sql);
    /* MariaDB prepares a statement it has not seen before it runs it: a cursor closed before
     * then never runs it (the cancel finishes the prepare, not the statement), and its
     * connection stays. */
    if (strcmp(b->name, "mysql") == 0) {
        char *id1 = scalar(s, 1, SR_WRITE, b->connection_id_sql);
        ck_assert_int_eq(sr_cursor_open(s, sr_key_int(1), SR_WRITE, NULL,
                                        "SELECT SLEEP(2) AS never_run", 0, NULL, &cur),
                         SR_OK);
        double t0 = mono_ms();
        sr_cursor_close(cur);
        double took = mono_ms() - t0;
        char *id2 = scalar(s, 1, SR_WRITE, b->connection_id_sql);
        ck_assert_msg(strcmp(id1, id2) == 0 && took < 500,
                      "connection %s then %s, closing took %.0f ms", id1, id2, took);
        free(id1);
        free(id2);
    }
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- suite --------------------------------------------------------------------- */

static void add(TCase *t, const TTest *test, int i) { tcase_add_loop_test(t, test, i, i + 1); }

/* One test case per backend: the cases its capabilities allow. */
static Suite *conformance_suite(void)
{
    Suite *s = suite_create("conformance");
    for (int i = 0; i < nbackends; i++) {
        const backend *b = &backends[i];
        if (!b->ok)
            continue;
        TCase *t = tcase_create(b->name);
        add(t, rows_land_in_the_shard_the_router_names, i);
        add(t, sql_errors_carry_sqlstate_and_leave_the_session_usable, i);
        add(t, a_cached_statement_follows_a_schema_change, i);
        add(t, a_cached_statement_in_steps_follows_a_schema_change, i);
        add(t, trailing_white_space_never_turns_a_write_into_a_failure, i);
        add(t, typed_values_round_trip, i);
        add(t, cursors_stream_and_close_early, i);
        if (b->replica[0]) {
            add(t, reads_go_to_replicas_writes_and_transactions_to_the_primary, i);
            add(t, a_node_in_the_wrong_role_is_reported_not_used, i);
        }
        if (b->sleep_sql)
            add(t, statement_timeout_returns_in_time_and_the_session_recovers, i);
        if (b->server_timeout_sql)
            add(t, server_statement_timeout_is_a_timeout_on_a_reusable_connection, i);
        if (b->has_server) {
            add(t, unreachable_port_is_a_connect_error_with_the_uri_redacted, i);
            add(t, a_server_that_never_answers_the_handshake_hits_the_connect_timeout, i);
        }
        tcase_set_timeout(t, 120); /* every wait inside is shorter: a hang fails, not stalls */
        suite_add_tcase(s, t);
    }
    return s;
}

int main(void)
{
    int missing = 0, ready = 0;
#if SR_HAVE_POSTGRES
    pg_backend(&backends[nbackends]);
    missing += !backends[nbackends].ok;
    nbackends++;
#endif
#if SR_HAVE_MYSQL
    mysql_backend(&backends[nbackends]);
    missing += !backends[nbackends].ok;
    nbackends++;
#endif
#if SR_HAVE_SQLITE
    sqlite_backend(&backends[nbackends]);
    missing += !backends[nbackends].ok;
    nbackends++;
#endif
    for (int i = 0; i < nbackends; i++)
        ready += backends[i].ok;
    for (int i = 0; i < nbackends; i++)
        if (!backends[i].ok)
            fprintf(stderr, "test_conformance: %s is built but not ready (its servers are not in "
                            "the environment: run under tests/env/with_servers.sh); skipped\n",
                    backends[i].name);
    if (missing && getenv("CI"))
        return 1;
    int failed = run_suite(conformance_suite());
#if SR_HAVE_SQLITE
    if (sqlite_dir[0]) {
        char rm[128]; /* not xfmt: it asserts, and no test runs here */
        snprintf(rm, sizeof rm, "rm -rf '%s'", sqlite_dir);
        if (system(rm) != 0)
            fprintf(stderr, "test_conformance: could not remove %s\n", sqlite_dir);
    }
#endif
#if SR_HAVE_MYSQL
    mysql_library_end();
#endif
    if (failed)
        return 1;
    return ready ? 0 : 77;
}
