/*
 * MySQL/MariaDB overhead: routed point reads (sr_exec, SR_READ, primary-key
 * lookup, served by the replica) against direct libmariadb prepared-statement
 * point reads on the same replica, in the same run. Both sides bind the key
 * as a string, execute, fetch every column as a string and free the result,
 * so the difference is what shardroute adds: key hashing, shard and replica
 * selection, pool checkout, statement cache lookup, the non-blocking wait
 * against the deadline, and copying the row into an sr_result.
 *
 *   bench_mysql [ROWS] [READS_PER_ROUND] [ROUNDS]
 *
 * Needs SR_MY_PRIMARY and SR_MY_REPLICA (mysql:// URIs without a database, as
 * tests/env/mariadb_cluster.sh exports them); uses database shard0. Each
 * round runs both sides back to back (alternating which goes first); the
 * table shows the median of each side and the median per-round ratio.
 *
 * On two CPUs the scheduler's placement of client and server decides more
 * than the code measured, so when allowed (SR_MY_REPLICA_PID known, same user
 * or root) every thread of the replica's server is pinned to one CPU and the
 * client to the other, as bench_postgres does with its backends.
 */
#define _GNU_SOURCE /* sched_setaffinity */
#include <dirent.h>
#include <inttypes.h>
#include <sched.h>
#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <shardroute.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Pins `pid` (0: this thread) to one CPU; 0 on success. */
static int pin(pid_t pid, int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(pid, sizeof set, &set);
}

/* Pins every thread of process `pid` to `cpu`; 0 when all were pinned. */
static int pin_process(pid_t pid, int cpu)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int rc = 0, n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        rc |= pin((pid_t)atoi(e->d_name), cpu);
        n++;
    }
    closedir(d);
    return n > 0 ? rc : -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_mysql: %s: %s\n", what, why);
    exit(1);
}

/* Splits "mysql://user:password@host:port" into its parts (no percent-decoding:
 * the test cluster's credentials are plain). */
static void split_uri(const char *uri, char *user, char *pass, char *host, unsigned *port)
{
    const char *p = strstr(uri, "://");
    const char *colon = p ? strchr(p + 3, ':') : NULL;
    const char *at = p ? strrchr(p + 3, '@') : NULL;
    const char *pc = at ? strchr(at + 1, ':') : NULL;
    if (!colon || !at || colon > at || !pc)
        die("SR_MY_REPLICA", "expected mysql://user:password@host:port");
    snprintf(user, 64, "%.*s", (int)(colon - (p + 3)), p + 3);
    snprintf(pass, 64, "%.*s", (int)(at - colon - 1), colon + 1);
    snprintf(host, 64, "%.*s", (int)(pc - at - 1), at + 1);
    *port = (unsigned)atoi(pc + 1);
}

/* nreads routed point reads; returns the bytes read (a checksum). */
__attribute__((noinline)) static size_t routed_reads(sr_session *s, const char *sql, char (*keys)[16], int nreads)
{
    size_t sum = 0;
    for (int i = 0; i < nreads; i++) {
        const char *p[] = {keys[i]};
        sr_result *res = NULL;
        if (sr_exec(s, sr_key_int(atoi(keys[i])), SR_READ, sql, 1, p, &res) != SR_OK)
            die("routed read", sr_session_errmsg(s));
        if (sr_result_nrows(res) != 1)
            die("routed read", "no row");
        sum += sr_result_length(res, 0, 0) + sr_result_length(res, 0, 1);
        sr_result_free(res);
    }
    return sum;
}

/* The same reads straight through libmariadb's prepared-statement API. */
__attribute__((noinline)) static size_t direct_reads(MYSQL_STMT *st, char (*keys)[16], int nreads)
{
    size_t sum = 0;
    for (int i = 0; i < nreads; i++) {
        MYSQL_BIND pb, rb[2];
        unsigned long klen = (unsigned long)strlen(keys[i]), len[2] = {0, 0};
        char kbuf[32], vbuf[80];
        my_bool nul[2] = {0, 0};
        memset(&pb, 0, sizeof pb);
        pb.buffer_type = MYSQL_TYPE_STRING;
        pb.buffer = keys[i];
        pb.buffer_length = klen;
        pb.length = &klen;
        memset(rb, 0, sizeof rb);
        rb[0].buffer_type = rb[1].buffer_type = MYSQL_TYPE_STRING;
        rb[0].buffer = kbuf;
        rb[0].buffer_length = sizeof kbuf;
        rb[1].buffer = vbuf;
        rb[1].buffer_length = sizeof vbuf;
        rb[0].length = &len[0];
        rb[1].length = &len[1];
        rb[0].is_null = &nul[0];
        rb[1].is_null = &nul[1];
        if (mysql_stmt_bind_param(st, &pb) || mysql_stmt_execute(st) ||
            mysql_stmt_bind_result(st, rb))
            die("direct read", mysql_stmt_error(st));
        int rows = 0, rc;
        while ((rc = mysql_stmt_fetch(st)) == 0 || rc == MYSQL_DATA_TRUNCATED) {
            rows++;
            sum += len[0] + len[1];
        }
        if (rc != MYSQL_NO_DATA || rows != 1)
            die("direct read", rc == 1 ? mysql_stmt_error(st) : "no row");
        mysql_stmt_free_result(st);
    }
    return sum;
}

int main(int argc, char **argv)
{
    int nrows = argc > 1 ? atoi(argv[1]) : 10000;
    int nreads = argc > 2 ? atoi(argv[2]) : 2000;
    int rounds = argc > 3 ? atoi(argv[3]) : 41;
    const char *primary = getenv("SR_MY_PRIMARY"), *replica = getenv("SR_MY_REPLICA");
    if (!primary || !replica) {
        fprintf(stderr, "bench_mysql: SR_MY_PRIMARY / SR_MY_REPLICA not set; run it under "
                        "tests/env/mariadb_cluster.sh run (skipped)\n");
        return 77;
    }
    if (nrows < 1 || nreads < 1 || rounds < 1)
        die("arguments", "ROWS READS ROUNDS must be positive");

    /* One shard: the primary and the replica, database shard0. */
    char puri[512], ruri[512];
    snprintf(puri, sizeof puri, "%s/shard0", primary);
    snprintf(ruri, sizeof ruri, "%s/shard0", replica);
    sr_config *cfg = sr_config_new();
    if (sr_config_add_shard(cfg, "s0") || sr_config_add_node(cfg, "s0", SR_PRIMARY, puri, 1) ||
        sr_config_add_node(cfg, "s0", SR_REPLICA, ruri, 1))
        die("config", sr_config_errmsg(cfg));
    sr_router *router = NULL;
    if (sr_router_open(cfg, &router) != SR_OK)
        die("router", sr_config_errmsg(cfg));
    sr_config_free(cfg);
    sr_session *s = NULL;
    if (sr_session_new(router, &s) != SR_OK)
        die("session", "out of memory");

    if (sr_exec_shard(s, 0, SR_WRITE, "DROP TABLE IF EXISTS bench_kv", 0, NULL, NULL) != SR_OK ||
        sr_exec_shard(s, 0, SR_WRITE,
                      "CREATE TABLE bench_kv (k BIGINT PRIMARY KEY, v VARCHAR(64) NOT NULL)", 0,
                      NULL, NULL) != SR_OK ||
        sr_begin_shard(s, 0) != SR_OK)
        die("schema", sr_session_errmsg(s));
    for (int i = 1; i <= nrows; i++) {
        char k[24], v[48];
        snprintf(k, sizeof k, "%d", i);
        snprintf(v, sizeof v, "value-%d-%08x", i, (unsigned)i * 2654435761u);
        const char *p[] = {k, v};
        if (sr_exec_shard(s, 0, SR_WRITE, "INSERT INTO bench_kv VALUES (?, ?)", 2, p, NULL) != SR_OK)
            die("insert", sr_session_errmsg(s));
    }
    if (sr_commit(s) != SR_OK)
        die("commit", sr_session_errmsg(s));

    /* The direct side: one blocking connection to the replica. */
    char user[64], pass[64], host[64];
    unsigned port;
    split_uri(replica, user, pass, host, &port);
    MYSQL *my = mysql_init(NULL);
    if (!mysql_real_connect(my, host, user, pass, "shard0", port, NULL, 0))
        die("direct connect", mysql_error(my));
    /* Wait (bounded) until the replica has every row. */
    for (int tries = 0;; tries++) {
        if (mysql_query(my, "SELECT COUNT(*) FROM bench_kv") == 0) {
            MYSQL_RES *r = mysql_store_result(my);
            MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
            int n = row && row[0] ? atoi(row[0]) : -1;
            mysql_free_result(r);
            if (n == nrows)
                break;
        }
        if (tries > 3000)
            die("replica", "did not catch up within 30 s");
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    MYSQL_STMT *st = mysql_stmt_init(my);
    const char *sql = "SELECT k, v FROM bench_kv WHERE k = ?";
    if (mysql_stmt_prepare(st, sql, (unsigned long)strlen(sql)))
        die("prepare", mysql_stmt_error(st));

    /* The replica's server on one CPU, this client on the other (see the top). */
    const char *rpid = getenv("SR_MY_REPLICA_PID");
    int pinned = sysconf(_SC_NPROCESSORS_ONLN) >= 2 && rpid && pin_process((pid_t)atoi(rpid), 1) == 0 &&
                 pin(0, 0) == 0;

    /* The same pseudo-random keys for both sides, as text. */
    char (*keys)[16] = malloc((size_t)nreads * sizeof *keys);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < nreads; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        snprintf(keys[i], sizeof keys[i], "%d", (int)(x % (uint64_t)nrows) + 1);
    }

    /* Short rounds, alternating which side goes first, and the ratio taken
     * per round: load from other processes drifts over seconds, and pairing
     * neighbouring measurements cancels most of it. */
    double *routed = calloc((size_t)rounds, sizeof *routed);
    double *direct = calloc((size_t)rounds, sizeof *direct);
    double *ratio = calloc((size_t)rounds, sizeof *ratio);
    size_t checksum_r = 0, checksum_d = 0;
    for (int round = -1; round < rounds; round++) { /* round -1 warms caches and pools */
        double t_routed = 0, t_direct = 0;
        for (int half = 0; half < 2; half++) {
            int do_routed = (half == 0) == (round % 2 == 0);
            double t0 = now_ns();
            if (do_routed)
                checksum_r += routed_reads(s, sql, keys, nreads);
            else
                checksum_d += direct_reads(st, keys, nreads);
            double dt = (now_ns() - t0) / nreads;
            if (do_routed)
                t_routed = dt;
            else
                t_direct = dt;
        }
        if (round >= 0) {
            routed[round] = t_routed;
            direct[round] = t_direct;
            ratio[round] = t_routed / t_direct;
        }
    }
    if (checksum_r != checksum_d)
        die("checksum", "routed and direct reads returned different data");

    qsort(routed, (size_t)rounds, sizeof *routed, cmp_double);
    qsort(direct, (size_t)rounds, sizeof *direct, cmp_double);
    qsort(ratio, (size_t)rounds, sizeof *ratio, cmp_double);
    double r = routed[rounds / 2], d = direct[rounds / 2];
    printf("MariaDB %s point reads on the replica, %d rows, %d reads x %d rounds (median), "
           "same run\n",
           mysql_get_server_info(my), nrows, nreads, rounds);
    printf("%s\n", pinned ? "client pinned to cpu 0, the replica's server threads to cpu 1"
                          : "not pinned (needs two CPUs and permission): expect noisier ratios");
    printf("%-40s %12s %12s\n", "", "us/read", "reads/s");
    printf("%-40s %12.1f %12.0f\n", "direct libmariadb (prepared, blocking)", d / 1e3, 1e9 / d);
    printf("%-40s %12.1f %12.0f\n", "routed sr_exec (SR_READ)", r / 1e3, 1e9 / r);
    printf("%-40s %12.3f   (target <= 1.03)\n", "ratio routed/direct", ratio[rounds / 2]);
    printf("%-40s %12.1f\n", "added us per read", (r - d) / 1e3);

    free(ratio);
    free(keys);
    free(routed);
    free(direct);
    mysql_stmt_close(st);
    mysql_close(my);
    sr_exec_shard(s, 0, SR_WRITE, "DROP TABLE IF EXISTS bench_kv", 0, NULL, NULL);
    sr_session_free(s);
    sr_router_close(router);
    return 0;
}
