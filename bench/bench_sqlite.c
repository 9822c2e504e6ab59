/*
 * SQLite overhead: routed point reads (sr_exec, SR_READ, primary-key lookup)
 * against direct sqlite3 prepared-statement point reads on the same file, in
 * the same run. Both sides bind the key as text, step, copy every column out
 * and reset, so the difference is what shardroute adds: key hashing, shard
 * and replica selection, pool checkout, statement cache lookup, the result
 * allocation and stepping to SQLITE_DONE (a driver cannot know that a
 * statement returns one row; the direct side, which knows, resets after it).
 *
 * Wall time here is dominated by SQLite's two fcntl() lock calls per read
 * and by the machine's load; for a noise-free figure compare the inclusive
 * instruction counts of routed_round and direct_round under
 * valgrind --tool=callgrind (callgrind_annotate --inclusive=yes).
 *
 *   bench_sqlite [ROWS] [READS_PER_ROUND] [ROUNDS] [EVENTS_SAMPLE]
 *
 * Metrics are always counted (relaxed atomic increments). EVENTS_SAMPLE > 0
 * also sets an event callback (one that only counts) with events.sample =
 * EVENTS_SAMPLE, to measure what routing events cost; 0 (the default) sets none.
 *
 * Rounds alternate routed and direct; the table shows the median of each.
 */
#include <inttypes.h>
#include <sqlite3.h>
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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_sqlite: %s: %s\n", what, why);
    exit(1);
}

/* One round of routed reads (a function of its own, so profilers can tell the sides apart). */
__attribute__((noinline)) static size_t routed_round(sr_session *s, char (*keys)[16], const int64_t *ids, int nreads)
{
    size_t checksum = 0;
    for (int i = 0; i < nreads; i++) {
        const char *p[] = {keys[i]};
        sr_result *res = NULL;
        if (sr_exec(s, sr_key_int(ids[i]), SR_READ, "SELECT k, v FROM kv WHERE k = ?", 1, p, &res) !=
            SR_OK)
            die("routed read", sr_session_errmsg(s));
        checksum += sr_result_length(res, 0, 0) + sr_result_length(res, 0, 1);
        sr_result_free(res);
    }
    return checksum;
}

/* Copies a column's text out of the statement: it is only valid until the reset. */
static size_t copy_out(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    if (!v || n >= cap)
        die("direct read", "value missing or too long");
    memcpy(dst, v, n + 1);
    return n;
}

/*
 * One round of direct sqlite3 reads on a prepared statement. Like the routed
 * side's sr_result, the row is copied out before the reset, as an
 * application that keeps the values must do.
 */
__attribute__((noinline)) static size_t direct_round(sqlite3 *db, sqlite3_stmt *st, char (*keys)[16], int nreads)
{
    size_t checksum = 0;
    char k[64], v[64];
    for (int i = 0; i < nreads; i++) {
        sqlite3_bind_text(st, 1, keys[i], -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_ROW)
            die("direct read", sqlite3_errmsg(db));
        checksum += copy_out(st, 0, k, sizeof k) + copy_out(st, 1, v, sizeof v);
        /* The copies are the point: keep the compiler from dropping them as unread. */
        __asm__ volatile("" : : "r"(k), "r"(v) : "memory");
        sqlite3_reset(st);
    }
    return checksum;
}

static unsigned long long events_seen;

static void count_event(void *ud, const sr_event *ev)
{
    (void)ud;
    events_seen += ev->kind == SR_EVENT_STATEMENT;
}

int main(int argc, char **argv)
{
    int nrows = argc > 1 ? atoi(argv[1]) : 100000;
    int nreads = argc > 2 ? atoi(argv[2]) : 200000;
    int rounds = argc > 3 ? atoi(argv[3]) : 7;
    int sample = argc > 4 ? atoi(argv[4]) : 0;
    if (nrows < 1 || nreads < 1 || rounds < 1 || sample < 0)
        die("arguments", "ROWS READS ROUNDS must be positive, EVENTS_SAMPLE >= 0");

    char dir[] = "/tmp/sr-bench-sqlite-XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp", "failed");
    char path[256], uri[300];
    snprintf(path, sizeof path, "%s/shard.db", dir);
    snprintf(uri, sizeof uri, "sqlite:%s", path);

    /* One shard: a primary and one replica on the same file. */
    sr_config *cfg = sr_config_new();
    if (sr_config_add_shard(cfg, "s0") || sr_config_add_node(cfg, "s0", SR_PRIMARY, uri, 1) ||
        sr_config_add_node(cfg, "s0", SR_REPLICA, uri, 1))
        die("config", sr_config_errmsg(cfg));
    if (sample > 0) {
        char every[16];
        snprintf(every, sizeof every, "%d", sample);
        if (sr_config_set(cfg, "events.sample", every) || sr_config_set_event_fn(cfg, count_event, NULL))
            die("config", sr_config_errmsg(cfg));
    }
    sr_router *router = NULL;
    if (sr_router_open(cfg, &router) != SR_OK)
        die("router", sr_config_errmsg(cfg));
    sr_config_free(cfg);
    sr_session *s = NULL;
    sr_session_new(router, &s);

    if (sr_exec_shard(s, 0, SR_WRITE, "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)", 0,
                      NULL, NULL) != SR_OK ||
        sr_begin_shard(s, 0) != SR_OK)
        die("schema", sr_session_errmsg(s));
    for (int i = 1; i <= nrows; i++) {
        char k[24], v[48];
        snprintf(k, sizeof k, "%d", i);
        snprintf(v, sizeof v, "value-%d-%08x", i, (unsigned)i * 2654435761u);
        const char *p[] = {k, v};
        if (sr_exec_shard(s, 0, SR_WRITE, "INSERT INTO kv VALUES (?, ?)", 2, p, NULL) != SR_OK)
            die("insert", sr_session_errmsg(s));
    }
    if (sr_commit(s) != SR_OK)
        die("commit", sr_session_errmsg(s));

    /* The direct side: a read-only connection, as the replica node uses. */
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        die("sqlite3_open_v2", sqlite3_errmsg(db));
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(db, "SELECT k, v FROM kv WHERE k = ?", -1, SQLITE_PREPARE_PERSISTENT, &st,
                           NULL) != SQLITE_OK)
        die("prepare", sqlite3_errmsg(db));

    /* The same pseudo-random keys for both sides, as text. */
    /* The application has its key as an integer and as the text parameter. */
    char (*keys)[16] = malloc((size_t)nreads * sizeof *keys);
    int64_t *ids = malloc((size_t)nreads * sizeof *ids);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < nreads; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int64_t)(x % (uint64_t)nrows) + 1;
        snprintf(keys[i], sizeof keys[i], "%lld", (long long)ids[i]);
    }

    double *routed = calloc((size_t)rounds, sizeof *routed);
    double *direct = calloc((size_t)rounds, sizeof *direct);
    size_t checksum_r = 0, checksum_d = 0;
    for (int round = -1; round < rounds; round++) { /* round -1 warms caches and pools */
        double t0 = now_ns();
        checksum_r += routed_round(s, keys, ids, nreads);
        double t1 = now_ns();
        checksum_d += direct_round(db, st, keys, nreads);
        double t2 = now_ns();
        if (round >= 0) {
            routed[round] = (t1 - t0) / nreads;
            direct[round] = (t2 - t1) / nreads;
        }
    }
    if (checksum_r != checksum_d)
        die("checksum", "routed and direct reads returned different data");

    qsort(routed, (size_t)rounds, sizeof *routed, cmp_double);
    qsort(direct, (size_t)rounds, sizeof *direct, cmp_double);
    double r = routed[rounds / 2], d = direct[rounds / 2];
    printf("SQLite point reads, %d rows, %d reads x %d rounds (median), same file, same run\n",
           nrows, nreads, rounds);
    printf("%-34s %12s %12s\n", "", "ns/read", "reads/s");
    printf("%-34s %12.0f %12.0f\n", "direct sqlite3 (prepared)", d, 1e9 / d);
    printf("%-34s %12.0f %12.0f\n", "routed sr_exec (SR_READ)", r, 1e9 / r);
    printf("%-34s %12.3f   (target <= 1.10)\n", "ratio routed/direct", r / d);
    printf("%-34s %12.0f\n", "added ns per read", r - d);
    if (sample > 0)
        printf("%-34s %12d   (%llu statement events delivered)\n", "event callback, 1 in", sample,
               events_seen);

    free(keys);
    free(ids);
    free(routed);
    free(direct);
    sqlite3_finalize(st);
    sqlite3_close(db);
    sr_session_free(s);
    sr_router_close(router);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
