/*
 * shardroute on MySQL / MariaDB: the quickstart's flow on a real primary and
 * replica. Two shards live on the pair as the databases shard0 and shard1
 * (they must exist on the primary; the replica gets them by replication).
 *
 *   mysql_example [PRIMARY_URI REPLICA_URI]
 *
 * The URIs name the servers without a database, e.g.
 * mysql://app:secret@127.0.0.1:3306; by default they come from SR_MY_PRIMARY
 * and SR_MY_REPLICA (tests/env/mariadb_cluster.sh exports both).
 *
 * It creates a table on every shard, writes NROWS rows keyed by id in one
 * transaction per shard, waits until the replica has applied them (MariaDB
 * replication is asynchronous), reads NREADS random ids back through the
 * replica checking every row, counts all rows with one scatter query, and
 * prints rows per shard, statements per node, throughput and read latency
 * percentiles. Exits non-zero on any mismatch.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */

#include <shardroute.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NSHARDS 2
#define NROWS 10000
#define NREADS 10000

static const char *const shard_names[NSHARDS] = {"shard0", "shard1"};

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
    fprintf(stderr, "mysql_example: %s failed: %s: %s\n", what, sr_strerror(rc),
            s ? sr_session_errmsg(s) : "");
    return 1;
}

static int open_router(const char *primary, const char *replica, sr_router **out)
{
    sr_config *cfg = sr_config_new();
    if (!cfg)
        return SR_ENOMEM;
    /* Bounded waits: a node that does not answer costs at most this long. */
    int rc = sr_config_set(cfg, "connect_timeout_ms", "2000");
    if (rc == SR_OK)
        rc = sr_config_set(cfg, "statement_timeout_ms", "5000");
    for (int i = 0; rc == SR_OK && i < NSHARDS; i++) {
        char uri[1024];
        rc = sr_config_add_shard(cfg, shard_names[i]);
        /* Each shard is one database on the pair: the node URI names it. */
        snprintf(uri, sizeof uri, "%s/%s", primary, shard_names[i]);
        if (rc == SR_OK)
            rc = sr_config_add_node(cfg, shard_names[i], SR_PRIMARY, uri, 1);
        snprintf(uri, sizeof uri, "%s/%s", replica, shard_names[i]);
        if (rc == SR_OK)
            rc = sr_config_add_node(cfg, shard_names[i], SR_REPLICA, uri, 1);
    }
    if (rc == SR_OK)
        rc = sr_router_open(cfg, out);
    if (rc != SR_OK)
        fprintf(stderr, "mysql_example: configuration: %s: %s\n", sr_strerror(rc),
                sr_config_errmsg(cfg));
    sr_config_free(cfg);
    return rc;
}

/* Total rows of the table over every shard, read where `intent` sends it. */
static int count_rows(sr_session *s, sr_intent intent, long long *total)
{
    sr_result *counts = NULL;
    int rc = sr_exec_all(s, intent, "SELECT COUNT(*) FROM users", 0, NULL, &counts);
    if (rc != SR_OK)
        return rc;
    *total = 0;
    for (int i = 0; i < sr_result_nrows(counts); i++)
        *total += atoll(sr_result_value(counts, i, 0));
    sr_result_free(counts);
    return SR_OK;
}

int main(int argc, char **argv)
{
    const char *primary = argc > 2 ? argv[1] : getenv("SR_MY_PRIMARY");
    const char *replica = argc > 2 ? argv[2] : getenv("SR_MY_REPLICA");
    if (!primary || !replica) {
        fprintf(stderr, "usage: %s PRIMARY_URI REPLICA_URI   (or set SR_MY_PRIMARY and "
                        "SR_MY_REPLICA)\n",
                argv[0]);
        return 2;
    }

    sr_router *router = NULL;
    if (open_router(primary, replica, &router) != SR_OK)
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
                               "CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(64) NOT "
                               "NULL, score INT NOT NULL)",
                               0, NULL, NULL);
        if (rc != SR_OK)
            return fail("create table", rc, s);
    }

    /* Writes: group ids by shard, one transaction per shard, on its primary. */
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

    /* Replication is asynchronous: wait (bounded) until the replica has every row. */
    long long on_replica = 0;
    t0 = now_s();
    for (;;) {
        rc = count_rows(s, SR_READ, &on_replica);
        if (rc != SR_OK)
            return fail("count on the replica", rc, s);
        if (on_replica == NROWS || now_s() - t0 > 30)
            break;
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    double catch_up_s = now_s() - t0;
    if (on_replica != NROWS) {
        fprintf(stderr, "mysql_example: the replica has %lld of %d rows after 30 s\n", on_replica,
                NROWS);
        return 1;
    }

    /* Reads: random ids through the replica, every row checked. */
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
                fprintf(stderr, "mysql_example: id %s read back wrong (%d rows)\n", ids,
                        sr_result_nrows(res));
        }
        sr_result_free(res);
    }
    double read_s = now_s() - t0;

    /* Scatter: one COUNT(*) per shard, merged. */
    long long total = 0;
    rc = count_rows(s, SR_READ, &total);
    if (rc != SR_OK)
        return fail("scatter count", rc, s);

    /* Report. */
    printf("shardroute %s on MySQL/MariaDB — %d shards (databases) on one primary + replica\n\n",
           sr_version(), NSHARDS);
    printf("%-8s %8s   %s\n", "shard", "rows", "statements per node (primary, replica)");
    for (int i = 0; i < NSHARDS; i++) {
        printf("%-8s %8d  ", sr_router_shard_name(router, i), rows_per_shard[i]);
        for (int n = 0; n < sr_router_nnodes(router, i); n++) {
            sr_node_info info = SR_NODE_INFO_INIT;
            if (sr_router_node_info(router, i, n, &info) == SR_OK)
                printf(" %10" PRIu64, info.statements);
        }
        printf("\n");
    }
    for (int n = 0; n < sr_router_nnodes(router, 0); n++) {
        sr_node_info info = SR_NODE_INFO_INIT;
        if (sr_router_node_info(router, 0, n, &info) == SR_OK)
            printf("node %d: %s (password never shown)\n", n, info.uri);
    }
    qsort(lat, NREADS, sizeof *lat, cmp_double);
    printf("\nwrites: %d rows in %.3f s (%.0f rows/s, %d transactions)\n", NROWS, write_s,
           NROWS / write_s, NSHARDS);
    printf("replica caught up %.3f s after the last commit\n", catch_up_s);
    printf("reads:  %d routed point reads in %.3f s (%.0f reads/s), p50 %.1f us, p99 %.1f us\n",
           NREADS, read_s, NREADS / read_s, lat[NREADS / 2] * 1e6, lat[NREADS * 99 / 100] * 1e6);
    printf("scatter COUNT(*) over %d shards: %lld (expected %d)\n", NSHARDS, total, NROWS);
    printf("row checks: %d reads, %d mismatches\n", NREADS, mismatches);

    int ok = mismatches == 0 && total == NROWS;
    printf("\n%s\n", ok ? "OK" : "FAILED");
    free(lat);
    sr_session_free(s);
    sr_router_close(router);
    return ok ? 0 : 1;
}
