/*
 * Consistency on PostgreSQL: read-your-writes, monotonic reads, tokens that
 * cross processes, lag-aware routing and read-only transactions, against a
 * PostgreSQL 15 primary with two streaming replicas (tests/env/pg_cluster.sh;
 * two shards = the databases shard0 and shard1, each with all three servers
 * as nodes). Replication is held back with pg_wal_replay_pause() on the
 * replicas; which server answered a read is told by the read itself
 * (pg_is_in_recovery(), inet_server_port()), and what a replica holds is
 * checked with direct libpq connections, never through the library.
 * The same guarantees on MariaDB: test_consistency_mysql.c; on SQLite:
 * test_consistency_sqlite.c (meson suite "consistency" runs all three).
 *
 * Every test resumes replay on both replicas before it starts (a checked
 * fixture) and the test case does again when it ends (an unchecked one, which
 * runs even after a failure), so a failed test never leaves a paused replica
 * behind for the next.
 *
 * Run: tests/env/pg_cluster.sh run BUILD/tests/test_consistency_pg. Without
 * the cluster's environment the suite is skipped (77), except under CI (env
 * CI set), where a missing backend is a failure.
 */
#include <check.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shardroute.h>
#include <shardroute/driver.h>

#include "consistency_common.h"
#include "logwatch.h"
#include "pg_direct.h"
#include "proc.h"

/* The cluster, from env.sh. */
static pg_cluster pg;

/* ---- helpers ------------------------------------------------------------- */

/* Wall-clock ms: the clock PostgreSQL's now() and replay timestamps use on this machine. */
static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
static int direct_true(PGconn *c, const char *sql)
{
    char *v = direct_value(c, sql);
    int t = v && strcmp(v, "t") == 0;
    free(v);
    return t;
}

static double direct_double(PGconn *c, const char *sql)
{
    char *v = direct_value(c, sql);
    ck_assert_msg(v != NULL, "%s returned NULL", sql);
    double d = strtod(v, NULL);
    free(v);
    return d;
}

/* Polls `sql` on `c` until it returns "t" (bounded); 1 if it did. */
static int wait_true(PGconn *c, const char *sql, int max_ms)
{
    for (double t0 = mono_ms(); mono_ms() - t0 < max_ms; sleep_ms(10))
        if (direct_true(c, sql))
            return 1;
    return 0;
}

static const char *replica_base(int i) { return i == 0 ? pg.replica1 : pg.replica2; }

/* Pauses WAL replay on a replica (the whole server: every database) and waits until it is. */
static void pause_replay(const char *base)
{
    PGconn *c = direct(base, "postgres");
    direct_exec(c, "SELECT pg_wal_replay_pause()");
    ck_assert_msg(wait_true(c, "SELECT pg_get_wal_replay_pause_state() = 'paused'", 10000),
                  "replay did not pause on %s", base);
    PQfinish(c);
}

static void resume_replay(const char *base)
{
    PGconn *c = direct(base, "postgres");
    direct_exec(c, "SELECT pg_wal_replay_resume()");
    PQfinish(c);
}

/*
 * Fixture teardown: resumes replay on both replicas with no assertion, so it
 * also works (and never aborts) after a failed test.
 */
static void resume_all_quietly(void)
{
    for (int i = 0; i < 2; i++) {
        const char *base = i == 0 ? getenv("SR_PG_REPLICA1") : getenv("SR_PG_REPLICA2");
        if (!base)
            continue;
        char *uri = malloc(strlen(base) + 16);
        if (!uri)
            continue;
        sprintf(uri, "%s/postgres", base);
        PGconn *c = PQconnectdb(uri);
        free(uri);
        if (PQstatus(c) == CONNECTION_OK)
            PQclear(PQexec(c, "SELECT pg_wal_replay_resume()"));
        PQfinish(c);
    }
}

/*
 * Waits until both replicas have replayed everything the primary had written
 * before this call: a marker row is committed on the primary and polled for
 * on each replica. One WAL stream carries every database, replayed in order,
 * so seeing the marker means everything before it is there too.
 */
static void sync_replicas(void)
{
    PGconn *p = direct(pg.primary, "shard0");
    direct_exec(p, "CREATE TABLE IF NOT EXISTS sr_sync (n bigserial)");
    char *marker = direct_value(p, "INSERT INTO sr_sync DEFAULT VALUES RETURNING n");
    ck_assert_ptr_nonnull(marker);
    long n = atol(marker);
    free(marker);
    PQfinish(p);
    char *probe = xfmt("SELECT EXISTS (SELECT 1 FROM sr_sync WHERE n = %ld)", n);
    for (int i = 0; i < 2; i++) {
        PGconn *c = direct(replica_base(i), "shard0");
        /* to_regclass first: the table itself may not have arrived yet. */
        int ok = 0;
        for (double t0 = mono_ms(); !ok && mono_ms() - t0 < 15000; sleep_ms(10)) {
            if (!direct_true(c, "SELECT to_regclass('sr_sync') IS NOT NULL"))
                continue;
            ok = direct_true(c, probe);
        }
        ck_assert_msg(ok, "replica %d did not catch up within 15 s", i + 1);
        PQfinish(c);
    }
    free(probe);
}

/* Checked setup: every test starts with both replicas replaying and caught up. */
static void replicas_running(void)
{
    resume_all_quietly();
    sync_replicas();
}

/* Runs `sql` (one statement, no parameters) on the primary of every shard, directly. */
static void on_every_primary(const char *sql)
{
    for (int i = 0; i < NSHARDS; i++) {
        PGconn *c = direct(pg.primary, shard_db[i]);
        direct_exec(c, sql);
        PQfinish(c);
    }
}

/* A router over the cluster: each shard has the primary and both replicas (nodes 1 and 2). */
typedef struct router_opts {
    int nshards;            /* default NSHARDS */
    const char *opt[8][2];  /* sr_config_set pairs after balance.policy = round_robin */
    sr_log_fn log_fn;
    void *log_ud;
} router_opts;

static router_opts defaults(void)
{
    router_opts o;
    memset(&o, 0, sizeof o);
    o.nshards = NSHARDS;
    return o;
}

static sr_router *open_router(router_opts o)
{
    const char *opts[2 * 8 + 1] = {NULL};
    for (int i = 0; i < 8 && o.opt[i][0]; i++) {
        opts[2 * i] = o.opt[i][0];
        opts[2 * i + 1] = o.opt[i][1];
    }
    const char *replicas[] = {pg.replica1, pg.replica2};
    return open_cluster_router(pg.primary, replicas, 2, o.nshards, opts, o.log_fn, o.log_ud);
}

/*
 * Reads `v` of row `key` from `table` with SR_READ (and per-read options),
 * together with the port of the server that answered.
 */
static seen read_row(sr_session *s, const char *table, int64_t key, const sr_read_opts *opts)
{
    char *sql = xfmt("SELECT (SELECT v::text FROM %s WHERE k = ?), inet_server_port()", table);
    seen w = read_row_as(s, sql, key, opts);
    free(sql);
    return w;
}

static int is_replica_port(int port) { return port == pg.port_replica1 || port == pg.port_replica2; }

/* ---- a writer thread: keeps the primary writing while replicas lag -------- */

#define TICKS_TABLE \
    "CREATE TABLE IF NOT EXISTS sr_ticks (id bigserial, at timestamptz DEFAULT now())"

typedef struct writer {
    pthread_t thread;
    atomic_int stop;
    atomic_long writes;
    int failed;
    int every_ms;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    char uri[512]; /* no Check assertion on this thread: failures are recorded in w->failed */
    snprintf(uri, sizeof uri, "%s/shard0", pg.primary);
    PGconn *c = PQconnectdb(uri);
    if (PQstatus(c) != CONNECTION_OK) {
        w->failed = 1;
        PQfinish(c);
        return NULL;
    }
    while (!atomic_load(&w->stop)) {
        PGresult *r = PQexec(c, "INSERT INTO sr_ticks DEFAULT VALUES");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            w->failed = 1;
        PQclear(r);
        atomic_fetch_add(&w->writes, 1);
        sleep_ms(w->every_ms);
    }
    PQfinish(c);
    return NULL;
}

static void writer_start(writer *w, int every_ms)
{
    PGconn *p = direct(pg.primary, "shard0");
    direct_exec(p, TICKS_TABLE);
    PQfinish(p);
    memset(w, 0, sizeof *w);
    w->every_ms = every_ms;
    atomic_init(&w->stop, 0);
    atomic_init(&w->writes, 0);
    ck_assert_int_eq(pthread_create(&w->thread, NULL, writer_main, w), 0);
}

static void writer_stop(writer *w)
{
    atomic_store(&w->stop, 1);
    pthread_join(w->thread, NULL);
    ck_assert_msg(!w->failed, "the writer thread failed");
}

/* The lag a naive formula would report on a replica: ms since its last replayed commit. */
static double replay_age_ms(PGconn *replica)
{
    return direct_double(replica, "SELECT extract(epoch FROM now() - "
                                  "pg_last_xact_replay_timestamp()) * 1000");
}

/* ---- 1. read-your-writes with replay paused on every replica --------------- */

/* PAIRS write-then-read pairs under the session's mode: counts stale reads and replica reads. */
static void write_then_read(sr_router *r, sr_session *s, const char *tag, int *stale,
                            int *from_replica)
{
    *stale = *from_replica = 0;
    for (int i = 0; i < PAIRS; i++) {
        int64_t key = key_on(r, i % NSHARDS, (i / NSHARDS) % (KEYS / NSHARDS));
        char v[32];
        snprintf(v, sizeof v, "%s-%d", tag, i);
        write_one(s, key, "UPDATE sr_ryw SET v = ? WHERE k = ?", v);
        seen w = read_row(s, "sr_ryw", key, NULL);
        *stale += !w.found || strcmp(w.value, v) != 0;
        *from_replica += is_replica_port(w.server);
    }
}

START_TEST(read_your_writes_reads_back_every_write_while_replicas_are_paused)
{
    on_every_primary("DROP TABLE IF EXISTS sr_ryw; "
                     "CREATE TABLE sr_ryw (k bigint PRIMARY KEY, v text NOT NULL)");
    router_opts o = defaults();
    o.opt[0][0] = "consistency.wait_ms";
    o.opt[0][1] = "5"; /* short: with replay paused every read waits this long in vain */
    sr_router *r = open_router(o);
    sr_session *any = session_in(r, "any");
    insert_initial_rows(any, r, "sr_ryw", KEYS);
    sync_replicas();
    pause_replay(pg.replica1);
    pause_replay(pg.replica2);

    /* read_your_writes: every read returns the value just written, never from a replica. */
    sr_session *ryw = session_in(r, "read_your_writes");
    uint64_t replica_before = statements_on(r, 0), primary_before = statements_on(r, 1);
    double t0 = mono_ms();
    int stale = -1, from_replica = -1;
    write_then_read(r, ryw, "ryw", &stale, &from_replica);
    double took = mono_ms() - t0;
    uint64_t replica_stmts = statements_on(r, 0) - replica_before;
    uint64_t primary_stmts = statements_on(r, 1) - primary_before;
    fprintf(stderr, "read_your_writes, replay paused: %d pairs, %d stale, %d from a replica, "
                    "%.0f ms\n", PAIRS, stale, from_replica, took);
    ck_assert_int_eq(stale, 0);
    ck_assert_int_eq(from_replica, 0);
    /* The router's own counters agree: no replica ran a statement, the primary ran all. */
    ck_assert_uint_eq(replica_stmts, 0);
    ck_assert_uint_eq(primary_stmts, 2 * PAIRS);
    /*
     * A wait that ran out is no failure of the replica: it stays healthy and
     * keeps its pooled connection (no reconnect per read-your-writes read).
     * The connections are asserted at the end of the test, so that a failure
     * there does not hide the other checks.
     */
    char lost[512] = "";
    for (int sh = 0; sh < NSHARDS; sh++)
        for (int i = 1; i < sr_router_nnodes(r, sh); i++) {
            sr_node_info info = SR_NODE_INFO_INIT;
            ck_assert_int_eq(sr_router_node_info(r, sh, i, &info), SR_OK);
            ck_assert_msg(info.healthy && info.ejections == 0, "shard %d replica %d: healthy %d, "
                          "ejections %llu", sh, i, info.healthy,
                          (unsigned long long)info.ejections);
            if (info.connections == 0) {
                size_t len = strlen(lost);
                snprintf(lost + len, sizeof lost - len, " %s", info.uri);
            }
        }

    /* With primary reads forbidden the same read is SR_ESTALE, saying why. */
    router_opts on = o;
    on.opt[1][0] = "balance.primary_reads";
    on.opt[1][1] = "never";
    sr_router *never = open_router(on);
    sr_session *strict = session_in(never, "read_your_writes");
    int64_t k0 = key_on(never, 0, 0);
    write_one(strict, k0, "UPDATE sr_ryw SET v = ? WHERE k = ?", "strict");
    char ks[24];
    snprintf(ks, sizeof ks, "%lld", (long long)k0);
    const char *kp[] = {ks};
    int rc = sr_exec(strict, sr_key_int(k0), SR_READ, "SELECT v FROM sr_ryw WHERE k = ?", 1, kp,
                     NULL);
    ck_assert_msg(rc == SR_ESTALE, "got %s (%s)", sr_strerror(rc), sr_session_errmsg(strict));
    ck_assert_msg(strstr(sr_session_errmsg(strict), "shard0") != NULL, "%s",
                  sr_session_errmsg(strict));
    sr_session_free(strict);
    sr_router_close(never);

    /* any: the same loop reads stale values from the paused replicas (the check can fail). */
    write_then_read(r, any, "any", &stale, &from_replica);
    fprintf(stderr, "any, replay paused: %d pairs, %d stale, %d from a replica\n", PAIRS, stale,
            from_replica);
    ck_assert_int_gt(stale, 0);
    ck_assert_int_gt(from_replica, 0);

    /* Resumed: the read-your-writes session's reads move back to replicas, still fresh. */
    resume_replay(pg.replica1);
    resume_replay(pg.replica2);
    int64_t last_key = key_on(r, 0, 0);
    write_one(ryw, last_key, "UPDATE sr_ryw SET v = ? WHERE k = ?", "after-resume");
    seen w = {{0}, 0, 0};
    int reads = 0;
    for (double t1 = mono_ms(); mono_ms() - t1 < 10000; sleep_ms(5)) {
        w = read_row(ryw, "sr_ryw", last_key, NULL);
        reads++;
        ck_assert_str_eq(w.value, "after-resume");
        if (is_replica_port(w.server))
            break;
    }
    fprintf(stderr, "after resume: a replica served the read-your-writes read after %d reads\n",
            reads);
    ck_assert_msg(is_replica_port(w.server), "reads never went back to a replica");

    /*
     * Regression check: the PostgreSQL driver's wait_replayed once polled at
     * its deadline, so every expired wait timed out and closed the connection,
     * where driver.h asks for SR_OK with *out = 0.
     */
    ck_assert_msg(lost[0] == '\0', "replicas that lost their pooled connection to an expired "
                  "consistency wait:%s", lost);

    sr_session_free(ryw);
    sr_session_free(any);
    sr_router_close(r);
}
END_TEST

/* ---- 2. tokens ------------------------------------------------------------- */

/* What the routers of the token test log (tests/support/logwatch.h). */
static logwatch token_log;

/*
 * The child of the token test: its own router (as the password user) and
 * session; writes one row per shard and writes its token to `fd`. No Check
 * assertions here (this is not the test's process): failures are reported as
 * "ERR ..." on the pipe and a non-zero exit.
 */
static void token_child(int fd, int64_t key0, int64_t key1, const char *value)
{
    char user[256];
    snprintf(user, sizeof user, "%s:%s@", pg.pw_user, pg.pw_password);
    sr_config *c = sr_config_new();
    int ok = c != NULL;
    for (int i = 0; ok && i < NSHARDS; i++) {
        char uri[512];
        const char *at = strchr(pg.primary, '@');
        snprintf(uri, sizeof uri, "postgresql://%s%s/%s", user, at ? at + 1 : "", shard_db[i]);
        ok = sr_config_add_shard(c, shard_db[i]) == SR_OK &&
             sr_config_add_node(c, shard_db[i], SR_PRIMARY, uri, 1) == SR_OK;
        for (int rep = 0; ok && rep < 2; rep++) {
            at = strchr(replica_base(rep), '@');
            snprintf(uri, sizeof uri, "postgresql://%s%s/%s", user, at ? at + 1 : "", shard_db[i]);
            ok = sr_config_add_node(c, shard_db[i], SR_REPLICA, uri, 1) == SR_OK;
        }
    }
    sr_router *r = NULL;
    sr_session *s = NULL;
    ok = ok && sr_router_open(c, &r) == SR_OK && sr_session_new(r, &s) == SR_OK;
    sr_config_free(c);
    char msg[1024] = "ERR setup";
    int64_t keys[2] = {key0, key1};
    for (int i = 0; ok && i < 2; i++) {
        char ks[24];
        snprintf(ks, sizeof ks, "%lld", (long long)keys[i]);
        const char *p[] = {ks, value};
        int rc = sr_exec(s, sr_key_int(keys[i]), SR_WRITE, "INSERT INTO sr_tok VALUES (?, ?)", 2,
                         p, NULL);
        if (rc != SR_OK) {
            snprintf(msg, sizeof msg, "ERR insert: %s", sr_session_errmsg(s));
            ok = 0;
        }
    }
    token_child_exit(fd, r, s, ok, msg, sizeof msg);
}

static void token_child_main(int fd, void *arg)
{
    token_args *a = arg;
    token_child(fd, a->key0, a->key1, a->value);
}

static char *token_from_child(int64_t key0, int64_t key1, const char *value)
{
    token_args a = {key0, key1, NULL, value};
    return token_from(token_child_main, &a);
}

START_TEST(a_token_carries_a_write_to_another_process)
{
    on_every_primary("DROP TABLE IF EXISTS sr_tok; "
                     "CREATE TABLE sr_tok (k bigint PRIMARY KEY, v text NOT NULL)");
    char *grant = xfmt("GRANT ALL ON sr_tok TO %s", pg.pw_user);
    on_every_primary(grant);
    free(grant);
    sync_replicas();
    pause_replay(pg.replica1);
    pause_replay(pg.replica2);

    /* Keys are computed by a router of the same topology as the child's. */
    router_opts o = defaults();
    lw_init(&token_log);
    o.log_fn = lw_log;
    o.log_ud = &token_log;
    sr_router *r = open_router(o);
    int64_t key[NSHARDS] = {key_on(r, 0, 0), key_on(r, 1, 0)};
    char value[64];
    snprintf(value, sizeof value, "from-child-%ld", (long)getpid());
    char *token = token_from_child(key[0], key[1], value);

    /* Printable, versioned, names both shards, and holds no credential. */
    ck_assert_msg(strncmp(token, "sr1;c=", 6) == 0, "token '%s'", token);
    for (const char *t = token; *t; t++)
        ck_assert_msg(*t > ' ' && *t < 0x7f, "unprintable byte in token '%s'", token);
    ck_assert_msg(strstr(token, ";shard0=") && strstr(token, ";shard1="), "token '%s'", token);
    ck_assert_msg(!strstr(token, pg.pw_password) && !strstr(token, pg.pw_user), "token '%s'", token);
    fprintf(stderr, "token from the child: %s\n", token);

    /* Without the token a fresh session reads the paused replicas: the row is not there. */
    sr_session *blind = session_in(r, NULL);
    for (int i = 0; i < NSHARDS; i++) {
        seen w = read_row(blind, "sr_tok", key[i], NULL);
        ck_assert_msg(!w.found && is_replica_port(w.server), "shard %d: found=%d port=%ld", i,
                      w.found, w.server);
    }

    /* With it, the first read on each shard sees the child's row. */
    sr_session *s = session_in(r, NULL);
    ck_assert_msg(sr_session_set_token(s, token) == SR_OK, "%s", sr_session_errmsg(s));
    for (int i = 0; i < NSHARDS; i++) {
        seen w = read_row(s, "sr_tok", key[i], NULL);
        ck_assert_msg(w.found, "shard %d: the child's row was not seen on the first read", i);
        ck_assert_str_eq(w.value, value);
        ck_assert_int_eq(w.server, pg.port_primary); /* the replicas are paused */
    }
    /* Re-exported, the positions travel on. */
    const char *again = sr_session_token(s);
    ck_assert_ptr_nonnull(again);
    ck_assert_str_eq(again, token);

    /* Malformed tokens: SR_EINVAL with a message, and the session keeps its positions. */
    char id[17];
    memcpy(id, token + 6, 16);
    id[16] = '\0';
    char *bad[] = {
        xfmt("garbage"),
        xfmt("sr1"),
        xfmt("sr1;c="),
        xfmt("sr1;c=%.15s", id),
        xfmt("sr2;c=%s;shard0=0/1", id),
        xfmt("sr1;c=%s;shard0", id),
        xfmt("sr1;c=%s;shard0=", id),
        xfmt("sr1;c=%s;=0/1", id),
        xfmt("sr1;c=%s;shard0=not-an-lsn", id),
        xfmt("sr1;c=%s;shard0=0/1;", id),
        xfmt("sr1;c=%s;shard0=0/1 ", id),
        xfmt("sr1;c=%s;shard%%zz=0/1", id),
        xfmt("sr1;c=%s;shard0=0/1%%", id),
        xfmt("sr1;c=%sx;shard0=0/1", id),
        /* a valid entry first: nothing of it may be merged */
        xfmt("sr1;c=%s;shard0=FFFFFFFF/0;shard1=bad", id),
    };
    char *before = strdup(sr_session_token(s));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = sr_session_set_token(s, bad[i]);
        ck_assert_msg(rc == SR_EINVAL, "'%s' gave %s", bad[i], sr_strerror(rc));
        ck_assert_msg(strstr(sr_session_errmsg(s), "token") != NULL, "'%s': message '%s'", bad[i],
                      sr_session_errmsg(s));
        const char *now = sr_session_token(s);
        ck_assert_msg(strcmp(now, before) == 0, "'%s' changed the session: %s", bad[i], now);
        free(bad[i]);
    }
    ck_assert_int_eq(sr_session_set_token(s, NULL), SR_EINVAL);

    /* Another topology: a forged topology id, and the token of a router with another
     * distribution. */
    char *forged = strdup(token);
    forged[6] = forged[6] == '0' ? '1' : '0';
    ck_assert_int_eq(sr_session_set_token(s, forged), SR_EINVAL);
    ck_assert_msg(strstr(sr_session_errmsg(s), "topology"), "%s", sr_session_errmsg(s));
    ck_assert_str_eq(sr_session_token(s), before);
    free(forged);
    router_opts jo = defaults();
    jo.opt[0][0] = "shard.distribution";
    jo.opt[0][1] = "jump";
    sr_router *jr = open_router(jo);
    sr_session *js = session_in(jr, NULL);
    int64_t jkey = 1000;
    char jks[24];
    snprintf(jks, sizeof jks, "%lld", (long long)jkey);
    const char *jp[] = {jks, "jump"};
    ck_assert_int_eq(sr_exec(js, sr_key_int(jkey), SR_WRITE,
                             "INSERT INTO sr_tok VALUES (? + 1000000, ?) ON CONFLICT DO NOTHING",
                             2, jp, NULL),
                     SR_OK);
    const char *jtoken = sr_session_token(js);
    ck_assert_ptr_nonnull(jtoken);
    ck_assert_msg(strncmp(jtoken, "sr1;c=", 6) == 0, "'%s'", jtoken);
    ck_assert_int_eq(sr_session_set_token(s, jtoken), SR_EINVAL);
    ck_assert_msg(strstr(sr_session_errmsg(s), "topology"), "%s", sr_session_errmsg(s));
    ck_assert_str_eq(sr_session_token(s), before);
    sr_session_free(js);
    sr_router_close(jr);

    /* A shard this router does not have is ignored with a log line; the rest is merged. */
    const char *pos0 = strstr(token, ";shard0=") + 8;
    size_t pos0_len = strcspn(pos0, ";");
    char *partial = xfmt("sr1;c=%s;gone_shard=0/10;shard0=%.*s", id, (int)pos0_len, pos0);
    sr_session *fresh = session_in(r, NULL);
    lw_clear(&token_log);
    ck_assert_msg(sr_session_set_token(fresh, partial) == SR_OK, "%s", sr_session_errmsg(fresh));
    char lines[1400];
    ck_assert_msg(lw_contains(&token_log, "gone_shard"), "log:%s",
                  lw_lines(&token_log, 0, 0, 0, lines, sizeof lines));
    const char *ft = sr_session_token(fresh);
    ck_assert_msg(strstr(ft, ";shard0=") && !strstr(ft, "gone_shard") && !strstr(ft, ";shard1="),
                  "token '%s'", ft);
    seen w = read_row(fresh, "sr_tok", key[0], NULL);
    ck_assert_str_eq(w.value, value);
    /* An empty token (a session that wrote nothing) is accepted and changes nothing. */
    ck_assert_int_eq(sr_session_set_token(fresh, ""), SR_OK);

    free(partial);
    free(before);
    free(token);
    sr_session_free(fresh);
    sr_session_free(s);
    sr_session_free(blind);
    sr_router_close(r);
    lw_free(&token_log);
}
END_TEST

/* ---- 3. monotonic reads ---------------------------------------------------- */

/* Reads MONO_READS times; counts reads older than the freshest value seen, and who served them. */
static void read_many(sr_session *s, int *regressions, int *by_r1, int *by_r2, int *by_primary)
{
    const long servers[] = {pg.port_replica1, pg.port_replica2, pg.port_primary};
    int by[3];
    *regressions = read_many_as(
        s, "SELECT (SELECT v::text FROM sr_mono WHERE k = ?), inet_server_port()", servers, 3, by);
    *by_r1 = by[0];
    *by_r2 = by[1];
    *by_primary = by[2];
}

START_TEST(a_monotonic_session_never_reads_older_than_it_has_read)
{
    PGconn *p = direct(pg.primary, "shard0");
    direct_exec(p, "DROP TABLE IF EXISTS sr_mono; "
                   "CREATE TABLE sr_mono (k bigint PRIMARY KEY, v int NOT NULL); "
                   "INSERT INTO sr_mono VALUES (1, 1)");
    sync_replicas();
    /* replica1 keeps the old value; replica2 gets the new one. */
    pause_replay(pg.replica1);
    direct_exec(p, "UPDATE sr_mono SET v = 2 WHERE k = 1");
    PGconn *r2 = direct(pg.replica2, "shard0");
    ck_assert(wait_true(r2, "SELECT v = 2 FROM sr_mono WHERE k = 1", 15000));
    PGconn *r1 = direct(pg.replica1, "shard0");
    ck_assert(direct_true(r1, "SELECT v = 1 FROM sr_mono WHERE k = 1"));

    router_opts o = defaults();
    o.nshards = 1; /* round_robin over replica1 and replica2 */
    sr_router *r = open_router(o);

    /* monotonic: once the new value was read, it is never followed by the old one. */
    sr_session *mono = session_in(r, "monotonic");
    int fresh = 0;
    for (int i = 0; i < 20 && !fresh; i++)
        fresh = strcmp(read_row(mono, "sr_mono", 1, NULL).value, "2") == 0;
    ck_assert_msg(fresh, "the monotonic session never read the new value");
    int regressions, by_r1, by_r2, by_primary;
    read_many(mono, &regressions, &by_r1, &by_r2, &by_primary);
    fprintf(stderr, "monotonic: %d reads, %d older than already read (replica1 %d, replica2 %d, "
                    "primary %d)\n", MONO_READS, regressions, by_r1, by_r2, by_primary);
    ck_assert_int_eq(regressions, 0);
    ck_assert_int_eq(by_r1, 0);           /* the paused replica is behind what it read */
    ck_assert_int_gt(by_r2, 0);           /* the current replica still serves it */

    /* any: the same reads go back to the old value (the check can fail). */
    sr_session *any = session_in(r, "any");
    fresh = 0;
    for (int i = 0; i < 20 && !fresh; i++)
        fresh = strcmp(read_row(any, "sr_mono", 1, NULL).value, "2") == 0;
    ck_assert(fresh);
    read_many(any, &regressions, &by_r1, &by_r2, &by_primary);
    fprintf(stderr, "any: %d reads, %d older than already read (replica1 %d, replica2 %d, "
                    "primary %d)\n", MONO_READS, regressions, by_r1, by_r2, by_primary);
    ck_assert_int_gt(regressions, 0);

    sr_session_free(any);
    sr_session_free(mono);
    sr_router_close(r);
    PQfinish(r1);
    PQfinish(r2);
    PQfinish(p);
}
END_TEST

/* ---- 4. replica.max_lag_ms ----------------------------------------------- */

static sr_router *lag_router(void)
{
    router_opts o = defaults();
    o.nshards = 1;
    o.opt[0][0] = "replica.max_lag_ms";
    o.opt[0][1] = "500";
    o.opt[1][0] = "replica.lag_refresh_ms";
    o.opt[1][1] = "100";
    o.opt[2][0] = "consistency.mode";
    o.opt[2][1] = "any";
    return open_router(o);
}

static int read_port(sr_session *s, const sr_read_opts *opts)
{
    sr_result *res = NULL;
    int rc = sr_exec_opts(s, sr_key_int(1), SR_READ, opts, "SELECT inet_server_port()", 0, NULL,
                          &res);
    ck_assert_msg(rc == SR_OK, "read: %s (%s)", sr_strerror(rc), sr_session_errmsg(s));
    int port = atoi(sr_result_value(res, 0, 0));
    sr_result_free(res);
    return port;
}

START_TEST(a_lagging_replica_leaves_the_rotation_and_comes_back)
{
    sr_router *r = lag_router();
    sr_session *s = session_in(r, NULL);
    writer w;
    writer_start(&w, 20);
    /* replica1 serves reads while it keeps up (bounded: the writer has just started). */
    int r1_before = 0;
    double t_start = mono_ms();
    while (r1_before == 0 && mono_ms() - t_start < 5000) {
        r1_before += read_port(s, NULL) == pg.port_replica1;
        sleep_ms(10);
    }
    ck_assert_msg(r1_before > 0, "replica1 never served a read before it was paused");

    PGconn *d1 = direct(pg.replica1, "shard0");
    pause_replay(pg.replica1);
    double paused_at = mono_ms(), paused_wall = wall_ms();
    long writes_at_pause = atomic_load(&w.writes);
    /* Replay stopped at this commit: from it, lag grows at wall-clock speed. */
    double last_replay = direct_double(d1, "SELECT extract(epoch FROM "
                                           "pg_last_xact_replay_timestamp()) * 1000");
    double received_at = 0; /* wall time by which replica1 was seen holding unreplayed WAL */
    int late = 0, r1_reads = 0, r2_after = 0, reads = 0;
    double last_r1 = 0;
    while (mono_ms() - paused_at < 2000) {
        if (received_at == 0 &&
            direct_true(d1, "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()"))
            received_at = wall_ms();
        double started = wall_ms();
        int port = read_port(s, NULL);
        reads++;
        /* Past this the replica is measurably lagging and has been longer than a refresh. */
        double bound = last_replay + MAX_LAG;
        if (received_at > bound)
            bound = received_at;
        bound += LAG_REFRESH + ROUNDING;
        if (port == pg.port_replica1) {
            r1_reads++;
            last_r1 = started;
            late += received_at > 0 && started > bound;
        } else if (port == pg.port_replica2 && received_at > 0 && started > bound) {
            r2_after++;
        }
        sleep_ms(5);
    }
    long writes_paused = atomic_load(&w.writes) - writes_at_pause;
    ck_assert_msg(writes_paused > 20, "only %ld writes during the pause", writes_paused);
    ck_assert_msg(received_at > 0, "replica1 never received WAL while paused");
    fprintf(stderr, "max_lag_ms=%d, lag_refresh_ms=%d: %d reads and %ld writes in 2 s of pause, "
                    "%d reads on replica1, "
                    "the last %.0f ms after the pause (%.0f ms after its last replayed commit); "
                    "%d late\n",
            MAX_LAG, LAG_REFRESH, reads, writes_paused, r1_reads,
            r1_reads ? last_r1 - paused_wall : 0.0,
            r1_reads ? last_r1 - last_replay : 0.0, late);
    ck_assert_int_eq(late, 0);
    ck_assert_int_gt(r2_after, 0); /* the other replica took the reads, not the primary */

    /* Resumed, it catches up and returns. */
    resume_replay(pg.replica1);
    double resumed = mono_ms();
    int back = 0;
    while (!back && mono_ms() - resumed < 10000) {
        back = read_port(s, NULL) == pg.port_replica1;
        sleep_ms(5);
    }
    fprintf(stderr, "replica1 served reads again %.0f ms after resume\n", mono_ms() - resumed);
    ck_assert_msg(back, "replica1 did not come back within 10 s");
    writer_stop(&w);

    /*
     * An idle primary: no commit for well over the bound, so the age of the last
     * replayed commit says "lagging", but both replicas have replayed all they
     * received and must keep serving.
     */
    sync_replicas();
    PGconn *d2 = direct(pg.replica2, "shard0");
    int idle = 0;
    for (double t0 = mono_ms(); !idle && mono_ms() - t0 < 10000; sleep_ms(50))
        idle = replay_age_ms(d1) > 2 * MAX_LAG && replay_age_ms(d2) > 2 * MAX_LAG;
    ck_assert_msg(idle, "the primary did not stay idle for %d ms", 2 * MAX_LAG);
    int by1 = 0, by2 = 0, byp = 0;
    for (int i = 0; i < 20; i++) {
        int port = read_port(s, NULL);
        by1 += port == pg.port_replica1;
        by2 += port == pg.port_replica2;
        byp += port == pg.port_primary;
        sleep_ms(10); /* across several lag refreshes */
    }
    fprintf(stderr, "idle primary (last commit %.0f ms ago): replica1 %d, replica2 %d, primary %d "
                    "of 20 reads\n", replay_age_ms(d1), by1, by2, byp);
    ck_assert_int_gt(by1, 0);
    ck_assert_int_gt(by2, 0);
    ck_assert_int_eq(byp, 0);

    PQfinish(d2);
    PQfinish(d1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- 5. read-only transactions ------------------------------------------- */

START_TEST(a_read_only_transaction_runs_on_a_replica_with_one_snapshot)
{
    on_every_primary("DROP TABLE IF EXISTS sr_snap; "
                     "CREATE TABLE sr_snap (k bigint PRIMARY KEY, v text NOT NULL)");
    sr_router *r = open_router(defaults());
    int64_t key = key_on(r, 0, 0), other = key_on(r, 1, 0);
    char *ins = xfmt("INSERT INTO sr_snap VALUES (%lld, 'old')", (long long)key);
    PGconn *p = direct(pg.primary, "shard0");
    direct_exec(p, ins);
    free(ins);
    sync_replicas();

    sr_session *s = session_in(r, NULL);
    ck_assert_msg(sr_begin_read_only(s, sr_key_int(key)) == SR_OK, "%s", sr_session_errmsg(s));
    ck_assert_int_eq(sr_in_transaction(s), 1);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s, sr_key_int(key), SR_READ,
                             "SELECT pg_is_in_recovery(), current_setting('transaction_isolation'),"
                             " current_setting('transaction_read_only')",
                             0, NULL, &res),
                     SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "1"); /* a bool: "1" / "0" */
    ck_assert_str_eq(sr_result_value(res, 0, 1), "repeatable read");
    ck_assert_str_eq(sr_result_value(res, 0, 2), "on");
    sr_result_free(res);
    seen w = read_row(s, "sr_snap", key, NULL);
    ck_assert_str_eq(w.value, "old");
    ck_assert(is_replica_port(w.server));

    /* Another session writes; the transaction's replica replays it (checked directly). */
    char *upd = xfmt("UPDATE sr_snap SET v = 'new' WHERE k = %lld", (long long)key);
    direct_exec(p, upd);
    free(upd);
    PGconn *rep = direct(w.server == pg.port_replica1 ? pg.replica1 : pg.replica2, "shard0");
    char *probe = xfmt("SELECT v = 'new' FROM sr_snap WHERE k = %lld", (long long)key);
    ck_assert(wait_true(rep, probe, 15000));
    free(probe);

    /* Same snapshot, same server; another shard's key is refused and the transaction stays. */
    seen again = read_row(s, "sr_snap", key, NULL);
    ck_assert_str_eq(again.value, "old");
    ck_assert_int_eq(again.server, w.server);
    char ks[24];
    snprintf(ks, sizeof ks, "%lld", (long long)other);
    const char *op[] = {ks};
    ck_assert_int_eq(sr_exec(s, sr_key_int(other), SR_READ, "SELECT ?::int", 1, op, NULL),
                     SR_ETXN);
    ck_assert_int_eq(sr_in_transaction(s), 1);
    ck_assert_int_eq(sr_commit(s), SR_OK);
    ck_assert_int_eq(sr_in_transaction(s), 0);

    sync_replicas();
    seen after = read_row(s, "sr_snap", key, NULL);
    ck_assert_str_eq(after.value, "new");

    /* Writes inside one fail on the server, and the transaction can be rolled back. */
    ck_assert_int_eq(sr_begin_read_only(s, sr_key_int(key)), SR_OK);
    int rc = sr_exec(s, sr_key_int(key), SR_WRITE, "UPDATE sr_snap SET v = 'x'", 0, NULL, NULL);
    ck_assert_msg(rc == SR_EQUERY, "got %s", sr_strerror(rc));
    ck_assert_str_eq(sr_session_sqlstate(s), "25006");
    ck_assert_int_eq(sr_rollback(s), SR_OK);

    PQfinish(rep);
    PQfinish(p);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- 6. a staleness bound on one read -------------------------------------- */

START_TEST(a_per_read_lag_bound_overrides_the_session)
{
    router_opts o = defaults();
    o.nshards = 1;
    o.opt[0][0] = "replica.lag_refresh_ms";
    o.opt[0][1] = "100";
    o.opt[1][0] = "consistency.mode";
    o.opt[1][1] = "any";
    sr_router *r = open_router(o); /* replica.max_lag_ms stays 0: no bound */
    sr_session *s = session_in(r, NULL);

    PGconn *d1 = direct(pg.replica1, "shard0");
    PGconn *p = direct(pg.primary, "shard0");
    direct_exec(p, TICKS_TABLE);
    sync_replicas();
    pause_replay(pg.replica1);
    direct_exec(p, "INSERT INTO sr_ticks DEFAULT VALUES");
    /* replica1 holds WAL it has not replayed, and its last replayed commit is old. */
    ck_assert(wait_true(d1,
                        "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn() AND "
                        "now() - pg_last_xact_replay_timestamp() > interval '800 ms'",
                        15000));

    sr_read_opts bounded = SR_READ_OPTS_INIT;
    bounded.max_lag_ms = 500;
    sr_read_opts unbounded = SR_READ_OPTS_INIT;
    unbounded.max_lag_ms = 0;
    int by1 = 0, by2 = 0;
    for (int i = 0; i < 40; i++) {
        int port = read_port(s, &bounded);
        by1 += port == pg.port_replica1;
        by2 += port == pg.port_replica2;
    }
    fprintf(stderr, "per-read max_lag_ms=500: replica1 %d, replica2 %d of 40\n", by1, by2);
    ck_assert_int_eq(by1, 0);
    ck_assert_int_gt(by2, 0); /* the current replica serves them (not only the primary) */
    /* The session itself has no bound: its plain reads still use the lagging replica. */
    by1 = 0;
    for (int i = 0; i < 40; i++)
        by1 += read_port(s, NULL) == pg.port_replica1;
    ck_assert_int_gt(by1, 0);

    /* The other way round: a session bound, lifted for one read. */
    ck_assert_int_eq(sr_session_set(s, "max_lag_ms", "500"), SR_OK);
    by1 = 0;
    for (int i = 0; i < 40; i++)
        by1 += read_port(s, NULL) == pg.port_replica1;
    ck_assert_int_eq(by1, 0);
    by1 = 0;
    for (int i = 0; i < 40; i++)
        by1 += read_port(s, &unbounded) == pg.port_replica1;
    ck_assert_int_gt(by1, 0);
    ck_assert_int_eq(sr_session_set(s, "max_lag_ms", "default"), SR_OK);
    ck_assert_int_eq(sr_session_set(s, "max_lag_ms", "-5"), SR_EINVAL);

    /* A per-read consistency: primary for one read. */
    sr_read_opts primary = SR_READ_OPTS_INIT;
    primary.consistency = SR_CONSISTENCY_PRIMARY;
    ck_assert_int_eq(read_port(s, &primary), pg.port_primary);
    sr_read_opts wrong = SR_READ_OPTS_INIT;
    wrong.consistency = 7;
    ck_assert_int_eq(sr_exec_opts(s, sr_key_int(1), SR_READ, &wrong, "SELECT 1", 0, NULL, NULL),
                     SR_EINVAL);

    PQfinish(p);
    PQfinish(d1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- 1b. the check in the read's own exchange -------------------------------- */

/*
 * With the default consistency.wait_ms (no wait while the primary may be
 * read), a read-your-writes read checks a replica in the read's own exchange
 * (the driver's exec_at: PostgreSQL pipelines the check and the statement).
 * Behind (replay paused): the replica's rows are dropped, the read is served
 * by the primary, fresh, and the replica is not counted as having served
 * anything. Current (the write replayed): the replica serves it, fresh.
 */
/* n write-then-read pairs on shard 0's sr_pipe; `replayed`: wait for both replicas after
 * each write. Counts stale reads and reads a replica served. */
static void pipe_pairs(sr_router *r, sr_session *s, const char *tag, int n, int replayed,
                       int *stale, int *from_replica)
{
    *stale = *from_replica = 0;
    for (int i = 0; i < n; i++) {
        int64_t key = key_on(r, 0, i % (KEYS / NSHARDS));
        char v[32];
        snprintf(v, sizeof v, "%s-%d", tag, i);
        write_one(s, key, "UPDATE sr_pipe SET v = ? WHERE k = ?", v);
        if (replayed)
            sync_replicas(); /* both replicas have replayed the write (now some ms old) */
        seen w = read_row(s, "sr_pipe", key, NULL);
        *stale += !w.found || strcmp(w.value, v) != 0;
        *from_replica += is_replica_port(w.server);
    }
}

START_TEST(the_check_in_the_reads_exchange_falls_back_when_behind_and_serves_when_current)
{
    on_every_primary("DROP TABLE IF EXISTS sr_pipe; "
                     "CREATE TABLE sr_pipe (k bigint PRIMARY KEY, v text NOT NULL)");
    sr_router *r = open_router(defaults());
    sr_session *any = session_in(r, "any");
    insert_initial_rows(any, r, "sr_pipe", KEYS);
    sync_replicas();
    sr_session *s = session_in(r, "read_your_writes");
    enum { BEHIND = 40, CURRENT = 10 };

    pause_replay(pg.replica1);
    pause_replay(pg.replica2);
    uint64_t replica_before = statements_on(r, 0), primary_before = statements_on(r, 1);
    int stale, from_replica;
    pipe_pairs(r, s, "behind", BEHIND, 0, &stale, &from_replica);
    fprintf(stderr, "check in the read's exchange, replay paused: %d pairs, %d stale, "
                    "%d from a replica\n", BEHIND, stale, from_replica);
    ck_assert_int_eq(stale, 0);
    ck_assert_int_eq(from_replica, 0);
    ck_assert_uint_eq(statements_on(r, 0) - replica_before, 0); /* dropped rows serve nothing */
    ck_assert_uint_eq(statements_on(r, 1) - primary_before, 2 * BEHIND);

    resume_replay(pg.replica1);
    resume_replay(pg.replica2);
    sync_replicas();
    replica_before = statements_on(r, 0);
    pipe_pairs(r, s, "current", CURRENT, 1, &stale, &from_replica);
    fprintf(stderr, "check in the read's exchange, replicas current: %d pairs, %d stale, "
                    "%d from a replica\n", CURRENT, stale, from_replica);
    ck_assert_int_eq(stale, 0);
    ck_assert_int_eq(from_replica, CURRENT);
    ck_assert_uint_eq(statements_on(r, 0) - replica_before, CURRENT);
    sr_session_free(s);
    sr_session_free(any);
    sr_router_close(r);
}
END_TEST

/* ---- suite ----------------------------------------------------------------- */

static TCase *pg_case(const char *name, const TTest *test)
{
    TCase *t = tcase_create(name);
    tcase_add_checked_fixture(t, replicas_running, NULL);
    tcase_add_unchecked_fixture(t, NULL, resume_all_quietly);
    tcase_add_test(t, test);
    tcase_set_timeout(t, 60); /* the bounded waits inside are shorter: a hang fails, not stalls */
    return t;
}

static Suite *consistency_pg_suite(void)
{
    Suite *s = suite_create("consistency_pg");
    suite_add_tcase(s, pg_case("read_your_writes",
                               read_your_writes_reads_back_every_write_while_replicas_are_paused));
    suite_add_tcase(s, pg_case("check_in_exchange",
                               the_check_in_the_reads_exchange_falls_back_when_behind_and_serves_when_current));
    suite_add_tcase(s, pg_case("tokens", a_token_carries_a_write_to_another_process));
    suite_add_tcase(s, pg_case("monotonic", a_monotonic_session_never_reads_older_than_it_has_read));
    suite_add_tcase(s, pg_case("max_lag", a_lagging_replica_leaves_the_rotation_and_comes_back));
    suite_add_tcase(s, pg_case("read_only_txn",
                               a_read_only_transaction_runs_on_a_replica_with_one_snapshot));
    suite_add_tcase(s, pg_case("per_read_bound", a_per_read_lag_bound_overrides_the_session));
    return s;
}

int main(void)
{
    if (!pg_cluster_from_env(&pg)) {
        fprintf(stderr, "test_consistency_pg: no PostgreSQL cluster in the environment; run it "
                        "through tests/env/pg_cluster.sh run\n");
        return getenv("CI") ? 1 : 77;
    }
    int failed = run_suite(consistency_pg_suite());
    return failed ? 1 : 0;
}
