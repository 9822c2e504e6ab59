/*
 * Integration tests on real SQLite files: placement checked by opening the
 * shard files directly with sqlite3 (not through the library), replicas that
 * refuse writes, transactions, scatter, errors, bounded waits and threads.
 */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <shardroute.h>

#define NSHARDS 3

static char dir[256];
static const char *const shard_names[NSHARDS] = {"-55", "55-aa", "aa-"};

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/sr-test-sqlite-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A config of NSHARDS shards, each a primary and `nreplicas` read-only replicas of its file. */
static sr_config *make_config(int nreplicas, const char *extra_option, const char *extra_value)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sr_config_set(c, "balance.policy", "round_robin"), SR_OK);
    if (extra_option)
        ck_assert_msg(sr_config_set(c, extra_option, extra_value) == SR_OK, "%s",
                      sr_config_errmsg(c));
    for (int i = 0; i < NSHARDS; i++) {
        char uri[512];
        snprintf(uri, sizeof uri, "sqlite:%s/s%d.db", dir, i);
        ck_assert_int_eq(sr_config_add_shard(c, shard_names[i]), SR_OK);
        ck_assert_msg(sr_config_add_node(c, shard_names[i], SR_PRIMARY, uri, 1) == SR_OK, "%s",
                      sr_config_errmsg(c));
        for (int r = 0; r < nreplicas; r++)
            ck_assert_int_eq(sr_config_add_node(c, shard_names[i], SR_REPLICA, uri, 1), SR_OK);
    }
    return c;
}

static sr_router *open_router(int nreplicas, const char *opt, const char *val)
{
    sr_config *c = make_config(nreplicas, opt, val);
    sr_router *r = NULL;
    int rc = sr_router_open(c, &r);
    ck_assert_msg(rc == SR_OK, "open: %s", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

static void create_tables(sr_session *s)
{
    for (int i = 0; i < NSHARDS; i++) {
        int rc = sr_exec_shard(s, i, SR_WRITE,
                               "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT, note TEXT)", 0, NULL,
                               NULL);
        ck_assert_msg(rc == SR_OK, "create: %s", sr_session_errmsg(s));
    }
}

static int insert(sr_session *s, int64_t k, const char *v)
{
    char ks[24];
    snprintf(ks, sizeof ks, "%lld", (long long)k);
    const char *p[] = {ks, v};
    return sr_exec(s, sr_key_int(k), SR_WRITE, "INSERT INTO kv (k, v) VALUES (?, ?)", 2, p, NULL);
}

/* Rows in shard file i counted with sqlite3 directly, bypassing the library. */
static int count_direct(int shard, int64_t only_key)
{
    char path[512];
    snprintf(path, sizeof path, "%s/s%d.db", dir, shard);
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    const char *sql = only_key >= 0 ? "SELECT COUNT(*) FROM kv WHERE k = ?" : "SELECT COUNT(*) FROM kv";
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (only_key >= 0)
        sqlite3_bind_int64(st, 1, only_key);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static uint64_t node_statements(sr_router *r, int shard, int node)
{
    sr_node_info info = SR_NODE_INFO_INIT;
    ck_assert_int_eq(sr_router_node_info(r, shard, node, &info), SR_OK);
    return info.statements;
}

static void setup(void) { make_dir(); }
static void teardown(void) { remove_dir(); }

/* ---- placement ---- */

START_TEST(rows_land_on_the_shard_the_router_names)
{
    sr_router *r = open_router(1, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    int expected[NSHARDS] = {0};
    for (int64_t k = 1; k <= 600; k++) {
        ck_assert_msg(insert(s, k, "x") == SR_OK, "%s", sr_session_errmsg(s));
        int shard = sr_router_shard_for(r, sr_key_int(k));
        ck_assert_int_ge(shard, 0);
        expected[shard]++;
        if (k % 50 == 0) {
            /* The very key is in that file and in no other. */
            for (int i = 0; i < NSHARDS; i++)
                ck_assert_int_eq(count_direct(i, k), i == shard ? 1 : 0);
        }
    }
    for (int i = 0; i < NSHARDS; i++) {
        ck_assert_int_eq(count_direct(i, -1), expected[i]);
        ck_assert_int_gt(expected[i], 100); /* the keyspace split actually spreads keys */
    }
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(text_keys_route_consistently)
{
    sr_router *r = open_router(0, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    for (int i = 0; i < NSHARDS; i++)
        ck_assert_int_eq(sr_exec_shard(s, i, SR_WRITE, "CREATE TABLE t (name TEXT)", 0, NULL, NULL),
                         SR_OK);
    const char *names[] = {"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"};
    for (size_t i = 0; i < 8; i++) {
        const char *p[] = {names[i]};
        ck_assert_int_eq(sr_exec(s, sr_key_text(names[i]), SR_WRITE, "INSERT INTO t VALUES (?)", 1,
                                 p, NULL),
                         SR_OK);
        sr_result *res = NULL;
        ck_assert_int_eq(sr_exec(s, sr_key_text(names[i]), SR_READ,
                                 "SELECT COUNT(*) FROM t WHERE name = ?", 1, p, &res),
                         SR_OK);
        ck_assert_str_eq(sr_result_value(res, 0, 0), "1");
        ck_assert_int_eq(sr_result_shard(res, 0), sr_router_shard_for(r, sr_key_text(names[i])));
        sr_result_free(res);
    }
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- read/write split ---- */

START_TEST(reads_go_to_replicas_which_refuse_writes)
{
    sr_router *r = open_router(2, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    ck_assert_int_eq(insert(s, 7, "seven"), SR_OK);
    int shard = sr_router_shard_for(r, sr_key_int(7));
    uint64_t primary_before = node_statements(r, shard, 0);

    const char *p[] = {"7"};
    for (int i = 0; i < 10; i++) {
        sr_result *res = NULL;
        ck_assert_int_eq(
            sr_exec(s, sr_key_int(7), SR_READ, "SELECT v FROM kv WHERE k = ?", 1, p, &res), SR_OK);
        ck_assert_int_eq(sr_result_nrows(res), 1);
        ck_assert_str_eq(sr_result_value(res, 0, 0), "seven");
        sr_result_free(res);
    }
    /* round_robin over two replicas: 5 reads each, none on the primary. */
    ck_assert_uint_eq(node_statements(r, shard, 0), primary_before);
    ck_assert_uint_eq(node_statements(r, shard, 1), 5);
    ck_assert_uint_eq(node_statements(r, shard, 2), 5);

    /* A write forced onto a replica is refused by SQLite itself. */
    int rc = sr_exec(s, sr_key_int(7), SR_READ, "UPDATE kv SET v = 'x' WHERE k = 7", 0, NULL, NULL);
    ck_assert_int_eq(rc, SR_EQUERY);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "readonly"));
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "replica"));
    ck_assert_int_eq(count_direct(shard, 7), 1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(auto_intent_classifies_statements)
{
    sr_router *r = open_router(1, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    int shard = sr_router_shard_for(r, sr_key_int(11));
    uint64_t p0 = node_statements(r, shard, 0), r0 = node_statements(r, shard, 1);
    const char *p[] = {"11", "eleven"};
    ck_assert_int_eq(sr_exec(s, sr_key_int(11), SR_AUTO, "INSERT INTO kv (k, v) VALUES (?, ?)", 2, p,
                             NULL),
                     SR_OK);
    ck_assert_uint_eq(node_statements(r, shard, 0), p0 + 1);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s, sr_key_int(11), SR_AUTO,
                             "/* read */ SELECT v FROM kv WHERE k = ?", 1, p, &res),
                     SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "eleven");
    sr_result_free(res);
    ck_assert_uint_eq(node_statements(r, shard, 1), r0 + 1);
    /* A read-looking statement that writes goes to the primary. */
    ck_assert_int_eq(sr_exec(s, sr_key_int(11), SR_AUTO,
                             "WITH x AS (SELECT 1) UPDATE kv SET v = 'ELEVEN' WHERE k = 11", 0, NULL,
                             NULL),
                     SR_OK);
    ck_assert_uint_eq(node_statements(r, shard, 0), p0 + 2);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(primary_reads_fallback_and_never)
{
    /* No replicas at all: reads fall back to the primary by default ... */
    sr_router *r = open_router(0, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_READ, "SELECT COUNT(*) FROM kv", 0, NULL, NULL),
                     SR_OK);
    sr_session_free(s);
    sr_router_close(r);
    /* ... and are refused when primary reads are forbidden. */
    r = open_router(0, "balance.primary_reads", "never");
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    int rc = sr_exec(s, sr_key_int(1), SR_READ, "SELECT COUNT(*) FROM kv", 0, NULL, NULL);
    ck_assert_int_eq(rc, SR_EUNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "no eligible node"));
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- transactions ---- */

START_TEST(transactions_commit_and_roll_back)
{
    sr_router *r = open_router(1, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    int shard = sr_router_shard_for(r, sr_key_int(100));

    ck_assert_int_eq(sr_begin(s, sr_key_int(100)), SR_OK);
    ck_assert_int_eq(sr_in_transaction(s), 1);
    ck_assert_int_eq(insert(s, 100, "a"), SR_OK);
    /* Inside the transaction even a read goes to the primary connection and sees the row. */
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s, sr_key_int(100), SR_READ, "SELECT COUNT(*) FROM kv WHERE k = 100",
                             0, NULL, &res),
                     SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "1");
    sr_result_free(res);
    ck_assert_int_eq(sr_rollback(s), SR_OK);
    ck_assert_int_eq(sr_in_transaction(s), 0);
    ck_assert_int_eq(count_direct(shard, 100), 0);

    ck_assert_int_eq(sr_begin(s, sr_key_int(100)), SR_OK);
    ck_assert_int_eq(insert(s, 100, "b"), SR_OK);
    ck_assert_int_eq(sr_commit(s), SR_OK);
    ck_assert_int_eq(count_direct(shard, 100), 1);

    /* Misuse is SR_ETXN and harmless. */
    ck_assert_int_eq(sr_commit(s), SR_ETXN);
    ck_assert_int_eq(sr_rollback(s), SR_ETXN);
    ck_assert_int_eq(sr_begin(s, sr_key_int(100)), SR_OK);
    ck_assert_int_eq(sr_begin(s, sr_key_int(100)), SR_ETXN);
    ck_assert_int_eq(sr_rollback(s), SR_OK);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(cross_shard_statement_in_transaction_is_refused)
{
    sr_router *r = open_router(0, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    int64_t a = 1, b = 2;
    while (sr_router_shard_for(r, sr_key_int(b)) == sr_router_shard_for(r, sr_key_int(a)))
        b++;
    ck_assert_int_eq(sr_begin(s, sr_key_int(a)), SR_OK);
    ck_assert_int_eq(insert(s, a, "a"), SR_OK);
    ck_assert_int_eq(insert(s, b, "b"), SR_ETXN);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "transaction"));
    ck_assert_int_eq(sr_exec_all(s, SR_READ, "SELECT 1", 0, NULL, NULL), SR_ETXN);
    /* The transaction is still open and commits what it did. */
    ck_assert_int_eq(sr_in_transaction(s), 1);
    ck_assert_int_eq(sr_commit(s), SR_OK);
    ck_assert_int_eq(count_direct(sr_router_shard_for(r, sr_key_int(a)), a), 1);
    ck_assert_int_eq(count_direct(sr_router_shard_for(r, sr_key_int(b)), b), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(freeing_a_session_rolls_back)
{
    sr_router *r = open_router(0, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    ck_assert_int_eq(sr_begin(s, sr_key_int(5)), SR_OK);
    ck_assert_int_eq(insert(s, 5, "x"), SR_OK);
    sr_session_free(s);
    ck_assert_int_eq(count_direct(sr_router_shard_for(r, sr_key_int(5)), 5), 0);
    sr_router_close(r);
}
END_TEST

/* ---- scatter ---- */

START_TEST(scatter_counts_and_rows_match)
{
    sr_router *r = open_router(1, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    for (int64_t k = 1; k <= 300; k++)
        ck_assert_int_eq(insert(s, k, "v"), SR_OK);
    sr_result *res = NULL;
    sr_scatter_opts concat = SR_SCATTER_OPTS_INIT;
    concat.merge = SR_MERGE_CONCAT;
    ck_assert_int_eq(sr_exec_all_values(s, SR_READ, &concat, "SELECT COUNT(*) AS n FROM kv", 0,
                                        NULL, &res),
                     SR_OK);
    ck_assert_int_eq(sr_result_nrows(res), NSHARDS);
    ck_assert_str_eq(sr_result_colname(res, 0), "n");
    long total = 0;
    for (int i = 0; i < NSHARDS; i++) {
        ck_assert_int_eq(sr_result_shard(res, i), i);
        ck_assert_int_eq(atoi(sr_result_value(res, i, 0)), count_direct(i, -1));
        total += atol(sr_result_value(res, i, 0));
    }
    ck_assert_int_eq(total, 300);
    sr_result_free(res);
    /* Merged (the default): the count over every shard, named as the statement names it. */
    ck_assert_msg(sr_exec_all(s, SR_READ, "SELECT COUNT(*) AS n FROM kv", 0, NULL, &res) == SR_OK,
                  "%s", sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_nrows(res), 1);
    ck_assert_str_eq(sr_result_colname(res, 0), "n");
    ck_assert_str_eq(sr_result_value(res, 0, 0), "300");
    sr_result_free(res);

    /* Every row comes back with the shard it lives on. */
    ck_assert_int_eq(sr_exec_all(s, SR_AUTO, "SELECT k FROM kv", 0, NULL, &res), SR_OK);
    ck_assert_int_eq(sr_result_nrows(res), 300);
    for (int i = 0; i < 300; i++) {
        int64_t k = atoll(sr_result_value(res, i, 0));
        ck_assert_int_eq(sr_result_shard(res, i), sr_router_shard_for(r, sr_key_int(k)));
    }
    sr_result_free(res);

    /* Scatter writes sum the affected rows. */
    ck_assert_int_eq(sr_exec_all(s, SR_WRITE, "UPDATE kv SET note = 'n'", 0, NULL, &res), SR_OK);
    ck_assert_int_eq(sr_result_affected(res), 300);
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(scatter_merges_order_limit_groups_and_explains)
{
    sr_router *r = open_router(0, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    for (int64_t k = 1; k <= 60; k++) {
        char v[16];
        snprintf(v, sizeof v, "t%d", (int)(k % 4));
        ck_assert_int_eq(insert(s, k, v), SR_OK);
    }
    /* ORDER BY ... LIMIT ... OFFSET over the shards: the unsharded answer. */
    sr_result *res = NULL;
    ck_assert_msg(sr_exec_all(s, SR_READ, "SELECT k, v FROM kv ORDER BY k DESC LIMIT 5 OFFSET 3",
                              0, NULL, &res) == SR_OK,
                  "%s", sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_nrows(res), 5);
    for (int i = 0; i < 5; i++) {
        int64_t k = 0;
        ck_assert_int_eq(sr_result_int64(res, i, 0, &k), SR_OK);
        ck_assert_int_eq(k, 57 - i);
        ck_assert_int_eq(sr_result_shard(res, i), sr_router_shard_for(r, sr_key_int(k)));
    }
    ck_assert_int_eq(sr_result_coltype(res, 0), SR_TYPE_INT);
    ck_assert_int_eq(sr_result_coltype(res, 1), SR_TYPE_TEXT);
    sr_result_free(res);
    /* Groups with COUNT, SUM, MIN, MAX and AVG combined across shards. */
    ck_assert_msg(sr_exec_all(s, SR_READ,
                              "SELECT v, count(*) AS n, sum(k), min(k), max(k), avg(k) FROM kv "
                              "GROUP BY v ORDER BY v",
                              0, NULL, &res) == SR_OK,
                  "%s", sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_nrows(res), 4);
    ck_assert_int_eq(sr_result_ncols(res), 6); /* the hidden count is dropped */
    ck_assert_str_eq(sr_result_colname(res, 1), "n");
    for (int g = 0; g < 4; g++) {
        /* keys k = g (mod 4) in 1..60: 15 of them */
        char want[8];
        snprintf(want, sizeof want, "t%d", g);
        ck_assert_str_eq(sr_result_value(res, g, 0), want);
        int64_t n, sum, lo, hi;
        double avg;
        ck_assert_int_eq(sr_result_int64(res, g, 1, &n), SR_OK);
        ck_assert_int_eq(sr_result_int64(res, g, 2, &sum), SR_OK);
        ck_assert_int_eq(sr_result_int64(res, g, 3, &lo), SR_OK);
        ck_assert_int_eq(sr_result_int64(res, g, 4, &hi), SR_OK);
        ck_assert_int_eq(sr_result_double(res, g, 5, &avg), SR_OK);
        int first = g == 0 ? 4 : g, last = g == 0 ? 60 : 56 + g;
        ck_assert_int_eq(n, 15);
        ck_assert_int_eq(sum, (int64_t)(first + last) * 15 / 2);
        ck_assert_int_eq(lo, first);
        ck_assert_int_eq(hi, last);
        ck_assert_double_eq_tol(avg, (first + last) / 2.0, 1e-9);
        ck_assert_int_eq(sr_result_shard(res, g), -1);
    }
    sr_result_free(res);
    /* Explain: the SQL each shard gets and the plan, nothing run. */
    char buf[1024];
    int len = sr_explain_all(s, SR_READ, NULL, "SELECT v, avg(k) FROM kv GROUP BY v LIMIT 2", buf,
                             sizeof buf);
    ck_assert_msg(len > 0 && (size_t)len < sizeof buf, "%d: %s", len, sr_session_errmsg(s));
    ck_assert_ptr_nonnull(strstr(buf, "SUM(k) AS \"avg(k)\", COUNT(k) AS sr__count_1"));
    ck_assert_ptr_nonnull(strstr(buf, "limit 2"));
    ck_assert_ptr_nonnull(strstr(buf, shard_names[2]));
    char tiny[8];
    ck_assert_int_eq(sr_explain_all(s, SR_READ, NULL, "SELECT v, avg(k) FROM kv GROUP BY v LIMIT 2",
                                    tiny, sizeof tiny),
                     len);
    ck_assert_int_eq((int)strlen(tiny), 7);
    /* Refused before anything runs, with the reason; the session goes on. */
    ck_assert_int_eq(sr_exec_all(s, SR_READ, "SELECT count(DISTINCT v) FROM kv", 0, NULL, &res),
                     SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "DISTINCT"));
    ck_assert_int_eq(sr_explain_all(s, SR_READ, NULL, "SELECT k FROM kv ORDER BY lower(v)", buf,
                                    sizeof buf),
                     SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "select-list"));
    /* An explicit spec: per-shard counts by v, combined. */
    sr_merge_spec spec = SR_MERGE_SPEC_INIT;
    const sr_agg aggs[] = {SR_AGG_NONE, SR_AGG_COUNT};
    const int group[] = {0};
    const sr_order_key order[] = {{0, 1, SR_NULLS_DEFAULT}};
    spec.naggs = 2;
    spec.aggs = aggs;
    spec.ngroup = 1;
    spec.group = group;
    spec.norder = 1;
    spec.order = order;
    sr_scatter_opts o = SR_SCATTER_OPTS_INIT;
    o.merge = SR_MERGE_SPEC;
    o.spec = &spec;
    ck_assert_msg(sr_exec_all_values(s, SR_READ, &o,
                                     "SELECT v, count(*) FROM kv GROUP BY v HAVING count(*) > 0",
                                     0, NULL, &res) == SR_OK,
                  "%s", sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_nrows(res), 4);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "t3");
    ck_assert_str_eq(sr_result_value(res, 0, 1), "15");
    sr_result_free(res);
    /* A cursor over the same ORDER BY: the same rows. */
    sr_cursor *c = NULL;
    ck_assert_int_eq(sr_cursor_open_all(s, SR_READ, NULL, "SELECT k FROM kv ORDER BY k", 0, NULL,
                                        &c),
                     SR_OK);
    int64_t want = 1;
    int row;
    while (sr_cursor_next(c) == 1) {
        const sr_result *cr = sr_cursor_row(c, &row);
        int64_t k;
        ck_assert_int_eq(sr_result_int64(cr, row, 0, &k), SR_OK);
        ck_assert_int_eq(k, want++);
    }
    ck_assert_int_eq(want, 61);
    sr_cursor_close(c);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* Typed values round-trip on every backend in test_conformance.c; here what is SQLite's own: a
 * column without a declared type (an expression) takes the storage class of its value. */
START_TEST(expression_columns_are_typed_by_their_values)
{
    sr_router *r = open_router(0, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_exec_all(s, SR_WRITE,
                                 "CREATE TABLE ty (k INTEGER PRIMARY KEY, i BIGINT, f DOUBLE, "
                                 "b BLOB)",
                                 0, NULL, NULL),
                     SR_OK);
    const char blob[] = {'a', '\0', 'b', '\0'};
    sr_value row[4] = {sr_value_int(1), sr_value_int(INT64_MAX), sr_value_float(1.5),
                       sr_value_bytes(blob, 4)};
    ck_assert_msg(sr_exec_values(s, sr_key_int(1), SR_WRITE, NULL,
                                 "INSERT INTO ty VALUES (?, ?, ?, ?)", 4, row, NULL) == SR_OK,
                  "%s", sr_session_errmsg(s));
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_READ,
                             "SELECT i + 0, f * 2, length(b), substr(b, 2, 3), NULL FROM ty "
                             "WHERE k = 1",
                             0, NULL, &res),
                     SR_OK);
    ck_assert_int_eq(sr_result_coltype(res, 0), SR_TYPE_INT);
    ck_assert_int_eq(sr_result_coltype(res, 1), SR_TYPE_FLOAT);
    ck_assert_int_eq(sr_result_coltype(res, 2), SR_TYPE_INT);
    ck_assert_str_eq(sr_result_value(res, 0, 2), "4");
    ck_assert_int_eq(sr_result_coltype(res, 3), SR_TYPE_BYTES);
    size_t len = 0;
    const void *b = sr_result_bytes(res, 0, 3, &len);
    ck_assert_uint_eq(len, 3);
    ck_assert(memcmp(b, "\0b\0", 3) == 0); /* substr of a blob is a blob, NULs kept */
    ck_assert_int_eq(sr_result_coltype(res, 4), SR_TYPE_UNKNOWN); /* NULLs only */
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(scatter_partial_failure_names_the_shards)
{
    sr_router *r = open_router(0, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_exec_shard(s, 1, SR_WRITE, "CREATE TABLE only_here (x)", 0, NULL, NULL),
                     SR_OK);
    sr_result *res = NULL;
    int rc = sr_exec_all(s, SR_READ, "SELECT COUNT(*) FROM only_here", 0, NULL, &res);
    ck_assert_int_eq(rc, SR_EPARTIAL);
    ck_assert_ptr_null(res);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "2 of 3 shards failed"));
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), shard_names[0]));
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), shard_names[2]));
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "no such table"));
    /* Failing everywhere is the error itself, not a partial one. */
    rc = sr_exec_all(s, SR_READ, "SELECT * FROM nowhere", 0, NULL, &res);
    ck_assert_int_eq(rc, SR_EQUERY);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- values and errors ---- */

START_TEST(parameters_round_trip)
{
    sr_router *r = open_router(1, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    const char *tricky = "it's a \"quote\", a \\backslash\\, a ? and 'two'';\n-- not a comment";
    const char *p[] = {"42", tricky, NULL};
    ck_assert_int_eq(sr_exec(s, sr_key_int(42), SR_WRITE,
                             "INSERT INTO kv (k, v, note) VALUES (?, ?, ?)", 3, p, NULL),
                     SR_OK);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s, sr_key_int(42), SR_READ,
                             "SELECT v, note, '?' AS q, length(v) FROM kv WHERE k = ?", 1, p, &res),
                     SR_OK);
    ck_assert_int_eq(sr_result_ncols(res), 4);
    ck_assert_str_eq(sr_result_value(res, 0, 0), tricky);
    ck_assert_uint_eq(sr_result_length(res, 0, 0), strlen(tricky));
    ck_assert_ptr_null(sr_result_value(res, 0, 1));
    ck_assert_int_eq(sr_result_is_null(res, 0, 1), 1);
    ck_assert_str_eq(sr_result_value(res, 0, 2), "?");
    ck_assert_str_eq(sr_result_colname(res, 2), "q");
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(sql_errors_keep_the_session_usable)
{
    sr_router *r = open_router(1, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    ck_assert_int_eq(insert(s, 1, "a"), SR_OK);
    ck_assert_int_eq(insert(s, 1, "again"), SR_EQUERY);
    ck_assert_str_eq(sr_session_sqlstate(s), "23505");
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "UNIQUE"));
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "shard"));

    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_READ, "SELECT * FROM missing", 0, NULL, NULL),
                     SR_EQUERY);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "no such table"));
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE, "SELEC oops", 0, NULL, NULL), SR_EQUERY);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "syntax error"));
    /* Wrong parameter count is an error, not a crash. */
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_READ, "SELECT ? + ?", 0, NULL, NULL), SR_EINVAL);

    /* The next statement works and the error is cleared. */
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_READ, "SELECT v FROM kv WHERE k = 1", 0, NULL,
                             &res),
                     SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "a");
    ck_assert_str_eq(sr_session_errmsg(s), "");
    ck_assert_str_eq(sr_session_sqlstate(s), "");
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(several_statements_in_one_string)
{
    sr_router *r = open_router(0, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE,
                                   "CREATE TABLE m (x); INSERT INTO m VALUES (1); INSERT INTO m "
                                   "VALUES (2); SELECT SUM(x) FROM m; -- done",
                                   0, NULL, &res),
                     SR_OK);
    ck_assert_int_eq(sr_result_nrows(res), 1);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "3");
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/*
 * A statement that ran is never reported as failed: SQLite's tokenizer takes
 * space, \t, \n, \f and \r as white space, so a trailing ";\f" is no second
 * statement. Each write must be reported SR_OK and land exactly once (a caller
 * that retried a "failed" insert would have written it twice).
 */
START_TEST(trailing_white_space_of_every_class_is_no_statement)
{
    sr_router *r = open_router(0, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    static const char *const tails[] = {";\f", ";\f\f", "\f;\f", ";\t\n\r\f ", "; \f-- done\f",
                                        ";\f/* done */\f;", "\f"};
    for (int i = 0; i < (int)(sizeof tails / sizeof tails[0]); i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO kv (k, v) VALUES (%d, 'ws')%s", 700 + i, tails[i]);
        sr_result *res = NULL;
        int rc = sr_exec(s, sr_key_int(700 + i), SR_WRITE, sql, 0, NULL, &res);
        ck_assert_msg(rc == SR_OK, "tail %d: %s: %s", i, sr_strerror(rc), sr_session_errmsg(s));
        ck_assert_int_eq(sr_result_affected(res), 1);
        sr_result_free(res);
        int shard = sr_router_shard_for(r, sr_key_int(700 + i));
        ck_assert_int_eq(count_direct(shard, 700 + i), 1);
        /* Twice: the second run may come from the statement cache. */
        char sel[128];
        snprintf(sel, sizeof sel, "SELECT v FROM kv WHERE k = %d%s", 700 + i, tails[i]);
        for (int j = 0; j < 2; j++) {
            ck_assert_int_eq(sr_exec(s, sr_key_int(700 + i), SR_READ, sel, 0, NULL, &res), SR_OK);
            ck_assert_int_eq(sr_result_nrows(res), 1);
            ck_assert_str_eq(sr_result_value(res, 0, 0), "ws");
            sr_result_free(res);
        }
    }
    /* White space of every backend's class alone is empty SQL, refused before it is sent. */
    static const char *const blank[] = {"\f", " \t\n\v\f\r", "\v"};
    for (int i = 0; i < (int)(sizeof blank / sizeof blank[0]); i++) {
        int rc = sr_exec(s, sr_key_int(1), SR_WRITE, blank[i], 0, NULL, NULL);
        ck_assert_int_eq(rc, SR_EINVAL);
        ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "empty"));
    }
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(cached_statement_follows_a_schema_change)
{
    sr_router *r = open_router(0, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "CREATE TABLE sc (a)", 0, NULL, NULL), SR_OK);
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "INSERT INTO sc VALUES (1)", 0, NULL, NULL), SR_OK);
    /* The same text twice: the second run comes from the statement cache and
     * shares its column names with the first result, which stays valid. */
    sr_result *before = NULL, *again = NULL, *after = NULL;
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "SELECT * FROM sc", 0, NULL, &before), SR_OK);
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "SELECT * FROM sc", 0, NULL, &again), SR_OK);
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "ALTER TABLE sc ADD COLUMN b DEFAULT 'bee'", 0,
                                   NULL, NULL),
                     SR_OK);
    /* SQLite re-prepares the cached statement: the new column shows, with its name. */
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "SELECT * FROM sc", 0, NULL, &after), SR_OK);
    ck_assert_int_eq(sr_result_ncols(before), 1);
    ck_assert_str_eq(sr_result_colname(before, 0), "a");
    ck_assert_int_eq(sr_result_ncols(again), 1);
    ck_assert_int_eq(sr_result_ncols(after), 2);
    ck_assert_str_eq(sr_result_colname(after, 1), "b");
    ck_assert_str_eq(sr_result_value(after, 0, 1), "bee");
    sr_result_free(before);
    sr_result_free(after);
    /* A result outlives the router that produced it. */
    sr_session_free(s);
    sr_router_close(r);
    ck_assert_str_eq(sr_result_colname(again, 0), "a");
    ck_assert_str_eq(sr_result_value(again, 0, 0), "1");
    sr_result_free(again);
}
END_TEST

START_TEST(unreachable_file_is_a_connect_error)
{
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_add_shard(c, "only"), SR_OK);
    ck_assert_int_eq(
        sr_config_add_node(c, "only", SR_PRIMARY, "sqlite:/nonexistent-dir/sub/x.db", 1), SR_OK);
    sr_router *r = NULL;
    ck_assert_int_eq(sr_router_open(c, &r), SR_OK); /* pools connect lazily */
    sr_config_free(c);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE, "SELECT 1", 0, NULL, NULL), SR_ECONNECT);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "/nonexistent-dir/sub/x.db"));
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(unknown_scheme_is_a_driver_error)
{
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_add_shard(c, "only"), SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "only", SR_PRIMARY, "oracle://u:secret@127.0.0.1/db", 1),
                     SR_OK);
    sr_router *r = NULL;
    ck_assert_int_eq(sr_router_open(c, &r), SR_EDRIVER);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(sr_config_errmsg(c), "oracle"));
    ck_assert_ptr_null(strstr(sr_config_errmsg(c), "secret"));
    sr_config_free(c);
}
END_TEST

/* ---- bounded waits ---- */

START_TEST(long_statement_times_out)
{
    sr_router *r = open_router(0, "statement_timeout_ms", "200");
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    double t0 = now_ms();
    int rc = sr_exec(s, sr_key_int(1), SR_READ,
                     "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                     "SELECT COUNT(*) FROM c",
                     0, NULL, NULL);
    double took = now_ms() - t0;
    ck_assert_int_eq(rc, SR_ETIMEOUT);
    ck_assert_double_ge(took, 150.0); /* it did run until the deadline */
    printf("long statement: SR_ETIMEOUT after %.0f ms (timeout 200 ms)\n", took);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_READ, "SELECT 40 + 2", 0, NULL, &res), SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "42");
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(lock_wait_times_out)
{
    sr_router *r = open_router(0, "statement_timeout_ms", "200");
    sr_session *a, *b;
    ck_assert_int_eq(sr_session_new(r, &a), SR_OK);
    ck_assert_int_eq(sr_session_new(r, &b), SR_OK);
    create_tables(a);
    ck_assert_int_eq(sr_begin(a, sr_key_int(1)), SR_OK);
    ck_assert_int_eq(insert(a, 1, "held"), SR_OK);
    /* b needs the write lock a holds: it waits, but only until its deadline. */
    int rc = insert(b, 1, "blocked");
    ck_assert_int_eq(rc, SR_ETIMEOUT);
    ck_assert_int_eq(sr_commit(a), SR_OK);
    ck_assert_int_eq(insert(b, 2, "free"), SR_OK);
    sr_session_free(a);
    sr_session_free(b);
    sr_router_close(r);
}
END_TEST

START_TEST(pool_exhaustion_is_busy)
{
    sr_config *c = make_config(0, "pool.max_size", "1");
    ck_assert_int_eq(sr_config_set(c, "pool.checkout_timeout_ms", "100"), SR_OK);
    sr_router *r = NULL;
    ck_assert_int_eq(sr_router_open(c, &r), SR_OK);
    sr_config_free(c);
    sr_session *a, *b;
    ck_assert_int_eq(sr_session_new(r, &a), SR_OK);
    ck_assert_int_eq(sr_session_new(r, &b), SR_OK);
    ck_assert_int_eq(sr_begin_shard(a, 0), SR_OK);
    double t0 = now_ms();
    ck_assert_int_eq(sr_exec_shard(b, 0, SR_WRITE, "SELECT 1", 0, NULL, NULL), SR_EBUSY);
    ck_assert_double_ge(now_ms() - t0, 90.0);
    ck_assert_int_eq(sr_commit(a), SR_OK);
    ck_assert_int_eq(sr_exec_shard(b, 0, SR_WRITE, "SELECT 1", 0, NULL, NULL), SR_OK);
    sr_session_free(a);
    sr_session_free(b);
    sr_router_close(r);
}
END_TEST

/* ---- configuration file end to end ---- */

START_TEST(config_file_to_router)
{
    char text[2048];
    snprintf(text, sizeof text,
             "# two shards by integer range\n"
             "shard.distribution = range\n"
             "pool.max_size = 4\n"
             "[shard low]\n"
             "primary = sqlite:%s/low.db\n"
             "replica = sqlite:%s/low.db weight=2\n"
             "range = ..1000\n"
             "[shard high]\n"
             "primary = sqlite:%s/high.db\n"
             "range = 1000..\n"
             "pin_int = 5\n",
             dir, dir, dir);
    sr_config *c = sr_config_new();
    ck_assert_msg(sr_config_parse(c, text) == SR_OK, "%s", sr_config_errmsg(c));
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    ck_assert_int_eq(sr_router_nshards(r), 2);
    ck_assert_str_eq(sr_router_shard_name(r, 0), "low");
    ck_assert_int_eq(sr_router_shard_for(r, sr_key_int(999)), 0);
    ck_assert_int_eq(sr_router_shard_for(r, sr_key_int(1000)), 1);
    ck_assert_int_eq(sr_router_shard_for(r, sr_key_int(5)), 1); /* pinned */
    ck_assert_int_eq(sr_router_nnodes(r, 0), 2);
    sr_router_close(r);
}
END_TEST

/* ---- health: ejection, retries and re-admission on a real file ---- */

typedef struct log_capture {
    pthread_mutex_t lock;
    int ejected, readmitted;
} log_capture;

static void capture_log(void *ud, sr_log_level level, const char *msg)
{
    log_capture *lc = ud;
    (void)level;
    pthread_mutex_lock(&lc->lock);
    if (strstr(msg, "node ejected"))
        lc->ejected++;
    if (strstr(msg, "node re-admitted"))
        lc->readmitted++;
    pthread_mutex_unlock(&lc->lock);
}

START_TEST(unreachable_replica_is_ejected_and_readmitted)
{
    /* The replica's file lives in a directory that does not exist yet. */
    char primary[512], replica_dir[512], replica[600];
    snprintf(primary, sizeof primary, "sqlite:%s/p.db", dir);
    snprintf(replica_dir, sizeof replica_dir, "%s/later", dir);
    snprintf(replica, sizeof replica, "sqlite:%s/r.db", replica_dir);
    log_capture lc = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_set(c, "health.fail_threshold", "3"), SR_OK);
    ck_assert_int_eq(sr_config_set(c, "health.retry_ms", "50"), SR_OK);
    ck_assert_int_eq(sr_config_set_log_fn(c, capture_log, &lc), SR_OK);
    ck_assert_int_eq(sr_config_add_shard(c, "only"), SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "only", SR_PRIMARY, primary, 1), SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "only", SR_REPLICA, replica, 1), SR_OK);
    sr_router *r = NULL;
    ck_assert_int_eq(sr_router_open(c, &r), SR_OK);
    sr_config_free(c);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE, "CREATE TABLE t (x)", 0, NULL, NULL),
                     SR_OK);

    /* Every read succeeds: the failed replica read is retried on the primary. */
    for (int i = 0; i < 10; i++)
        ck_assert_msg(sr_exec(s, sr_key_int(1), SR_READ, "SELECT COUNT(*) FROM t", 0, NULL,
                              NULL) == SR_OK,
                      "read %d: %s", i, sr_session_errmsg(s));
    sr_node_info info = SR_NODE_INFO_INIT;
    ck_assert_int_eq(sr_router_node_info(r, 0, 1, &info), SR_OK);
    ck_assert_int_eq(info.healthy, 0);
    ck_assert_uint_eq(info.errors, 3); /* ejected after exactly fail_threshold failures */
    ck_assert_int_eq(lc.ejected, 1);

    /* The replica's file appears; after the back-off one read probes it and it is back. */
    ck_assert_int_eq(mkdir(replica_dir, 0700), 0);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "sqlite3 '%s/r.db' 'CREATE TABLE t (x); INSERT INTO t VALUES (1);'",
             replica_dir);
    ck_assert_int_eq(system(cmd), 0);
    usleep(60 * 1000);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_READ, "SELECT COUNT(*) FROM t", 0, NULL, &res),
                     SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "1"); /* the replica's own file answered */
    sr_result_free(res);
    ck_assert_int_eq(sr_router_node_info(r, 0, 1, &info), SR_OK);
    ck_assert_int_eq(info.healthy, 1);
    ck_assert_int_eq(lc.readmitted, 1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(ejected_primary_fails_writes_fast_with_the_reason)
{
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_set(c, "health.fail_threshold", "2"), SR_OK);
    ck_assert_int_eq(sr_config_set(c, "health.retry_ms", "60000"), SR_OK);
    ck_assert_int_eq(sr_config_set(c, "balance.primary_reads", "never"), SR_OK);
    ck_assert_int_eq(sr_config_add_shard(c, "only"), SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "only", SR_PRIMARY, "sqlite:/nonexistent/p.db", 1),
                     SR_OK);
    sr_router *r = NULL;
    ck_assert_int_eq(sr_router_open(c, &r), SR_OK);
    sr_config_free(c);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE, "SELECT 1", 0, NULL, NULL), SR_ECONNECT);
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE, "SELECT 1", 0, NULL, NULL), SR_ECONNECT);
    /* Ejected: the third write does not even try, and the message says why. */
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE, "SELECT 1", 0, NULL, NULL),
                     SR_EUNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "ejected"));
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "/nonexistent/p.db"));
    ck_assert_int_eq(sr_begin(s, sr_key_int(1)), SR_EUNAVAILABLE);
    /* A read with no replica and primary reads forbidden names the shard and the nodes. */
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_READ, "SELECT 1", 0, NULL, NULL),
                     SR_EUNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "shard 'only'"));
    sr_node_info info = SR_NODE_INFO_INIT;
    ck_assert_int_eq(sr_router_node_info(r, 0, 0, &info), SR_OK);
    ck_assert_uint_eq(info.errors, 2);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(active_prober_ejects_and_readmits_without_traffic)
{
    char primary[512], replica_dir[512], replica[600];
    snprintf(primary, sizeof primary, "sqlite:%s/p.db", dir);
    snprintf(replica_dir, sizeof replica_dir, "%s/later", dir);
    snprintf(replica, sizeof replica, "sqlite:%s/r.db", replica_dir);
    log_capture lc = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_set(c, "health.probe_interval_ms", "10"), SR_OK);
    ck_assert_int_eq(sr_config_set(c, "health.retry_ms", "20"), SR_OK);
    ck_assert_int_eq(sr_config_set_log_fn(c, capture_log, &lc), SR_OK);
    ck_assert_int_eq(sr_config_add_shard(c, "only"), SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "only", SR_PRIMARY, primary, 1), SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "only", SR_REPLICA, replica, 1), SR_OK);
    sr_router *r = NULL;
    ck_assert_int_eq(sr_router_open(c, &r), SR_OK);
    sr_config_free(c);

    /* No statement at all: the prober alone finds the replica down (bounded wait, 5 s). */
    sr_node_info info = SR_NODE_INFO_INIT;
    for (int i = 0; i < 500; i++) {
        ck_assert_int_eq(sr_router_node_info(r, 0, 1, &info), SR_OK);
        /* Both: the fields are read one atomic at a time, not as one snapshot. */
        if (!info.healthy && info.ejections >= 1)
            break;
        usleep(10 * 1000);
    }
    ck_assert_int_eq(info.healthy, 0);
    ck_assert_uint_ge(info.ejections, 1);
    ck_assert_int_eq(sr_router_node_info(r, 0, 0, &info), SR_OK);
    ck_assert_int_eq(info.healthy, 1); /* the primary answered its pings */
    ck_assert_int_eq(info.role_mismatch, 0);

    ck_assert_int_eq(mkdir(replica_dir, 0700), 0);
    char cmd[1200];
    /* The prober may be opening the new file at this moment: wait out its lock. */
    snprintf(cmd, sizeof cmd, "sqlite3 -cmd '.timeout 5000' '%s/r.db' 'CREATE TABLE t (x);'",
             replica_dir);
    ck_assert_int_eq(system(cmd), 0);
    for (int i = 0; i < 500; i++) {
        ck_assert_int_eq(sr_router_node_info(r, 0, 1, &info), SR_OK);
        if (info.healthy)
            break;
        usleep(10 * 1000);
    }
    ck_assert_int_eq(info.healthy, 1);
    pthread_mutex_lock(&lc.lock);
    ck_assert_int_ge(lc.ejected, 1);
    ck_assert_int_ge(lc.readmitted, 1);
    pthread_mutex_unlock(&lc.lock);
    sr_router_close(r); /* joins the prober thread */
}
END_TEST

START_TEST(maintain_by_hand_and_no_thread_by_default)
{
    char replica[600];
    snprintf(replica, sizeof replica, "sqlite:%s/missing/r.db", dir);
    sr_config *c = make_config(0, "health.retry_ms", "60000");
    ck_assert_int_eq(sr_config_add_node(c, shard_names[0], SR_REPLICA, replica, 1), SR_OK);
    sr_router *r = NULL;
    ck_assert_int_eq(sr_router_open(c, &r), SR_OK);
    sr_config_free(c);
    sr_node_info info = SR_NODE_INFO_INIT;
    /* Nothing runs in the background: the node stays "up" until someone looks. */
    usleep(50 * 1000);
    ck_assert_int_eq(sr_router_node_info(r, 0, 1, &info), SR_OK);
    ck_assert_int_eq(info.healthy, 1);
    ck_assert_uint_eq(info.errors, 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_node_info(r, 0, 1, &info), SR_OK);
    ck_assert_int_eq(info.healthy, 0);
    ck_assert_uint_eq(info.ejections, 1);
    ck_assert_int_eq(sr_router_node_info(r, 0, 0, &info), SR_OK);
    ck_assert_int_eq(info.healthy, 1);
    ck_assert_int_eq(sr_router_maintain(NULL), SR_EINVAL);
    sr_router_close(r);
}
END_TEST

/* ---- consistency on a backend without replication ---- */

START_TEST(every_consistency_mode_is_fully_consistent)
{
    sr_router *r = open_router(2, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    static const char *const modes[] = {"any", "monotonic", "read_your_writes", "primary"};
    for (int m = 0; m < 4; m++) {
        ck_assert_int_eq(sr_session_set(s, "consistency", modes[m]), SR_OK);
        for (int64_t k = 1; k <= 20; k++) {
            char v[32];
            snprintf(v, sizeof v, "%s-%lld", modes[m], (long long)k);
            char ks[24];
            snprintf(ks, sizeof ks, "%lld", (long long)k);
            const char *p[] = {v, ks};
            ck_assert_int_eq(sr_exec(s, sr_key_int(k), SR_WRITE,
                                     "INSERT OR REPLACE INTO kv (v, k) VALUES (?, ?)", 2, p, NULL),
                             SR_OK);
            sr_result *res = NULL;
            ck_assert_int_eq(sr_exec(s, sr_key_int(k), SR_READ, "SELECT v FROM kv WHERE k = ?", 1,
                                     p + 1, &res),
                             SR_OK);
            ck_assert_str_eq(sr_result_value(res, 0, 0), v);
            sr_result_free(res);
        }
    }
    /* No replication positions on SQLite: nothing to carry, nothing to wait for. */
    ck_assert_str_eq(sr_session_token(s), "");
    /* Reads still go to the replicas under read_your_writes (nothing to wait for) ... */
    ck_assert_int_eq(sr_session_set(s, "consistency", "read_your_writes"), SR_OK);
    int shard = sr_router_shard_for(r, sr_key_int(1));
    uint64_t replica_reads = node_statements(r, shard, 1) + node_statements(r, shard, 2);
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_READ, "SELECT 1", 0, NULL, NULL), SR_OK);
    ck_assert_uint_eq(node_statements(r, shard, 1) + node_statements(r, shard, 2),
                      replica_reads + 1);
    /* ... and to the primary under primary. */
    ck_assert_int_eq(sr_session_set(s, "consistency", "primary"), SR_OK);
    uint64_t primary_before = node_statements(r, shard, 0);
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_READ, "SELECT 1", 0, NULL, NULL), SR_OK);
    ck_assert_uint_eq(node_statements(r, shard, 0), primary_before + 1);
    /* A per-statement override beats the session's mode for that read only. */
    sr_read_opts o = SR_READ_OPTS_INIT;
    o.consistency = SR_CONSISTENCY_ANY;
    ck_assert_int_eq(sr_exec_opts(s, sr_key_int(1), SR_READ, &o, "SELECT 1", 0, NULL, NULL),
                     SR_OK);
    ck_assert_uint_eq(node_statements(r, shard, 0), primary_before + 1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(read_only_transaction_on_a_replica)
{
    sr_router *r = open_router(1, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    ck_assert_int_eq(insert(s, 3, "three"), SR_OK);
    int shard = sr_router_shard_for(r, sr_key_int(3));
    uint64_t replica_before = node_statements(r, shard, 1);
    ck_assert_int_eq(sr_begin_read_only(s, sr_key_int(3)), SR_OK);
    ck_assert_int_eq(sr_in_transaction(s), 1);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s, sr_key_int(3), SR_READ, "SELECT v FROM kv WHERE k = 3", 0, NULL,
                             &res),
                     SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "three");
    sr_result_free(res);
    ck_assert_uint_eq(node_statements(r, shard, 1), replica_before + 1); /* on the replica */
    /* The replica connection refuses writes, even inside the transaction. */
    ck_assert_int_eq(insert(s, 3, "x"), SR_EQUERY);
    /* A key of another shard is refused. */
    int64_t other = 4;
    while (sr_router_shard_for(r, sr_key_int(other)) == shard)
        other++;
    ck_assert_int_eq(insert(s, other, "y"), SR_ETXN);
    ck_assert_int_eq(sr_commit(s), SR_OK);
    ck_assert_int_eq(sr_in_transaction(s), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- threads ---- */

typedef struct worker_arg {
    sr_router *router;
    int id;
    int failures;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *w = p;
    sr_session *s = NULL;
    if (sr_session_new(w->router, &s) != SR_OK) {
        w->failures++;
        return NULL;
    }
    for (int i = 0; i < 200; i++) {
        int64_t k = (int64_t)w->id * 100000 + i;
        if (insert(s, k, "t") != SR_OK) {
            w->failures++;
            continue;
        }
        char ks[24];
        snprintf(ks, sizeof ks, "%lld", (long long)k);
        const char *p1[] = {ks};
        sr_result *res = NULL;
        if (sr_exec(s, sr_key_int(k), SR_READ, "SELECT v FROM kv WHERE k = ?", 1, p1, &res) !=
                SR_OK ||
            sr_result_nrows(res) != 1)
            w->failures++;
        sr_result_free(res);
    }
    sr_session_free(s);
    return NULL;
}

START_TEST(many_threads_share_one_router)
{
    sr_router *r = open_router(2, "pool.max_size", "3");
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    sr_session_free(s);
    enum { NT = 8 };
    pthread_t th[NT];
    worker_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (worker_arg){r, i + 1, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    int failures = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        failures += args[i].failures;
    }
    ck_assert_int_eq(failures, 0);
    int total = 0;
    for (int i = 0; i < NSHARDS; i++)
        total += count_direct(i, -1);
    ck_assert_int_eq(total, NT * 200);
    sr_router_close(r);
}
END_TEST

/* ---- misuse: one session, two threads ---- */

/* A statement that runs for a long while (seconds) and then ends by itself. */
#define SLOW_SQL                                                                                   \
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "          \
    "SELECT COUNT(*) FROM c"

typedef struct slow_arg {
    sr_session *s;
    _Atomic int started, done;
    int rc;
    char count[32];
} slow_arg;

static void *run_slow(void *p)
{
    slow_arg *a = p;
    sr_result *res = NULL;
    atomic_store(&a->started, 1);
    /* The main thread's polls may be inside the session when this one enters:
     * then this call is the one refused. It gets in between two polls. */
    do
        a->rc = sr_exec(a->s, sr_key_int(1), SR_READ, SLOW_SQL, 0, NULL, &res);
    while (a->rc == SR_EMISUSE);
    if (a->rc == SR_OK)
        snprintf(a->count, sizeof a->count, "%s", sr_result_value(res, 0, 0));
    sr_result_free(res);
    atomic_store(&a->done, 1);
    return NULL;
}

typedef struct misuse_log {
    pthread_mutex_t lock;
    int in_use;
} misuse_log;

static void capture_misuse(void *ud, sr_log_level level, const char *msg)
{
    misuse_log *ml = ud;
    pthread_mutex_lock(&ml->lock);
    if (level == SR_LOG_ERROR && strstr(msg, "in use by another thread"))
        ml->in_use++;
    pthread_mutex_unlock(&ml->lock);
}

/*
 * A session used by two threads at once (documented as forbidden) used to
 * end in a use-after-free. Now the second caller gets SR_EMISUSE and nothing
 * happens: thread A runs a long statement while this thread calls every entry
 * point on the same session until each has said SR_EMISUSE.
 */
START_TEST(a_second_thread_in_a_session_gets_misuse)
{
    sr_config *c = make_config(0, "statement_timeout_ms", "60000");
    misuse_log ml = {PTHREAD_MUTEX_INITIALIZER, 0};
    ck_assert_int_eq(sr_config_set_log_fn(c, capture_misuse, &ml), SR_OK);
    sr_router *r = NULL;
    ck_assert_int_eq(sr_router_open(c, &r), SR_OK);
    sr_config_free(c);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    ck_assert_int_eq(sr_exec(s, sr_key_int(5), SR_WRITE, "INSERT INTO kv (k, v) VALUES (5, 'x')",
                             0, NULL, NULL),
                     SR_OK);

    slow_arg a = {.s = s};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, run_slow, &a), 0);
    while (!atomic_load(&a.started))
        sched_yield();
    /* Between "started" and A's entry a call may still get in (and succeed); poll until
     * A is inside. Bounded: A's statement ends by itself. */
    int misuse = 0, polls = 0;
    while (!misuse && !atomic_load(&a.done)) {
        int rc = sr_exec(s, sr_key_int(5), SR_READ, "SELECT v FROM kv WHERE k = 5", 0, NULL, NULL);
        ck_assert_msg(rc == SR_OK || rc == SR_EMISUSE, "%s", sr_strerror(rc));
        misuse = rc == SR_EMISUSE;
        polls++;
        if (!misuse)
            usleep(200);
    }
    ck_assert_msg(misuse, "the slow statement ended before a second call overlapped it");
    /* A is inside (it never leaves before its statement ends): every entry point refuses. */
    const char *p1[] = {"6", "y"};
    ck_assert_int_eq(sr_exec(s, sr_key_int(6), SR_WRITE, "INSERT INTO kv (k, v) VALUES (?, ?)", 2,
                             p1, NULL),
                     SR_EMISUSE);
    sr_read_opts o = SR_READ_OPTS_INIT;
    ck_assert_int_eq(sr_exec_opts(s, sr_key_int(6), SR_READ, &o, "SELECT 1", 0, NULL, NULL),
                     SR_EMISUSE);
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_READ, "SELECT 1", 0, NULL, NULL), SR_EMISUSE);
    ck_assert_int_eq(sr_exec_all(s, SR_READ, "SELECT 1", 0, NULL, NULL), SR_EMISUSE);
    ck_assert_int_eq(sr_begin(s, sr_key_int(6)), SR_EMISUSE);
    ck_assert_int_eq(sr_begin_shard(s, 0), SR_EMISUSE);
    ck_assert_int_eq(sr_begin_read_only(s, sr_key_int(6)), SR_EMISUSE);
    ck_assert_int_eq(sr_commit(s), SR_EMISUSE);
    ck_assert_int_eq(sr_rollback(s), SR_EMISUSE);
    ck_assert_int_eq(sr_session_set(s, "consistency", "primary"), SR_EMISUSE);
    ck_assert_int_eq(sr_session_set_affinity(s, sr_key_int(6)), SR_EMISUSE);
    ck_assert_int_eq(sr_session_set_trace(s, NULL, 0, NULL), SR_EMISUSE);
    ck_assert_int_eq(sr_session_set_token(s, ""), SR_EMISUSE);
    ck_assert_ptr_null(sr_session_token(s));
    ck_assert_str_eq(sr_strerror(SR_EMISUSE), "session used by two threads at once");
    /* Freeing it under A would be the use-after-free: it is refused, and logged. */
    sr_session_free(s);
    pthread_mutex_lock(&ml.lock);
    ck_assert_int_eq(ml.in_use, 1);
    pthread_mutex_unlock(&ml.lock);
    ck_assert(!atomic_load(&a.done)); /* all of the above while A was still inside */
    pthread_join(th, NULL);
    ck_assert_msg(a.rc == SR_OK, "%s", sr_strerror(a.rc));
    ck_assert_str_eq(a.count, "3000000");
    printf("misuse: SR_EMISUSE after %d poll(s)\n", polls);

    /* Nothing of the refused calls happened: no row 6, the session is usable, its mode unchanged. */
    ck_assert_int_eq(count_direct(sr_router_shard_for(r, sr_key_int(6)), 6), 0);
    ck_assert_int_eq(sr_exec(s, sr_key_int(7), SR_WRITE, "INSERT INTO kv (k, v) VALUES (7, 'z')",
                             0, NULL, NULL),
                     SR_OK);
    ck_assert_str_eq(sr_session_errmsg(s), "");
    ck_assert_int_eq(sr_in_transaction(s), 0);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

typedef struct hammer_arg {
    sr_session *s;
    int id;
    int nok, nmisuse, nother;
} hammer_arg;

/* One call of the mix; SR_EMISUSE when the other thread was inside. */
static int hammer_call(sr_session *s, int64_t k, int i)
{
    char ks[24];
    snprintf(ks, sizeof ks, "%lld", (long long)k);
    const char *params[] = {ks, "h"};
    switch (i % 4) {
    case 0:
    case 1:
        return sr_exec(s, sr_key_int(k), SR_WRITE, "INSERT INTO kv (k, v) VALUES (?, ?)", 2, params,
                       NULL);
    case 2:
        return sr_exec_all(s, SR_READ, "SELECT COUNT(*) FROM kv", 0, NULL, NULL);
    default:
        if (!sr_session_token(s))
            return SR_EMISUSE;
        return sr_session_set(s, "consistency", i % 8 == 3 ? "monotonic" : "any");
    }
}

static void *hammer(void *p)
{
    hammer_arg *h = p;
    for (int i = 0; i < 400; i++) {
        int64_t k = (int64_t)h->id * 10000 + i;
        /* A refused call did nothing, so it is simply made again (a refused insert that had
         * written would now fail on the primary key: nother). Bounded. */
        for (int tries = 0; tries < 100000; tries++) {
            int rc = hammer_call(h->s, k, i);
            if (rc == SR_EMISUSE) {
                h->nmisuse++;
                usleep(20);
                continue;
            }
            if (rc == SR_OK)
                h->nok++;
            else
                h->nother++;
            break;
        }
    }
    return NULL;
}

/* Two threads hammer one session: every call succeeds or is refused whole (SR_EMISUSE), no
 * crash (ASan/TSan clean), and every insert lands exactly once. */
START_TEST(two_threads_hammering_one_session)
{
    sr_router *r = open_router(1, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    create_tables(s);
    hammer_arg h[2] = {{.s = s, .id = 1}, {.s = s, .id = 2}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, &h[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    printf("hammer: %d+%d calls succeeded, %d+%d refused with SR_EMISUSE\n", h[0].nok, h[1].nok,
           h[0].nmisuse, h[1].nmisuse);
    for (int t = 0; t < 2; t++) {
        ck_assert_int_eq(h[t].nother, 0);
        ck_assert_int_eq(h[t].nok, 400);
        for (int i = 0; i < 400; i++) {
            int64_t k = (int64_t)h[t].id * 10000 + i;
            if (i % 4 <= 1)
                ck_assert_int_eq(count_direct(sr_router_shard_for(r, sr_key_int(k)), k), 1);
        }
    }
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- the statement cache's byte bound ---- */

/* "SELECT <id>, length('xxx...')" with a literal of `bytes` bytes: a new string. */
static char *big_statement(int id, size_t bytes)
{
    char *sql = malloc(bytes + 64);
    ck_assert_ptr_nonnull(sql);
    int n = snprintf(sql, 64, "SELECT %d, length('", id);
    memset(sql + n, 'x', bytes);
    memcpy(sql + n + bytes, "')", 3);
    return sql;
}

static void run_big(sr_session *s, int id, size_t bytes)
{
    char *sql = big_statement(id, bytes);
    sr_result *res = NULL;
    ck_assert_msg(sr_exec_shard(s, 0, SR_WRITE, sql, 0, NULL, &res) == SR_OK, "%s",
                  sr_session_errmsg(s));
    ck_assert_int_eq(atoi(sr_result_value(res, 0, 0)), id);
    ck_assert_int_eq(atol(sr_result_value(res, 0, 1)), (long)bytes);
    sr_result_free(res);
    free(sql);
}

/* SQLite heap held now, and the peak since the last call (which resets it). */
static sqlite3_int64 sqlite_peak_since_reset(sqlite3_int64 *current)
{
    sqlite3_int64 cur = 0, hi = 0;
    ck_assert_int_eq(sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &cur, &hi, 1), SQLITE_OK);
    *current = cur;
    return hi;
}

START_TEST(the_statement_cache_is_bounded_in_bytes)
{
    /* One connection (pool of 1, shard 0's primary), a 12 MiB byte bound and
     * the default count bound of 64: the count alone would keep every statement. */
    enum { MB = 1024 * 1024 };
    sr_config *c = make_config(0, "stmt_cache.max_bytes", "12582912");
    ck_assert_int_eq(sr_config_set(c, "pool.max_size", "1"), SR_OK);
    sr_router *r = NULL;
    ck_assert_int_eq(sr_router_open(c, &r), SR_OK);
    sr_config_free(c);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_exec_shard(s, 0, SR_WRITE, "SELECT 1", 0, NULL, NULL), SR_OK);
    sqlite3_int64 base = sqlite3_memory_used();
    ck_assert_int_gt(base, 0); /* SQLite counts its memory: the checks below can see it */

    /* 64 distinct ~1 MB statements. SQLite holds ~3 MB for each (its copy of
     * the text, the literal, the column name), so each is charged ~4 MB and
     * two fit; without a byte bound SQLite would hold ~190 MB. */
    for (int i = 0; i < 64; i++) {
        run_big(s, i, MB);
        sqlite3_int64 held = sqlite3_memory_used() - base;
        ck_assert_msg(held < 12 * MB, "after %d statements SQLite holds %lld bytes", i + 1,
                      (long long)held);
    }
    /* The cache did keep large statements (the last one at least), and reuses them:
     * the second run does not parse it again (a parse needs ~3 MB). */
    ck_assert_int_gt(sqlite3_memory_used() - base, 3 * MB);
    sqlite3_int64 cur;
    (void)sqlite_peak_since_reset(&cur);
    run_big(s, 63, MB);
    sqlite3_int64 peak = sqlite_peak_since_reset(&cur);
    ck_assert_msg(peak - cur < 64 * 1024, "a cached statement was prepared again (+%lld bytes)",
                  (long long)(peak - cur));

    /* A small statement is reused the same way. */
    sqlite3_int64 before = sqlite3_memory_used();
    run_big(s, 1000, 256 * 1024);
    ck_assert_int_gt(sqlite3_memory_used() - before, 256 * 1024); /* held by the cache */
    (void)sqlite_peak_since_reset(&cur);
    run_big(s, 1000, 256 * 1024);
    peak = sqlite_peak_since_reset(&cur);
    ck_assert_int_lt(peak - cur, 64 * 1024);

    /* A statement costing more than the whole bound (4 MB of text, ~12 MB in
     * SQLite) runs, is not kept, and pushes nothing out. */
    before = sqlite3_memory_used();
    run_big(s, 2000, 4 * MB);
    ck_assert_int_lt(sqlite3_memory_used() - before, MB / 2);
    (void)sqlite_peak_since_reset(&cur);
    run_big(s, 1000, 256 * 1024);
    run_big(s, 63, MB);
    peak = sqlite_peak_since_reset(&cur);
    ck_assert_int_lt(peak - cur, 64 * 1024);

    sr_session_free(s);
    sr_router_close(r);
    /* Closing the router finalizes every cached statement. */
    ck_assert_int_lt(sqlite3_memory_used(), base);
}
END_TEST

/* ---- trace context (sr_session_set_trace) ---- */

/*
 * SQLite only sees the comment as a comment: traced statements run as they
 * did (a line comment or a ';' at the end, several statements in one
 * string, scatter, cursors, transactions), and still go where the caller's
 * SQL says (SR_AUTO reads the caller's text, not the one sent).
 */
START_TEST(traced_statements_run_unchanged)
{
    sr_router *r = open_router(1, NULL, NULL);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    const char *tags[] = {"route", "/kv/{k}", "note", "*/ -- ' \\ \n"};
    ck_assert_msg(sr_session_set_trace(s, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                       2, tags) == SR_OK,
                  "%s", sr_session_errmsg(s));
    create_tables(s);
    ck_assert_int_eq(insert(s, 11, "eleven"), SR_OK);
    int shard = sr_router_shard_for(r, sr_key_int(11));
    uint64_t p0 = node_statements(r, shard, 0), r0 = node_statements(r, shard, 1);
    const char *reads[] = {"SELECT v FROM kv WHERE k = 11", "SELECT v FROM kv WHERE k = 11 -- end",
                           "SELECT v FROM kv WHERE k = 11;", "SELECT v FROM kv WHERE k = 11; -- x"};
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        sr_result *res = NULL;
        ck_assert_msg(sr_exec(s, sr_key_int(11), SR_AUTO, reads[i], 0, NULL, &res) == SR_OK,
                      "%s: %s", reads[i], sr_session_errmsg(s));
        ck_assert_str_eq(sr_result_value(res, 0, 0), "eleven");
        sr_result_free(res);
    }
    ck_assert_uint_eq(node_statements(r, shard, 1), r0 + 4); /* all four on the replica */
    /* An unclosed comment is not certainly a read (the primary), though with the trace's
     * comment after it SQLite's lexer would see a closed one and a read. */
    ck_assert_int_eq(sr_exec(s, sr_key_int(11), SR_AUTO, "SELECT v FROM kv /* open", 0, NULL, NULL),
                     SR_OK);
    ck_assert_uint_eq(node_statements(r, shard, 0), p0 + 1);
    ck_assert_uint_eq(node_statements(r, shard, 1), r0 + 4);

    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec_shard(s, shard, SR_WRITE,
                                   "CREATE TABLE m (x); INSERT INTO m VALUES (1); INSERT INTO m "
                                   "VALUES (2); SELECT SUM(x) FROM m; -- done",
                                   0, NULL, &res),
                     SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "3");
    sr_result_free(res);

    ck_assert_int_eq(sr_begin(s, sr_key_int(11)), SR_OK);
    ck_assert_int_eq(sr_exec(s, sr_key_int(11), SR_AUTO, "UPDATE kv SET v = 'x' WHERE k = 11", 0,
                             NULL, NULL),
                     SR_OK);
    ck_assert_int_eq(sr_rollback(s), SR_OK);
    ck_assert_int_eq(sr_exec_all(s, SR_AUTO, "SELECT count(*) FROM kv LIMIT 1 OFFSET 0", 0, NULL,
                                 &res),
                     SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "1");
    sr_result_free(res);
    sr_cursor *c = NULL;
    ck_assert_int_eq(sr_cursor_open_all(s, SR_AUTO, NULL, "SELECT k, v FROM kv ORDER BY k", 0, NULL,
                                        &c),
                     SR_OK);
    ck_assert_int_eq(sr_cursor_next(c), 1);
    int row = -1;
    const sr_result *cur = sr_cursor_row(c, &row);
    ck_assert_str_eq(sr_result_value(cur, row, 1), "eleven");
    ck_assert_int_eq(sr_cursor_next(c), 0);
    sr_cursor_close(c);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

static Suite *sqlite_suite(void)
{
    Suite *su = suite_create("sqlite");
    TCase *tc = tcase_create("sqlite");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, rows_land_on_the_shard_the_router_names);
    tcase_add_test(tc, text_keys_route_consistently);
    tcase_add_test(tc, reads_go_to_replicas_which_refuse_writes);
    tcase_add_test(tc, auto_intent_classifies_statements);
    tcase_add_test(tc, traced_statements_run_unchanged);
    tcase_add_test(tc, primary_reads_fallback_and_never);
    tcase_add_test(tc, transactions_commit_and_roll_back);
    tcase_add_test(tc, cross_shard_statement_in_transaction_is_refused);
    tcase_add_test(tc, freeing_a_session_rolls_back);
    tcase_add_test(tc, scatter_counts_and_rows_match);
    tcase_add_test(tc, scatter_partial_failure_names_the_shards);
    tcase_add_test(tc, expression_columns_are_typed_by_their_values);
    tcase_add_test(tc, scatter_merges_order_limit_groups_and_explains);
    tcase_add_test(tc, parameters_round_trip);
    tcase_add_test(tc, sql_errors_keep_the_session_usable);
    tcase_add_test(tc, several_statements_in_one_string);
    tcase_add_test(tc, trailing_white_space_of_every_class_is_no_statement);
    tcase_add_test(tc, cached_statement_follows_a_schema_change);
    tcase_add_test(tc, unreachable_file_is_a_connect_error);
    tcase_add_test(tc, unknown_scheme_is_a_driver_error);
    tcase_add_test(tc, long_statement_times_out);
    tcase_add_test(tc, lock_wait_times_out);
    tcase_add_test(tc, pool_exhaustion_is_busy);
    tcase_add_test(tc, config_file_to_router);
    tcase_add_test(tc, unreachable_replica_is_ejected_and_readmitted);
    tcase_add_test(tc, ejected_primary_fails_writes_fast_with_the_reason);
    tcase_add_test(tc, active_prober_ejects_and_readmits_without_traffic);
    tcase_add_test(tc, maintain_by_hand_and_no_thread_by_default);
    tcase_add_test(tc, every_consistency_mode_is_fully_consistent);
    tcase_add_test(tc, read_only_transaction_on_a_replica);
    tcase_add_test(tc, many_threads_share_one_router);
    tcase_add_test(tc, a_second_thread_in_a_session_gets_misuse);
    tcase_add_test(tc, two_threads_hammering_one_session);
    tcase_add_test(tc, the_statement_cache_is_bounded_in_bytes);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(sqlite_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
