/*
 * sr_router_reload through the public API (issue 15), on the fake per-node
 * driver of tests/support/route_driver.c: a bad configuration changes
 * nothing; a good one is swapped in for the calls that start afterwards;
 * unchanged nodes keep their connections and statistics, removed ones are
 * closed once nothing uses them; transactions and cursors finish on the
 * version they began on, or fail cleanly when a reload took their shard's
 * primary; positions follow their shard; strings stay valid; threads read
 * while another reloads (the concurrency suite: TSan in CI).
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <shardroute.h>

#include "route_driver.h"

/* The fake node `name` ("s0p", "s1r1": a node name starting with 'r' after the shard's is a
 * replica), declared on first use. */
static route_node *N(const char *name)
{
    route_node *n = route_node_find(name);
    if (!n)
        n = route_node_add(name, strchr(name + 1, 'r') ? SR_REPLICA : SR_PRIMARY);
    return n;
}

/*
 * A configuration from a compact spec: "s0:p,r1 s1:p" is shard s0 with nodes
 * s0p (primary) and s0r1, and shard s1 with s1p; range distribution, shard i
 * owning keys i*100 .. i*100+99 (the last one unbounded). Extra option lines
 * (before the shards) in `options`.
 */
static void text_of(const char *spec, const char *options, char *text, size_t cap)
{
    snprintf(text, cap, "shard.distribution = range\nbalance.policy = round_robin\n"
                        "health.retry_ms = 3600000\nhealth.retry_max_ms = 3600000\n"
                        "consistency.wait_ms = 0\n");
    if (options)
        strncat(text, options, cap - strlen(text) - 1);
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", spec);
    int nshards = 0;
    for (char *p = copy; *p; p++)
        nshards += *p == ':';
    int i = 0;
    char *outer = NULL;
    for (char *tok = strtok_r(copy, " ", &outer); tok; tok = strtok_r(NULL, " ", &outer), i++) {
        char *colon = strchr(tok, ':');
        *colon = '\0';
        const char *shard = tok;
        char line[256];
        if (nshards == 1)
            snprintf(line, sizeof line, "[shard %s]\nrange = ..\n", shard);
        else if (i == nshards - 1)
            snprintf(line, sizeof line, "[shard %s]\nrange = %d..\n", shard, i * 100);
        else if (i == 0)
            snprintf(line, sizeof line, "[shard %s]\nrange = ..%d\n", shard, 100);
        else
            snprintf(line, sizeof line, "[shard %s]\nrange = %d..%d\n", shard, i * 100, (i + 1) * 100);
        strncat(text, line, cap - strlen(text) - 1);
        char nodes[256];
        snprintf(nodes, sizeof nodes, "%s", colon + 1);
        for (char *save = NULL, *n = strtok_r(nodes, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
            char name[64];
            snprintf(name, sizeof name, "%s%s", shard, n);
            N(name);
            snprintf(line, sizeof line, "%s = fake://127.0.0.1/%s\n",
                     n[0] == 'r' ? "replica" : "primary", name);
            strncat(text, line, cap - strlen(text) - 1);
        }
    }
}

static sr_config *config_of(const char *spec, const char *options)
{
    char text[8192];
    text_of(spec, options, text, sizeof text);
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_msg(sr_config_parse(c, text) == SR_OK, "%s\n%s", sr_config_errmsg(c), text);
    return c;
}

static sr_router *open_spec(const char *spec, const char *options)
{
    sr_config *c = config_of(spec, options);
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

static void reload_spec(sr_router *r, const char *spec, const char *options)
{
    sr_config *c = config_of(spec, options);
    ck_assert_msg(sr_router_reload(r, c) == SR_OK, "%s", sr_config_errmsg(c));
    ck_assert_str_eq(sr_config_errmsg(c), "");
    sr_config_free(c);
}

static sr_session *new_session(sr_router *r)
{
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    return s;
}

static sr_key K(int shard) { return sr_key_int((int64_t)shard * 100 + 1); }

/* Where a read of shard `shard`'s key ran (the fake driver answers with the node's name). */
static const char *read_on(sr_session *s, int shard)
{
    static char who[8][32];
    static int slot;
    sr_result *res = NULL;
    int rc = sr_exec(s, K(shard), SR_READ, "SELECT node FROM t", 0, NULL, &res);
    ck_assert_msg(rc == SR_OK, "read: %s: %s", sr_strerror(rc), sr_session_errmsg(s));
    char *w = who[slot++ % 8];
    snprintf(w, sizeof who[0], "%s", sr_result_value(res, 0, 0));
    sr_result_free(res);
    return w;
}

static void write_on(sr_session *s, int shard)
{
    int rc = sr_exec(s, K(shard), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL);
    ck_assert_msg(rc == SR_OK, "write: %s: %s", sr_strerror(rc), sr_session_errmsg(s));
}

static void setup(void) { route_driver_reset(); }

START_TEST(a_bad_configuration_changes_nothing)
{
    sr_router *r = open_spec("s0:p", NULL);
    sr_session *s = new_session(r);
    ck_assert_int_eq(sr_router_version(r), 1);
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_add_shard(c, "x"), SR_OK); /* a shard without a primary */
    ck_assert_int_eq(sr_router_reload(r, c), SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(sr_config_errmsg(c), "no primary"));
    sr_config_free(c);
    c = sr_config_new();
    ck_assert_int_eq(sr_config_add_shard(c, "y"), SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "y", SR_PRIMARY, "nosuchdriver://h/db", 1), SR_OK);
    ck_assert_int_eq(sr_router_reload(r, c), SR_EDRIVER);
    sr_config_free(c);
    ck_assert_int_eq(sr_router_reload(r, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_router_reload(NULL, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_router_version(NULL), SR_EINVAL);
    ck_assert_int_eq(sr_router_version(r), 1);
    ck_assert_str_eq(sr_router_shard_name(r, 0), "s0");
    ck_assert_str_eq(read_on(s, 0), "s0p");
    reload_spec(r, "s0:p", NULL);
    char m[65536];
    ck_assert_int_lt(sr_router_metrics_text(r, m, sizeof m), (int)sizeof m);
    ck_assert_ptr_nonnull(strstr(m, "shardroute_topology_version 2\n"));
    ck_assert_ptr_nonnull(strstr(m, "shardroute_topology_reloads_total{result=\"applied\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(m, "shardroute_topology_reloads_total{result=\"refused\"} 2\n"));
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_reload_is_seen_by_the_next_call_and_keeps_unchanged_nodes)
{
    sr_router *r = open_spec("s0:p,r1 s1:p", NULL);
    sr_session *s = new_session(r);
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    ck_assert_str_eq(read_on(s, 0), "s0r1");
    write_on(s, 1);
    const char *name_before = sr_router_shard_name(r, 1);
    sr_node_info before = SR_NODE_INFO_INIT;
    ck_assert_int_eq(sr_router_node_info(r, 0, 1, &before), SR_OK);

    /* A third shard; s1 loses its primary for another; s0 gets a second replica. */
    reload_spec(r, "s0:p,r1,r2 s1:q s2:p", NULL);
    ck_assert_int_eq(sr_router_version(r), 2);
    ck_assert_int_eq(sr_router_nshards(r), 3);
    ck_assert_str_eq(sr_router_shard_name(r, 2), "s2");
    ck_assert_str_eq(name_before, "s1"); /* still readable */
    ck_assert_int_eq(sr_router_shard_for(r, sr_key_int(250)), 2);
    /* The unchanged nodes kept their connection and statistics. */
    ck_assert_int_eq(atomic_load(&N("s0p")->connects), 0);
    ck_assert_int_eq(atomic_load(&N("s0r1")->connects), 1);
    sr_node_info after = SR_NODE_INFO_INIT;
    ck_assert_int_eq(sr_router_node_info(r, 0, 1, &after), SR_OK);
    ck_assert_uint_eq(after.statements, before.statements);
    ck_assert_ptr_eq(after.uri, before.uri); /* the same node, not a copy */
    /* The session routes on the new version from its next call on. */
    const char *a = read_on(s, 0), *b = read_on(s, 0);
    ck_assert_msg(strcmp(a, b) != 0, "round robin over two replicas: %s %s", a, b);
    write_on(s, 1);
    ck_assert_int_eq(atomic_load(&N("s1q")->exec_ok), 1);
    ck_assert_str_eq(read_on(s, 2), "s2p");
    /* The old primary of s1: closed once nothing used its version any more. */
    ck_assert_int_eq(atomic_load(&N("s1p")->connects), 1);
    ck_assert_int_eq(atomic_load(&N("s1p")->closes), 1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(an_idle_session_keeps_a_removed_node_until_it_moves)
{
    sr_router *r = open_spec("s0:p s1:p", NULL);
    sr_session *a = new_session(r), *b = new_session(r);
    write_on(a, 1);
    write_on(b, 1);
    reload_spec(r, "s0:p", NULL);
    ck_assert_int_eq(atomic_load(&N("s1p")->closes), 0); /* both sessions still on version 1 */
    write_on(a, 0); /* a moves */
    ck_assert_int_eq(atomic_load(&N("s1p")->closes), 0);
    sr_session_free(b); /* b lets go: version 1 is freed, its node s1p closed */
    ck_assert_int_eq(atomic_load(&N("s1p")->closes), 1);
    ck_assert_int_eq(sr_exec(a, K(1), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL), SR_OK);
    ck_assert_int_eq(atomic_load(&N("s0p")->exec_ok), 2); /* key 101 is s0's now */
    sr_session_free(a);
    sr_router_close(r);
}
END_TEST

START_TEST(changed_connection_options_make_new_connections)
{
    sr_router *r = open_spec("s0:p", NULL);
    sr_session *s = new_session(r);
    write_on(s, 0);
    reload_spec(r, "s0:p", "statement_timeout_ms = 5000\n");
    write_on(s, 0);
    ck_assert_int_eq(atomic_load(&N("s0p")->connects), 2);
    reload_spec(r, "s0:p", "statement_timeout_ms = 5000\nbalance.policy = random\n");
    write_on(s, 0); /* a balance option is not a connection option: same connection */
    ck_assert_int_eq(atomic_load(&N("s0p")->connects), 2);
    ck_assert_int_eq(sr_router_version(r), 3);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(transactions_finish_on_their_version_or_fail_cleanly)
{
    sr_router *r = open_spec("s0:p s1:p", NULL);
    sr_session *s = new_session(r);
    /* Kept shard and primary: the transaction goes on and commits. */
    ck_assert_int_eq(sr_begin(s, K(0)), SR_OK);
    write_on(s, 0);
    reload_spec(r, "s0:p s1:p s2:p", NULL);
    write_on(s, 0);
    ck_assert_int_eq(sr_commit(s), SR_OK);
    ck_assert_int_eq(atomic_load(&N("s0p")->commits), 1);
    /* Its primary replaced: the next statement fails, the transaction is rolled back. */
    ck_assert_int_eq(sr_begin(s, K(1)), SR_OK);
    write_on(s, 1);
    reload_spec(r, "s0:p s1:q s2:p", NULL);
    ck_assert_int_eq(sr_exec(s, K(1), SR_WRITE, "INSERT INTO t VALUES (2)", 0, NULL, NULL),
                     SR_EUNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "rolled back"));
    ck_assert_int_eq(sr_in_transaction(s), 0);
    ck_assert_int_eq(atomic_load(&N("s1p")->rollbacks), 1);
    /* The session works on (and moved to the new version). */
    write_on(s, 1);
    ck_assert_int_eq(atomic_load(&N("s1q")->exec_ok), 1);
    /* A commit after the shard vanished fails the same way. */
    ck_assert_int_eq(sr_begin(s, K(2)), SR_OK);
    write_on(s, 2);
    reload_spec(r, "s0:p s1:q", NULL);
    ck_assert_int_eq(sr_commit(s), SR_EUNAVAILABLE);
    ck_assert_int_eq(atomic_load(&N("s2p")->commits), 0);
    ck_assert_int_eq(atomic_load(&N("s2p")->rollbacks), 1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(positions_follow_their_shard_across_a_reload)
{
    sr_router *r = open_spec("s0:p,r1 s1:p,r1", NULL);
    sr_session *s = new_session(r);
    write_on(s, 1); /* position 1 on s1p; s1r1 is at 0 */
    /* s1 moves to index 0, s0 to index 1: the position must follow the name. */
    reload_spec(r, "s1:p,r1 s0:p,r1", NULL);
    /* Key 1 is s1's now: its replica is behind the session's write there (were the position
     * lost, or left with index 0's old shard, the read would take the replica). */
    ck_assert_str_eq(read_on(s, 0), "s1p");
    sr_session *fresh = new_session(r); /* a session without that write reads the replica */
    ck_assert_str_eq(read_on(fresh, 0), "s1r1");
    sr_session_free(fresh);
    /* A shard whose primary changed: the next read goes to the (new) primary. */
    write_on(s, 1); /* s0 (index 1) */
    atomic_store(&N("s0r1")->position, 100);
    reload_spec(r, "s1:p,r1 s0:q,r1", NULL);
    ck_assert_str_eq(read_on(s, 1), "s0q");
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_cursor_finishes_on_the_version_it_began_on)
{
    sr_router *r = open_spec("s0:p s1:p", NULL);
    sr_session *s = new_session(r);
    sr_cursor *c = NULL;
    ck_assert_int_eq(sr_cursor_open_all(s, SR_READ, NULL, "SELECT node FROM t", 0, NULL, &c), SR_OK);
    reload_spec(r, "s0:p", NULL);
    int rows = 0;
    while (sr_cursor_next(c) > 0)
        rows++;
    ck_assert_int_eq(rows, 2); /* both shards of version 1 */
    sr_cursor_close(c);
    ck_assert_int_eq(atomic_load(&N("s1p")->closes), 0); /* the session is still on version 1 */
    ck_assert_str_eq(read_on(s, 1), "s0p"); /* moved: one shard */
    ck_assert_int_eq(atomic_load(&N("s1p")->closes), 1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* ---- threads read while another reloads ---- */

enum { READERS = 3, READS = 3000, RELOADS = 200 };

static sr_router *shared;
static _Atomic int readers_done;

static void *reader(void *arg)
{
    (void)arg;
    sr_session *s = new_session(shared);
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    for (int i = 0; i < READS; i++) {
        sr_result *res = NULL;
        int rc = sr_exec(s, K(i % 2), SR_READ, "SELECT node FROM t", 0, NULL, &res);
        ck_assert_msg(rc == SR_OK, "%s", sr_session_errmsg(s));
        const char *who = sr_result_value(res, 0, 0);
        /* Never a node of another shard: no call sees a mix of two versions. */
        ck_assert_msg(who[1] == (i % 2 ? '1' : '0'), "shard %d read on %s", i % 2, who);
        sr_result_free(res);
        ck_assert_int_ge(sr_router_shard_for(shared, K(1)), 0);
        ck_assert_ptr_nonnull(sr_router_shard_name(shared, 0));
    }
    sr_session_free(s);
    atomic_fetch_add(&readers_done, 1);
    return NULL;
}

START_TEST(threads_read_while_another_reloads)
{
    shared = open_spec("s0:p,r1 s1:p,r1", NULL);
    atomic_store(&readers_done, 0);
    pthread_t t[READERS];
    for (int i = 0; i < READERS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, reader, NULL), 0);
    int reloads = 0;
    while (reloads < RELOADS || atomic_load(&readers_done) < READERS) {
        /* Alternately with a second replica and without: half the reloads drop a node. */
        reload_spec(shared, reloads % 2 ? "s0:p,r1 s1:p,r1" : "s0:p,r1,r2 s1:p,r1,r2", NULL);
        reloads++;
        if (reloads > 100000)
            break;
    }
    for (int i = 0; i < READERS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(sr_router_version(shared), reloads + 1);
    sr_router_close(shared);
}
END_TEST


/* ---- cases a review found ---- */

START_TEST(a_read_only_transaction_on_a_replica_survives_a_reload)
{
    sr_router *r = open_spec("s0:p,r1", NULL);
    sr_session *s = new_session(r);
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    ck_assert_int_eq(sr_begin_read_only(s, K(0)), SR_OK);
    ck_assert_int_eq(atomic_load(&N("s0r1")->read_only_begins), 1);
    reload_spec(r, "s0:p,r1", NULL); /* nothing changed */
    int rc = sr_commit(s);
    ck_assert_msg(rc == SR_OK, "%s: %s", sr_strerror(rc), sr_session_errmsg(s));
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(two_nodes_with_one_uri_keep_two_backends)
{
    N("s0p");
    N("s0r1");
    const char *text = "shard.distribution = range\n[shard s0]\nrange = ..\n"
                       "primary = fake://127.0.0.1/s0p\nreplica = fake://127.0.0.1/s0r1\n"
                       "replica = fake://127.0.0.1/s0r1\n";
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_parse(c, text), SR_OK);
    sr_router *r = NULL;
    ck_assert_int_eq(sr_router_open(c, &r), SR_OK);
    ck_assert_int_eq(sr_router_reload(r, c), SR_OK);
    sr_node_info a = SR_NODE_INFO_INIT, b = SR_NODE_INFO_INIT;
    ck_assert_int_eq(sr_router_node_info(r, 0, 1, &a), SR_OK);
    ck_assert_int_eq(sr_router_node_info(r, 0, 2, &b), SR_OK);
    ck_assert_ptr_ne(a.uri, b.uri); /* not one backend shared by both */
    sr_config_free(c);
    sr_router_close(r);
}
END_TEST

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

START_TEST(the_prober_follows_a_reloaded_interval)
{
    sr_router *r = open_spec("s0:p", "health.probe_interval_ms = 50\n");
    sleep_ms(200);
    ck_assert_int_gt(atomic_load(&N("s0p")->pings), 0);
    reload_spec(r, "s0:p", "health.probe_interval_ms = 0\n");
    sleep_ms(100);
    int before = atomic_load(&N("s0p")->pings);
    sleep_ms(500);
    ck_assert_int_eq(atomic_load(&N("s0p")->pings), before); /* off */
    reload_spec(r, "s0:p", "health.probe_interval_ms = 20\n");
    sleep_ms(300); /* woken at once, not after the old wait */
    ck_assert_int_gt(atomic_load(&N("s0p")->pings), before);
    sr_router_close(r);
}
END_TEST

static _Atomic int logs;

static void count_log(void *ud, sr_log_level l, const char *m)
{
    (void)ud, (void)l, (void)m;
    atomic_fetch_add(&logs, 1);
}

static void *reloader(void *arg)
{
    (void)arg;
    for (int i = 0; i < 300; i++) {
        sr_config *c = config_of(i % 2 ? "s0:p" : "s0:p s1:p", NULL);
        ck_assert_int_eq(sr_config_set_log_fn(c, count_log, NULL), SR_OK);
        ck_assert_int_eq(sr_router_reload(shared, c), SR_OK);
        sr_config_free(c);
    }
    return NULL;
}

START_TEST(reloads_from_three_threads_at_once)
{
    shared = open_spec("s0:p s1:p", NULL); /* declares the fake nodes: not thread-safe */
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, reloader, NULL), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(sr_router_version(shared), 901);

    ck_assert_int_ge(atomic_load(&logs), 900); /* each reload logged, through its own callback */
    sr_router_close(shared);
}
END_TEST


/* ---- the watched configuration file ---- */

static char logged[4096];
static _Atomic int nlogged;

static pthread_mutex_t logged_lock = PTHREAD_MUTEX_INITIALIZER; /* the prober logs too */

static void keep_log(void *ud, sr_log_level l, const char *m)
{
    (void)ud, (void)l;
    if (strstr(m, "topology.file")) {
        pthread_mutex_lock(&logged_lock);
        snprintf(logged, sizeof logged, "%s", m);
        pthread_mutex_unlock(&logged_lock);
        atomic_fetch_add(&nlogged, 1);
    }
}

/* Whether the last topology.file message names `what`. */
static bool logged_has(const char *what)
{
    pthread_mutex_lock(&logged_lock);
    bool has = strstr(logged, what) != NULL;
    pthread_mutex_unlock(&logged_lock);
    return has;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(a_watched_file_is_reloaded_when_it_changes)
{
    char dir[] = "/tmp/sr-test-watch-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256], opt[512], text[8192];
    snprintf(path, sizeof path, "%s/shards.conf", dir);
    snprintf(opt, sizeof opt, "topology.file = %s\n", path);
    text_of("s0:p", opt, text, sizeof text);
    write_file(path, text);
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_load_file(c, path), SR_OK);
    ck_assert_int_eq(sr_config_set_log_fn(c, keep_log, NULL), SR_OK);
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    atomic_store(&nlogged, 0);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 1); /* unchanged since open: no reload */

    text_of("s0:p s1:p", opt, text, sizeof text);
    write_file(path, text);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 2);
    ck_assert_int_eq(sr_router_nshards(r), 2);
    ck_assert(logged_has("reloaded from topology.file"));

    write_file(path, "this is = not a configuration\n[shard\n");
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 2); /* a broken file is logged and ignored */
    ck_assert(logged_has(path));
    int after_bad = atomic_load(&nlogged);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(atomic_load(&nlogged), after_bad); /* ... once, until it changes again */

    text_of("s0:p s1:p s2:p", opt, text, sizeof text);
    write_file(path, text);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 3);
    ck_assert_int_eq(sr_router_nshards(r), 3);

    /* A file that turns the prober on starts its thread: pings go on with no maintain. */
    char with_prober[600];
    snprintf(with_prober, sizeof with_prober, "%shealth.probe_interval_ms = 20\n", opt);
    text_of("s0:p s1:p s2:p", with_prober, text, sizeof text);
    write_file(path, text);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 4);
    int pings = atomic_load(&N("s2p")->pings);
    for (int i = 0; i < 200 && atomic_load(&N("s2p")->pings) <= pings + 2; i++)
        sleep_ms(10);
    ck_assert_int_gt(atomic_load(&N("s2p")->pings), pings + 2);

    unlink(path);
    for (int i = 0; i < 200 && !logged_has("cannot be read"); i++)
        sleep_ms(10); /* the prober's next round notices */
    ck_assert_int_eq(sr_router_version(r), 4);
    ck_assert(logged_has("cannot be read"));
    sr_router_close(r);
    rmdir(dir);
}
END_TEST


/* ---- failover discovery: the servers say who the primary is ---- */

static char fo_log[8192];
static pthread_mutex_t fo_log_lock = PTHREAD_MUTEX_INITIALIZER;

static void failover_log(void *ud, sr_log_level l, const char *m)
{
    (void)ud, (void)l;
    pthread_mutex_lock(&fo_log_lock);
    if (strstr(m, "failover") || strstr(m, "split brain"))
        snprintf(fo_log + strlen(fo_log), sizeof fo_log - strlen(fo_log), "%s\n", m);
    pthread_mutex_unlock(&fo_log_lock);
}

static sr_router *open_logged(const char *spec, const char *options)
{
    fo_log[0] = '\0';
    sr_config *c = config_of(spec, options);
    ck_assert_int_eq(sr_config_set_log_fn(c, failover_log, NULL), SR_OK);
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

static const char *primary_uri(sr_router *r, int shard)
{
    sr_node_info info = {.version = SR_NODE_INFO_VERSION};
    ck_assert_int_eq(sr_router_node_info(r, shard, 0, &info), SR_OK);
    return info.uri;
}

/* A write's status; its message in `msg`. */
static int try_write(sr_session *s, int shard, char *msg, size_t cap)
{
    int rc = sr_exec(s, K(shard), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL);
    snprintf(msg, cap, "%s", rc == SR_OK ? "" : sr_session_errmsg(s));
    return rc;
}

static long metric(sr_router *r, const char *series)
{
    static char text[1 << 16];
    ck_assert_int_lt(sr_router_metrics_text(r, text, sizeof text), (int)sizeof text);
    const char *at = strstr(text, series);
    ck_assert_msg(at != NULL, "no series %s", series);
    return strtol(at + strlen(series), NULL, 10);
}

START_TEST(a_replica_that_reports_primary_takes_the_writes_when_the_primary_is_a_replica)
{
    sr_router *r = open_logged("s0:p,r1,r2 s1:p,r1", NULL);
    sr_session *s = new_session(r);
    write_on(s, 0);
    ck_assert_int_eq(atomic_load(&N("s0p")->exec_ok), 1);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 1); /* every node is what it is configured as */

    /* A planned switchover: the primary steps down, r2 is promoted. */
    atomic_store(&N("s0p")->role, SR_REPLICA);
    atomic_store(&N("s0r2")->role, SR_PRIMARY);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 2);
    ck_assert_ptr_nonnull(strstr(primary_uri(r, 0), "s0r2"));
    ck_assert_ptr_nonnull(strstr(primary_uri(r, 1), "s1p")); /* the other shard is as it was */
    ck_assert_ptr_nonnull(strstr(fo_log, "failover on shard 's0'"));
    ck_assert_ptr_nonnull(strstr(fo_log, "reports itself a replica"));
    write_on(s, 0);
    ck_assert_int_eq(atomic_load(&N("s0r2")->exec_ok), 1);
    ck_assert_int_eq(atomic_load(&N("s0p")->exec_ok), 1); /* the write did not go there */
    /* The old primary is a replica now: reads reach it, round robin over s0p and s0r1. */
    bool on_old = false;
    for (int i = 0; i < 6; i++)
        on_old |= strcmp(read_on(s, 0), "s0p") == 0;
    ck_assert(on_old);
    ck_assert_int_eq(metric(r, "shardroute_failovers_total{shard=\"s0\"} "), 1);
    ck_assert_int_eq(metric(r, "shardroute_failovers_total{shard=\"s1\"} "), 0);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 2); /* settled: no further version */
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(an_unreachable_primary_fails_over_to_the_one_node_that_reports_primary)
{
    sr_router *r = open_logged("s0:p,r1,r2", NULL);
    sr_session *s = new_session(r);
    write_on(s, 0);
    atomic_store(&N("s0p")->down, 1);
    /* Nothing claims the primary yet: writes fail fast, nothing changes. */
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 1);
    char msg[1024];
    ck_assert_int_ne(try_write(s, 0, msg, sizeof msg), SR_OK);
    int execs_before = atomic_load(&N("s0r1")->execs);
    /* r1 is promoted; its pool made its connections as a replica, and a promoted replica
     * refuses new ones made so (check_role): the round asks it on one of its own. */
    atomic_store(&N("s0r1")->role, SR_PRIMARY);
    atomic_store(&N("s0r1")->check_role, 1);
    atomic_store(&N("s0r1")->down, 1); /* its pooled connections are gone ... */
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    atomic_store(&N("s0r1")->down, 0); /* ... and it is back, as a primary */
    ck_assert_int_eq(sr_router_version(r), 1);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 2);
    ck_assert_ptr_nonnull(strstr(primary_uri(r, 0), "s0r1"));
    ck_assert_ptr_nonnull(strstr(fo_log, "is unreachable"));
    ck_assert_int_eq(try_write(s, 0, msg, sizeof msg), SR_OK);
    ck_assert_int_eq(atomic_load(&N("s0r1")->execs), execs_before + 1); /* sent once */
    /* The old primary comes back as a primary (not rewound): a split brain, found although
     * its pool, made for a replica now, cannot connect to it. */
    atomic_store(&N("s0p")->check_role, 1);
    atomic_store(&N("s0p")->down, 0);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(try_write(s, 0, msg, sizeof msg), SR_EUNAVAILABLE);
    ck_assert_msg(strstr(msg, "split brain") && strstr(msg, "s0p"), "%s", msg);
    /* ... then it is made a replica and serves reads. */
    atomic_store(&N("s0p")->role, SR_REPLICA);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(try_write(s, 0, msg, sizeof msg), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 2);
    atomic_store(&N("s0p")->position, 100); /* it has replayed the session's writes */
    bool on_old = false;
    for (int i = 0; i < 6; i++)
        on_old |= strcmp(read_on(s, 0), "s0p") == 0;
    ck_assert(on_old);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(two_primaries_refuse_the_shards_writes_until_one_steps_down)
{
    sr_router *r = open_logged("s0:p,r1 s1:p,r1", NULL);
    sr_session *s = new_session(r);
    atomic_store(&N("s0r1")->role, SR_PRIMARY); /* both claim it */
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 1); /* no failover: the configured one still claims */
    char msg[1024];
    int before = atomic_load(&N("s0p")->execs);
    ck_assert_int_eq(try_write(s, 0, msg, sizeof msg), SR_EUNAVAILABLE);
    ck_assert_msg(strstr(msg, "split brain") && strstr(msg, "s0p") && strstr(msg, "s0r1"), "%s",
                  msg);
    ck_assert_int_eq(atomic_load(&N("s0p")->execs), before); /* refused before it was sent */
    ck_assert_ptr_nonnull(strstr(fo_log, "split brain on shard 's0'"));
    ck_assert_int_eq(metric(r, "shardroute_split_brain{shard=\"s0\"} "), 1);
    ck_assert_int_eq(try_write(s, 1, msg, sizeof msg), SR_OK); /* other shards are not affected */
    read_on(s, 0);                                             /* nor are reads */
    /* A reload does not make it safe: it carries over while both nodes are in the shard. */
    sr_config *c = config_of("s0:p,r1 s1:p,r1", NULL);
    ck_assert_int_eq(sr_config_set_log_fn(c, failover_log, NULL), SR_OK);
    ck_assert_int_eq(sr_router_reload(r, c), SR_OK);
    sr_config_free(c);
    ck_assert_int_eq(sr_router_version(r), 2);
    ck_assert_int_eq(try_write(s, 0, msg, sizeof msg), SR_EUNAVAILABLE);
    /* One steps down: the next round clears it. */
    atomic_store(&N("s0r1")->role, SR_REPLICA);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(try_write(s, 0, msg, sizeof msg), SR_OK);
    ck_assert_int_eq(metric(r, "shardroute_split_brain{shard=\"s0\"} "), 0);
    ck_assert_ptr_nonnull(strstr(fo_log, "split brain over"));
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(two_replicas_claiming_a_lost_primary_fail_over_to_neither)
{
    sr_router *r = open_logged("s0:p,r1,r2", NULL);
    sr_session *s = new_session(r);
    atomic_store(&N("s0p")->down, 1);
    atomic_store(&N("s0r1")->role, SR_PRIMARY);
    atomic_store(&N("s0r2")->role, SR_PRIMARY);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 1);
    char msg[1024];
    ck_assert_int_eq(try_write(s, 0, msg, sizeof msg), SR_EUNAVAILABLE);
    ck_assert_msg(strstr(msg, "s0r1") && strstr(msg, "s0r2"), "%s", msg);
    atomic_store(&N("s0r2")->role, SR_REPLICA); /* one steps down: the other takes over */
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 2);
    ck_assert_ptr_nonnull(strstr(primary_uri(r, 0), "s0r1"));
    ck_assert_int_eq(try_write(s, 0, msg, sizeof msg), SR_OK);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(with_discovery_off_the_configuration_says_which_node_is_primary)
{
    sr_router *r = open_logged("s0:p,r1", "failover.discovery = off\n");
    sr_session *s = new_session(r);
    atomic_store(&N("s0p")->role, SR_REPLICA);
    atomic_store(&N("s0r1")->role, SR_PRIMARY);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 1);
    char msg[1024];
    ck_assert_int_eq(try_write(s, 0, msg, sizeof msg), SR_EUNAVAILABLE); /* fails fast */
    ck_assert_msg(strstr(msg, "not a primary"), "%s", msg);
    /* Turned on by a reload, the next round follows the servers. */
    reload_spec(r, "s0:p,r1", "failover.discovery = on\n");
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 3);
    ck_assert_int_eq(try_write(s, 0, msg, sizeof msg), SR_OK);
    ck_assert_int_eq(atomic_load(&N("s0r1")->exec_ok), 1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(a_transaction_on_the_old_primary_fails_cleanly_after_a_failover)
{
    sr_router *r = open_logged("s0:p,r1", NULL);
    sr_session *s = new_session(r);
    ck_assert_int_eq(sr_begin(s, K(0)), SR_OK);
    write_on(s, 0);
    atomic_store(&N("s0p")->role, SR_REPLICA);
    atomic_store(&N("s0r1")->role, SR_PRIMARY);
    ck_assert_int_eq(sr_router_maintain(r), SR_OK);
    ck_assert_int_eq(sr_router_version(r), 2);
    int before = atomic_load(&N("s0r1")->execs);
    int rc = sr_exec(s, K(0), SR_WRITE, "INSERT INTO t VALUES (2)", 0, NULL, NULL);
    /* Its transaction stays on its version's primary (the old one) or fails; never moves. */
    ck_assert_int_eq(atomic_load(&N("s0r1")->execs), before);
    if (rc == SR_OK)
        ck_assert_int_eq(sr_commit(s), SR_OK);
    else
        sr_rollback(s);
    write_on(s, 0); /* the next statement follows the new version */
    ck_assert_int_eq(atomic_load(&N("s0r1")->exec_ok), 1);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

START_TEST(the_prober_thread_fails_over_within_its_interval)
{
    sr_router *r = open_logged("s0:p,r1", "health.probe_interval_ms = 50\n");
    sr_session *s = new_session(r);
    atomic_store(&N("s0p")->down, 1);
    atomic_store(&N("s0r1")->role, SR_PRIMARY);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char msg[1024];
    int rc;
    do {
        sleep_ms(10);
        rc = try_write(s, 0, msg, sizeof msg);
        clock_gettime(CLOCK_MONOTONIC, &t1);
    } while (rc != SR_OK && t1.tv_sec - t0.tv_sec < 20);
    ck_assert_msg(rc == SR_OK, "%s", msg);
    ck_assert_ptr_nonnull(strstr(primary_uri(r, 0), "s0r1"));
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

static Suite *reload_suite(void)
{
    Suite *su = suite_create("reload");
    TCase *tc = tcase_create("reload");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, a_bad_configuration_changes_nothing);
    tcase_add_test(tc, a_reload_is_seen_by_the_next_call_and_keeps_unchanged_nodes);
    tcase_add_test(tc, an_idle_session_keeps_a_removed_node_until_it_moves);
    tcase_add_test(tc, changed_connection_options_make_new_connections);
    tcase_add_test(tc, transactions_finish_on_their_version_or_fail_cleanly);
    tcase_add_test(tc, positions_follow_their_shard_across_a_reload);
    tcase_add_test(tc, a_cursor_finishes_on_the_version_it_began_on);
    tcase_add_test(tc, a_read_only_transaction_on_a_replica_survives_a_reload);
    tcase_add_test(tc, two_nodes_with_one_uri_keep_two_backends);
    tcase_add_test(tc, the_prober_follows_a_reloaded_interval);
    tcase_add_test(tc, a_watched_file_is_reloaded_when_it_changes);
    suite_add_tcase(su, tc);
    tc = tcase_create("failover");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_replica_that_reports_primary_takes_the_writes_when_the_primary_is_a_replica);
    tcase_add_test(tc, an_unreachable_primary_fails_over_to_the_one_node_that_reports_primary);
    tcase_add_test(tc, two_primaries_refuse_the_shards_writes_until_one_steps_down);
    tcase_add_test(tc, two_replicas_claiming_a_lost_primary_fail_over_to_neither);
    tcase_add_test(tc, with_discovery_off_the_configuration_says_which_node_is_primary);
    tcase_add_test(tc, a_transaction_on_the_old_primary_fails_cleanly_after_a_failover);
    tcase_add_test(tc, the_prober_thread_fails_over_within_its_interval);
    suite_add_tcase(su, tc);
    tc = tcase_create("threads");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, threads_read_while_another_reloads);
    tcase_add_test(tc, reloads_from_three_threads_at_once);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(reload_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
