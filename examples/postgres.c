/*
 * shardroute on PostgreSQL: two shards (databases shard0 and shard1) on one
 * primary with streaming replicas. Creates a table on each shard, writes rows
 * in one transaction per shard on the primaries, reads every row back through
 * the replicas, checks it, and counts rows on all shards at once.
 *
 *   postgres_example [PRIMARY [REPLICA...]]
 *
 * Each argument is a base URI without a database, e.g.
 * postgresql://user:pass@127.0.0.1:5432; the databases shard0 and shard1
 * must exist on the primary. Without arguments the URIs come from
 * SR_PG_PRIMARY, SR_PG_REPLICA1 and SR_PG_REPLICA2 (as written by
 * tests/env/pg_cluster.sh):
 *
 *   tests/env/pg_cluster.sh run BUILD/examples/postgres_example
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shardroute.h>

#define NROWS 20
#define MAX_REPLICAS 8

static const char *const shards[] = {"shard0", "shard1"};
enum { NSHARDS = sizeof shards / sizeof shards[0] };

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "postgres_example: %s: %s\n", what, why);
    return 1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* The table itself may not have reached a replica yet: "undefined table" (42P01). */
static int not_replicated_yet(const sr_session *s, int rc)
{
    return (rc == SR_EQUERY || rc == SR_EPARTIAL) && strcmp(sr_session_sqlstate(s), "42P01") == 0;
}

/* "BASE/DB" into buf. */
static const char *node_uri(char *buf, size_t len, const char *base, const char *db)
{
    snprintf(buf, len, "%s/%s", base, db);
    return buf;
}

int main(int argc, char **argv)
{
    const char *primary = argc > 1 ? argv[1] : getenv("SR_PG_PRIMARY");
    const char *replicas[MAX_REPLICAS];
    int nreplicas = 0;
    if (argc > 1) {
        for (int i = 2; i < argc && nreplicas < MAX_REPLICAS; i++)
            replicas[nreplicas++] = argv[i];
    } else {
        const char *names[] = {"SR_PG_REPLICA1", "SR_PG_REPLICA2"};
        for (int i = 0; i < 2; i++)
            if (getenv(names[i]))
                replicas[nreplicas++] = getenv(names[i]);
    }
    if (!primary)
        return fail("usage", "postgres_example PRIMARY [REPLICA...] (or set SR_PG_PRIMARY)");

    /* 1. Configure: two shards, each the primary's database plus the replicas'. */
    sr_config *cfg = sr_config_new();
    if (!cfg)
        return fail("config", "out of memory");
    char uri[512];
    sr_config_set(cfg, "balance.policy", "round_robin");
    for (int i = 0; i < NSHARDS; i++) {
        if (sr_config_add_shard(cfg, shards[i]) != SR_OK ||
            sr_config_add_node(cfg, shards[i], SR_PRIMARY,
                               node_uri(uri, sizeof uri, primary, shards[i]), 1) != SR_OK)
            return fail("config", sr_config_errmsg(cfg));
        for (int r = 0; r < nreplicas; r++)
            if (sr_config_add_node(cfg, shards[i], SR_REPLICA,
                                   node_uri(uri, sizeof uri, replicas[r], shards[i]), 1) != SR_OK)
                return fail("config", sr_config_errmsg(cfg));
    }
    sr_router *router = NULL;
    if (sr_router_open(cfg, &router) != SR_OK)
        return fail("sr_router_open", sr_config_errmsg(cfg));
    sr_config_free(cfg);
    sr_session *s = NULL;
    if (sr_session_new(router, &s) != SR_OK)
        return fail("sr_session_new", "out of memory");

    /* 2. The same table on every shard (DDL goes to each primary). */
    for (int i = 0; i < NSHARDS; i++)
        if (sr_exec_shard(s, i, SR_WRITE,
                          "DROP TABLE IF EXISTS example_users; "
                          "CREATE TABLE example_users (id bigint PRIMARY KEY, name text, email text)",
                          0, NULL, NULL) != SR_OK)
            return fail("create table", sr_session_errmsg(s));

    /* 3. Writes: one transaction per shard, each row on the shard its key maps to. */
    for (int shard = 0; shard < NSHARDS; shard++) {
        if (sr_begin_shard(s, shard) != SR_OK)
            return fail("begin", sr_session_errmsg(s));
        for (int id = 1; id <= NROWS; id++) {
            if (sr_router_shard_for(router, sr_key_int(id)) != shard)
                continue;
            char ids[24], name[32], email[64];
            snprintf(ids, sizeof ids, "%d", id);
            snprintf(name, sizeof name, "user %d", id);
            snprintf(email, sizeof email, "user%d@example.com", id);
            const char *params[] = {ids, name, email};
            if (sr_exec(s, sr_key_int(id), SR_WRITE,
                        "INSERT INTO example_users (id, name, email) VALUES (?, ?, ?)", 3, params,
                        NULL) != SR_OK)
                return fail("insert", sr_session_errmsg(s));
        }
        if (sr_commit(s) != SR_OK)
            return fail("commit", sr_session_errmsg(s));
    }

    /*
     * 4. Reads through the replicas. Streaming replication is asynchronous,
     * so a row written a moment ago may not have arrived yet: retry briefly.
     */
    printf("%4s  %-7s  %-9s  %-22s  %s\n", "id", "shard", "name", "email", "served by");
    int bad = 0;
    for (int id = 1; id <= NROWS; id++) {
        char ids[24];
        snprintf(ids, sizeof ids, "%d", id);
        const char *params[] = {ids};
        sr_result *res = NULL;
        for (int attempt = 0; attempt < 250; attempt++) {
            sr_result_free(res);
            res = NULL;
            int rc = sr_exec(s, sr_key_int(id), SR_READ,
                             "SELECT name, email, CASE WHEN pg_is_in_recovery() THEN 'replica :' "
                             "ELSE 'primary :' END || inet_server_port() "
                             "FROM example_users WHERE id = ?",
                             1, params, &res);
            if (rc != SR_OK && !not_replicated_yet(s, rc))
                return fail("read", sr_session_errmsg(s));
            if (rc == SR_OK && sr_result_nrows(res) == 1)
                break;
            sleep_ms(20);
        }
        char name[32], email[64];
        snprintf(name, sizeof name, "user %d", id);
        snprintf(email, sizeof email, "user%d@example.com", id);
        if (sr_result_nrows(res) != 1 || strcmp(sr_result_value(res, 0, 0), name) != 0 ||
            strcmp(sr_result_value(res, 0, 1), email) != 0) {
            fprintf(stderr, "postgres_example: row %d is missing or wrong\n", id);
            bad++;
        } else {
            printf("%4d  %-7s  %-9s  %-22s  %s\n", id,
                   sr_router_shard_name(router, sr_router_shard_for(router, sr_key_int(id))),
                   sr_result_value(res, 0, 0), sr_result_value(res, 0, 1),
                   sr_result_value(res, 0, 2));
        }
        sr_result_free(res);
    }

    /* 5. Scatter-gather: one count per shard, merged in shard order (again, replicas may lag). */
    sr_result *all = NULL;
    long total = 0;
    for (int attempt = 0; attempt < 250 && total != NROWS; attempt++) {
        if (attempt)
            sleep_ms(20);
        sr_result_free(all);
        all = NULL;
        /* The shards' own counts, in shard order (without SR_MERGE_CONCAT the counts
         * would be added up into one row). */
        sr_scatter_opts per_shard = SR_SCATTER_OPTS_INIT;
        per_shard.merge = SR_MERGE_CONCAT;
        int rc = sr_exec_all_values(s, SR_READ, &per_shard, "SELECT count(*) FROM example_users",
                                    0, NULL, &all);
        if (rc != SR_OK && !not_replicated_yet(s, rc))
            return fail("count", sr_session_errmsg(s));
        total = 0;
        for (int row = 0; row < sr_result_nrows(all); row++)
            total += atol(sr_result_value(all, row, 0));
    }
    for (int row = 0; row < sr_result_nrows(all); row++)
        printf("shard %-7s %s rows\n", sr_router_shard_name(router, sr_result_shard(all, row)),
               sr_result_value(all, row, 0));
    sr_result_free(all);
    printf("total         %ld rows (%s)\n", total, total == NROWS && !bad ? "ok" : "MISMATCH");

    sr_session_free(s);
    sr_router_close(router);
    return total == NROWS && !bad ? 0 : 1;
}
