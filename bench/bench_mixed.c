/*
 * Mixed read/write workload (issue 11, "consistency at the price of one
 * round trip"): what each consistency mode costs against an application that
 * splits reads and writes itself, per backend, in one run.
 *
 *   bench_mixed [--pin] [--backend pg|mysql|all] [--policy NAME]
 *               [SECONDS_PER_RUN [ROUNDS [ROWS]]]
 *   scripts/bench.sh mixed                    (defaults: 0.5 s, 5 rounds, 1000 rows)
 *   scripts/bench.sh mixed --test-args='--pin 0.2 5'
 *
 * Workload: closed loop per thread on a table of ROWS rows (k int primary key,
 * v bigint). Thread i of T owns the keys [i*ROWS/T, (i+1)*ROWS/T) and is the
 * only writer of them. Each operation is a write with probability W%
 * (UPDATE bench_mixed SET v = ? WHERE k = ?, a random key of its range, v
 * one more than the value the thread last wrote there) or else a point read
 * (SELECT v FROM bench_mixed WHERE k = ?): the read right after a write reads
 * that key, other reads a random key of the range. Every read is checked:
 *   stale      the value is not the one the thread last wrote for the key.
 *              Must be 0 under read_your_writes; counted for every variant
 *              (for monotonic it is information: see "went back").
 *   went back  the value is older than one this thread already read for the
 *              key in this run (a monotonic-reads violation; must be 0 under
 *              monotonic).
 * Before every run the bench waits until every replica has replayed all the
 * primary has (PostgreSQL: pg_last_wal_replay_lsn() >= the primary's
 * pg_current_wal_flush_lsn(); MariaDB: MASTER_GTID_WAIT(@@gtid_binlog_pos)),
 * so a run starts from a caught-up cluster and a stale read can only miss a
 * write of the same run (the one the session made).
 *
 * Variants (each thread: its own connections or its own sr_session on one
 * sr_router shared by the threads; one shard: the primary + every replica):
 *   direct split    libpq PQexecPrepared / libmariadb prepared statements:
 *                   reads on replica (i % nreplicas), writes on the primary,
 *                   no consistency at all
 *   any, read_your_writes, monotonic, primary
 *                   sr_exec with sr_session_set(s, "consistency", MODE)
 *   direct primary  the direct side, reads and writes on the primary
 * Configurations: 1 and 2 threads x 10% and 1% writes (every variant), and
 * 2 threads x 0% writes (direct split and any only: the reads-only
 * row). For each configuration ROUNDS rounds; round r runs every variant once
 * for SECONDS_PER_RUN, starting at variant r (rotating order), so drifting
 * load from elsewhere hits every variant alike. A warm-up run of every
 * variant (not counted) opens the pools and prepares the statements first.
 *
 * Figures per variant: ops/s (reads + writes of all threads; median over
 * rounds); "vs direct split" and the target ratios are medians of the
 * per-round ratios; stale and went back are sums over rounds; read p50/p99
 * and write p50 are the medians over rounds of each run's quantile (all
 * threads' operations). "reads on replicas": sr_router_node_info() statement
 * counters, after minus before each run, summed over rounds: replica
 * statements / (replica statements + primary statements - writes issued);
 * the counters count the statements the library runs for the application
 * (not its own position checks), and a note is printed when that sum differs
 * from the reads the threads issued. For the direct variants it is 100% or 0%
 * by construction.
 *
 * --pin: this process's threads go to the last CPU it may use, every server
 * process (PostgreSQL postmasters from SR_PG_*_DATA/postmaster.pid or
 * SR_PG_*_PID, their existing children, and every thread of the MariaDB
 * servers from SR_MY_*_PIDFILE or SR_MY_*_PID) to the others; backends forked
 * later inherit it. Servers get their original CPU mask back at exit. The
 * output says what was pinned.
 *
 * Environment (tests/env/with_servers.sh sets it; a backend whose variables
 * are missing is skipped, with both missing the bench exits 77):
 *   SR_PG_PRIMARY, SR_PG_REPLICA1, SR_PG_REPLICA2 (postgresql:// URIs without
 *   a database; database shard0 must exist), SR_PG_{PRIMARY,REPLICA1,REPLICA2}_{DATA,PID}
 *   SR_MY_PRIMARY, SR_MY_REPLICA (mysql:// URIs, database shard0),
 *   SR_MY_{PRIMARY,REPLICA}_{PIDFILE,PID}
 *
 * It measures and prints; it asserts nothing about speed. It exits 1 (after
 * printing everything) when read_your_writes had a stale read or monotonic
 * went back: those are correctness failures, not timings.
 */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET */
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifdef BENCH_MIXED_PG
#include <libpq-fe.h>
#endif
#ifdef BENCH_MIXED_MYSQL
#include <mysql.h>
#endif

#include <shardroute.h>

enum { MAX_THREADS = 2, MAX_REPLICAS = 2, MAX_NODES = 1 + MAX_REPLICAS, MAX_ROUNDS = 99 };

enum { V_SPLIT, V_ANY, V_RYW, V_MONO, V_SRPRIM, V_DPRIM, NVARIANTS };
static const char *const variant_name[NVARIANTS] = {
    "direct split", "any", "read_your_writes", "monotonic", "primary", "direct primary"};
/* The consistency mode of the shardroute variants; NULL: a direct variant. */
static const char *const variant_mode[NVARIANTS] = {
    NULL, "any", "read_your_writes", "monotonic", "primary", NULL};

typedef struct config {
    int threads, write_pct, nvariants;
    int variants[NVARIANTS];
} config;

static const config configs[] = {
    {1, 10, 6, {V_SPLIT, V_ANY, V_RYW, V_MONO, V_SRPRIM, V_DPRIM}},
    {1, 1, 6, {V_SPLIT, V_ANY, V_RYW, V_MONO, V_SRPRIM, V_DPRIM}},
    {2, 10, 6, {V_SPLIT, V_ANY, V_RYW, V_MONO, V_SRPRIM, V_DPRIM}},
    {2, 1, 6, {V_SPLIT, V_ANY, V_RYW, V_MONO, V_SRPRIM, V_DPRIM}},
    {2, 0, 2, {V_SPLIT, V_ANY}},
};
enum { NCONFIGS = sizeof configs / sizeof configs[0] };
/* --only THREADS/WRITE_PCT: run that configuration alone (-1: all). */
static int only_threads = -1, only_write_pct = -1;

static const char *const sql_read = "SELECT v FROM bench_mixed WHERE k = ?";
static const char *const sql_write = "UPDATE bench_mixed SET v = ? WHERE k = ?";

/* ---- utilities ---------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_mixed: %s: %s\n", what, why);
    fflush(stdout);
    exit(1); /* atexit gives the servers their CPUs back */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double tmp[MAX_ROUNDS];
    if (n <= 0)
        return 0;
    memcpy(tmp, v, (size_t)n * sizeof *v);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

/* The q-quantile (0..1) of sorted v[0..n). */
static double quantile_sorted(const float *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    return v[(size_t)(q * (double)(n - 1) + 0.5)];
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* ---- CPU pinning -------------------------------------------------------- */

static int pinning;              /* --pin given and something was pinned */
static cpu_set_t all_cpus;       /* this process's mask at start: what servers get back */
static pid_t pinned_roots[8];
static int npinned_roots;

/* Sets the mask of every thread of `pid` and, recursively, of its children;
 * returns how many processes were reached (0: none, e.g. no permission). */
static int set_tree(pid_t pid, const cpu_set_t *set, int depth)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int ok = 0, procs = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        if (sched_setaffinity((pid_t)atoi(e->d_name), sizeof *set, set) == 0)
            ok = 1;
        if (depth > 4)
            continue;
        char cpath[96];
        snprintf(cpath, sizeof cpath, "/proc/%d/task/%d/children", (int)pid, atoi(e->d_name));
        FILE *f = fopen(cpath, "r");
        if (!f)
            continue;
        for (int child; fscanf(f, "%d", &child) == 1;)
            procs += set_tree((pid_t)child, set, depth + 1);
        fclose(f);
    }
    closedir(d);
    return procs + ok;
}

/* The PID of a server: the first line of `pidfile` when readable, else the
 * variable `pidvar`; 0 when neither names a process whose name starts with
 * one of `names` (so a stale variable never pins somebody else's process). */
static pid_t server_pid(const char *pidfile, const char *pidvar, const char *names)
{
    long pid = 0;
    if (pidfile) {
        FILE *f = fopen(pidfile, "r");
        if (f) {
            if (fscanf(f, "%ld", &pid) != 1)
                pid = 0;
            fclose(f);
        }
    }
    if (pid <= 0 && pidvar)
        pid = atol(pidvar);
    if (pid <= 0)
        return 0;
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%ld/comm", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    if (!fgets(comm, sizeof comm, f))
        comm[0] = '\0';
    fclose(f);
    char list[128];
    snprintf(list, sizeof list, "%s", names);
    for (char *save = NULL, *n = strtok_r(list, ",", &save); n; n = strtok_r(NULL, ",", &save))
        if (strncmp(comm, n, strlen(n)) == 0)
            return (pid_t)pid;
    return 0;
}

static void unpin_servers(void)
{
    for (int i = 0; i < npinned_roots; i++)
        set_tree(pinned_roots[i], &all_cpus, 0);
    npinned_roots = 0;
}

/* Builds the path "$var/postmaster.pid" (NULL when var is unset). */
static const char *pm_pidfile(const char *var, char *buf, size_t n)
{
    const char *data = getenv(var);
    if (!data)
        return NULL;
    snprintf(buf, n, "%s/postmaster.pid", data);
    return buf;
}

/* --pin: the client on the last allowed CPU, known servers on the others.
 * Writes what happened into `msg`. */
static void pin_all(char *msg, size_t n)
{
    if (sched_getaffinity(0, sizeof all_cpus, &all_cpus) != 0 || CPU_COUNT(&all_cpus) < 2) {
        snprintf(msg, n, "pinning: not possible (fewer than 2 CPUs allowed); not pinned");
        return;
    }
    int last = -1;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &all_cpus))
            last = i;
    cpu_set_t client, servers = all_cpus;
    CPU_ZERO(&client);
    CPU_SET(last, &client);
    CPU_CLR(last, &servers);
    /* Threads created later inherit the main thread's mask. */
    if (sched_setaffinity(0, sizeof client, &client) != 0) {
        snprintf(msg, n, "pinning: sched_setaffinity failed; not pinned");
        return;
    }
    pinning = 1;
    size_t off = (size_t)snprintf(msg, n, "pinning: bench threads on cpu %d; servers on the "
                                          "other %d cpu(s):", last, CPU_COUNT(&servers));
    struct {
        const char *label, *pidfile_var, *data_var, *pid_var, *names;
    } known[] = {
        {"pg primary", NULL, "SR_PG_PRIMARY_DATA", "SR_PG_PRIMARY_PID", "postgres"},
        {"pg replica1", NULL, "SR_PG_REPLICA1_DATA", "SR_PG_REPLICA1_PID", "postgres"},
        {"pg replica2", NULL, "SR_PG_REPLICA2_DATA", "SR_PG_REPLICA2_PID", "postgres"},
        {"mariadb primary", "SR_MY_PRIMARY_PIDFILE", NULL, "SR_MY_PRIMARY_PID", "mariadbd,mysqld"},
        {"mariadb replica", "SR_MY_REPLICA_PIDFILE", NULL, "SR_MY_REPLICA_PID", "mariadbd,mysqld"},
    };
    int any = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0] && off < n; i++) {
        char buf[512];
        const char *pidfile = known[i].pidfile_var ? getenv(known[i].pidfile_var)
                                                   : pm_pidfile(known[i].data_var, buf, sizeof buf);
        const char *pidvar = getenv(known[i].pid_var);
        if (!pidfile && !pidvar)
            continue;
        pid_t pid = server_pid(pidfile, pidvar, known[i].names);
        int procs = pid > 0 ? set_tree(pid, &servers, 0) : 0;
        if (procs > 0 && npinned_roots < (int)(sizeof pinned_roots / sizeof pinned_roots[0]))
            pinned_roots[npinned_roots++] = pid;
        any |= procs > 0;
        if (procs > 0)
            off += (size_t)snprintf(msg + off, n - off, " %s (pid %d: %d process(es), all threads)",
                                    known[i].label, (int)pid, procs);
        else
            off += (size_t)snprintf(msg + off, n - off, " %s (NOT pinned: no such server "
                                                        "process or no permission)", known[i].label);
    }
    if (!any && off < n)
        snprintf(msg + off, n - off, " none known or permitted, only the client is pinned");
    atexit(unpin_servers);
}

/* Pins again the trees pinned at start: children forked since inherit the
 * mask anyway; this catches any that were started by other means. */
static void repin_servers(void)
{
    if (!pinning)
        return;
    cpu_set_t servers = all_cpus;
    int last = -1;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &all_cpus))
            last = i;
    CPU_CLR(last, &servers);
    for (int i = 0; i < npinned_roots; i++)
        set_tree(pinned_roots[i], &servers, 0);
}

/* ---- backends: the direct side ------------------------------------------ */

/* One backend under test. Nodes: 0 the primary, 1.. the replicas. */
typedef struct backend {
    const char *name;
    int nreplicas;
    char node_uri[MAX_NODES][512]; /* the URIs shardroute gets (database shard0) */
    char about[256];               /* server version and settings, for the header */
    /* The direct side: a connection to node `node` with the read and write
     * statements prepared; a read returning v (dies on error); a write; a
     * statement for setup; TLS in use (1/0). */
    void *(*connect)(struct backend *be, int node);
    void (*disconnect)(void *conn);
    int64_t (*read)(void *conn, const char *key);
    void (*write)(void *conn, const char *value, const char *key);
    void (*exec)(void *conn, const char *sql);
    int (*tls)(void *conn);
    void (*sync)(struct backend *be); /* waits until every replica has all the primary has */
    void (*thread_init)(void);
    void (*thread_end)(void);
    const char *sql_create;      /* the table */
    const char *sql_server_tls;  /* a routed query whose first value says TLS is in use */
    void *ctl[MAX_NODES];        /* control connections (setup, sync) */
    void *dconn[MAX_THREADS][2]; /* per thread: [0] its replica, [1] the primary */
} backend;

#ifdef BENCH_MIXED_PG
static void no_thread_hook(void) {}

static void pg_quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static PGresult *pg_ok(PGconn *c, PGresult *r, const char *what)
{
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
        PQclear(r);
        die(what, msg);
    }
    return r;
}

static void *pg_connect(backend *be, int node)
{
    PGconn *c = PQconnectdb(be->node_uri[node]);
    if (PQstatus(c) != CONNECTION_OK)
        die("connect (PostgreSQL)", PQerrorMessage(c));
    PQsetNoticeProcessor(c, pg_quiet, NULL);
    return c;
}

/* Prepares the two statements; the table must exist on the node. */
static void pg_prepare(PGconn *c)
{
    PQclear(pg_ok(c, PQprepare(c, "rd", "SELECT v FROM bench_mixed WHERE k = $1", 1, NULL),
                  "prepare"));
    PQclear(pg_ok(c, PQprepare(c, "wr", "UPDATE bench_mixed SET v = $1 WHERE k = $2", 2, NULL),
                  "prepare"));
}

static void pg_disconnect(void *c) { PQfinish(c); }

static int64_t pg_read(void *c, const char *key)
{
    const char *p[] = {key};
    PGresult *r = PQexecPrepared(c, "rd", 1, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        die("direct read", PQresultStatus(r) == PGRES_TUPLES_OK ? "no row" : PQresultErrorMessage(r));
    int64_t v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

static void pg_write(void *c, const char *value, const char *key)
{
    const char *p[] = {value, key};
    PGresult *r = PQexecPrepared(c, "wr", 2, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK || strcmp(PQcmdTuples(r), "1") != 0)
        die("direct write", PQresultStatus(r) == PGRES_COMMAND_OK ? "not one row" : PQresultErrorMessage(r));
    PQclear(r);
}

static void pg_exec(void *c, const char *sql)
{
    PQclear(pg_ok(c, PQexec(c, sql), sql));
}

/* The first value of `sql` into buf. */
static void pg_value(PGconn *c, const char *sql, char *buf, size_t n)
{
    PGresult *r = pg_ok(c, PQexec(c, sql), sql);
    snprintf(buf, n, "%s", PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
}

static int pg_tls(void *c) { return PQsslInUse(c); }

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void pg_sync(backend *be)
{
    char lsn[64], sql[160], v[16];
    pg_value(be->ctl[0], "SELECT pg_current_wal_flush_lsn()", lsn, sizeof lsn);
    snprintf(sql, sizeof sql, "SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn", lsn);
    for (int i = 1; i <= be->nreplicas; i++) {
        double t0 = now_s();
        for (;;) {
            pg_value(be->ctl[i], sql, v, sizeof v);
            if (strcmp(v, "t") == 0)
                break;
            if (now_s() - t0 > 15)
                die("sync", "a replica did not replay the primary's WAL within 15 s");
            sleep_ms(1);
        }
    }
}

static int pg_backend(backend *be)
{
    const char *base[MAX_NODES] = {getenv("SR_PG_PRIMARY"), getenv("SR_PG_REPLICA1"),
                                   getenv("SR_PG_REPLICA2")};
    if (!base[0] || !base[1] || !base[2])
        return 0;
    be->name = "PostgreSQL";
    be->nreplicas = 2;
    for (int i = 0; i < MAX_NODES; i++)
        snprintf(be->node_uri[i], sizeof be->node_uri[i], "%s/shard0", base[i]);
    be->connect = pg_connect;
    be->disconnect = pg_disconnect;
    be->read = pg_read;
    be->write = pg_write;
    be->exec = pg_exec;
    be->tls = pg_tls;
    be->sync = pg_sync;
    be->thread_init = be->thread_end = no_thread_hook;
    be->sql_create = "CREATE TABLE bench_mixed (k int PRIMARY KEY, v bigint NOT NULL)";
    be->sql_server_tls = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    return 1;
}

static void pg_about(backend *be)
{
    char version[64], sc[32];
    pg_value(be->ctl[0], "SHOW server_version", version, sizeof version);
    pg_value(be->ctl[0], "SHOW synchronous_commit", sc, sizeof sc);
    snprintf(be->about, sizeof be->about,
             "PostgreSQL %s, one primary + %d streaming replicas, synchronous_commit = %s",
             version, be->nreplicas, sc);
}
#endif

#ifdef BENCH_MIXED_MYSQL
typedef struct my_conn {
    MYSQL *my;
    MYSQL_STMT *rd, *wr;
} my_conn;

/* Splits "mysql://user:password@host:port" (no percent-decoding: the test
 * cluster's credentials are plain). */
static void my_split(const char *uri, char *user, char *pass, char *host, unsigned *port)
{
    const char *p = strstr(uri, "://");
    const char *colon = p ? strchr(p + 3, ':') : NULL;
    const char *at = p ? strrchr(p + 3, '@') : NULL;
    const char *pc = at ? strchr(at + 1, ':') : NULL;
    const char *slash = pc ? strchr(pc, '/') : NULL;
    if (!colon || !at || colon > at || !pc || !slash)
        die("SR_MY_*", "expected mysql://user:password@host:port");
    snprintf(user, 64, "%.*s", (int)(colon - (p + 3)), p + 3);
    snprintf(pass, 64, "%.*s", (int)(at - colon - 1), colon + 1);
    snprintf(host, 64, "%.*s", (int)(pc - at - 1), at + 1);
    *port = (unsigned)atoi(pc + 1);
}

static void *my_connect(backend *be, int node)
{
    char user[64], pass[64], host[64];
    unsigned port;
    my_split(be->node_uri[node], user, pass, host, &port);
    my_conn *c = calloc(1, sizeof *c);
    if (!c)
        die("connect (MariaDB)", "out of memory");
    c->my = mysql_init(NULL);
    if (!c->my || !mysql_real_connect(c->my, host, user, pass, "shard0", port, NULL, 0))
        die("connect (MariaDB)", c->my ? mysql_error(c->my) : "out of memory");
    return c;
}

static void my_prepare(my_conn *c)
{
    const char *rd = "SELECT v FROM bench_mixed WHERE k = ?";
    const char *wr = "UPDATE bench_mixed SET v = ? WHERE k = ?";
    c->rd = mysql_stmt_init(c->my);
    c->wr = mysql_stmt_init(c->my);
    if (!c->rd || !c->wr || mysql_stmt_prepare(c->rd, rd, (unsigned long)strlen(rd)) ||
        mysql_stmt_prepare(c->wr, wr, (unsigned long)strlen(wr)))
        die("prepare (MariaDB)", mysql_error(c->my));
}

static void my_disconnect(void *p)
{
    my_conn *c = p;
    if (c->rd)
        mysql_stmt_close(c->rd);
    if (c->wr)
        mysql_stmt_close(c->wr);
    mysql_close(c->my);
    free(c);
}

static void bind_text(MYSQL_BIND *b, const char *s, unsigned long *len)
{
    memset(b, 0, sizeof *b);
    *len = (unsigned long)strlen(s);
    b->buffer_type = MYSQL_TYPE_STRING;
    b->buffer = (void *)(uintptr_t)s;
    b->buffer_length = *len;
    b->length = len;
}

static int64_t my_read(void *p, const char *key)
{
    my_conn *c = p;
    MYSQL_BIND pb, rb;
    unsigned long klen, vlen = 0;
    char vbuf[32];
    my_bool nul = 0;
    bind_text(&pb, key, &klen);
    memset(&rb, 0, sizeof rb);
    rb.buffer_type = MYSQL_TYPE_STRING;
    rb.buffer = vbuf;
    rb.buffer_length = sizeof vbuf;
    rb.length = &vlen;
    rb.is_null = &nul;
    if (mysql_stmt_bind_param(c->rd, &pb) || mysql_stmt_execute(c->rd) ||
        mysql_stmt_bind_result(c->rd, &rb))
        die("direct read", mysql_stmt_error(c->rd));
    int rows = 0, rc;
    int64_t v = -1;
    while ((rc = mysql_stmt_fetch(c->rd)) == 0) {
        rows++;
        vbuf[vlen < sizeof vbuf ? vlen : sizeof vbuf - 1] = '\0';
        v = strtoll(vbuf, NULL, 10);
    }
    if (rc != MYSQL_NO_DATA || rows != 1)
        die("direct read", rc == 1 ? mysql_stmt_error(c->rd) : "not one row");
    mysql_stmt_free_result(c->rd);
    return v;
}

static void my_write(void *p, const char *value, const char *key)
{
    my_conn *c = p;
    MYSQL_BIND pb[2];
    unsigned long len[2];
    bind_text(&pb[0], value, &len[0]);
    bind_text(&pb[1], key, &len[1]);
    if (mysql_stmt_bind_param(c->wr, pb) || mysql_stmt_execute(c->wr))
        die("direct write", mysql_stmt_error(c->wr));
    if (mysql_stmt_affected_rows(c->wr) != 1)
        die("direct write", "not one row");
}

static void my_exec(void *p, const char *sql)
{
    my_conn *c = p;
    if (mysql_query(c->my, sql))
        die(sql, mysql_error(c->my));
    MYSQL_RES *r = mysql_store_result(c->my);
    mysql_free_result(r);
}

static void my_value(my_conn *c, const char *sql, char *buf, size_t n)
{
    if (mysql_query(c->my, sql))
        die(sql, mysql_error(c->my));
    MYSQL_RES *r = mysql_store_result(c->my);
    MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
    snprintf(buf, n, "%s", row && row[0] ? row[0] : "");
    mysql_free_result(r);
}

static int my_tls(void *p) { return mysql_get_ssl_cipher(((my_conn *)p)->my) != NULL; }

static void my_sync(backend *be)
{
    char pos[512], sql[640], v[16];
    my_value(be->ctl[0], "SELECT @@GLOBAL.gtid_binlog_pos", pos, sizeof pos);
    if (!pos[0])
        return;
    snprintf(sql, sizeof sql, "SELECT MASTER_GTID_WAIT('%s', 15)", pos);
    for (int i = 1; i <= be->nreplicas; i++) {
        my_value(be->ctl[i], sql, v, sizeof v);
        if (strcmp(v, "0") != 0)
            die("sync", "the replica did not reach the primary's GTID position within 15 s");
    }
}

static void my_thread_init(void) { mysql_thread_init(); }
static void my_thread_end(void) { mysql_thread_end(); }

static int my_backend(backend *be)
{
    const char *p = getenv("SR_MY_PRIMARY"), *r = getenv("SR_MY_REPLICA");
    if (!p || !r)
        return 0;
    be->name = "MariaDB";
    be->nreplicas = 1;
    snprintf(be->node_uri[0], sizeof be->node_uri[0], "%s/shard0", p);
    snprintf(be->node_uri[1], sizeof be->node_uri[1], "%s/shard0", r);
    be->connect = my_connect;
    be->disconnect = my_disconnect;
    be->read = my_read;
    be->write = my_write;
    be->exec = my_exec;
    be->tls = my_tls;
    be->sync = my_sync;
    be->thread_init = my_thread_init;
    be->thread_end = my_thread_end;
    be->sql_create = "CREATE TABLE bench_mixed (k INT PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB";
    be->sql_server_tls = "SELECT VARIABLE_VALUE <> '' FROM information_schema.SESSION_STATUS "
                         "WHERE VARIABLE_NAME = 'SSL_CIPHER'";
    return 1;
}

static void my_about(backend *be)
{
    char version[64];
    my_value(be->ctl[0], "SELECT VERSION()", version, sizeof version);
    snprintf(be->about, sizeof be->about, "MariaDB %s, one primary + %d GTID replica", version,
             be->nreplicas);
}
#endif

/* Prepares the direct side's statements on a connection. */
static void prepare_direct(backend *be, void *conn)
{
#ifdef BENCH_MIXED_PG
    if (be->connect == pg_connect)
        pg_prepare(conn);
#endif
#ifdef BENCH_MIXED_MYSQL
    if (be->connect == my_connect)
        my_prepare(conn);
#endif
    (void)be;
    (void)conn;
}

static void about(backend *be)
{
#ifdef BENCH_MIXED_PG
    if (be->connect == pg_connect)
        pg_about(be);
#endif
#ifdef BENCH_MIXED_MYSQL
    if (be->connect == my_connect)
        my_about(be);
#endif
}

/* ---- the shardroute side ------------------------------------------------ */

static int64_t routed_read(sr_session *s, int key, const char *ks)
{
    const char *p[] = {ks};
    sr_result *res = NULL;
    if (sr_exec(s, sr_key_int(key), SR_READ, sql_read, 1, p, &res) != SR_OK)
        die("routed read", sr_session_errmsg(s));
    if (sr_result_nrows(res) != 1)
        die("routed read", "not one row");
    int64_t v = strtoll(sr_result_value(res, 0, 0), NULL, 10);
    sr_result_free(res);
    return v;
}

static void routed_write(sr_session *s, int key, const char *vs, const char *ks)
{
    const char *p[] = {vs, ks};
    sr_result *res = NULL;
    if (sr_exec(s, sr_key_int(key), SR_WRITE, sql_write, 2, p, &res) != SR_OK)
        die("routed write", sr_session_errmsg(s));
    if (sr_result_affected(res) != 1)
        die("routed write", "not one row");
    sr_result_free(res);
}

static sr_router *open_router(const backend *be, const char *policy)
{
    sr_config *c = sr_config_new();
    if (!c)
        die("config", "out of memory");
    int rc = sr_config_add_shard(c, "shard0");
    if (rc == SR_OK && policy)
        rc = sr_config_set(c, "balance.policy", policy);
    for (int i = 0; rc == SR_OK && i <= be->nreplicas; i++)
        rc = sr_config_add_node(c, "shard0", i == 0 ? SR_PRIMARY : SR_REPLICA, be->node_uri[i], 1);
    sr_router *r = NULL;
    if (rc == SR_OK)
        rc = sr_router_open(c, &r);
    if (rc != SR_OK)
        die("router", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

/* Statements completed per node so far; position checks and stale ones over the replicas. */
static void node_counts(sr_router *r, int nnodes, uint64_t *out, uint64_t *checks,
                        uint64_t *misses)
{
    *checks = *misses = 0;
    for (int i = 0; i < nnodes; i++) {
        sr_node_info info = SR_NODE_INFO_INIT;
        if (sr_router_node_info(r, 0, i, &info) != SR_OK)
            die("sr_router_node_info", sr_strerror(SR_EINVAL));
        out[i] = info.statements;
        *checks += info.position_checks;
        *misses += info.stale_checks;
    }
}

/* ---- one run ------------------------------------------------------------ */

typedef struct run_spec {
    backend *be;
    sr_router *router;
    int variant, nthreads, write_pct, nrows;
    double secs;
    uint64_t seed;
    int64_t *last; /* per key: the value last written (only its owner thread touches it) */
    pthread_barrier_t start;
} run_spec;

typedef struct worker {
    run_spec *run;
    int idx;
    pthread_t tid;
    int64_t *seen; /* per key: the newest value read in this run, -1 none */
    float *rlat, *wlat; /* microseconds */
    size_t nr, nw, cap;
    uint64_t reads, writes, stale, back, after_write;
    double secs;
} worker;

typedef struct run_result {
    double ops_s, rp50, rp99, wp50;
    uint64_t reads, writes, stale, back, after_write;
    uint64_t replica_stmts, primary_stmts;
    uint64_t checks, misses; /* replica position checks by reads, and those that found it behind */
} run_result;

static void *work(void *arg)
{
    worker *w = arg;
    run_spec *run = w->run;
    backend *be = run->be;
    const char *mode = variant_mode[run->variant];
    int lo = w->idx * run->nrows / run->nthreads, hi = (w->idx + 1) * run->nrows / run->nthreads;
    int span = hi - lo;
    be->thread_init();
    sr_session *s = NULL;
    void *rconn = NULL, *wconn = NULL;
    if (mode) {
        if (sr_session_new(run->router, &s) != SR_OK || sr_session_set(s, "consistency", mode) != SR_OK)
            die("session", mode);
    } else if (run->variant == V_SPLIT) {
        rconn = be->dconn[w->idx][0];
        wconn = be->dconn[w->idx][1];
    } else {
        rconn = wconn = be->dconn[w->idx][1];
    }
    for (int k = lo; k < hi; k++)
        w->seen[k] = -1;
    w->nr = w->nw = 0;
    w->reads = w->writes = w->stale = w->back = w->after_write = 0;
    uint64_t x = run->seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(w->idx + 1));
    if (x == 0)
        x = 1;
    int after_write = -1; /* the key the next read reads: the one just written */
    pthread_barrier_wait(&run->start);
    double t0 = now_s(), end = t0 + run->secs, t = t0;
    while (t < end) {
        uint64_t r = xorshift(&x);
        int is_write = (int)(r % 1000) < run->write_pct * 10;
        int key = lo + (int)((r >> 16) % (uint64_t)span);
        if (!is_write && after_write >= 0)
            key = after_write;
        char ks[16];
        snprintf(ks, sizeof ks, "%d", key);
        double t1;
        if (is_write) {
            int64_t v = run->last[key] + 1;
            char vs[24];
            snprintf(vs, sizeof vs, "%" PRId64, v);
            if (s)
                routed_write(s, key, vs, ks);
            else
                be->write(wconn, vs, ks);
            t1 = now_s();
            run->last[key] = v;
            after_write = key;
            w->writes++;
            if (w->nw < w->cap)
                w->wlat[w->nw++] = (float)((t1 - t) * 1e6);
        } else {
            int64_t v = s ? routed_read(s, key, ks) : be->read(rconn, ks);
            t1 = now_s();
            w->after_write += after_write >= 0;
            after_write = -1;
            w->reads++;
            w->stale += v != run->last[key];
            w->back += v < w->seen[key];
            if (v > w->seen[key])
                w->seen[key] = v;
            if (w->nr < w->cap)
                w->rlat[w->nr++] = (float)((t1 - t) * 1e6);
        }
        t = t1;
    }
    w->secs = t - t0;
    sr_session_free(s);
    be->thread_end();
    return NULL;
}

static worker workers[MAX_THREADS];
static float *lat_scratch;

static run_result do_run(backend *be, sr_router *router, int variant, int nthreads, int write_pct,
                         double secs, int nrows, int64_t *last, uint64_t seed)
{
    be->sync(be);
    int nnodes = 1 + be->nreplicas;
    uint64_t before[MAX_NODES], after[MAX_NODES], checks0, misses0, checks1, misses1;
    node_counts(router, nnodes, before, &checks0, &misses0);
    run_spec run = {be, router, variant, nthreads, write_pct, nrows, secs, seed, last, {{0}}};
    if (pthread_barrier_init(&run.start, NULL, (unsigned)nthreads) != 0)
        die("pthread_barrier_init", "failed");
    for (int i = 0; i < nthreads; i++) {
        workers[i].run = &run;
        workers[i].idx = i;
        if (pthread_create(&workers[i].tid, NULL, work, &workers[i]) != 0)
            die("pthread_create", "failed");
    }
    run_result res;
    memset(&res, 0, sizeof res);
    for (int i = 0; i < nthreads; i++) {
        pthread_join(workers[i].tid, NULL);
        worker *w = &workers[i];
        res.ops_s += w->secs > 0 ? (double)(w->reads + w->writes) / w->secs : 0;
        res.reads += w->reads;
        res.writes += w->writes;
        res.stale += w->stale;
        res.back += w->back;
        res.after_write += w->after_write;
    }
    pthread_barrier_destroy(&run.start);
    node_counts(router, nnodes, after, &checks1, &misses1);
    res.checks = checks1 - checks0;
    res.misses = misses1 - misses0;
    res.primary_stmts = after[0] - before[0];
    for (int i = 1; i < nnodes; i++)
        res.replica_stmts += after[i] - before[i];
    /* Latency quantiles over every thread's operations of this run. */
    for (int kind = 0; kind < 2; kind++) {
        size_t n = 0;
        for (int i = 0; i < nthreads; i++) {
            const float *src = kind == 0 ? workers[i].rlat : workers[i].wlat;
            size_t m = kind == 0 ? workers[i].nr : workers[i].nw;
            memcpy(lat_scratch + n, src, m * sizeof *src);
            n += m;
        }
        qsort(lat_scratch, n, sizeof *lat_scratch, cmp_float);
        if (kind == 0) {
            res.rp50 = quantile_sorted(lat_scratch, n, 0.5);
            res.rp99 = quantile_sorted(lat_scratch, n, 0.99);
        } else {
            res.wp50 = quantile_sorted(lat_scratch, n, 0.5);
        }
    }
    return res;
}

/* ---- reporting ---------------------------------------------------------- */

static int violations;

static void print_config(const backend *be, const config *cf, run_result (*res)[MAX_ROUNDS],
                         int rounds, double secs)
{
    uint64_t all_reads = 0, all_after = 0;
    for (int j = 0; j < cf->nvariants; j++)
        for (int r = 0; r < rounds; r++) {
            all_reads += res[cf->variants[j]][r].reads;
            all_after += res[cf->variants[j]][r].after_write;
        }
    printf("\n%s, %d thread%s, %d%% writes: %d rounds x %.2f s (medians over rounds); "
           "%.1f%% of reads read the key just written\n\n",
           be->name, cf->threads, cf->threads > 1 ? "s" : "", cf->write_pct, rounds, secs,
           all_reads ? 100.0 * (double)all_after / (double)all_reads : 0.0);
    printf("| variant | ops/s | vs direct split | stale reads | went back | reads on replicas "
           "| checks (behind) per 100 reads | read p50 us | read p99 us | write p50 us |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    double ops[NVARIANTS][MAX_ROUNDS];
    for (int j = 0; j < cf->nvariants; j++) {
        int v = cf->variants[j];
        double ratio[MAX_ROUNDS], rp50[MAX_ROUNDS], rp99[MAX_ROUNDS], wp50[MAX_ROUNDS];
        uint64_t reads = 0, writes = 0, stale = 0, back = 0, rep = 0, prim = 0, checks = 0,
                 misses = 0;
        for (int r = 0; r < rounds; r++) {
            const run_result *x = &res[v][r];
            ops[v][r] = x->ops_s;
            ratio[r] = res[V_SPLIT][r].ops_s > 0 ? x->ops_s / res[V_SPLIT][r].ops_s : 0;
            rp50[r] = x->rp50;
            rp99[r] = x->rp99;
            wp50[r] = x->wp50;
            reads += x->reads;
            writes += x->writes;
            stale += x->stale;
            back += x->back;
            rep += x->replica_stmts;
            prim += x->primary_stmts;
            checks += x->checks;
            misses += x->misses;
        }
        char share[96];
        if (v == V_SPLIT)
            snprintf(share, sizeof share, "100%% (direct)");
        else if (v == V_DPRIM)
            snprintf(share, sizeof share, "0%% (direct)");
        else {
            /* Statements on the primary minus the writes are its reads. */
            uint64_t served = rep + (prim >= writes ? prim - writes : 0);
            int n = snprintf(share, sizeof share, "%.1f%%",
                             served ? 100.0 * (double)rep / (double)served : 0.0);
            if (served != reads && n > 0)
                snprintf(share + n, sizeof share - (size_t)n, " (counters: %" PRIu64
                         " statements for %" PRIu64 " reads)", served, reads);
        }
        int must_fresh = v == V_RYW, must_mono = v == V_MONO;
        if ((must_fresh && stale) || (must_mono && back))
            violations++;
        char chk[48] = "-";
        if (variant_mode[v] && reads)
            snprintf(chk, sizeof chk, "%.1f (%.1f)", 100.0 * (double)checks / (double)reads,
                     100.0 * (double)misses / (double)reads);
        char wl[32] = "-";
        if (writes)
            snprintf(wl, sizeof wl, "%.0f", median(wp50, rounds));
        printf("| %s | %.0f | %.3f | %" PRIu64 " of %" PRIu64 "%s | %" PRIu64 "%s | %s | %s | %.0f "
               "| %.0f | %s |\n",
               variant_name[v], median(ops[v], rounds), median(ratio, rounds), stale, reads,
               must_fresh ? (stale ? " VIOLATION (must be 0)" : " (must be 0)") : "", back,
               must_mono ? (back ? " VIOLATION (must be 0)" : " (must be 0)") : "", share, chk,
               median(rp50, rounds), median(rp99, rounds), wl);
    }
    /* The targets, as medians of per-round ratios. */
    struct {
        int a, b;
        const char *label, *target;
    } targets[] = {{V_RYW, V_ANY, "read_your_writes/any", ">= 0.95"},
                   {V_RYW, V_SRPRIM, "read_your_writes/primary", ">= 1.0"},
                   {V_ANY, V_SPLIT, "any/direct split", ">= 0.95"}};
    int have[NVARIANTS] = {0};
    for (int j = 0; j < cf->nvariants; j++)
        have[cf->variants[j]] = 1;
    printf("\ntargets (median of per-round ratios):");
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        if (!have[targets[t].a] || !have[targets[t].b])
            continue;
        double ratio[MAX_ROUNDS];
        for (int r = 0; r < rounds; r++)
            ratio[r] = ops[targets[t].b][r] > 0 ? ops[targets[t].a][r] / ops[targets[t].b][r] : 0;
        printf("  %s = %.3f (target %s);", targets[t].label, median(ratio, rounds), targets[t].target);
    }
    printf("\n");
    fflush(stdout);
}

/* ---- one backend -------------------------------------------------------- */

static void run_backend(backend *be, const char *policy, double secs, int rounds, int nrows)
{
    double t_start = now_s();
    for (int i = 0; i <= be->nreplicas; i++)
        be->ctl[i] = be->connect(be, i);
    about(be);
    be->exec(be->ctl[0], "DROP TABLE IF EXISTS bench_mixed");
    be->exec(be->ctl[0], be->sql_create);
    /* Rows in one statement: v starts at 0 for every key. */
    size_t cap = (size_t)nrows * 24 + 64;
    char *ins = malloc(cap);
    int64_t *last = calloc((size_t)nrows, sizeof *last);
    if (!ins || !last)
        die("setup", "out of memory");
    size_t off = (size_t)snprintf(ins, cap, "INSERT INTO bench_mixed (k, v) VALUES ");
    for (int k = 0; k < nrows; k++)
        off += (size_t)snprintf(ins + off, cap - off, "%s(%d, 0)", k ? ", " : "", k);
    be->exec(be->ctl[0], ins);
    free(ins);
    be->sync(be);
    for (int t = 0; t < MAX_THREADS; t++) {
        be->dconn[t][0] = be->connect(be, 1 + t % be->nreplicas);
        be->dconn[t][1] = be->connect(be, 0);
        prepare_direct(be, be->dconn[t][0]);
        prepare_direct(be, be->dconn[t][1]);
    }
    sr_router *router = open_router(be, policy);
    repin_servers();

    /* TLS on both sides, so that the comparison is like for like. */
    sr_session *s = NULL;
    sr_result *tls = NULL;
    if (sr_session_new(router, &s) != SR_OK ||
        sr_exec(s, sr_key_int(0), SR_READ, be->sql_server_tls, 0, NULL, &tls) != SR_OK)
        die("TLS check", s ? sr_session_errmsg(s) : "out of memory");
    const char *tv = sr_result_nrows(tls) == 1 ? sr_result_value(tls, 0, 0) : NULL;
    int routed_tls = tv && (strcmp(tv, "t") == 0 || strcmp(tv, "1") == 0);
    sr_result_free(tls);
    sr_session_free(s);

    printf("\n## %s\n\n", be->about);
    printf("one shard: primary + %d replica%s; shardroute balance.policy = %s, other options at "
           "their defaults; direct split: thread i reads replica i %% %d; TLS: direct %s, "
           "shardroute %s; %d rows\n",
           be->nreplicas, be->nreplicas > 1 ? "s" : "", policy ? policy : "(default)",
           be->nreplicas, be->tls(be->dconn[0][0]) ? "on" : "off", routed_tls ? "on" : "off",
           nrows);
    fflush(stdout);

    /* Warm-up: every variant once, both threads (pools, statement caches). */
    for (int v = 0; v < NVARIANTS; v++)
        do_run(be, router, v, 2, 10, secs < 0.2 ? secs : 0.2, nrows, last, 1);

    static run_result res[NVARIANTS][MAX_ROUNDS];
    for (int c = 0; c < NCONFIGS; c++) {
        const config *cf = &configs[c];
        if (only_threads >= 0 && (cf->threads != only_threads || cf->write_pct != only_write_pct))
            continue;
        memset(res, 0, sizeof res);
        for (int r = 0; r < rounds; r++)
            for (int j = 0; j < cf->nvariants; j++) {
                int v = cf->variants[(r + j) % cf->nvariants];
                /* The same key sequence for every variant of a round. */
                uint64_t seed = 0x2545F4914F6CDD1Dull ^ ((uint64_t)(c + 1) << 32) ^ (uint64_t)(r + 1);
                res[v][r] = do_run(be, router, v, cf->threads, cf->write_pct, secs, nrows, last, seed);
            }
        print_config(be, cf, res, rounds, secs);
    }

    sr_router_close(router);
    for (int t = 0; t < MAX_THREADS; t++)
        for (int i = 0; i < 2; i++)
            be->disconnect(be->dconn[t][i]);
    be->exec(be->ctl[0], "DROP TABLE IF EXISTS bench_mixed");
    for (int i = 0; i <= be->nreplicas; i++)
        be->disconnect(be->ctl[i]);
    free(last);
    printf("\n%s: %.1f s\n", be->name, now_s() - t_start);
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_mixed [--pin] [--backend pg|mysql|all] [--policy NAME] "
                    "[--only THREADS/WRITE_PCT] [SECONDS_PER_RUN [ROUNDS [ROWS]]]\n"
                    "  defaults: 0.5 s per run, 5 rounds, 1000 rows; ROUNDS 1..%d, ROWS >= 2\n",
            MAX_ROUNDS);
    exit(2);
}

int main(int argc, char **argv)
{
    double secs = 0.5;
    int rounds = 5, nrows = 1000, pin = 0, npos = 0;
    const char *which = "all", *policy = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--pin") == 0)
            pin = 1;
        else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc)
            which = argv[++i];
        else if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc)
            policy = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            if (sscanf(argv[++i], "%d/%d", &only_threads, &only_write_pct) != 2)
                usage();
        }
        else if (argv[i][0] == '-' && argv[i][1] && !(argv[i][1] >= '0' && argv[i][1] <= '9'))
            usage();
        else if (npos == 0)
            secs = atof(argv[i]), npos++;
        else if (npos == 1)
            rounds = atoi(argv[i]), npos++;
        else if (npos == 2)
            nrows = atoi(argv[i]), npos++;
        else
            usage();
    }
    if (!(secs > 0) || rounds < 1 || rounds > MAX_ROUNDS || nrows < MAX_THREADS ||
        (strcmp(which, "all") != 0 && strcmp(which, "pg") != 0 && strcmp(which, "mysql") != 0))
        usage();

    backend backends[2];
    int nb = 0;
    memset(backends, 0, sizeof backends);
#ifdef BENCH_MIXED_PG
    if (strcmp(which, "mysql") != 0)
        nb += pg_backend(&backends[nb]);
#endif
#ifdef BENCH_MIXED_MYSQL
    if (strcmp(which, "pg") != 0) {
        if (mysql_library_init(0, NULL, NULL))
            die("mysql_library_init", "failed");
        nb += my_backend(&backends[nb]);
    }
#endif
    if (nb == 0) {
        fprintf(stderr, "bench_mixed: no backend: needs SR_PG_PRIMARY/_REPLICA1/_REPLICA2 or "
                        "SR_MY_PRIMARY/_REPLICA (tests/env/with_servers.sh) and the driver built "
                        "(skipped)\n");
        return 77;
    }

    double t0 = now_s();
    char pinmsg[1024];
    if (pin)
        pin_all(pinmsg, sizeof pinmsg);
    else
        snprintf(pinmsg, sizeof pinmsg, "pinning: off (--pin pins the bench to the last CPU and "
                                        "the servers to the others)");

    /* Room for every operation a thread can do in a run at 200k ops/s. */
    size_t cap = (size_t)(secs * 200000) + 1024;
    lat_scratch = malloc(cap * MAX_THREADS * sizeof *lat_scratch);
    for (int i = 0; i < MAX_THREADS; i++) {
        workers[i].cap = cap;
        workers[i].rlat = malloc(cap * sizeof(float));
        workers[i].wlat = malloc(cap * sizeof(float));
        workers[i].seen = malloc((size_t)nrows * sizeof(int64_t));
        if (!workers[i].rlat || !workers[i].wlat || !workers[i].seen)
            die("setup", "out of memory");
    }
    if (!lat_scratch)
        die("setup", "out of memory");

    printf("bench_mixed: closed-loop point reads + W%% UPDATEs by primary key, each thread the "
           "only writer of its keys; shardroute %s\n", sr_version());
    printf("%s\n", pinmsg);
    printf("%d rounds x %.2f s per variant, interleaved (round r starts at variant r); %ld cpus "
           "online%s\n",
           rounds, secs, sysconf(_SC_NPROCESSORS_ONLN),
           rounds < 5 ? "; fewer than 5 rounds: a smoke run, not figures" : "");
    printf("stale reads: a read that did not return the thread's last written value "
           "(must be 0 for read_your_writes; information for the others). went back: a read older "
           "than one the thread already read of that key in the run (must be 0 for monotonic).\n"
           "reads on replicas: from sr_router_node_info statement counters, replica statements / "
           "(replica + primary statements - writes).\n"
           "checks (behind) per 100 reads: sr_node_info position_checks (stale_checks) over the "
           "replicas: reads that asked a replica whether it had applied their position (and "
           "found it behind, so they went on to the primary: one round trip lost).\n");
    fflush(stdout);

    for (int b = 0; b < nb; b++)
        run_backend(&backends[b], policy, secs, rounds, nrows);

    printf("\ntotal: %.1f s%s\n", now_s() - t0,
           violations ? "; CONSISTENCY VIOLATIONS above (exit status 1)" : "");
    for (int i = 0; i < MAX_THREADS; i++) {
        free(workers[i].rlat);
        free(workers[i].wlat);
        free(workers[i].seen);
    }
    free(lat_scratch);
#ifdef BENCH_MIXED_MYSQL
    mysql_library_end();
#endif
    return violations ? 1 : 0;
}
