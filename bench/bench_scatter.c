/*
 * Scatter on PostgreSQL, and on MariaDB (issue 12): what running every
 * shard at once from one thread buys, and what streaming costs in memory.
 *
 *   bench_scatter [--mysql] [--only latency|fanout|memory] [ROUNDS]
 *
 * Needs SR_PG_PRIMARY, or SR_MY_PRIMARY with --mysql (tests/env/pg_cluster.sh,
 * mariadb_cluster.sh: `scripts/bench.sh scatter scatter_mysql` starts them and
 * runs both). Shard databases
 * sr_bs0..sr_bs7 are created on the PostgreSQL primary; on MariaDB
 * shard_bs0..shard_bs63 (the test user's databases are shard%; 64 shards are
 * 64 databases there).
 *  1. latency: 8 shards, shard i sleeping (i+1) x 20 ms: the scatter's wall
 *     time against the slowest shard (target <= 1.2), and a loop of
 *     sr_exec_shard over the shards (the sum: 4.5 x).
 *  2. fan-out: SELECT 1 on 8 and on 64 shards (64 shards are 64 nodes on
 *     the 8 databases): a loop of sr_exec_shard / sr_exec_all, medians of
 *     interleaved rounds (target >= 2 at 8 shards).
 *  3. memory: 8 x 250,000 rows (id, 40 bytes of text), each case in a fresh
 *     child process measuring its peak RSS (VmHWM, reset through
 *     /proc/self/clear_refs) above what it held after connecting:
 *     ORDER BY id LIMIT 100 buffered (target <= 8 MB), every row through a
 *     merged cursor and a concatenating cursor (target <= 16 MB), and every
 *     row buffered by sr_exec_all (grows with the result).
 * Medians of ROUNDS (default 5) rounds; nothing is asserted.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shardroute.h>

#define NDB 8
#define ROWS_PER_SHARD 250000

static const char *base;
static int mysql; /* --mysql: the MariaDB primary */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_scatter: %s: %s\n", what, why);
    exit(1);
}

/* A router of `nshards` shards over the databases sr_bs0..7 (shard i on database i % 8). */
static sr_router *open_router(int nshards)
{
    sr_config *c = sr_config_new();
    if (!c)
        die("config", "out of memory");
    sr_config_set(c, "statement_timeout_ms", "120000");
    for (int i = 0; i < nshards; i++) {
        char shard[16], uri[640];
        snprintf(shard, sizeof shard, "s%d", i);
        if (sr_config_add_shard(c, shard) != SR_OK)
            die("shard", sr_config_errmsg(c));
        /* application_name makes the 64 nodes' URIs distinct over 8 databases; MariaDB's
         * URIs have no such parameter: 64 databases. */
        if (mysql)
            snprintf(uri, sizeof uri, "%s/shard_bs%d", base, i);
        else
            snprintf(uri, sizeof uri, "%s/sr_bs%d?application_name=bench_s%d", base, i % NDB, i);
        if (sr_config_add_node(c, shard, SR_PRIMARY, uri, 1) != SR_OK)
            die("node", sr_config_errmsg(c));
    }
    sr_router *r = NULL;
    if (sr_router_open(c, &r) != SR_OK)
        die("open", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

static sr_session *session(sr_router *r)
{
    sr_session *s = NULL;
    if (sr_session_new(r, &s) != SR_OK || sr_session_set(s, "consistency", "any") != SR_OK)
        die("session", "cannot create");
    return s;
}

static void must(sr_session *s, int shard, const char *sql)
{
    if (sr_exec_shard(s, shard, SR_WRITE, sql, 0, NULL, NULL) != SR_OK)
        die(sql, sr_session_errmsg(s));
}

/* The databases and their tables: delay (shard i sleeps (i+1) x 20 ms) and big. */
static void setup(void)
{
    char uri[600];
    sr_config *c = sr_config_new();
    snprintf(uri, sizeof uri, "%s/%s", base, mysql ? "mysql" : "postgres");
    if (mysql && getenv("SR_MY_ADMIN_PRIMARY")) /* the test user may not create databases */
        snprintf(uri, sizeof uri, "%s/mysql", getenv("SR_MY_ADMIN_PRIMARY"));
    sr_config_add_shard(c, "a");
    if (sr_config_add_node(c, "a", SR_PRIMARY, uri, 1) != SR_OK)
        die("admin node", sr_config_errmsg(c));
    sr_router *r = NULL;
    if (sr_router_open(c, &r) != SR_OK)
        die("admin open", sr_config_errmsg(c));
    sr_config_free(c);
    sr_session *s = session(r);
    for (int i = 0; i < (mysql ? 64 : NDB); i++) {
        char sql[128];
        if (mysql)
            snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS shard_bs%d", i);
        else
            snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS sr_bs%d WITH (FORCE)", i);
        must(s, 0, sql);
        snprintf(sql, sizeof sql, mysql ? "CREATE DATABASE shard_bs%d" : "CREATE DATABASE sr_bs%d",
                 i);
        must(s, 0, sql);
    }
    sr_session_free(s);
    sr_router_close(r);
    double t0 = now_s();
    r = open_router(NDB);
    s = session(r);
    for (int i = 0; i < NDB; i++) {
        char sql[256];
        must(s, i, mysql ? "CREATE TABLE delay (d double)" : "CREATE TABLE delay (d float8)");
        snprintf(sql, sizeof sql, "INSERT INTO delay VALUES (%.3f)", (i + 1) * 0.020);
        must(s, i, sql);
        must(s, i, mysql ? "CREATE TABLE big (id bigint PRIMARY KEY, payload varchar(40))"
                         : "CREATE TABLE big (id bigint PRIMARY KEY, payload text)");
        /* Interleaved ids: a merge by id takes from every shard in turn. */
        if (mysql)
            snprintf(sql, sizeof sql,
                     "INSERT INTO big SELECT seq * %d + %d, left(repeat(md5(seq), 2), 40) "
                     "FROM seq_0_to_%d",
                     NDB, i, ROWS_PER_SHARD - 1);
        else
            snprintf(sql, sizeof sql,
                     "INSERT INTO big SELECT g * %d + %d, repeat(md5(g::text), 2)::varchar(40) "
                     "FROM generate_series(0, %d) g",
                     NDB, i, ROWS_PER_SHARD - 1);
        must(s, i, sql);
        must(s, i, mysql ? "ANALYZE TABLE big" : "VACUUM ANALYZE big");
    }
    sr_session_free(s);
    sr_router_close(r);
    printf("setup: %d databases, %d rows each, in %.1f s\n", NDB, ROWS_PER_SHARD, now_s() - t0);
}

static void latency(int rounds)
{
    sr_router *r = open_router(NDB);
    sr_session *s = session(r);
    const char *sql = mysql ? "SELECT SLEEP(d) FROM delay" : "SELECT pg_sleep(d) FROM delay";
    if (sr_exec_all(s, SR_READ, sql, 0, NULL, NULL) != SR_OK) /* connect every pool */
        die("warm", sr_session_errmsg(s));
    double par[32], seq[32];
    for (int k = 0; k < rounds; k++) {
        double t0 = now_s();
        if (sr_exec_all(s, SR_READ, sql, 0, NULL, NULL) != SR_OK)
            die("scatter", sr_session_errmsg(s));
        par[k] = now_s() - t0;
        t0 = now_s();
        for (int i = 0; i < NDB; i++)
            if (sr_exec_shard(s, i, SR_READ, sql, 0, NULL, NULL) != SR_OK)
                die("shard", sr_session_errmsg(s));
        seq[k] = now_s() - t0;
    }
    double slowest = NDB * 0.020, p = median(par, rounds), q = median(seq, rounds);
    printf("latency, 8 shards sleeping 20..160 ms: parallel %.1f ms = %.2f x the slowest shard "
           "(target <= 1.2); sequential %.1f ms = %.2f x\n",
           p * 1e3, p / slowest, q * 1e3, q / slowest);
    sr_session_free(s);
    sr_router_close(r);
}

static void fanout(int nshards, int rounds)
{
    sr_router *r = open_router(nshards);
    sr_session *s = session(r);
    const char *sql = "SELECT 1";
    int per = nshards == 8 ? 400 : 80;
    if (sr_exec_all(s, SR_READ, sql, 0, NULL, NULL) != SR_OK)
        die("warm", sr_session_errmsg(s));
    double par[32], seq[32], ratio[32];
    for (int k = 0; k < rounds; k++) {
        double t0 = now_s();
        for (int j = 0; j < per; j++)
            if (sr_exec_all(s, SR_READ, sql, 0, NULL, NULL) != SR_OK)
                die("scatter", sr_session_errmsg(s));
        par[k] = (now_s() - t0) / per;
        t0 = now_s();
        for (int j = 0; j < per; j++)
            for (int i = 0; i < nshards; i++)
                if (sr_exec_shard(s, i, SR_READ, sql, 0, NULL, NULL) != SR_OK)
                    die("shard", sr_session_errmsg(s));
        seq[k] = (now_s() - t0) / per;
        ratio[k] = seq[k] / par[k];
    }
    printf("fan-out, SELECT 1 on %d shards: parallel %.0f us, sequential %.0f us per scatter: "
           "sequential / parallel %.2f%s\n",
           nshards, median(par, rounds) * 1e6, median(seq, rounds) * 1e6, median(ratio, rounds),
           nshards == 8 ? " (target >= 2)" : "");
    sr_session_free(s);
    sr_router_close(r);
}

static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0)
            v = atol(line + n + 1);
    if (f)
        fclose(f);
    return v;
}

enum { MEM_LIMIT, MEM_CURSOR_ORDER, MEM_CURSOR_CONCAT, MEM_BUFFERED };

/* In a child: connect, then the case; prints rows and peak RSS growth over the connected state. */
static void memory_case(int kind, const char *what, const char *target)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", "failed");
    if (pid > 0) {
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            die(what, "the child failed");
        return;
    }
    sr_router *r = open_router(NDB);
    sr_session *s = session(r);
    sr_result *res = NULL;
    if (sr_exec_all(s, SR_READ, "SELECT id, payload FROM big WHERE id < 8", 0, NULL, &res) != SR_OK)
        die("warm", sr_session_errmsg(s));
    sr_result_free(res);
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0 || write(fd, "5", 1) != 1) /* resets VmHWM to the current RSS */
        die("clear_refs", "cannot reset the peak RSS");
    close(fd);
    long before = status_kb("VmRSS:");
    long rows = 0;
    double t0 = now_s();
    if (kind == MEM_LIMIT || kind == MEM_BUFFERED) {
        const char *sql = kind == MEM_LIMIT ? "SELECT id, payload FROM big ORDER BY id LIMIT 100"
                                            : "SELECT id, payload FROM big";
        if (sr_exec_all(s, SR_READ, sql, 0, NULL, &res) != SR_OK)
            die(what, sr_session_errmsg(s));
        rows = sr_result_nrows(res);
        sr_result_free(res);
    } else {
        sr_scatter_opts o = SR_SCATTER_OPTS_INIT;
        if (kind == MEM_CURSOR_CONCAT)
            o.merge = SR_MERGE_CONCAT;
        const char *sql = kind == MEM_CURSOR_ORDER ? "SELECT id, payload FROM big ORDER BY id"
                                                   : "SELECT id, payload FROM big";
        sr_cursor *c = NULL;
        if (sr_cursor_open_all(s, SR_READ, &o, sql, 0, NULL, &c) != SR_OK)
            die(what, sr_session_errmsg(s));
        int rc, row;
        long long last = -1;
        while ((rc = sr_cursor_next(c)) == 1) {
            const sr_result *cr = sr_cursor_row(c, &row);
            int64_t id;
            if (kind == MEM_CURSOR_ORDER && (sr_result_int64(cr, row, 0, &id) != SR_OK || id <= last))
                die(what, "rows out of order");
            if (kind == MEM_CURSOR_ORDER)
                last = id;
            rows++;
        }
        if (rc != 0)
            die(what, sr_session_errmsg(s));
        sr_cursor_close(c);
    }
    double took = now_s() - t0;
    long peak = status_kb("VmHWM:");
    printf("memory, %s: %ld rows in %.2f s, peak RSS growth %.1f MB%s\n", what, rows, took,
           (double)(peak - before) / 1024.0, target);
    fflush(stdout);
    sr_session_free(s);
    sr_router_close(r);
    _exit(0);
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    int rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mysql") == 0)
            mysql = 1;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else
            rounds = atoi(argv[i]);
    }
    if (rounds < 1 || rounds > 32)
        rounds = 5;
    base = getenv(mysql ? "SR_MY_PRIMARY" : "SR_PG_PRIMARY");
    if (!base)
        die("environment", mysql ? "SR_MY_PRIMARY is not set (run through scripts/bench.sh "
                                   "scatter)"
                                 : "SR_PG_PRIMARY is not set (run through scripts/bench.sh "
                                   "scatter)");
    printf("shardroute %s: scatter on %s (%s), medians of %d rounds\n", sr_version(),
           mysql ? "MariaDB" : "PostgreSQL",
           mysql ? "8 and 64 shard databases on one server" : "8 shard databases on one server",
           rounds);
    setup();
    if (!only || strcmp(only, "latency") == 0)
        latency(rounds);
    if (!only || strcmp(only, "fanout") == 0) {
        fanout(8, rounds);
        fanout(64, rounds);
    }
    if (!only || strcmp(only, "memory") == 0) {
        memory_case(MEM_LIMIT, "ORDER BY id LIMIT 100 over 8 x 250000 rows, buffered",
                    " (target <= 8 MB)");
        memory_case(MEM_CURSOR_ORDER, "every row through a cursor merging ORDER BY id",
                    " (target <= 16 MB)");
        memory_case(MEM_CURSOR_CONCAT, "every row through a concatenating cursor",
                    " (target <= 16 MB)");
        memory_case(MEM_BUFFERED, "every row buffered by sr_exec_all", " (grows with the result)");
    }
    return 0;
}
