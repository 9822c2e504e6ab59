/*
 * What reloads cost the statement path: routed point reads per second on 2
 * threads (a session each) over 4 SQLite shards, while the main thread
 * reloads the topology 100 times a second, against the same reads with no
 * reload, in interleaved rounds (medians). Each reload keeps every node
 * (a weight changes), as a routine topology push does, so the sessions move
 * to a new version 100 times a second and their connections stay.
 *
 *   bench_reload [ROUNDS] [ROUND_MS] [RELOADS_PER_SECOND]
 *
 * The statement path takes no lock for this: a session compares its
 * version with the router's (one atomic load) at each call and moves when
 * they differ (a lock then, 100 times a second per session).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <shardroute.h>

#define NSHARDS 4
#define NTHREADS 2
#define NROWS 10000

static char dir[] = "/tmp/sr-bench-reload-XXXXXX";
static sr_router *router;
static _Atomic int phase; /* 0 wait, 1 run, 2 stop */
static _Atomic long reads_done;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_reload: %s: %s\n", what, why);
    exit(1);
}

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

/* The configuration; `weight` changes from one reload to the next (every node stays). */
static sr_config *config(int weight)
{
    sr_config *c = sr_config_new();
    char text[4096] = "consistency.mode = any\nbalance.policy = weighted\n";
    for (int i = 0; i < NSHARDS; i++) {
        char part[512];
        snprintf(part, sizeof part,
                 "[shard s%d]\nprimary = sqlite:%s/s%d.db\nreplica = sqlite:%s/s%d.db weight=%d\n", i,
                 dir, i, dir, i, weight);
        strncat(text, part, sizeof text - strlen(text) - 1);
    }
    if (sr_config_parse(c, text) != SR_OK)
        die("config", sr_config_errmsg(c));
    return c;
}

static void *reader(void *arg)
{
    (void)arg;
    sr_session *s = NULL;
    if (sr_session_new(router, &s) != SR_OK)
        die("session", "failed");
    while (atomic_load(&phase) == 0)
        ;
    long n = 0;
    unsigned x = 12345;
    while (atomic_load_explicit(&phase, memory_order_relaxed) == 1) {
        x = x * 1103515245u + 12345u;
        char key[16];
        snprintf(key, sizeof key, "%u", x % NROWS + 1);
        const char *p[] = {key};
        sr_result *res = NULL;
        if (sr_exec(s, sr_key_text(key), SR_READ, "SELECT v FROM kv WHERE k = ?", 1, p, &res) != SR_OK)
            die("read", sr_session_errmsg(s));
        sr_result_free(res);
        n++;
    }
    atomic_fetch_add(&reads_done, n);
    sr_session_free(s);
    return NULL;
}

/* One round: NTHREADS readers for `ms`, the main thread reloading `per_second` times a
 * second (0: not at all). Returns reads per second; *reloads gets the reloads made. */
static double round_of(int ms, int per_second, int *reloads)
{
    atomic_store(&phase, 0);
    atomic_store(&reads_done, 0);
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        if (pthread_create(&t[i], NULL, reader, NULL) != 0)
            die("thread", "cannot create");
    double t0 = now_s(), end = t0 + ms / 1e3;
    atomic_store(&phase, 1);
    int done = 0;
    while (now_s() < end) {
        if (per_second > 0) {
            sr_config *c = config(1 + done % 5);
            if (sr_router_reload(router, c) != SR_OK)
                die("reload", sr_config_errmsg(c));
            sr_config_free(c);
            done++;
            double next = t0 + (double)done / per_second;
            while (now_s() < next && now_s() < end)
                usleep(200);
        } else {
            usleep(1000);
        }
    }
    atomic_store(&phase, 2);
    double elapsed = now_s() - t0;
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    *reloads = done;
    return (double)atomic_load(&reads_done) / elapsed;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 7;
    int ms = argc > 2 ? atoi(argv[2]) : 1000;
    int per_second = argc > 3 ? atoi(argv[3]) : 100;
    if (rounds < 1 || ms < 10 || per_second < 1)
        die("arguments", "ROUNDS >= 1, ROUND_MS >= 10, RELOADS_PER_SECOND >= 1");
    if (!mkdtemp(dir))
        die("mkdtemp", "failed");
    sr_config *c = config(1);
    if (sr_router_open(c, &router) != SR_OK)
        die("open", sr_config_errmsg(c));
    sr_config_free(c);
    sr_session *s = NULL;
    sr_session_new(router, &s);
    if (sr_exec_all(s, SR_WRITE, "CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)", 0, NULL, NULL))
        die("create", sr_session_errmsg(s));
    for (int i = 1; i <= NROWS; i++) {
        char k[16], v[32];
        snprintf(k, sizeof k, "%d", i);
        snprintf(v, sizeof v, "value-%d", i);
        const char *p[] = {k, v};
        if (sr_exec(s, sr_key_text(k), SR_WRITE, "INSERT INTO kv VALUES (?, ?)", 2, p, NULL))
            die("insert", sr_session_errmsg(s));
    }
    sr_session_free(s);

    double *quiet = calloc((size_t)rounds, sizeof *quiet);
    double *busy = calloc((size_t)rounds, sizeof *busy);
    int reloads = 0, total_reloads = 0;
    round_of(ms / 2, 0, &reloads); /* warm-up */
    for (int i = 0; i < rounds; i++) {
        quiet[i] = round_of(ms, 0, &reloads);
        busy[i] = round_of(ms, per_second, &reloads);
        total_reloads += reloads;
    }
    qsort(quiet, (size_t)rounds, sizeof *quiet, cmp_double);
    qsort(busy, (size_t)rounds, sizeof *busy, cmp_double);
    double q = quiet[rounds / 2], b = busy[rounds / 2];
    printf("routed point reads on %d threads, %d SQLite shards, %d rounds of %d ms (medians)\n",
           NTHREADS, NSHARDS, rounds, ms);
    printf("%-40s %14.0f reads/s\n", "no reload", q);
    printf("%-40s %14.0f reads/s   (%d reloads in all, version %lld)\n", "reloading", b,
           total_reloads, (long long)sr_router_version(router));
    printf("%-40s %14.3f   (%d reloads a second)\n", "ratio reloading / no reload", b / q, per_second);
    free(quiet);
    free(busy);
    sr_router_close(router);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
