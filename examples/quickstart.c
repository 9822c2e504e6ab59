/*
 * shardroute quickstart: 4 SQLite shards, each a primary and 2 read-only
 * replicas, in one directory.
 *
 *   quickstart [DIR]      (default: a fresh temporary directory)
 *
 * It creates a table on every shard, writes 100,000 rows keyed by id in
 * per-shard transactions, reads 100,000 random ids back through the replicas
 * checking every row, counts all rows with one scatter query, and prints rows
 * per shard, reads per node, throughput and read latency percentiles. Exits
 * non-zero on any mismatch.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, mkdtemp, mkdir */

#include <shardroute.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define NSHARDS 4
#define NREPLICAS 2
#define NROWS 100000
#define NREADS 100000

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

/* The row every id must read back as. */
static void expected_row(int64_t id, char *name, size_t namelen, char *score, size_t scorelen)
{
    snprintf(name, namelen, "user-%" PRId64, id);
    snprintf(score, scorelen, "%" PRId64, (id * 7919) % 1000);
}

static int fail(const char *what, int rc, sr_session *s)
{
    fprintf(stderr, "quickstart: %s failed: %s: %s\n", what, sr_strerror(rc),
            s ? sr_session_errmsg(s) : "");
    return 1;
}

static int open_router(const char *dir, sr_router **out)
{
    sr_config *cfg = sr_config_new();
    if (!cfg)
        return SR_ENOMEM;
    /* Under the default keyrange distribution a shard named by a hex range owns
     * that slice of the 64-bit hashed keyspace (Vitess style). */
    static const char *const names[NSHARDS] = {"-40", "40-80", "80-c0", "c0-"};
    int rc = sr_config_set(cfg, "balance.policy", "round_robin");
    for (int i = 0; rc == SR_OK && i < NSHARDS; i++) {
        char uri[4096];
        snprintf(uri, sizeof uri, "sqlite:%s/shard%d.db", dir, i);
        rc = sr_config_add_shard(cfg, names[i]);
        if (rc == SR_OK)
            rc = sr_config_add_node(cfg, names[i], SR_PRIMARY, uri, 1);
        /* Replicas: read-only connections to the same file (WAL lets them read while the
         * primary writes). */
        for (int r = 0; rc == SR_OK && r < NREPLICAS; r++)
            rc = sr_config_add_node(cfg, names[i], SR_REPLICA, uri, 1);
    }
    if (rc == SR_OK)
        rc = sr_router_open(cfg, out);
    if (rc != SR_OK)
        fprintf(stderr, "quickstart: configuration: %s: %s\n", sr_strerror(rc),
                sr_config_errmsg(cfg));
    sr_config_free(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    char dirbuf[] = "/tmp/shardroute-quickstart-XXXXXX";
    const char *dir = argc > 1 ? argv[1] : mkdtemp(dirbuf);
    if (!dir) {
        perror("quickstart: mkdtemp");
        return 1;
    }
    /* A directory named on the command line is created when missing (its
     * parent must exist): SQLite creates files, not directories. */
    if (argc > 1 && mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "quickstart: cannot create the directory %s: %s\n", dir, strerror(errno));
        return 1;
    }

    sr_router *router = NULL;
    if (open_router(dir, &router) != SR_OK)
        return 1;
    sr_session *s = NULL;
    int rc = sr_session_new(router, &s);
    if (rc != SR_OK)
        return fail("session", rc, NULL);

    /* Schema on every shard (a re-run starts from an empty table). */
    for (int i = 0; i < NSHARDS; i++) {
        rc = sr_exec_shard(s, i, SR_WRITE, "DROP TABLE IF EXISTS users", 0, NULL, NULL);
        if (rc == SR_OK)
            rc = sr_exec_shard(s, i, SR_WRITE,
                               "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                               "score INTEGER NOT NULL)",
                               0, NULL, NULL);
        if (rc != SR_OK)
            return fail("create table", rc, s);
    }

    /* Writes: group ids by shard, one transaction per shard. */
    int rows_per_shard[NSHARDS] = {0};
    double t0 = now_s();
    for (int shard = 0; shard < NSHARDS; shard++) {
        rc = sr_begin_shard(s, shard);
        if (rc != SR_OK)
            return fail("begin", rc, s);
        for (int64_t id = 1; id <= NROWS; id++) {
            if (sr_router_shard_for(router, sr_key_int(id)) != shard)
                continue;
            char ids[24], name[32], score[16];
            snprintf(ids, sizeof ids, "%" PRId64, id);
            expected_row(id, name, sizeof name, score, sizeof score);
            const char *params[] = {ids, name, score};
            rc = sr_exec(s, sr_key_int(id), SR_WRITE,
                         "INSERT INTO users (id, name, score) VALUES (?, ?, ?)", 3, params, NULL);
            if (rc != SR_OK)
                return fail("insert", rc, s);
            rows_per_shard[shard]++;
        }
        rc = sr_commit(s);
        if (rc != SR_OK)
            return fail("commit", rc, s);
    }
    double write_s = now_s() - t0;

    /* Reads: random ids through the replicas, every row checked. */
    double *lat = malloc(NREADS * sizeof *lat);
    if (!lat)
        return 1;
    srand(42);
    int mismatches = 0;
    t0 = now_s();
    for (int i = 0; i < NREADS; i++) {
        int64_t id = 1 + (int64_t)(((uint64_t)rand() * ((uint64_t)RAND_MAX + 1) + (uint64_t)rand()) %
                                   NROWS);
        char ids[24], name[32], score[16];
        snprintf(ids, sizeof ids, "%" PRId64, id);
        expected_row(id, name, sizeof name, score, sizeof score);
        const char *params[] = {ids};
        sr_result *res = NULL;
        double r0 = now_s();
        rc = sr_exec(s, sr_key_int(id), SR_READ, "SELECT id, name, score FROM users WHERE id = ?", 1,
                     params, &res);
        lat[i] = now_s() - r0;
        if (rc != SR_OK)
            return fail("read", rc, s);
        if (sr_result_nrows(res) != 1 || strcmp(sr_result_value(res, 0, 0), ids) != 0 ||
            strcmp(sr_result_value(res, 0, 1), name) != 0 ||
            strcmp(sr_result_value(res, 0, 2), score) != 0) {
            if (mismatches++ < 5)
                fprintf(stderr, "quickstart: id %s read back wrong (%d rows)\n", ids,
                        sr_result_nrows(res));
        }
        sr_result_free(res);
    }
    double read_s = now_s() - t0;

    /* Scatter: COUNT(*) on every shard at once, the counts added up into one row. */
    sr_result *counts = NULL;
    rc = sr_exec_all(s, SR_READ, "SELECT COUNT(*) FROM users", 0, NULL, &counts);
    if (rc != SR_OK)
        return fail("scatter count", rc, s);
    long long total = 0;
    for (int i = 0; i < sr_result_nrows(counts); i++)
        total += atoll(sr_result_value(counts, i, 0));

    /* Report. */
    printf("shardroute %s quickstart — %d SQLite shards in %s\n\n", sr_version(), NSHARDS, dir);
    printf("%-8s %8s   %s\n", "shard", "rows", "reads per node (primary, replica 1, replica 2)");
    for (int i = 0; i < NSHARDS; i++) {
        printf("%-8s %8d  ", sr_router_shard_name(router, i), rows_per_shard[i]);
        for (int n = 0; n < sr_router_nnodes(router, i); n++) {
            sr_node_info info = SR_NODE_INFO_INIT;
            if (sr_router_node_info(router, i, n, &info) == SR_OK)
                printf(" %10" PRIu64, info.statements);
        }
        printf("\n");
    }
    qsort(lat, NREADS, sizeof *lat, cmp_double);
    printf("\nwrites: %d rows in %.3f s (%.0f rows/s, 4 transactions)\n", NROWS, write_s,
           NROWS / write_s);
    printf("reads:  %d routed point reads in %.3f s (%.0f reads/s), p50 %.1f us, p99 %.1f us\n",
           NREADS, read_s, NREADS / read_s, lat[NREADS / 2] * 1e6, lat[NREADS * 99 / 100] * 1e6);
    printf("scatter COUNT(*) over %d shards: %lld (expected %d)\n", sr_result_nrows(counts), total,
           NROWS);
    printf("row checks: %d reads, %d mismatches\n", NREADS, mismatches);
    printf("(node counters include the schema statements run on each primary)\n");

    int ok = mismatches == 0 && total == NROWS;
    printf("\n%s\n", ok ? "OK" : "FAILED");
    sr_result_free(counts);
    free(lat);
    sr_session_free(s);
    sr_router_close(router);
    return ok ? 0 : 1;
}
