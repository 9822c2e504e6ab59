/*
 * Consistency figures on PostgreSQL: what each mode costs and what it buys.
 *
 *   bench_consistency [PAIRS] [ITERATIONS]
 *
 *  1. Stale reads per mode while replay is paused on every replica: PAIRS
 *     write-then-read pairs (UPDATE a row, read it back by key) per mode;
 *     a read is stale when it does not return the value just written.
 *     consistency.wait_ms is 5 here, since with replay paused every wait is
 *     in vain.
 *  2. With replication running normally (consistency.wait_ms at its
 *     default), ITERATIONS rounds of: write then read under read_your_writes,
 *     write then read under any (alternating which goes first), on one
 *     session: the share of read_your_writes reads that replicas served, and
 *     the median and p90 latency of each kind of read, so the added latency
 *     of read_your_writes is measured in the same run against the same
 *     servers. Done twice: with the cluster's synchronous_commit (off in
 *     tests/env/pg_cluster.sh, so a commit reaches replicas only after the
 *     WAL writer's next round, up to wal_writer_delay later) and with
 *     synchronous_commit = on (set through the URI's options parameter).
 *
 * Needs SR_PG_PRIMARY, SR_PG_REPLICA1 and SR_PG_REPLICA2 (tests/env/pg_cluster.sh
 * run ...); the database shard0 must exist. One shard: the primary and both
 * replicas, round_robin. It measures and prints; it asserts nothing. Replay is
 * resumed on both replicas before it exits, also after a failure.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shardroute.h>

enum { KEYS = 50 };

static const char *primary_base, *replica_base[2];
static int primary_port;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (0..1) of v[0..n), sorting v. */
static double quantile(double *v, int n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)(q * (n - 1) + 0.5);
    return v[i];
}

static void resume_all(void);

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_consistency: %s: %s\n", what, why);
    resume_all();
    exit(1);
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static PGconn *connect_db(const char *base, const char *db)
{
    char uri[512];
    snprintf(uri, sizeof uri, "%s/%s", base, db);
    PGconn *c = PQconnectdb(uri);
    if (PQstatus(c) != CONNECTION_OK)
        die("connect", PQerrorMessage(c));
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

/* Runs `sql`; returns the first value of the first row (static buffer) or "". */
static const char *query(PGconn *c, const char *sql)
{
    static char buf[256];
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char what[300];
        snprintf(what, sizeof what, "%.200s", sql);
        die(what, PQresultErrorMessage(r));
    }
    buf[0] = '\0';
    if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        snprintf(buf, sizeof buf, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return buf;
}

static void resume_all(void)
{
    for (int i = 0; i < 2; i++) {
        if (!replica_base[i])
            continue;
        char uri[512];
        snprintf(uri, sizeof uri, "%s/postgres", replica_base[i]);
        PGconn *c = PQconnectdb(uri);
        if (PQstatus(c) == CONNECTION_OK)
            PQclear(PQexec(c, "SELECT pg_wal_replay_resume()"));
        PQfinish(c);
    }
}

static void pause_all(void)
{
    for (int i = 0; i < 2; i++) {
        PGconn *c = connect_db(replica_base[i], "postgres");
        query(c, "SELECT pg_wal_replay_pause()");
        double t0 = now_ms();
        while (strcmp(query(c, "SELECT pg_get_wal_replay_pause_state()"), "paused") != 0) {
            if (now_ms() - t0 > 10000)
                die("pause", "replay did not pause within 10 s");
            sleep_ms(5);
        }
        PQfinish(c);
    }
}

/* Waits until both replicas hold a marker committed on the primary now. */
static void sync_replicas(void)
{
    PGconn *p = connect_db(primary_base, "shard0");
    query(p, "CREATE TABLE IF NOT EXISTS bench_cons_sync (n bigserial)");
    char n[64];
    snprintf(n, sizeof n, "%s", query(p, "INSERT INTO bench_cons_sync DEFAULT VALUES RETURNING n"));
    PQfinish(p);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT to_regclass('bench_cons_sync') IS NOT NULL AND "
             "EXISTS (SELECT 1 FROM bench_cons_sync WHERE n = %s)", n);
    for (int i = 0; i < 2; i++) {
        PGconn *c = connect_db(replica_base[i], "shard0");
        double t0 = now_ms();
        while (strcmp(query(c, "SELECT to_regclass('bench_cons_sync') IS NOT NULL"), "t") != 0 ||
               strcmp(query(c, sql), "t") != 0) {
            if (now_ms() - t0 > 15000)
                die("sync", "a replica did not catch up within 15 s");
            sleep_ms(5);
        }
        PQfinish(c);
    }
}

/* A router over shard0: primary and both replicas; `uri_suffix` is appended to every URI. */
static sr_router *open_router(const char *wait_ms, const char *uri_suffix)
{
    sr_config *c = sr_config_new();
    if (!c)
        die("config", "out of memory");
    int rc = sr_config_set(c, "balance.policy", "round_robin");
    if (rc == SR_OK && wait_ms)
        rc = sr_config_set(c, "consistency.wait_ms", wait_ms);
    if (rc == SR_OK)
        rc = sr_config_add_shard(c, "shard0");
    const char *bases[3] = {primary_base, replica_base[0], replica_base[1]};
    for (int i = 0; rc == SR_OK && i < 3; i++) {
        char uri[512];
        snprintf(uri, sizeof uri, "%s/shard0%s", bases[i], uri_suffix);
        rc = sr_config_add_node(c, "shard0", i == 0 ? SR_PRIMARY : SR_REPLICA, uri, 1);
    }
    sr_router *r = NULL;
    if (rc == SR_OK)
        rc = sr_router_open(c, &r);
    if (rc != SR_OK)
        die("router", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

static sr_session *session(sr_router *r, const char *mode)
{
    sr_session *s = NULL;
    if (sr_session_new(r, &s) != SR_OK || sr_session_set(s, "consistency", mode) != SR_OK)
        die("session", mode);
    return s;
}

static void write_value(sr_session *s, int key, const char *value)
{
    char ks[16];
    snprintf(ks, sizeof ks, "%d", key);
    const char *p[] = {value, ks};
    int rc = sr_exec(s, sr_key_int(key), SR_WRITE, "UPDATE bench_cons SET v = ? WHERE k = ?", 2, p,
                     NULL);
    if (rc != SR_OK)
        die("write", sr_session_errmsg(s));
}

/* One read of row `key`: whether it returned `want`, whether a replica served it, its time. */
typedef struct outcome {
    int fresh;
    int on_replica;
    double ms;
} outcome;

static outcome read_value(sr_session *s, int key, const sr_read_opts *opts, const char *want)
{
    char ks[16];
    snprintf(ks, sizeof ks, "%d", key);
    const char *p[] = {ks};
    sr_result *res = NULL;
    double t0 = now_ms();
    int rc = sr_exec_opts(s, sr_key_int(key), SR_READ, opts,
                          "SELECT v, inet_server_port() FROM bench_cons WHERE k = ?", 1, p, &res);
    outcome o;
    o.ms = now_ms() - t0;
    if (rc != SR_OK || sr_result_nrows(res) != 1)
        die("read", rc != SR_OK ? sr_session_errmsg(s) : "no row");
    const char *v = sr_result_value(res, 0, 0);
    o.fresh = v && strcmp(v, want) == 0;
    o.on_replica = atoi(sr_result_value(res, 0, 1)) != primary_port;
    sr_result_free(res);
    return o;
}

static void setup_table(void)
{
    PGconn *p = connect_db(primary_base, "shard0");
    query(p, "DROP TABLE IF EXISTS bench_cons");
    query(p, "CREATE TABLE bench_cons (k int PRIMARY KEY, v text NOT NULL)");
    char sql[128];
    snprintf(sql, sizeof sql,
             "INSERT INTO bench_cons SELECT g, 'initial' FROM generate_series(0, %d) g", KEYS - 1);
    query(p, sql);
    PQfinish(p);
    sync_replicas();
}

/* Part 1: stale reads per mode with replay paused on every replica. */
static void stale_per_mode(int pairs)
{
    printf("\n1. Replay paused on both replicas: %d write-then-read pairs per mode "
           "(consistency.wait_ms = 5)\n\n", pairs);
    printf("| mode | stale reads | served by replicas | served by the primary | ms per pair |\n");
    printf("| --- | ---: | ---: | ---: | ---: |\n");
    sr_router *r = open_router("5", "");
    pause_all();
    const char *modes[] = {"any", "monotonic", "read_your_writes", "primary"};
    for (int m = 0; m < 4; m++) {
        sr_session *s = session(r, modes[m]);
        int stale = 0, on_replica = 0;
        double t0 = now_ms();
        for (int i = 0; i < pairs; i++) {
            char v[48];
            snprintf(v, sizeof v, "%s-%d", modes[m], i);
            int key = i % KEYS;
            write_value(s, key, v);
            outcome o = read_value(s, key, NULL, v);
            stale += !o.fresh;
            on_replica += o.on_replica;
        }
        double per_pair = (now_ms() - t0) / pairs;
        printf("| %s | %d (%.1f%%) | %d | %d | %.2f |\n", modes[m], stale, 100.0 * stale / pairs,
               on_replica, pairs - on_replica, per_pair);
        fflush(stdout);
        sr_session_free(s);
    }
    resume_all();
    sr_router_close(r);
    sync_replicas();
}

/* Part 2: read_your_writes against any with replication running, in one run. */
static void ryw_versus_any(int iterations, const char *label, const char *uri_suffix)
{
    sr_router *r = open_router(NULL, uri_suffix);
    sr_session *s = session(r, "read_your_writes");
    sr_read_opts any = SR_READ_OPTS_INIT;
    any.consistency = SR_CONSISTENCY_ANY;
    double *lat_ryw = malloc(sizeof(double) * (size_t)iterations);
    double *lat_any = malloc(sizeof(double) * (size_t)iterations);
    if (!lat_ryw || !lat_any)
        die("memory", "out of memory");
    int ryw_replica = 0, ryw_stale = 0, any_replica = 0, any_stale = 0;
    /* Warm-up: connections to every node, prepared statements. */
    for (int i = 0; i < 10; i++) {
        write_value(s, i, "warm");
        read_value(s, i, &any, "warm");
        read_value(s, i, NULL, "warm");
    }
    for (int i = 0; i < iterations; i++) {
        for (int half = 0; half < 2; half++) {
            int ryw_turn = (i + half) % 2 == 0; /* alternate which mode goes first */
            int key = (2 * i + half) % KEYS;
            char v[48];
            snprintf(v, sizeof v, "%s-%d-%d", ryw_turn ? "ryw" : "any", i, half);
            write_value(s, key, v);
            outcome o = read_value(s, key, ryw_turn ? NULL : &any, v);
            if (ryw_turn) {
                lat_ryw[i] = o.ms;
                ryw_replica += o.on_replica;
                ryw_stale += !o.fresh;
            } else {
                lat_any[i] = o.ms;
                any_replica += o.on_replica;
                any_stale += !o.fresh;
            }
        }
    }
    double ryw_med = quantile(lat_ryw, iterations, 0.5);
    double ryw_p90 = quantile(lat_ryw, iterations, 0.9);
    double any_med = quantile(lat_any, iterations, 0.5);
    double any_p90 = quantile(lat_any, iterations, 0.9);
    printf("| %s | read_your_writes | %.1f%% | %d | %.3f | %.3f |\n", label,
           100.0 * ryw_replica / iterations, ryw_stale, ryw_med, ryw_p90);
    printf("| %s | any | %.1f%% | %d | %.3f | %.3f |\n", label, 100.0 * any_replica / iterations,
           any_stale, any_med, any_p90);
    printf("| %s | added by read_your_writes (median) | | | %+.3f | |\n", label, ryw_med - any_med);
    fflush(stdout);
    free(lat_ryw);
    free(lat_any);
    sr_session_free(s);
    sr_router_close(r);
}

int main(int argc, char **argv)
{
    int pairs = argc > 1 ? atoi(argv[1]) : 1000;
    int iterations = argc > 2 ? atoi(argv[2]) : 200;
    primary_base = getenv("SR_PG_PRIMARY");
    replica_base[0] = getenv("SR_PG_REPLICA1");
    replica_base[1] = getenv("SR_PG_REPLICA2");
    const char *pp = getenv("SR_PG_PRIMARY_PORT");
    if (!primary_base || !replica_base[0] || !replica_base[1] || !pp) {
        fprintf(stderr, "bench_consistency: needs SR_PG_PRIMARY, SR_PG_PRIMARY_PORT, "
                        "SR_PG_REPLICA1 and SR_PG_REPLICA2 (tests/env/pg_cluster.sh run ...)\n");
        return 77;
    }
    if (pairs < 1 || iterations < 1) {
        fprintf(stderr, "usage: bench_consistency [PAIRS] [ITERATIONS] (both >= 1)\n");
        return 2;
    }
    primary_port = atoi(pp);
    printf("bench_consistency: PostgreSQL, one shard (primary + 2 streaming replicas), "
           "round_robin, shardroute %s\n", sr_version());
    PGconn *p = connect_db(primary_base, "shard0");
    char version[64], sync_commit[32];
    snprintf(version, sizeof version, "%s", query(p, "SHOW server_version"));
    snprintf(sync_commit, sizeof sync_commit, "%s", query(p, "SHOW synchronous_commit"));
    printf("server %s, synchronous_commit = %s, wal_writer_delay = %s\n", version, sync_commit,
           query(p, "SHOW wal_writer_delay"));
    PQfinish(p);
    resume_all(); /* a previous run that was killed may have left replay paused */
    setup_table();

    stale_per_mode(pairs);

    printf("\n2. Replication running, consistency.wait_ms at its default: %d rounds of "
           "write-then-read per mode, one session, alternating\n\n", iterations);
    printf("| synchronous_commit | read | served by replicas | stale | median ms | p90 ms |\n");
    printf("| --- | --- | ---: | ---: | ---: | ---: |\n");
    char label[64];
    snprintf(label, sizeof label, "%s (the cluster's)", sync_commit);
    ryw_versus_any(iterations, label, "");
    ryw_versus_any(iterations, "on", "?options=-c%20synchronous_commit%3Don");
    resume_all();
    return 0;
}
