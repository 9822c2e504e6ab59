/*
 * Scatter queries against ground truth, on every built backend: the same
 * rows in 4 shard databases and in one unsharded database of the same
 * backend; every scatter query's merged result (sr_exec_all, and a cursor)
 * must equal the unsharded database's own answer to the same SQL, row for
 * row and in order. A fixed list of shapes and a few hundred queries
 * generated from a small grammar (seeded; the seed is printed on failure)
 * over random data with NULLs, ties, empty groups, a query that matches on
 * one shard only and one that matches nothing.
 *
 * Comparison: values as text, except floats and numerics (and every AVG),
 * compared as numbers with a relative tolerance of 1e-9, or 1e-6 absolute
 * (shards add in another order; MariaDB prints an AVG of a DECIMAL rounded
 * to 6 decimals, where the merge divides exactly). Text
 * is under a binary collation (PostgreSQL COLLATE "C", MariaDB utf8mb4_bin,
 * SQLite BINARY) and every ORDER BY ends in the unique id, so the unsharded
 * order is defined.
 *
 *   postgres  databases sr_sc0..sr_sc3 and sr_scref on the primary of tests/env/pg_cluster.sh
 *   mysql     databases shard_sc0..3 and shard_scref on the MariaDB primary
 *   sqlite    files in a temporary directory
 * Reads go to the primaries (no replica nodes): replication is another suite's.
 * Also: a frozen shard (its backend process SIGSTOPped) in a scatter returns
 * within the statement deadline with that shard named, and partial results
 * on request (PostgreSQL).
 */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <shardroute.h>

#include "testutil.h"
#if SR_HAVE_MYSQL
#include "my_direct.h"
#endif

#define NSHARDS 4
#define NROWS 400

typedef struct backend {
    const char *name;
    char base[512];   /* URI without the database (or the directory for SQLite) */
    const char *db[NSHARDS + 1]; /* shard databases, then the unsharded one */
    const char *admin_db; /* where CREATE DATABASE runs ("" SQLite) */
    const char *create_db, *drop_db; /* %s: the database */
    const char *create_table;
    bool server;
} backend;

static backend be;
static sr_router *sharded, *whole;
static sr_session *ss, *ws;
static char tmpdir[256];

static char *uri_of(const char *db)
{
    if (!be.server)
        return xfmt("sqlite:%s/%s.db", be.base, db);
    return xfmt("%s/%s", be.base, db);
}

static sr_router *router_on(const char *const *dbs, int n, const char *const *opts)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    for (int i = 0; opts && opts[i]; i += 2)
        ck_assert_msg(sr_config_set(c, opts[i], opts[i + 1]) == SR_OK, "%s", sr_config_errmsg(c));
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(sr_config_add_shard(c, dbs[i]), SR_OK);
        char *uri = uri_of(dbs[i]);
        ck_assert_msg(sr_config_add_node(c, dbs[i], SR_PRIMARY, uri, 1) == SR_OK, "%s",
                      sr_config_errmsg(c));
        free(uri);
    }
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

static void must(sr_session *s, int shard, const char *sql, int n, const char *const *p)
{
    ck_assert_msg(sr_exec_shard(s, shard, SR_WRITE, sql, n, p, NULL) == SR_OK, "%s: %s", sql,
                  sr_session_errmsg(s));
}

static bool choose_backend(const char *name)
{
    memset(&be, 0, sizeof be);
    be.name = name;
    if (strcmp(name, "sqlite") == 0) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/sr_scatter_XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
        snprintf(be.base, sizeof be.base, "%s", tmpdir);
        static const char *const dbs[] = {"sc0", "sc1", "sc2", "sc3", "scref"};
        memcpy(be.db, dbs, sizeof dbs);
        be.create_table = "CREATE TABLE t (id INTEGER PRIMARY KEY, tenant INTEGER, name TEXT, "
                          "score REAL, amount NUMERIC, flag INTEGER)";
        return true;
    }
    const char *p = getenv(strcmp(name, "postgres") == 0 ? "SR_PG_PRIMARY" : "SR_MY_PRIMARY");
    if (!p)
        return false;
    be.server = true;
    snprintf(be.base, sizeof be.base, "%s", p);
    if (strcmp(name, "postgres") == 0) {
        static const char *const dbs[] = {"sr_sc0", "sr_sc1", "sr_sc2", "sr_sc3", "sr_scref"};
        memcpy(be.db, dbs, sizeof dbs);
        be.admin_db = "postgres";
        be.drop_db = "DROP DATABASE IF EXISTS %s WITH (FORCE)";
        be.create_db = "CREATE DATABASE %s";
        be.create_table = "CREATE TABLE t (id int PRIMARY KEY, tenant int, name text COLLATE \"C\", "
                          "score float8, amount numeric(12,2), flag int)";
    } else {
        static const char *const dbs[] = {"shard_sc0", "shard_sc1", "shard_sc2", "shard_sc3",
                                          "shard_scref"};
        memcpy(be.db, dbs, sizeof dbs);
        be.admin_db = "shard0";
        be.drop_db = "DROP DATABASE IF EXISTS %s";
        be.create_db = "CREATE DATABASE %s";
        be.create_table = "CREATE TABLE t (id INT PRIMARY KEY, tenant INT, name VARCHAR(32) "
                          "COLLATE utf8mb4_bin, score DOUBLE, amount DECIMAL(12,2), flag INT)";
    }
    return true;
}

static unsigned seed_state;
static unsigned rnd(void)
{
    seed_state = seed_state * 1103515245u + 12345u;
    return (seed_state >> 16) & 0x7fff;
}

/* Databases, tables and the same rows in the shards (by key) and in the unsharded database. */
static void load(void)
{
    if (be.server) {
        const char *adm[] = {be.admin_db};
        sr_router *a = router_on(adm, 1, NULL);
        sr_session *s;
        ck_assert_int_eq(sr_session_new(a, &s), SR_OK);
        for (int i = 0; i <= NSHARDS; i++) {
            char *sql = xfmt(be.drop_db, be.db[i]);
            must(s, 0, sql, 0, NULL);
            free(sql);
            sql = xfmt(be.create_db, be.db[i]);
            must(s, 0, sql, 0, NULL);
            free(sql);
        }
        sr_session_free(s);
        sr_router_close(a);
    }
    const char *opts[] = {"statement_timeout_ms", "20000", NULL};
    sharded = router_on(be.db, NSHARDS, opts);
    whole = router_on(be.db + NSHARDS, 1, opts);
    ck_assert_int_eq(sr_session_new(sharded, &ss), SR_OK);
    ck_assert_int_eq(sr_session_new(whole, &ws), SR_OK);
    for (int i = 0; i < NSHARDS; i++)
        must(ss, i, be.create_table, 0, NULL);
    must(ws, 0, be.create_table, 0, NULL);
    static const char *const names[] = {"ant", "Bee", "cat", "cat", "ému", "fox", "", "Zed"};
    seed_state = 7;
    for (int id = 1; id <= NROWS; id++) {
        char ids[16], tenant[16], score[32], amount[32], flag[16];
        snprintf(ids, sizeof ids, "%d", id);
        snprintf(tenant, sizeof tenant, "%u", rnd() % 10);
        snprintf(score, sizeof score, "%.3f", (double)(rnd() % 20000) / 7.0 - 1000.0);
        snprintf(amount, sizeof amount, "%u.%02u", rnd() % 1000, rnd() % 100);
        snprintf(flag, sizeof flag, "%u", rnd() % 3);
        const char *v[] = {ids,
                           rnd() % 9 == 0 ? NULL : tenant,
                           rnd() % 11 == 0 ? NULL : names[rnd() % 8],
                           rnd() % 7 == 0 ? NULL : score,
                           rnd() % 8 == 0 ? NULL : amount,
                           rnd() % 4 == 0 ? NULL : flag};
        const char *ins = "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)";
        ck_assert_msg(sr_exec(ss, sr_key_int(id), SR_WRITE, ins, 6, v, NULL) == SR_OK, "%s",
                      sr_session_errmsg(ss));
        must(ws, 0, ins, 6, v);
    }
    ck_assert_int_eq(sr_session_set(ss, "consistency", "any"), SR_OK);
}

static void unload(void)
{
    sr_session_free(ss);
    sr_session_free(ws);
    sr_router_close(sharded);
    sr_router_close(whole);
    if (!be.server) {
        char *cmd = xfmt("rm -rf '%s'", tmpdir);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);
    }
}

/* ---- comparing results ---- */

static bool numeric_col(const sr_result *r, int col, const char *sql)
{
    sr_type t = sr_result_coltype(r, col);
    (void)sql;
    return t == SR_TYPE_FLOAT || t == SR_TYPE_NUMERIC;
}

/* 1e-9 relative; or 1e-6 absolute: MariaDB prints AVG of a DECIMAL(12,2) rounded to 6
 * decimals (div_precision_increment = 4), which the merge computes exactly. */
static bool near(double a, double b)
{
    double d = fabs(a - b);
    return d <= 1e-9 * fmax(1.0, fmax(fabs(a), fabs(b))) || d <= 1e-6;
}

/* Row i of `got` equals row i of `want`; "" or a description of the first difference. */
static void diff_row(const char *sql, const sr_result *got, int gr, const sr_result *want, int wr,
                     char *out, size_t len)
{
    out[0] = '\0';
    for (int c = 0; c < sr_result_ncols(want); c++) {
        const char *g = sr_result_value(got, gr, c), *w = sr_result_value(want, wr, c);
        if (!g || !w) {
            if (g != w)
                snprintf(out, len, "row %d column %d: %s vs %s", wr, c, g ? g : "NULL",
                         w ? w : "NULL");
        } else if (numeric_col(want, c, sql) || numeric_col(got, c, sql)) {
            double a, b;
            if (sr_result_double(got, gr, c, &a) != SR_OK ||
                sr_result_double(want, wr, c, &b) != SR_OK || !near(a, b))
                snprintf(out, len, "row %d column %d: %s vs %s", wr, c, g, w);
        } else if (strcmp(g, w) != 0) {
            snprintf(out, len, "row %d column %d: '%s' vs '%s'", wr, c, g, w);
        }
        if (out[0])
            return;
    }
}

/* The scatter equals the unsharded answer; through a cursor too when `cursor`. */
static void check_query(const char *sql, bool cursor, unsigned seed)
{
    sr_result *want = NULL, *got = NULL;
    ck_assert_msg(sr_exec_shard(ws, 0, SR_READ, sql, 0, NULL, &want) == SR_OK,
                  "[%s seed %u] unsharded %s: %s", be.name, seed, sql, sr_session_errmsg(ws));
    ck_assert_msg(sr_exec_all(ss, SR_READ, sql, 0, NULL, &got) == SR_OK,
                  "[%s seed %u] scatter %s: %s", be.name, seed, sql, sr_session_errmsg(ss));
    ck_assert_msg(sr_result_nrows(got) == sr_result_nrows(want) &&
                      sr_result_ncols(got) == sr_result_ncols(want),
                  "[%s seed %u] %s: %d rows x %d columns, unsharded %d x %d", be.name, seed, sql,
                  sr_result_nrows(got), sr_result_ncols(got), sr_result_nrows(want),
                  sr_result_ncols(want));
    char d[512];
    for (int i = 0; i < sr_result_nrows(want); i++) {
        diff_row(sql, got, i, want, i, d, sizeof d);
        ck_assert_msg(!d[0], "[%s seed %u] %s: %s", be.name, seed, sql, d);
    }
    sr_result_free(got);
    if (cursor) {
        sr_cursor *c = NULL;
        ck_assert_msg(sr_cursor_open_all(ss, SR_READ, NULL, sql, 0, NULL, &c) == SR_OK,
                      "[%s] cursor %s: %s", be.name, sql, sr_session_errmsg(ss));
        int n = 0, rc, row;
        while ((rc = sr_cursor_next(c)) == 1) {
            const sr_result *r = sr_cursor_row(c, &row);
            ck_assert_int_lt(n, sr_result_nrows(want));
            diff_row(sql, r, row, want, n, d, sizeof d);
            ck_assert_msg(!d[0], "[%s seed %u] cursor %s: %s", be.name, seed, sql, d);
            n++;
        }
        ck_assert_msg(rc == 0, "[%s] cursor %s: %d %s", be.name, sql, rc, sr_session_errmsg(ss));
        ck_assert_int_eq(n, sr_result_nrows(want));
        sr_cursor_close(c);
    }
    sr_result_free(want);
}

/* ---- the queries ---- */

static const char *const fixed[] = {
    "SELECT id, name FROM t ORDER BY id",
    "SELECT id, name FROM t ORDER BY id DESC LIMIT 20",
    "SELECT id, tenant, name FROM t ORDER BY name, id LIMIT 15 OFFSET 10",
    "SELECT id, tenant FROM t ORDER BY tenant DESC, id",
    "SELECT id, score FROM t ORDER BY score, id LIMIT 30",
    "SELECT id, amount FROM t ORDER BY amount DESC, id LIMIT 25",
    "SELECT id FROM t ORDER BY id LIMIT 5 OFFSET 1000",
    "SELECT id FROM t WHERE id = 17 ORDER BY id",
    "SELECT id FROM t WHERE tenant = 999 ORDER BY id",
    "SELECT count(*) FROM t",
    "SELECT count(tenant), count(score) FROM t",
    "SELECT sum(amount), min(amount), max(amount), avg(amount) FROM t",
    "SELECT sum(flag), min(name), max(name), avg(score) FROM t",
    "SELECT count(*), sum(score), min(score), max(score) FROM t WHERE tenant = 999",
    "SELECT tenant, count(*), sum(amount), avg(score) FROM t GROUP BY tenant ORDER BY tenant",
    "SELECT tenant, count(*) AS n FROM t GROUP BY tenant ORDER BY n DESC, tenant LIMIT 3",
    "SELECT name, min(id), max(id) FROM t GROUP BY name ORDER BY name",
    "SELECT flag, tenant, count(*) FROM t GROUP BY flag, tenant ORDER BY flag, tenant",
    "SELECT DISTINCT tenant FROM t ORDER BY tenant",
    "SELECT DISTINCT flag, tenant FROM t ORDER BY flag DESC, tenant LIMIT 7 OFFSET 2",
    "SELECT tenant, avg(amount) FROM t WHERE id < 100 GROUP BY tenant ORDER BY tenant",
    "SELECT t.id AS k, t.name FROM t ORDER BY k DESC LIMIT 10",
    "SELECT id, name FROM t ORDER BY 2, 1 LIMIT 12",
    "SELECT max(id) FROM t WHERE id = 17",
    "SELECT tenant, count(*) FROM t WHERE tenant IS NULL GROUP BY tenant ORDER BY tenant",
};

static const char *const cols[] = {"tenant", "name", "score", "amount", "flag"};

/* One query from the grammar: rows ordered / limited, or groups with aggregates, or DISTINCT. */
static char *generate(void)
{
    char where[96] = "";
    switch (rnd() % 6) {
    case 0: snprintf(where, sizeof where, " WHERE tenant < %u", rnd() % 10); break;
    case 1: snprintf(where, sizeof where, " WHERE id %% %u = %u", 2 + rnd() % 5, rnd() % 2); break;
    case 2: snprintf(where, sizeof where, " WHERE score > %d", (int)(rnd() % 2000) - 1000); break;
    case 3: snprintf(where, sizeof where, " WHERE id = %u", 1 + rnd() % NROWS); break;
    case 4: snprintf(where, sizeof where, " WHERE flag IS NULL"); break;
    default: break;
    }
    char limit[48] = "";
    if (rnd() % 2) {
        if (rnd() % 2)
            snprintf(limit, sizeof limit, " LIMIT %u OFFSET %u", rnd() % 40, rnd() % 30);
        else
            snprintf(limit, sizeof limit, " LIMIT %u", rnd() % 40);
    }
    int kind = (int)(rnd() % 3);
    if (kind == 0) {
        /* Rows: a few order keys (each selected), then the unique id. */
        char sel[128] = "id", order[160] = "";
        int nk = (int)(rnd() % 3);
        bool used[5] = {false};
        for (int k = 0; k < nk; k++) {
            int c = (int)(rnd() % 5);
            if (used[c])
                continue;
            used[c] = true;
            size_t l = strlen(sel);
            snprintf(sel + l, sizeof sel - l, ", %s", cols[c]);
            l = strlen(order);
            snprintf(order + l, sizeof order - l, "%s%s", cols[c], rnd() % 2 ? " DESC, " : ", ");
        }
        if (rnd() % 2) {
            int c = (int)(rnd() % 5);
            if (!used[c]) {
                size_t l = strlen(sel);
                snprintf(sel + l, sizeof sel - l, ", %s", cols[c]);
            }
        }
        return xfmt("SELECT %s FROM t%s ORDER BY %sid%s%s", sel, where, order,
                    rnd() % 2 ? " DESC" : "", limit);
    }
    if (kind == 1) {
        /* Groups (or none) with aggregates. */
        static const char *const aggs[] = {"count(*)", "count(score)", "sum(amount)",
                                           "sum(flag)", "min(name)", "max(score)", "avg(score)",
                                           "avg(amount)", "min(amount)", "max(id)"};
        char sel[256] = "";
        int na = 1 + (int)(rnd() % 3);
        for (int k = 0; k < na; k++) {
            size_t l = strlen(sel);
            snprintf(sel + l, sizeof sel - l, "%s%s", k ? ", " : "", aggs[rnd() % 10]);
        }
        if (rnd() % 4 == 0)
            return xfmt("SELECT %s FROM t%s", sel, where);
        const char *g = rnd() % 2 ? "tenant" : rnd() % 2 ? "flag" : "name";
        return xfmt("SELECT %s, %s FROM t%s GROUP BY %s ORDER BY %s%s%s", g, sel, where, g, g,
                    rnd() % 2 ? " DESC" : "", limit);
    }
    const char *a = cols[rnd() % 5], *b = rnd() % 2 ? "flag" : "tenant";
    if (strcmp(a, b) == 0)
        return xfmt("SELECT DISTINCT %s FROM t%s ORDER BY %s%s", a, where, a, limit);
    return xfmt("SELECT DISTINCT %s, %s FROM t%s ORDER BY %s, %s DESC%s", a, b, where, a, b, limit);
}

static void run_backend(const char *name)
{
    if (!choose_backend(name)) {
        if (getenv("CI"))
            ck_abort_msg("%s: no server in the environment (tests/env/with_servers.sh)", name);
        fprintf(stderr, "scatter: %s skipped (no server in the environment)\n", name);
        return;
    }
    load();
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        check_query(fixed[i], strstr(fixed[i], "ORDER BY") && !strstr(fixed[i], "GROUP"), 0);
    unsigned seed = getenv("SR_SCATTER_SEED") ? (unsigned)atoi(getenv("SR_SCATTER_SEED"))
                                               : (unsigned)time(NULL);
    int n = getenv("SR_SCATTER_QUERIES") ? atoi(getenv("SR_SCATTER_QUERIES")) : 300;
    for (int i = 0; i < n; i++) {
        unsigned qseed = seed + (unsigned)i;
        seed_state = qseed;
        char *sql = generate();
        check_query(sql, i % 5 == 0, qseed);
        free(sql);
    }
    fprintf(stderr, "scatter: %s: %zu fixed and %d generated queries equal the unsharded "
                    "database (seed %u)\n",
            name, sizeof fixed / sizeof *fixed, n, seed);
    /* Refused, with a reason, and the session goes on. */
    const char *refused[] = {"SELECT count(DISTINCT tenant) FROM t",
                             "SELECT tenant, count(*) FROM t GROUP BY tenant HAVING count(*) > 3",
                             "SELECT id, row_number() OVER (ORDER BY id) FROM t",
                             "SELECT id FROM t ORDER BY score"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        sr_result *res = NULL;
        ck_assert_int_eq(sr_exec_all(ss, SR_READ, refused[i], 0, NULL, &res), SR_EINVAL);
        ck_assert_ptr_null(res);
        ck_assert_msg(strstr(sr_session_errmsg(ss), "merge") != NULL, "%s",
                      sr_session_errmsg(ss));
    }
    check_query("SELECT count(*) FROM t", false, 0);
    unload();
}

START_TEST(sqlite_equals_unsharded) { run_backend("sqlite"); }
END_TEST

/* Built only with the server's driver, as the registrations below. */
#if SR_HAVE_POSTGRES
START_TEST(postgres_equals_unsharded) { run_backend("postgres"); }
END_TEST
#endif

#if SR_HAVE_MYSQL
START_TEST(mysql_equals_unsharded) { run_backend("mysql"); }
END_TEST
#endif

#if SR_HAVE_POSTGRES || SR_HAVE_MYSQL
/*
 * The partial result of a scatter whose shard 2 did not answer: the other
 * shards' rows, shard 2 the only one listed; then, shard 2 back, every shard
 * answers. Frees res, s and r.
 */
static void check_partial_then_whole(sr_result *res, sr_session *s, sr_router *r)
{
    ck_assert_int_eq(sr_result_failed_shard(res, 0), 2);
    ck_assert_int_eq(sr_result_failed_shard(res, 1), -1);
    int rows = sr_result_nrows(res);
    for (int i = 0; i < rows; i++)
        ck_assert_int_ne(sr_result_shard(res, i), 2);
    ck_assert_int_gt(rows, NROWS / 2);
    sr_result_free(res);
    ck_assert_int_eq(sr_exec_all(s, SR_READ, "SELECT count(*) FROM t", 0, NULL, &res), SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "400");
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
}
#endif

/* ---- a frozen shard ---- */
#if SR_HAVE_POSTGRES

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

START_TEST(a_frozen_shard_fails_at_the_deadline_and_is_named)
{
    if (!choose_backend("postgres")) {
        if (getenv("CI"))
            ck_abort_msg("postgres: no server in the environment");
        return;
    }
    load();
    unload();
    /* One connection per node, so the shard's pooled backend is the one frozen. */
    const char *opts[] = {"statement_timeout_ms", "1500", "pool.max_size", "1", NULL};
    sr_router *r = router_on(be.db, NSHARDS, opts);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec_shard(s, 2, SR_READ, "SELECT pg_backend_pid()", 0, NULL, &res), SR_OK);
    pid_t pid = (pid_t)atol(sr_result_value(res, 0, 0));
    sr_result_free(res);
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    double t0 = now_ms();
    int rc = sr_exec_all(s, SR_READ, "SELECT id FROM t ORDER BY id", 0, NULL, &res);
    double took = now_ms() - t0;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", sr_session_errmsg(s));
    /* The partial opt-in: the others' rows, the frozen shard listed. A new backend for the
     * shard is frozen again (the first was closed after its timeout). */
    ck_assert_int_eq(sr_exec_shard(s, 2, SR_READ, "SELECT pg_backend_pid()", 0, NULL, &res),
                     SR_OK);
    pid_t pid2 = (pid_t)atol(sr_result_value(res, 0, 0));
    sr_result_free(res);
    kill(pid, SIGCONT);
    ck_assert_int_eq(kill(pid2, SIGSTOP), 0);
    sr_scatter_opts o = SR_SCATTER_OPTS_INIT;
    o.partial = 1;
    double t1 = now_ms();
    int rc2 = sr_exec_all_values(s, SR_READ, &o, "SELECT id FROM t ORDER BY id", 0, NULL, &res);
    double took2 = now_ms() - t1;
    kill(pid2, SIGCONT);
    ck_assert_int_eq(rc, SR_EPARTIAL);
    ck_assert_msg(strstr(msg, be.db[2]) && strstr(msg, "deadline"), "%s", msg);
    /* Bound: the deadline plus scheduling on a loaded 2-core machine. */
    ck_assert_msg(took >= 1400 && took < 1500 + 1500, "took %.0f ms", took);
    ck_assert_int_eq(rc2, SR_EPARTIAL);
    ck_assert_msg(took2 < 1500 + 1500, "took %.0f ms", took2);
    /* Thawed, the shard answers again on a new connection. */
    check_partial_then_whole(res, s, r);
}
END_TEST
#endif /* SR_HAVE_POSTGRES */

/* ---- a shard that does not answer (MariaDB) ---- */
#if SR_HAVE_MYSQL
/*
 * MariaDB runs every connection in one process, so a shard cannot be frozen
 * with SIGSTOP: its table is write-locked from another connection instead,
 * and the scatter's read waits on the lock on that shard only. The statement
 * steps then end at the deadline with the shard named, partial results on
 * request, and the shard answers again once the lock is gone.
 */
START_TEST(a_locked_mariadb_shard_fails_at_the_deadline_and_is_named)
{
    if (!choose_backend("mysql")) {
        if (getenv("CI"))
            ck_abort_msg("mysql: no server in the environment");
        return;
    }
    load();
    unload();
    const char *opts[] = {"statement_timeout_ms", "1500", NULL};
    sr_router *r = router_on(be.db, NSHARDS, opts);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    MYSQL *locker = my_direct("SR_MY_PRIMARY", be.db[2]);
    my_direct_exec(locker, "LOCK TABLES t WRITE");
    sr_result *res = NULL;
    double t0 = mono_ms();
    int rc = sr_exec_all(s, SR_READ, "SELECT id FROM t ORDER BY id", 0, NULL, &res);
    double took = mono_ms() - t0;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", sr_session_errmsg(s));
    sr_scatter_opts o = SR_SCATTER_OPTS_INIT;
    o.partial = 1;
    double t1 = mono_ms();
    int rc2 = sr_exec_all_values(s, SR_READ, &o, "SELECT id FROM t ORDER BY id", 0, NULL, &res);
    double took2 = mono_ms() - t1;
    /* The reads given up on were stopped on the server too (KILL QUERY when their
     * connections closed), not left waiting on the lock. */
    long waiting = -1;
    for (int i = 0; i < 50 && waiting != 0; i++) {
        if (i)
            usleep(20000);
        waiting = my_direct_long(locker, "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                                         "WHERE INFO LIKE 'SELECT id FROM t%'");
    }
    my_direct_exec(locker, "UNLOCK TABLES");
    mysql_close(locker);
    ck_assert_int_eq(rc, SR_EPARTIAL);
    /* The client's deadline, or the server's backstop at the same bound (the driver sets
     * max_statement_time to the statement timeout), whichever came first. */
    ck_assert_msg(strstr(msg, be.db[2]) &&
                      (strstr(msg, "deadline") || strstr(msg, "max_statement_time")),
                  "%s", msg);
    ck_assert_msg(took >= 1400 && took < 1500 + 1500, "took %.0f ms", took);
    ck_assert_int_eq(rc2, SR_EPARTIAL);
    ck_assert_msg(took2 >= 1400 && took2 < 1500 + 1500, "took %.0f ms", took2);
    ck_assert_msg(waiting == 0, "%ld reads still waiting on the server", waiting);
    check_partial_then_whole(res, s, r);
}
END_TEST
#endif /* SR_HAVE_MYSQL */

static Suite *scatter_suite(void)
{
    Suite *su = suite_create("scatter");
    TCase *tc = tcase_create("scatter");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, sqlite_equals_unsharded);
#if SR_HAVE_POSTGRES
    tcase_add_test(tc, postgres_equals_unsharded);
    tcase_add_test(tc, a_frozen_shard_fails_at_the_deadline_and_is_named);
#endif
#if SR_HAVE_MYSQL
    tcase_add_test(tc, mysql_equals_unsharded);
    tcase_add_test(tc, a_locked_mariadb_shard_fails_at_the_deadline_and_is_named);
#endif
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(scatter_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
