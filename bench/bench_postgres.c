/*
 * PostgreSQL overhead: routed point reads (sr_exec, SR_READ, primary-key
 * lookup) against direct libpq PQexecPrepared on one connection to the same
 * replica, in the same run. The router has one shard whose only replica is
 * that server, so both sides do the same round trip; the difference is what
 * shardroute adds: key hashing, replica selection, pool checkout, the
 * statement-cache lookup, non-blocking I/O with a deadline and copying the
 * row into an sr_result.
 *
 *   bench_postgres [ROWS] [READS_PER_ROUND] [ROUNDS]
 *
 * SR_BENCH_TRACE=same gives the routed session one trace context for the whole
 * run (sr_session_set_trace: every statement carries the same sqlcommenter
 * comment, so its prepared statement is reused); SR_BENCH_TRACE=each sets a new
 * traceparent before every read (each read is a new text: prepared anew), to
 * measure what tracing costs.
 *
 * Needs SR_PG_PRIMARY and SR_PG_REPLICA1 (tests/env/pg_cluster.sh run ...);
 * the database shard0 must exist. Each round runs both sides back to back
 * (alternating which goes first), so that load from elsewhere on the machine
 * hits both alike; the ratio is the median of the per-round ratios. The CPU
 * time this process spends per read is shown too: unlike wall time it hardly
 * depends on the server, so it isolates what the library adds.
 *
 * On a small machine the scheduler's placement of the two server backends
 * (one per side) decides more than the library does: a backend sharing the
 * client's CPU answers at a different speed than one on another CPU, and
 * which one does so sticks for a run, biasing the ratio either way. So when
 * allowed (same user or root) the client is pinned to one CPU and both
 * backends to another; the output says whether that happened.
 */
#define _GNU_SOURCE /* sched_setaffinity */
#include <inttypes.h>
#include <sched.h>
#include <sys/types.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shardroute.h>

static int cmp_double(const void *a, const void *b);

static double clock_of(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double now_ns(void) { return clock_of(CLOCK_MONOTONIC); }
static double cpu_ns(void) { return clock_of(CLOCK_PROCESS_CPUTIME_ID); }

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_postgres: %s: %s\n", what, why);
    exit(1);
}

static PGconn *connect_db(const char *base)
{
    char uri[512];
    snprintf(uri, sizeof uri, "%s/shard0", base);
    PGconn *c = PQconnectdb(uri);
    if (PQstatus(c) != CONNECTION_OK)
        die("connect", PQerrorMessage(c));
    return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        die(sql, PQresultErrorMessage(r));
    PQclear(r);
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* Pins `pid` (0: this process) to one CPU; 0 on success. */
static int pin(pid_t pid, int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(pid, sizeof set, &set);
}

/* Two CPUs this process may run on, or -1s. */
static void two_cpus(int *a, int *b)
{
    cpu_set_t set;
    *a = *b = -1;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return;
    for (int i = 0; i < CPU_SETSIZE && *b < 0; i++)
        if (CPU_ISSET(i, &set)) {
            if (*a < 0)
                *a = i;
            else
                *b = i;
        }
}

static const char *const query = "SELECT k, v FROM bench_kv WHERE k = ?";

static int trace_each; /* SR_BENCH_TRACE=each */

/* A W3C traceparent whose trace id counts up: a new one per call. */
static void set_new_trace(sr_session *s)
{
    static unsigned long long n;
    char tp[64];
    snprintf(tp, sizeof tp, "00-%032llx-00f067aa0ba902b7-01", ++n);
    if (sr_session_set_trace(s, tp, 0, NULL) != SR_OK)
        die("trace", sr_session_errmsg(s));
}

__attribute__((noinline)) static size_t run_routed(sr_session *s, char (*keys)[16], int n)
{
    size_t sum = 0;
    for (int i = 0; i < n; i++) {
        const char *p[] = {keys[i]};
        if (trace_each)
            set_new_trace(s);
        sr_result *res = NULL;
        if (sr_exec(s, sr_key_int(atoi(keys[i])), SR_READ, query, 1, p, &res) != SR_OK)
            die("routed read", sr_session_errmsg(s));
        sum += sr_result_length(res, 0, 0) + sr_result_length(res, 0, 1);
        sr_result_free(res);
    }
    return sum;
}

__attribute__((noinline)) static size_t run_direct(PGconn *c, char (*keys)[16], int n)
{
    size_t sum = 0;
    for (int i = 0; i < n; i++) {
        const char *p[] = {keys[i]};
        PGresult *r = PQexecPrepared(c, "point", 1, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
            die("direct read", PQresultErrorMessage(r));
        (void)PQgetvalue(r, 0, 0);
        (void)PQgetvalue(r, 0, 1);
        sum += (size_t)PQgetlength(r, 0, 0) + (size_t)PQgetlength(r, 0, 1);
        PQclear(r);
    }
    return sum;
}

int main(int argc, char **argv)
{
    int nrows = argc > 1 ? atoi(argv[1]) : 10000;
    int nreads = argc > 2 ? atoi(argv[2]) : 1000;
    int rounds = argc > 3 ? atoi(argv[3]) : 31;
    if (nrows < 1 || nreads < 1 || rounds < 1)
        die("arguments", "ROWS READS ROUNDS must be positive");
    const char *primary = getenv("SR_PG_PRIMARY"), *replica = getenv("SR_PG_REPLICA1");
    if (!primary || !replica) {
        fprintf(stderr, "bench_postgres: SR_PG_PRIMARY / SR_PG_REPLICA1 not set; run it through "
                        "tests/env/pg_cluster.sh run (skipped)\n");
        return 77;
    }

    /* The table, written on the primary and waited for on the replica. */
    PGconn *pc = connect_db(primary);
    PQsetNoticeProcessor(pc, quiet, NULL);
    char sql[256];
    exec_ok(pc, "DROP TABLE IF EXISTS bench_kv");
    exec_ok(pc, "CREATE TABLE bench_kv (k int PRIMARY KEY, v text NOT NULL)");
    snprintf(sql, sizeof sql,
             "INSERT INTO bench_kv SELECT i, 'value-' || i || '-' || md5(i::text) "
             "FROM generate_series(1, %d) i",
             nrows);
    exec_ok(pc, sql);
    PQfinish(pc);
    PGconn *direct = connect_db(replica);
    snprintf(sql, sizeof sql, "SELECT count(*) = %d FROM bench_kv", nrows);
    for (int i = 0;; i++) {
        PGresult *r = PQexec(direct, sql);
        int ready = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
        PQclear(r);
        if (ready)
            break;
        if (i > 1000)
            die("replica", "the table did not reach the replica within 10 s");
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    PGresult *prep = PQprepare(direct, "point", "SELECT k, v FROM bench_kv WHERE k = $1", 1, NULL);
    if (PQresultStatus(prep) != PGRES_COMMAND_OK)
        die("prepare", PQresultErrorMessage(prep));
    PQclear(prep);

    /* One shard: the primary and that replica, the only node reads can use. */
    char uri_p[512], uri_r[512];
    snprintf(uri_p, sizeof uri_p, "%s/shard0", primary);
    snprintf(uri_r, sizeof uri_r, "%s/shard0", replica);
    sr_config *cfg = sr_config_new();
    if (sr_config_add_shard(cfg, "shard0") ||
        sr_config_add_node(cfg, "shard0", SR_PRIMARY, uri_p, 1) ||
        sr_config_add_node(cfg, "shard0", SR_REPLICA, uri_r, 1))
        die("config", sr_config_errmsg(cfg));
    sr_router *router = NULL;
    if (sr_router_open(cfg, &router) != SR_OK)
        die("router", sr_config_errmsg(cfg));
    sr_config_free(cfg);
    sr_session *s = NULL;
    if (sr_session_new(router, &s) != SR_OK)
        die("session", "out of memory");
    const char *trace = getenv("SR_BENCH_TRACE");
    if (trace && strcmp(trace, "same") == 0)
        set_new_trace(s);
    trace_each = trace && strcmp(trace, "each") == 0;

    /* Both backends on one CPU, the client on another (see the top of the file). */
    sr_result *pidres = NULL;
    if (sr_exec(s, sr_key_int(1), SR_READ, "SELECT pg_backend_pid()", 0, NULL, &pidres) != SR_OK)
        die("routed backend", sr_session_errmsg(s));
    pid_t routed_backend = (pid_t)atol(sr_result_value(pidres, 0, 0));
    sr_result_free(pidres);
    pid_t direct_backend = (pid_t)PQbackendPID(direct);
    int cpu_client, cpu_server;
    two_cpus(&cpu_client, &cpu_server);
    int pinned = cpu_server >= 0 && pin(routed_backend, cpu_server) == 0 &&
                 pin(direct_backend, cpu_server) == 0 && pin(0, cpu_client) == 0;

    /* The same pseudo-random keys for both sides, as text. */
    char (*keys)[16] = malloc((size_t)nreads * sizeof *keys);
    double *routed = calloc((size_t)rounds, sizeof *routed);
    double *direct_ns = calloc((size_t)rounds, sizeof *direct_ns);
    double *ratio = calloc((size_t)rounds, sizeof *ratio);
    double *routed_cpu = calloc((size_t)rounds, sizeof *routed_cpu);
    double *direct_cpu = calloc((size_t)rounds, sizeof *direct_cpu);
    if (!keys || !routed || !direct_ns || !ratio || !routed_cpu || !direct_cpu)
        die("malloc", "out of memory");
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < nreads; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        snprintf(keys[i], sizeof keys[i], "%d", (int)(x % (uint64_t)nrows) + 1);
    }

    size_t sum_r = 0, sum_d = 0;
    for (int round = -1; round < rounds; round++) { /* round -1 warms caches and the pool */
        double tr = 0, td = 0, cr = 0, cd = 0;
        for (int side = 0; side < 2; side++) {
            int routed_side = (side == 0) == (round % 2 == 0);
            double t0 = now_ns(), c0 = cpu_ns();
            if (routed_side)
                sum_r += run_routed(s, keys, nreads);
            else
                sum_d += run_direct(direct, keys, nreads);
            double t = now_ns() - t0, c = cpu_ns() - c0;
            if (routed_side)
                tr = t, cr = c;
            else
                td = t, cd = c;
        }
        if (round >= 0) {
            routed[round] = tr / nreads;
            direct_ns[round] = td / nreads;
            ratio[round] = tr / td;
            routed_cpu[round] = cr / nreads;
            direct_cpu[round] = cd / nreads;
        }
    }
    if (sum_r != sum_d)
        die("checksum", "routed and direct reads returned different data");

    double r = median(routed, rounds), d = median(direct_ns, rounds);
    double rc = median(routed_cpu, rounds), dc = median(direct_cpu, rounds);
    printf("PostgreSQL point reads on one replica (loopback), %d rows, %d reads x %d rounds "
           "(medians), same run\n",
           nrows, nreads, rounds);
    if (trace)
        printf("routed session with a trace context: %s\n",
               trace_each ? "a new traceparent for every read" : "one for the whole run");
    if (pinned)
        printf("client pinned to cpu %d, both server backends to cpu %d\n", cpu_client, cpu_server);
    else
        printf("not pinned (needs two CPUs and permission): expect noisier ratios\n");
    printf("%-36s %12s %12s %14s\n", "", "us/read", "reads/s", "cpu us/read");
    printf("%-36s %12.1f %12.0f %14.2f\n", "direct libpq (PQexecPrepared)", d / 1e3, 1e9 / d,
           dc / 1e3);
    printf("%-36s %12.1f %12.0f %14.2f\n", "routed sr_exec (SR_READ)", r / 1e3, 1e9 / r, rc / 1e3);
    printf("%-36s %12.3f   (median of per-round ratios; target <= 1.03)\n",
           "ratio routed/direct", median(ratio, rounds));
    printf("%-36s %12.2f\n", "added client cpu us per read", (rc - dc) / 1e3);

    free(keys);
    free(routed);
    free(direct_ns);
    free(ratio);
    free(routed_cpu);
    free(direct_cpu);
    PQfinish(direct);
    sr_session_free(s);
    sr_router_close(router);
    return 0;
}
