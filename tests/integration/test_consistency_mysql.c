/*
 * Consistency on MariaDB: the guarantees of test_consistency_pg.c on GTID
 * positions, against a MariaDB primary and one GTID replica
 * (tests/env/mariadb_cluster.sh; two shards = the databases shard0 and
 * shard1, each with both servers as nodes).
 *
 * A MariaDB primary and one GTID replica (tests/env/mariadb_cluster.sh; two
 * shards = the databases shard0 and shard1, each with both servers as nodes).
 * Replay is held back with STOP SLAVE SQL_THREAD: the IO thread keeps
 * receiving, so the replica holds events it has not applied. A measurable lag
 * is made with MASTER_DELAY. Replication is only ever changed, and what the
 * replica holds only ever checked, over direct libmariadb connections of the
 * admin user, never through the library; which server answered a read is told
 * by the read itself (@@server_id).
 *
 * Every test starts from running, caught-up replication with no delay and the
 * server's default isolation (a checked fixture), and the test case restores
 * that again when it ends (an unchecked one, which runs even after a failure).
 */
#include <check.h>
#include <mysql.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shardroute.h>
#include <shardroute/driver.h>

#include "consistency_common.h"
#include "proc.h"


static const char *my_primary, *my_replica, *my_admin_primary, *my_admin_replica;
static long my_id_primary, my_id_replica; /* @@server_id, read by the checked fixture */

typedef struct my_addr {
    char user[64];
    char password[64];
    char host[64];
    int port;
} my_addr;

/* Splits "mysql://user:password@host:port" (the cluster script's form); -1 when it is not. */
static int my_parse(const char *uri, my_addr *a)
{
    memset(a, 0, sizeof *a);
    const char *p = uri ? strstr(uri, "://") : NULL;
    if (!p)
        return -1;
    p += 3;
    const char *at = strrchr(p, '@');
    const char *colon = strchr(p, ':');
    if (!at || !colon || colon > at)
        return -1;
    const char *pc = strchr(at + 1, ':');
    if (!pc)
        return -1;
    snprintf(a->user, sizeof a->user, "%.*s", (int)(colon - p), p);
    snprintf(a->password, sizeof a->password, "%.*s", (int)(at - colon - 1), colon + 1);
    snprintf(a->host, sizeof a->host, "%.*s", (int)(pc - at - 1), at + 1);
    a->port = atoi(pc + 1);
    return 0;
}

/*
 * A blocking libmariadb connection, or NULL with the reason in `why` (no
 * assertion: the fixture teardown uses it).
 */
static MYSQL *my_connect_quietly(const char *uri, const char *db, char *why, size_t whylen)
{
    my_addr a;
    if (my_parse(uri, &a) != 0) {
        snprintf(why, whylen, "not a mysql://user:password@host:port URI");
        return NULL;
    }
    MYSQL *m = mysql_init(NULL);
    if (!m) {
        snprintf(why, whylen, "mysql_init failed");
        return NULL;
    }
    unsigned timeout = 10;
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    if (!mysql_real_connect(m, a.host, a.user, a.password, db, (unsigned)a.port, NULL, 0)) {
        snprintf(why, whylen, "%s", mysql_error(m));
        mysql_close(m);
        return NULL;
    }
    return m;
}

static MYSQL *my_direct(const char *uri, const char *db)
{
    char why[512] = "";
    MYSQL *m = my_connect_quietly(uri, db, why, sizeof why);
    ck_assert_msg(m != NULL, "direct connect to MariaDB (%s): %s", db ? db : "no database", why);
    return m;
}

static void my_exec(MYSQL *m, const char *sql)
{
    ck_assert_msg(mysql_query(m, sql) == 0, "%s: %s", sql, mysql_error(m));
    mysql_free_result(mysql_store_result(m));
}

/* The first value of the first row, as a new string (NULL for SQL NULL or no row). */
static char *my_value(MYSQL *m, const char *sql)
{
    ck_assert_msg(mysql_query(m, sql) == 0, "%s: %s", sql, mysql_error(m));
    MYSQL_RES *r = mysql_store_result(m);
    ck_assert_msg(r != NULL, "%s returned no result set", sql);
    MYSQL_ROW row = mysql_fetch_row(r);
    char *v = row && row[0] ? strdup(row[0]) : NULL;
    mysql_free_result(r);
    return v;
}

static long my_long(MYSQL *m, const char *sql)
{
    char *v = my_value(m, sql);
    ck_assert_msg(v != NULL, "%s returned NULL", sql);
    long n = atol(v);
    free(v);
    return n;
}

/* A global status counter of the server (e.g. MASTER_GTID_WAIT_TIMEOUTS). */
static long my_counter(const char *uri, const char *name)
{
    MYSQL *m = my_direct(uri, NULL);
    char *sql = xfmt("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                     "WHERE VARIABLE_NAME = '%s'", name);
    long n = my_long(m, sql);
    free(sql);
    mysql_close(m);
    return n;
}

/*
 * The sequence number of domain 0 in a GTID position ("0-1-42" gives 42;
 * "0-1-42,7-1-1" too). The router's writes use domain 0; another suite
 * (test_mysql's multi-domain case) leaves a domain 7 entry in the servers'
 * GTID state for good, so a position may list more than one domain.
 */
static long my_seq(MYSQL *m, const char *sql)
{
    char *v = my_value(m, sql);
    ck_assert_msg(v != NULL, "%s gave NULL", sql);
    long n = -1;
    for (const char *p = v; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        char *end;
        long domain = strtol(p, &end, 10);
        const char *last = strchr(p, ',');
        const char *dash = NULL;
        for (const char *q = p; *q && (!last || q < last); q++)
            if (*q == '-')
                dash = q;
        if (end != p && *end == '-' && dash && domain == 0)
            n = atol(dash + 1);
        if (!last)
            break;
        p = last + 1;
    }
    ck_assert_msg(n >= 0, "%s gave '%s' (no domain 0)", sql, v);
    free(v);
    return n;
}

/* Column `col` of SHOW SLAVE STATUS, as a new string; NULL for NULL, no row or no column. */
static char *my_slave_status(MYSQL *m, const char *col)
{
    if (mysql_query(m, "SHOW SLAVE STATUS") != 0)
        return NULL;
    MYSQL_RES *r = mysql_store_result(m);
    if (!r)
        return NULL;
    MYSQL_ROW row = mysql_fetch_row(r);
    MYSQL_FIELD *f = mysql_fetch_fields(r);
    char *v = NULL;
    for (unsigned i = 0; row && i < mysql_num_fields(r); i++)
        if (strcmp(f[i].name, col) == 0 && row[i])
            v = strdup(row[i]);
    mysql_free_result(r);
    return v;
}

static int my_status_is(MYSQL *m, const char *col, const char *want)
{
    char *v = my_slave_status(m, col);
    int eq = v && strcmp(v, want) == 0;
    free(v);
    return eq;
}

/*
 * The replica's lag as the driver's contract defines it, read directly:
 * Seconds_Behind_Master in ms while both replication threads run, -1 (not
 * eligible) when a thread is stopped or the figure is NULL.
 */
static long my_direct_lag_ms(MYSQL *replica)
{
    if (!my_status_is(replica, "Slave_IO_Running", "Yes") ||
        !my_status_is(replica, "Slave_SQL_Running", "Yes"))
        return -1;
    char *sbm = my_slave_status(replica, "Seconds_Behind_Master");
    long lag = sbm ? atol(sbm) * 1000 : -1;
    free(sbm);
    return lag;
}

/*
 * Puts replication back as the cluster script left it: no delay, both threads
 * running, REPEATABLE READ as the replica's default isolation. No assertion,
 * so it also works (and never aborts) after a failed test.
 */
static void my_restore_quietly(void)
{
    char why[512];
    MYSQL *m = my_connect_quietly(my_admin_replica, NULL, why, sizeof why);
    if (!m)
        return;
    char *delay = my_slave_status(m, "SQL_Delay");
    if (delay && strcmp(delay, "0") != 0) {
        (void)mysql_query(m, "STOP SLAVE");
        (void)mysql_query(m, "CHANGE MASTER TO MASTER_DELAY = 0");
    }
    free(delay);
    /* Starts whichever thread is stopped; a note, not an error, when both run. */
    (void)mysql_query(m, "START SLAVE");
    (void)mysql_query(m, "SET GLOBAL tx_isolation = 'REPEATABLE-READ'");
    mysql_close(m);
}

/* Waits (bounded) until the replica has applied everything the primary had written. */
static void my_sync(void)
{
    MYSQL *p = my_direct(my_admin_primary, NULL);
    MYSQL *q = my_direct(my_admin_replica, NULL);
    char *pos = my_value(p, "SELECT @@GLOBAL.gtid_binlog_pos");
    char *sql = xfmt("SELECT MASTER_GTID_WAIT('%s', 15)", pos ? pos : "");
    ck_assert_msg(my_long(q, sql) == 0, "the replica did not apply %s within 15 s", pos);
    free(sql);
    free(pos);
    mysql_close(q);
    mysql_close(p);
}

/* Checked setup: replication running and caught up; the servers' ids. */
static void my_replication_running(void)
{
    my_restore_quietly();
    MYSQL *p = my_direct(my_admin_primary, NULL);
    MYSQL *q = my_direct(my_admin_replica, NULL);
    my_id_primary = my_long(p, "SELECT @@server_id");
    my_id_replica = my_long(q, "SELECT @@server_id");
    ck_assert_int_ne(my_id_primary, my_id_replica);
    mysql_close(q);
    mysql_close(p);
    my_sync();
}

/* Stops applying on the replica (the IO thread keeps receiving) and checks that it stopped. */
static void my_stop_sql_thread(void)
{
    MYSQL *q = my_direct(my_admin_replica, NULL);
    my_exec(q, "STOP SLAVE SQL_THREAD");
    ck_assert(my_status_is(q, "Slave_SQL_Running", "No"));
    mysql_close(q);
}

static void my_start_sql_thread(void)
{
    MYSQL *q = my_direct(my_admin_replica, NULL);
    my_exec(q, "START SLAVE SQL_THREAD");
    mysql_close(q);
}

/* Creates table `name` afresh in every shard's database, directly on the primary. */
static void my_create_table(const char *name, const char *columns)
{
    MYSQL *p = my_direct(my_admin_primary, NULL);
    for (int i = 0; i < NSHARDS; i++) {
        char *sql = xfmt("DROP TABLE IF EXISTS %s.%s", shard_db[i], name);
        my_exec(p, sql);
        free(sql);
        sql = xfmt("CREATE TABLE %s.%s (%s)", shard_db[i], name, columns);
        my_exec(p, sql);
        free(sql);
    }
    mysql_close(p);
}

/* A router over the pair: `nshards` shards, each the primary and the replica (node 1). */
static sr_router *my_open_router(int nshards, const char *const *opts /* pairs, then NULL */)
{
    return open_cluster_router(my_primary, &my_replica, 1, nshards, opts, NULL, NULL);
}

static seen my_read_row(sr_session *s, const char *table, int64_t key, const sr_read_opts *opts)
{
    char *sql = xfmt("SELECT (SELECT v FROM %s WHERE k = ?), @@server_id", table);
    seen w = read_row_as(s, sql, key, opts);
    free(sql);
    return w;
}

/* The server that answered a routed read of no table. */
static long my_read_server(sr_session *s)
{
    sr_result *res = NULL;
    int rc = sr_exec(s, sr_key_int(1), SR_READ, "SELECT @@server_id", 0, NULL, &res);
    ck_assert_msg(rc == SR_OK, "read: %s (%s)", sr_strerror(rc), sr_session_errmsg(s));
    long id = atol(sr_result_value(res, 0, 0));
    sr_result_free(res);
    return id;
}

/* Asserts every replica node is healthy, never ejected and still holds a pooled connection. */
static void my_replicas_kept_their_connections(const sr_router *r, const char *when)
{
    for (int sh = 0; sh < sr_router_nshards(r); sh++)
        for (int i = 1; i < sr_router_nnodes(r, sh); i++) {
            sr_node_info info = SR_NODE_INFO_INIT;
            ck_assert_int_eq(sr_router_node_info(r, sh, i, &info), SR_OK);
            ck_assert_msg(info.healthy && info.ejections == 0 && info.connections > 0,
                          "%s: shard %d replica %s: healthy %d, ejections %llu, connections %llu",
                          when, sh, info.uri, info.healthy, (unsigned long long)info.ejections,
                          (unsigned long long)info.connections);
        }
}

/* ---- MariaDB 1. read-your-writes with the replica's SQL thread stopped ------- */

/* PAIRS write-then-read pairs: counts stale reads and who served them. */
static void my_write_then_read(sr_router *r, sr_session *s, const char *tag, int pairs,
                               int *stale, int *from_replica, int *from_primary)
{
    *stale = *from_replica = *from_primary = 0;
    for (int i = 0; i < pairs; i++) {
        int64_t key = key_on(r, i % NSHARDS, (i / NSHARDS) % (KEYS / NSHARDS));
        char v[32];
        snprintf(v, sizeof v, "%s-%d", tag, i);
        write_one(s, key, "UPDATE sr_ryw SET v = ? WHERE k = ?", v);
        seen w = my_read_row(s, "sr_ryw", key, NULL);
        *stale += !w.found || strcmp(w.value, v) != 0;
        *from_replica += w.server == my_id_replica;
        *from_primary += w.server == my_id_primary;
    }
}

/* Starts the replica's SQL thread after a short delay, from a thread of its own. */
typedef struct my_starter {
    pthread_t thread;
    int delay_ms;
    int failed;
} my_starter;

static void *my_starter_main(void *arg)
{
    my_starter *st = arg; /* no Check assertion on this thread: failures go to st->failed */
    mysql_thread_init();
    sleep_ms(st->delay_ms);
    char why[512];
    MYSQL *q = my_connect_quietly(my_admin_replica, NULL, why, sizeof why);
    st->failed = !q || mysql_query(q, "START SLAVE SQL_THREAD") != 0;
    if (q)
        mysql_close(q);
    mysql_thread_end();
    return NULL;
}

START_TEST(my_read_your_writes_reads_back_every_write_while_the_replica_is_stopped)
{
    my_create_table("sr_ryw", "k BIGINT PRIMARY KEY, v VARCHAR(64) NOT NULL");
    /* short: with the SQL thread stopped every read waits this long in vain */
    const char *opts[] = {"consistency.wait_ms", "5", NULL};
    sr_router *r = my_open_router(NSHARDS, opts);
    sr_session *any = session_in(r, "any");
    insert_initial_rows(any, r, "sr_ryw", KEYS);
    my_sync();
    my_stop_sql_thread();

    /* read_your_writes: every read returns the value just written, from the primary. */
    sr_session *ryw = session_in(r, "read_your_writes");
    uint64_t replica_before = statements_on(r, 0), primary_before = statements_on(r, 1);
    double t0 = mono_ms();
    int stale = -1, from_replica = -1, from_primary = -1;
    my_write_then_read(r, ryw, "ryw", PAIRS, &stale, &from_replica, &from_primary);
    double took = mono_ms() - t0;
    uint64_t replica_stmts = statements_on(r, 0) - replica_before;
    uint64_t primary_stmts = statements_on(r, 1) - primary_before;
    fprintf(stderr, "mariadb read_your_writes, SQL thread stopped: %d pairs, %d stale, "
                    "%d from the replica, %d from the primary, %.0f ms\n",
            PAIRS, stale, from_replica, from_primary, took);
    ck_assert_int_eq(stale, 0);
    ck_assert_int_eq(from_replica, 0);
    ck_assert_int_eq(from_primary, PAIRS);
    ck_assert_uint_eq(replica_stmts, 0);
    ck_assert_uint_eq(primary_stmts, 2 * PAIRS);
    /* A wait that ran out is no failure of the replica. */
    my_replicas_kept_their_connections(r, "after 1,000 expired waits");

    /* With primary reads forbidden the same read is SR_ESTALE, naming the shard. */
    const char *never_opts[] = {"consistency.wait_ms", "5", "balance.primary_reads", "never", NULL};
    sr_router *never = my_open_router(NSHARDS, never_opts);
    sr_session *strict = session_in(never, "read_your_writes");
    int64_t k0 = key_on(never, 0, 0);
    write_one(strict, k0, "UPDATE sr_ryw SET v = ? WHERE k = ?", "strict");
    char ks[24];
    snprintf(ks, sizeof ks, "%lld", (long long)k0);
    const char *kp[] = {ks};
    int rc = sr_exec(strict, sr_key_int(k0), SR_READ, "SELECT v FROM sr_ryw WHERE k = ?", 1, kp,
                     NULL);
    ck_assert_msg(rc == SR_ESTALE, "got %s (%s)", sr_strerror(rc), sr_session_errmsg(strict));
    ck_assert_msg(strstr(sr_session_errmsg(strict), "shard0") != NULL, "%s",
                  sr_session_errmsg(strict));
    fprintf(stderr, "mariadb primary_reads=never: %s\n", sr_session_errmsg(strict));
    sr_session_free(strict);
    sr_router_close(never);

    /* any: the same loop reads stale values from the stopped replica (the check can fail). */
    my_write_then_read(r, any, "any", PAIRS, &stale, &from_replica, &from_primary);
    fprintf(stderr, "mariadb any, SQL thread stopped: %d pairs, %d stale, %d from the replica\n",
            PAIRS, stale, from_replica);
    ck_assert_int_gt(stale, 0);
    ck_assert_int_gt(from_replica, 0);

    /*
     * Waits long enough for MASTER_GTID_WAIT to run on the server (a 5 ms
     * budget leaves none after the driver's margin) and still run out: fresh
     * reads from the primary, and the replica keeps its connection.
     */
    const char *wait_opts[] = {"consistency.wait_ms", "60", NULL};
    sr_router *waiting = my_open_router(NSHARDS, wait_opts);
    sr_session *ws = session_in(waiting, "read_your_writes");
    enum { WAIT_PAIRS = 20 };
    long timeouts_before = my_counter(my_admin_replica, "MASTER_GTID_WAIT_TIMEOUTS");
    t0 = mono_ms();
    my_write_then_read(waiting, ws, "wait", WAIT_PAIRS, &stale, &from_replica, &from_primary);
    took = mono_ms() - t0;
    long timeouts = my_counter(my_admin_replica, "MASTER_GTID_WAIT_TIMEOUTS") - timeouts_before;
    fprintf(stderr, "mariadb read_your_writes, wait_ms=60, SQL thread stopped: %d pairs, "
                    "%d stale, %d from the replica, %ld MASTER_GTID_WAIT timeouts on the replica, "
                    "%.0f ms\n", WAIT_PAIRS, stale, from_replica, timeouts, took);
    ck_assert_int_eq(stale, 0);
    ck_assert_int_eq(from_primary, WAIT_PAIRS);
    ck_assert_int_eq(timeouts, WAIT_PAIRS); /* each read really waited on the server, once */
    my_replicas_kept_their_connections(waiting, "after expired MASTER_GTID_WAITs");

    /* A wait that succeeds: the SQL thread starts while the read waits; the replica serves it. */
    int64_t wkey = key_on(waiting, 0, 0);
    write_one(ws, wkey, "UPDATE sr_ryw SET v = ? WHERE k = ?", "waited-for");
    const char *long_opts[] = {"consistency.wait_ms", "10000", NULL};
    sr_router *patient = my_open_router(NSHARDS, long_opts);
    sr_session *ps = session_in(patient, "read_your_writes");
    ck_assert_msg(sr_session_set_token(ps, sr_session_token(ws)) == SR_OK, "%s",
                  sr_session_errmsg(ps));
    MYSQL *pa = my_direct(my_admin_primary, NULL), *qa = my_direct(my_admin_replica, NULL);
    long backlog = my_seq(pa, "SELECT @@GLOBAL.gtid_binlog_pos") -
                   my_seq(qa, "SELECT @@GLOBAL.gtid_slave_pos");
    mysql_close(qa);
    mysql_close(pa);
    long waits_before = my_counter(my_admin_replica, "MASTER_GTID_WAIT_COUNT");
    my_starter st = {.delay_ms = 200, .failed = 0};
    ck_assert_int_eq(pthread_create(&st.thread, NULL, my_starter_main, &st), 0);
    double w0 = mono_ms();
    seen w = my_read_row(ps, "sr_ryw", wkey, NULL);
    double waited = mono_ms() - w0;
    pthread_join(st.thread, NULL);
    ck_assert_msg(!st.failed, "could not start the SQL thread");
    long waits = my_counter(my_admin_replica, "MASTER_GTID_WAIT_COUNT") - waits_before;
    fprintf(stderr, "mariadb read_your_writes, SQL thread started 200 ms into a read with %ld "
                    "transactions to apply: served by %s after %.0f ms (%ld MASTER_GTID_WAIT)\n",
            backlog, w.server == my_id_replica ? "the replica" : "the primary", waited, waits);
    ck_assert_str_eq(w.value, "waited-for");
    ck_assert_int_eq(w.server, my_id_replica);
    sr_session_free(ps);
    sr_router_close(patient);
    sr_session_free(ws);
    sr_router_close(waiting);

    /* Replication runs again: the read-your-writes session's reads move back to the replica. */
    int64_t last_key = key_on(r, 0, 0);
    write_one(ryw, last_key, "UPDATE sr_ryw SET v = ? WHERE k = ?", "after-restart");
    int reads = 0;
    w.server = 0;
    for (double t1 = mono_ms(); mono_ms() - t1 < 10000; sleep_ms(5)) {
        w = my_read_row(ryw, "sr_ryw", last_key, NULL);
        reads++;
        ck_assert_str_eq(w.value, "after-restart");
        if (w.server == my_id_replica)
            break;
    }
    fprintf(stderr, "mariadb after START SLAVE SQL_THREAD: the replica served the "
                    "read-your-writes read after %d reads\n", reads);
    ck_assert_msg(w.server == my_id_replica, "reads never went back to the replica");

    sr_session_free(ryw);
    sr_session_free(any);
    sr_router_close(r);
}
END_TEST

/* ---- MariaDB 2. a token across processes ------------------------------------ */

/*
 * The child of the token test: its own router and session over the pair;
 * writes one row per shard and writes its token to `fd`. No Check assertions
 * (this is not the test's process): failures are "ERR ..." on the pipe and a
 * non-zero exit.
 */
static void my_token_child(int fd, const int64_t *keys, const char *value)
{
    sr_config *c = sr_config_new();
    int ok = c != NULL;
    for (int i = 0; ok && i < NSHARDS; i++) {
        char uri[512];
        snprintf(uri, sizeof uri, "%s/%s", my_primary, shard_db[i]);
        ok = sr_config_add_shard(c, shard_db[i]) == SR_OK &&
             sr_config_add_node(c, shard_db[i], SR_PRIMARY, uri, 1) == SR_OK;
        snprintf(uri, sizeof uri, "%s/%s", my_replica, shard_db[i]);
        ok = ok && sr_config_add_node(c, shard_db[i], SR_REPLICA, uri, 1) == SR_OK;
    }
    sr_router *r = NULL;
    sr_session *s = NULL;
    ok = ok && sr_router_open(c, &r) == SR_OK && sr_session_new(r, &s) == SR_OK;
    sr_config_free(c);
    char msg[1024] = "ERR setup";
    for (int i = 0; ok && i < NSHARDS; i++) {
        char ks[24];
        snprintf(ks, sizeof ks, "%lld", (long long)keys[i]);
        const char *p[] = {ks, value};
        if (sr_exec(s, sr_key_int(keys[i]), SR_WRITE, "INSERT INTO sr_tok VALUES (?, ?)", 2, p,
                    NULL) != SR_OK) {
            snprintf(msg, sizeof msg, "ERR insert: %s", sr_session_errmsg(s));
            ok = 0;
        }
    }
    token_child_exit(fd, r, s, ok, msg, sizeof msg);
}

static void my_token_child_main(int fd, void *arg)
{
    token_args *a = arg;
    my_token_child(fd, a->keys, a->value);
}

static char *my_token_from_child(const int64_t *keys, const char *value)
{
    token_args a = {0, 0, keys, value};
    return token_from(my_token_child_main, &a);
}

/* 1 when `pos` (up to ';' or the end) is a MariaDB GTID position "D-S-N[,D-S-N...]". */
static int looks_like_gtid(const char *pos)
{
    size_t n = strcspn(pos, ";"), i = 0;
    while (n > 0) {
        for (int part = 0; part < 3; part++) {
            size_t digits = 0;
            for (; i < n && pos[i] >= '0' && pos[i] <= '9'; i++)
                digits++;
            if (digits == 0 || (part < 2 && (i >= n || pos[i++] != '-')))
                return 0;
        }
        if (i == n)
            return 1;
        if (pos[i++] != ',')
            return 0;
    }
    return 0;
}

START_TEST(my_a_token_carries_a_write_to_another_process)
{
    my_create_table("sr_tok", "k BIGINT PRIMARY KEY, v VARCHAR(64) NOT NULL");
    my_sync();
    my_stop_sql_thread();

    sr_router *r = my_open_router(NSHARDS, NULL);
    int64_t keys[NSHARDS] = {key_on(r, 0, 0), key_on(r, 1, 0)};
    char value[64];
    snprintf(value, sizeof value, "from-child-%ld", (long)getpid());
    char *token = my_token_from_child(keys, value);

    /* Printable, versioned, both shards with a GTID position each, no credential. */
    fprintf(stderr, "mariadb token from the child: %s\n", token);
    ck_assert_msg(strncmp(token, "sr1;c=", 6) == 0, "token '%s'", token);
    for (const char *t = token; *t; t++)
        ck_assert_msg(*t > ' ' && *t < 0x7f, "unprintable byte in token '%s'", token);
    const char *e0 = strstr(token, ";shard0="), *e1 = strstr(token, ";shard1=");
    ck_assert_msg(e0 && e1, "token '%s'", token);
    ck_assert_msg(looks_like_gtid(e0 + 8) && looks_like_gtid(e1 + 8), "token '%s'", token);
    my_addr a;
    ck_assert_int_eq(my_parse(my_primary, &a), 0);
    ck_assert_msg(!strstr(token, a.password), "token '%s' holds the password", token);

    /* Without the token a fresh session reads the stopped replica: the row is not there. */
    sr_session *blind = session_in(r, NULL);
    for (int i = 0; i < NSHARDS; i++) {
        seen w = my_read_row(blind, "sr_tok", keys[i], NULL);
        ck_assert_msg(!w.found && w.server == my_id_replica, "shard %d: found=%d server=%ld", i,
                      w.found, w.server);
    }

    /* With it, the first read on each shard sees the child's row (from the primary). */
    sr_session *s = session_in(r, NULL);
    ck_assert_msg(sr_session_set_token(s, token) == SR_OK, "%s", sr_session_errmsg(s));
    for (int i = 0; i < NSHARDS; i++) {
        seen w = my_read_row(s, "sr_tok", keys[i], NULL);
        ck_assert_msg(w.found, "shard %d: the child's row was not seen on the first read", i);
        ck_assert_str_eq(w.value, value);
        ck_assert_int_eq(w.server, my_id_primary);
    }
    const char *again = sr_session_token(s);
    ck_assert_ptr_nonnull(again);
    ck_assert_str_eq(again, token);

    free(token);
    sr_session_free(s);
    sr_session_free(blind);
    sr_router_close(r);
}
END_TEST

START_TEST(my_a_token_with_a_malformed_position_is_refused)
{
    my_create_table("sr_tok", "k BIGINT PRIMARY KEY, v VARCHAR(64) NOT NULL");
    sr_router *r = my_open_router(NSHARDS, NULL);
    sr_session *s = session_in(r, NULL);
    for (int i = 0; i < NSHARDS; i++) {
        char ks[24];
        snprintf(ks, sizeof ks, "%lld", (long long)key_on(r, i, 0));
        const char *p[] = {ks, "mine"};
        ck_assert_int_eq(sr_exec(s, sr_key_int(key_on(r, i, 0)), SR_WRITE,
                                 "INSERT INTO sr_tok VALUES (?, ?)", 2, p, NULL),
                         SR_OK);
    }
    char *before = strdup(sr_session_token(s));

    /* Positions that are not MariaDB GTIDs are refused and change nothing. */
    char id[17];
    ck_assert_msg(strncmp(before, "sr1;c=", 6) == 0 && strlen(before) > 22, "token '%s'", before);
    memcpy(id, before + 6, 16);
    id[16] = '\0';
    static const char *const bad_pos[] = {
        "garbage", "0-1", "0-1-", "0-1-x", "-1-5", "0-1-5%2C", "0/1",
        "0-1-99999999999999999999999",
    };
    enum { NBAD = sizeof bad_pos / sizeof bad_pos[0] };
    char accepted[1024] = "";
    for (size_t i = 0; i < NBAD; i++) {
        /* A session of its own per entry, holding the valid token, so each is judged alone. */
        sr_session *t = session_in(r, NULL);
        ck_assert_msg(sr_session_set_token(t, before) == SR_OK, "%s", sr_session_errmsg(t));
        char *bad = xfmt("sr1;c=%s;shard0=%s", id, bad_pos[i]);
        int rc = sr_session_set_token(t, bad);
        if (rc == SR_OK) {
            size_t len = strlen(accepted);
            snprintf(accepted + len, sizeof accepted - len, " '%s' (token now '%s');", bad_pos[i],
                     sr_session_token(t));
        } else {
            ck_assert_msg(rc == SR_EINVAL, "'%s' gave %s", bad, sr_strerror(rc));
            ck_assert_msg(strstr(sr_session_errmsg(t), "token") != NULL, "%s",
                          sr_session_errmsg(t));
            ck_assert_str_eq(sr_session_token(t), before);
        }
        free(bad);
        sr_session_free(t);
    }
    /*
     * Regression check: sr_session_set_token once validated a position with
     * position_covers(pos, pos), which the MariaDB driver answers for equal
     * strings without parsing them, so any text was taken for a position.
     */
    ck_assert_msg(accepted[0] == '\0', "malformed MariaDB positions accepted:%s", accepted);

    free(before);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- MariaDB 3. monotonic reads ---------------------------------------------- */

/* Reads MONO_READS times; counts reads older than the freshest value seen, and who served them. */
static void my_read_many(sr_session *s, int *regressions, int *by_replica, int *by_primary)
{
    const long servers[] = {my_id_replica, my_id_primary};
    int by[2];
    *regressions = read_many_as(s, "SELECT (SELECT v FROM sr_mono WHERE k = ?), @@server_id",
                                servers, 2, by);
    *by_replica = by[0];
    *by_primary = by[1];
}

START_TEST(my_a_monotonic_session_never_reads_older_than_it_has_read)
{
    my_create_table("sr_mono", "k BIGINT PRIMARY KEY, v INT NOT NULL");
    MYSQL *p = my_direct(my_admin_primary, "shard0");
    my_exec(p, "INSERT INTO sr_mono VALUES (1, 1)");
    my_sync();
    /* The replica keeps the old value; the primary has the new one. */
    my_stop_sql_thread();
    my_exec(p, "UPDATE sr_mono SET v = 2 WHERE k = 1");
    MYSQL *q = my_direct(my_admin_replica, "shard0");
    ck_assert_int_eq(my_long(q, "SELECT v FROM sr_mono WHERE k = 1"), 1);

    /* One replica only: the primary is the current candidate (round_robin over both). */
    const char *opts[] = {"balance.primary_reads", "always", "consistency.wait_ms", "5", NULL};
    sr_router *r = my_open_router(1, opts);

    sr_session *mono = session_in(r, "monotonic");
    int fresh = 0;
    for (int i = 0; i < 20 && !fresh; i++)
        fresh = strcmp(my_read_row(mono, "sr_mono", 1, NULL).value, "2") == 0;
    ck_assert_msg(fresh, "the monotonic session never read the new value");
    int regressions, by_replica, by_primary;
    my_read_many(mono, &regressions, &by_replica, &by_primary);
    fprintf(stderr, "mariadb monotonic: %d reads, %d older than already read (replica %d, "
                    "primary %d)\n", MONO_READS, regressions, by_replica, by_primary);
    ck_assert_int_eq(regressions, 0);
    ck_assert_int_eq(by_replica, 0); /* the stopped replica is behind what it read */
    ck_assert_int_eq(by_primary, MONO_READS);

    /* any: the same reads go back to the old value (the check can fail). */
    sr_session *any = session_in(r, "any");
    fresh = 0;
    for (int i = 0; i < 20 && !fresh; i++)
        fresh = strcmp(my_read_row(any, "sr_mono", 1, NULL).value, "2") == 0;
    ck_assert(fresh);
    my_read_many(any, &regressions, &by_replica, &by_primary);
    fprintf(stderr, "mariadb any: %d reads, %d older than already read (replica %d, "
                    "primary %d)\n", MONO_READS, regressions, by_replica, by_primary);
    ck_assert_int_gt(regressions, 0);

    /* Replication runs again: the monotonic session reads the replica again once it caught up. */
    my_start_sql_thread();
    my_sync();
    int back = 0;
    for (int i = 0; i < 20 && !back; i++) {
        seen w = my_read_row(mono, "sr_mono", 1, NULL);
        ck_assert_str_eq(w.value, "2");
        back = w.server == my_id_replica;
    }
    ck_assert_msg(back, "the caught-up replica never served the monotonic session");

    sr_session_free(any);
    sr_session_free(mono);
    sr_router_close(r);
    mysql_close(q);
    mysql_close(p);
}
END_TEST

/* ---- MariaDB 4. replica.max_lag_ms ------------------------------------------- */

static sr_router *my_lag_router(void)
{
    const char *opts[] = {"replica.max_lag_ms", "500", "replica.lag_refresh_ms", "100",
                          "consistency.mode", "any", NULL};
    return my_open_router(1, opts);
}

/*
 * Reads while writing, for up to `max_ms`, and checks no read reached the
 * replica once the direct view of it had been not eligible (lag -1, or above
 * MAX_LAG) for longer than a refresh (plus rounding): the library's figure
 * is then at most LAG_REFRESH old, so it was measured inside that stretch.
 * Ends early once that has held for `enough_ms` past the bound.
 */
typedef struct my_lag_run {
    int reads, on_replica, late, on_primary_after;
    double first_ineligible; /* ms after the start: the first not-eligible direct view, or -1 */
    double last_replica;     /* ms after the start of the last read the replica served, or -1 */
    long max_lag_seen;
} my_lag_run;

static my_lag_run my_read_while_writing(sr_session *s, MYSQL *p, MYSQL *q, int max_ms,
                                        int enough_ms, int need_positive)
{
    my_lag_run run = {0, 0, 0, 0, -1, -1, -1};
    double t0 = mono_ms();
    double since = 0; /* start of the current stretch of not-eligible views, 0 when eligible */
    while (mono_ms() - t0 < max_ms) {
        my_exec(p, "INSERT INTO sr_ticks () VALUES ()");
        long lag = my_direct_lag_ms(q);
        double seen_at = mono_ms(); /* after the answer: the state began no later than this */
        int ineligible = lag < 0 || lag > MAX_LAG;
        if (lag > run.max_lag_seen)
            run.max_lag_seen = lag;
        if (ineligible && (!need_positive || lag > MAX_LAG)) {
            if (since == 0)
                since = seen_at;
            if (run.first_ineligible < 0)
                run.first_ineligible = seen_at - t0;
        } else {
            since = 0;
        }
        double started = mono_ms();
        long server = my_read_server(s);
        int past = since > 0 && started > since + LAG_REFRESH + ROUNDING;
        run.reads++;
        if (server == my_id_replica) {
            run.on_replica++;
            run.last_replica = started - t0;
            run.late += past;
        } else if (server == my_id_primary && past) {
            run.on_primary_after++;
        }
        if (past && started > since + LAG_REFRESH + ROUNDING + enough_ms)
            break;
        sleep_ms(5);
    }
    return run;
}

/* Reads (bounded) until the replica serves one again; ms it took, or -1. */
static double my_until_replica_serves(sr_session *s, MYSQL *p)
{
    double t0 = mono_ms();
    while (mono_ms() - t0 < 10000) {
        my_exec(p, "INSERT INTO sr_ticks () VALUES ()");
        if (my_read_server(s) == my_id_replica)
            return mono_ms() - t0;
        sleep_ms(5);
    }
    return -1;
}

START_TEST(my_a_replica_with_broken_or_delayed_replication_leaves_the_rotation)
{
    my_create_table("sr_ticks", "id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                                "at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)");
    my_sync();
    sr_router *r = my_lag_router();
    sr_session *s = session_in(r, NULL);
    MYSQL *p = my_direct(my_admin_primary, "shard0");
    MYSQL *q = my_direct(my_admin_replica, NULL);

    /* The replica serves reads while it keeps up. */
    double first = my_until_replica_serves(s, p);
    ck_assert_msg(first >= 0, "the replica never served a read before replication was broken");

    /* Broken: STOP SLAVE SQL_THREAD makes Seconds_Behind_Master NULL, i.e. not eligible. */
    my_exec(q, "STOP SLAVE SQL_THREAD");
    char *sbm = my_slave_status(q, "Seconds_Behind_Master");
    ck_assert_msg(sbm == NULL, "Seconds_Behind_Master is '%s' with the SQL thread stopped", sbm);
    my_lag_run run = my_read_while_writing(s, p, q, 3000, 500, 0);
    fprintf(stderr, "mariadb max_lag_ms=%d, lag_refresh_ms=%d, SQL thread stopped: %d reads, "
                    "%d on the replica (the last %.0f ms after the stop), %d on the primary "
                    "past the bound, %d late\n",
            MAX_LAG, LAG_REFRESH, run.reads, run.on_replica, run.last_replica,
            run.on_primary_after, run.late);
    ck_assert_int_eq(run.late, 0);
    ck_assert_int_gt(run.on_primary_after, 0);

    /* Started again, it catches up and serves reads again. */
    my_exec(q, "START SLAVE SQL_THREAD");
    double back = my_until_replica_serves(s, p);
    fprintf(stderr, "mariadb: the replica served reads again %.0f ms after START SLAVE "
                    "SQL_THREAD\n", back);
    ck_assert_msg(back >= 0, "the replica did not come back within 10 s");

    /*
     * A measurable positive lag: MASTER_DELAY = 2 while writes continue makes
     * Seconds_Behind_Master 1..2 s. Reads leave the replica within a refresh
     * of the lag passing the bound, and come back once the delay is lifted.
     */
    my_exec(q, "STOP SLAVE");
    my_exec(q, "CHANGE MASTER TO MASTER_DELAY = 2");
    my_exec(q, "START SLAVE");
    run = my_read_while_writing(s, p, q, 8000, 1000, 1);
    fprintf(stderr, "mariadb MASTER_DELAY=2 with writes: %d reads, highest lag seen %ld ms, "
                    "lag > %d ms first seen %.0f ms after START SLAVE, the replica's last read "
                    "%.0f ms after START SLAVE, %d on the primary past the bound, %d late\n",
            run.reads, run.max_lag_seen, MAX_LAG, run.first_ineligible, run.last_replica,
            run.on_primary_after, run.late);
    ck_assert_msg(run.first_ineligible >= 0, "MASTER_DELAY = 2 never showed a lag over %d ms",
                  MAX_LAG);
    ck_assert_int_eq(run.late, 0);
    ck_assert_int_gt(run.on_primary_after, 0);

    my_exec(q, "STOP SLAVE");
    my_exec(q, "CHANGE MASTER TO MASTER_DELAY = 0");
    my_exec(q, "START SLAVE");
    back = my_until_replica_serves(s, p);
    fprintf(stderr, "mariadb: the replica served reads again %.0f ms after MASTER_DELAY = 0\n",
            back);
    ck_assert_msg(back >= 0, "the replica did not come back within 10 s of MASTER_DELAY = 0");

    /*
     * An idle primary: nothing written for longer than twice the bound, and
     * the caught-up replica keeps serving (Seconds_Behind_Master is 0 when the
     * SQL thread has applied all it received, not the age of the last event).
     */
    my_sync();
    sleep_ms(2 * MAX_LAG + 2 * LAG_REFRESH);
    int by_replica = 0, by_primary = 0;
    for (int i = 0; i < 20; i++) {
        long server = my_read_server(s);
        by_replica += server == my_id_replica;
        by_primary += server == my_id_primary;
        sleep_ms(10); /* across several lag refreshes */
    }
    long idle_lag = my_direct_lag_ms(q);
    fprintf(stderr, "mariadb idle primary (%d ms without a write): replica %d, primary %d of 20 "
                    "reads; lag read directly %ld ms\n",
            2 * MAX_LAG + 2 * LAG_REFRESH, by_replica, by_primary, idle_lag);
    ck_assert_int_eq(by_replica, 20);

    mysql_close(q);
    mysql_close(p);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- MariaDB 5. read-only transactions ---------------------------------------- */

/*
 * Opens a read-only transaction on `key`, reads the row, has the primary
 * change it and the replica apply that (checked directly), and reads again;
 * the transaction stays open. Also returns the connection's default isolation
 * (@@tx_isolation: MariaDB has no variable for the running transaction's).
 */
typedef struct my_snapshot {
    seen first, second;
    char isolation[32];
    long server;
} my_snapshot;

static my_snapshot my_read_only_across_a_change(sr_session *s, int64_t key, const char *to)
{
    my_snapshot snap;
    memset(&snap, 0, sizeof snap);
    ck_assert_msg(sr_begin_read_only(s, sr_key_int(key)) == SR_OK, "%s", sr_session_errmsg(s));
    ck_assert_int_eq(sr_in_transaction(s), 1);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s, sr_key_int(key), SR_READ,
                             "SELECT @@server_id, @@tx_isolation", 0, NULL, &res),
                     SR_OK);
    snap.server = atol(sr_result_value(res, 0, 0));
    snprintf(snap.isolation, sizeof snap.isolation, "%s", sr_result_value(res, 0, 1));
    sr_result_free(res);
    snap.first = my_read_row(s, "sr_snap", key, NULL);

    /* Another client changes the row; the replica applies it (checked directly). */
    MYSQL *p = my_direct(my_admin_primary, "shard0");
    char *upd = xfmt("UPDATE sr_snap SET v = '%s' WHERE k = %lld", to, (long long)key);
    my_exec(p, upd);
    free(upd);
    mysql_close(p);
    my_sync();
    MYSQL *q = my_direct(my_admin_replica, "shard0");
    char *probe = xfmt("SELECT v FROM sr_snap WHERE k = %lld", (long long)key);
    char *direct_v = my_value(q, probe);
    ck_assert_msg(direct_v && strcmp(direct_v, to) == 0, "the replica holds '%s'", direct_v);
    free(direct_v);
    free(probe);
    mysql_close(q);

    snap.second = my_read_row(s, "sr_snap", key, NULL);
    return snap;
}

START_TEST(my_a_read_only_transaction_runs_on_the_replica_with_one_snapshot)
{
    my_create_table("sr_snap", "k BIGINT PRIMARY KEY, v VARCHAR(16) NOT NULL");
    sr_router *r = my_open_router(NSHARDS, NULL);
    int64_t key = key_on(r, 0, 0), other = key_on(r, 1, 0);
    MYSQL *p = my_direct(my_admin_primary, "shard0");
    char *ins = xfmt("INSERT INTO sr_snap VALUES (%lld, 'old')", (long long)key);
    my_exec(p, ins);
    free(ins);
    mysql_close(p);
    my_sync();

    sr_session *s = session_in(r, NULL);
    my_snapshot snap = my_read_only_across_a_change(s, key, "new");
    fprintf(stderr, "mariadb read-only transaction: server %ld (replica %ld), session default %s; "
                    "read '%s', then '%s' after the replica applied 'new'\n",
            snap.server, my_id_replica, snap.isolation, snap.first.value,
            snap.second.value);
    ck_assert_int_eq(snap.server, my_id_replica);
    ck_assert_str_eq(snap.first.value, "old");
    ck_assert_int_eq(snap.first.server, my_id_replica);
    /* Same snapshot, same server. */
    ck_assert_str_eq(snap.second.value, "old");
    ck_assert_int_eq(snap.second.server, my_id_replica);

    /* Another shard's key is refused and the transaction stays open. */
    char ks[24];
    snprintf(ks, sizeof ks, "%lld", (long long)other);
    const char *op[] = {ks};
    ck_assert_int_eq(sr_exec(s, sr_key_int(other), SR_READ, "SELECT ?", 1, op, NULL), SR_ETXN);
    ck_assert_int_eq(sr_in_transaction(s), 1);
    ck_assert_int_eq(sr_commit(s), SR_OK);
    ck_assert_int_eq(sr_in_transaction(s), 0);

    /* After the commit the change is seen. */
    seen after = my_read_row(s, "sr_snap", key, NULL);
    ck_assert_str_eq(after.value, "new");

    /* Writes inside one fail on the server, and the transaction can be rolled back. */
    ck_assert_int_eq(sr_begin_read_only(s, sr_key_int(key)), SR_OK);
    int rc = sr_exec(s, sr_key_int(key), SR_WRITE, "UPDATE sr_snap SET v = 'x'", 0, NULL, NULL);
    ck_assert_msg(rc == SR_EQUERY, "got %s", sr_strerror(rc));
    fprintf(stderr, "mariadb write in a read-only transaction: SQLSTATE %s: %s\n",
            sr_session_sqlstate(s), sr_session_errmsg(s));
    ck_assert_str_eq(sr_session_sqlstate(s), "25006");
    ck_assert_int_eq(sr_rollback(s), SR_OK);

    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(my_a_read_only_transaction_is_repeatable_read_whatever_the_server_default)
{
    my_create_table("sr_snap", "k BIGINT PRIMARY KEY, v VARCHAR(16) NOT NULL");
    MYSQL *p = my_direct(my_admin_primary, "shard0");
    my_exec(p, "INSERT INTO sr_snap VALUES (1, 'old')");
    mysql_close(p);
    my_sync();
    /* A common production setting; new connections take it (the fixtures put it back). */
    MYSQL *q = my_direct(my_admin_replica, NULL);
    my_exec(q, "SET GLOBAL tx_isolation = 'READ-COMMITTED'");
    mysql_close(q);

    sr_router *r = my_open_router(1, NULL);
    sr_session *s = session_in(r, NULL);
    my_snapshot snap = my_read_only_across_a_change(s, 1, "new");
    ck_assert_int_eq(sr_commit(s), SR_OK);
    fprintf(stderr, "mariadb read-only transaction, replica default READ-COMMITTED: server %ld, "
                    "session default %s; read '%s', then '%s'\n",
            snap.server, snap.isolation, snap.first.value, snap.second.value);
    ck_assert_int_eq(snap.server, my_id_replica);
    ck_assert_str_eq(snap.first.value, "old");
    /*
     * Regression check: the MariaDB driver's read-only begin once ran under
     * the server's default isolation, so on a server configured READ-COMMITTED
     * the transaction saw other commits; shardroute.h promises REPEATABLE READ.
     */
    ck_assert_msg(strcmp(snap.second.value, "old") == 0,
                  "the read-only transaction (connection default %s) saw another transaction's "
                  "commit: its second read returned '%s'", snap.isolation, snap.second.value);

    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- suite ----------------------------------------------------------------- */

static Suite *consistency_mysql_suite(void)
{
    Suite *s = suite_create("consistency_mysql");
    TCase *t = tcase_create("mariadb");
    tcase_add_checked_fixture(t, my_replication_running, my_restore_quietly);
    tcase_add_unchecked_fixture(t, NULL, my_restore_quietly);
    tcase_add_test(t, my_read_your_writes_reads_back_every_write_while_the_replica_is_stopped);
    tcase_add_test(t, my_a_token_carries_a_write_to_another_process);
    tcase_add_test(t, my_a_token_with_a_malformed_position_is_refused);
    tcase_add_test(t, my_a_monotonic_session_never_reads_older_than_it_has_read);
    tcase_add_test(t, my_a_replica_with_broken_or_delayed_replication_leaves_the_rotation);
    tcase_add_test(t, my_a_read_only_transaction_runs_on_the_replica_with_one_snapshot);
    tcase_add_test(t, my_a_read_only_transaction_is_repeatable_read_whatever_the_server_default);
    tcase_set_timeout(t, 60); /* per test; the bounded waits inside are shorter */
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    my_primary = getenv("SR_MY_PRIMARY");
    my_replica = getenv("SR_MY_REPLICA");
    my_admin_primary = getenv("SR_MY_ADMIN_PRIMARY");
    my_admin_replica = getenv("SR_MY_ADMIN_REPLICA");
    if (!(my_primary && my_replica && my_admin_primary && my_admin_replica)) {
        fprintf(stderr, "test_consistency_mysql: no MariaDB pair in the environment; run it "
                        "through tests/env/mariadb_cluster.sh run (or tests/env/with_servers.sh)\n");
        return getenv("CI") ? 1 : 77;
    }
    int failed = run_suite(consistency_mysql_suite());
    mysql_library_end();
    return failed ? 1 : 0;
}
