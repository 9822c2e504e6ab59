/*
 * topology.etcd against a real etcd (tests/env/etcd_cluster.sh, Debian's
 * etcd-server): routers on SQLite shards in a temporary directory read their
 * topology from one key; the test writes the key through etcd's v3 JSON
 * gateway (libcurl) and watches the routers follow:
 *  - two processes both switch within 1 s of a put; a malformed value is
 *    ignored by both (their versions stay), a good one after it applies;
 *  - etcd SIGKILLed: routing goes on, the failures are counted; etcd started
 *    again: the next put is picked up;
 *  - without the prober thread, sr_router_maintain alone follows the key;
 *  - etcd SIGSTOPped: sr_router_maintain and sr_router_open stay bounded;
 *  - bad URLs are refused at open, without echoing a password.
 * Every wait is bounded; the figures are printed.
 */
#include <check.h>
#include <curl/curl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shardroute.h>

#include "etcd_proto.h"
#include "proc.h"
#include "testutil.h"

static const char *etcd_url;
static char dir[] = "/tmp/sr-test-etcd-XXXXXX";

/* ---- etcd, directly ---- */

static size_t discard(char *p, size_t s, size_t n, void *u)
{
    (void)p, (void)u;
    return s * n;
}

/* PUTs `value` under `key` through the gateway; asserts it worked. */
static void etcd_put(const char *key, const char *value)
{
    char *k = sr__base64_encode((const unsigned char *)key, strlen(key));
    char *v = sr__base64_encode((const unsigned char *)value, strlen(value));
    char *body = xfmt("{\"key\":\"%s\",\"value\":\"%s\"}", k, v);
    char *url = xfmt("%s/v3/kv/put", etcd_url);
    CURL *c = curl_easy_init();
    ck_assert_ptr_nonnull(c);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    CURLcode rc = curl_easy_perform(c);
    long http = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    ck_assert_msg(rc == CURLE_OK && http == 200, "put %s: %s, HTTP %ld", key,
                  curl_easy_strerror(rc), http);
    free(k), free(v), free(body), free(url);
}

static pid_t etcd_pid(void)
{
    FILE *f = fopen(getenv("SR_ETCD_PIDFILE"), "r");
    ck_assert_ptr_nonnull(f);
    long pid = 0;
    ck_assert_int_eq(fscanf(f, "%ld", &pid), 1);
    fclose(f);
    return (pid_t)pid;
}

/* ---- configurations: SQLite shards s0, s1, ... in dir ---- */

/* The configuration text of `nshards` shards, with a probe interval. */
static char *topology(int nshards, int probe_ms)
{
    char *text = xfmt("health.probe_interval_ms = %d\nconnect_timeout_ms = 500\n", probe_ms);
    for (int i = 0; i < nshards; i++) {
        char *more = xfmt("%s[shard s%d]\nprimary = sqlite:%s/s%d.db\n", text, i, dir, i);
        free(text);
        text = more;
    }
    return text;
}

/* A router whose code configuration is one shard "code" and topology.etcd = etcd_url + key. */
static int open_watching(const char *key, int probe_ms, sr_router **out, char *msg, size_t cap)
{
    char *text = xfmt("topology.etcd = %s%s\nhealth.probe_interval_ms = %d\n"
                      "connect_timeout_ms = 500\n[shard code]\nprimary = sqlite:%s/code.db\n",
                      etcd_url, key, probe_ms, dir);
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_msg(sr_config_parse(c, text) == SR_OK, "%s", sr_config_errmsg(c));
    free(text);
    *out = NULL;
    int rc = sr_router_open(c, out);
    snprintf(msg, cap, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    return rc;
}

static sr_router *must_open(const char *key, int probe_ms)
{
    char msg[512];
    sr_router *r = NULL;
    ck_assert_msg(open_watching(key, probe_ms, &r, msg, sizeof msg) == SR_OK, "%s", msg);
    return r;
}

/* Waits (at most `ms`) until r has `n` shards, calling sr_router_maintain when `maintain`;
 * when it got there (mono_ms), or -1. */
static double wait_shards(sr_router *r, int n, int ms, int maintain)
{
    for (double end = mono_ms() + ms; mono_ms() < end;) {
        if (maintain)
            ck_assert_int_eq(sr_router_maintain(r), SR_OK);
        if (sr_router_nshards(r) == n)
            return mono_ms();
        usleep(2000);
    }
    return -1;
}

static long metric(sr_router *r, const char *series)
{
    static char text[1 << 16];
    ck_assert_int_lt(sr_router_metrics_text(r, text, sizeof text), (int)sizeof text);
    char *line = xfmt("\n%s", series); /* a sample, not the HELP line that names it */
    const char *at = strstr(text, line);
    ck_assert_msg(at != NULL, "no series %s", series);
    long v = strtol(at + strlen(line), NULL, 10);
    free(line);
    return v;
}

/* A read through the router on shard `shard` (the shard's file answers). */
static void read_shard(sr_router *r, int shard, const char *want)
{
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    sr_result *res = NULL;
    int rc = sr_exec_shard(s, shard, SR_READ, "SELECT v FROM t", 0, NULL, &res);
    ck_assert_msg(rc == SR_OK, "read on shard %d: %s", shard, sr_session_errmsg(s));
    ck_assert_str_eq(sr_result_value(res, 0, 0), want);
    sr_result_free(res);
    sr_session_free(s);
}

static void setup(void)
{
    strcpy(dir, "/tmp/sr-test-etcd-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    /* Each shard's file says which it is: a read shows where it was routed. Made in WAL
     * mode, as the driver opens them: two processes opening a rollback-journal file at once
     * would race to convert it, and SQLite answers one of them "database is locked". */
    for (int i = 0; i < 4; i++) {
        char *cmd = xfmt("sqlite3 '%s/s%d.db' \"PRAGMA journal_mode = wal; CREATE TABLE t (v); "
                         "INSERT INTO t VALUES ('s%d');\" >/dev/null",
                         dir, i, i);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);
    }
}

static void teardown(void)
{
    char *cmd = xfmt("rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    free(cmd);
}

/* ---- two processes ---- */

/* The child: opens a router on `key`, then reports "VERSION NSHARDS MONO_MS" on `out` each
 * time its version changes, until `in` closes (or 20 s pass). */
static void child_watch(const char *key, int in, int out)
{
    sr_router *r = must_open(key, 50);
    int64_t seen = -1;
    for (double end = mono_ms() + 20000; mono_ms() < end;) {
        int64_t v = sr_router_version(r);
        if (v != seen) {
            seen = v;
            char line[96];
            int n = snprintf(line, sizeof line, "%lld %d %.1f\n", (long long)v,
                             sr_router_nshards(r), mono_ms());
            if (write(out, line, (size_t)n) != n)
                break;
        }
        struct pollfd p = {in, POLLIN, 0};
        if (poll(&p, 1, 2) > 0)
            break; /* the parent closed its end */
    }
    sr_router_close(r);
    _exit(0);
}

/* Reads the child's next line within `ms`: 1 and its fields, or 0. */
static int child_line(FILE *f, int fd, int ms, long long *version, int *nshards, double *at)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0)
        return 0;
    char line[96];
    if (!fgets(line, sizeof line, f))
        return 0;
    return sscanf(line, "%lld %d %lf", version, nshards, at) == 3;
}

START_TEST(two_processes_follow_one_key)
{
    const char *key = "/sr/test/two";
    char *a = topology(1, 50);
    etcd_put(key, a);
    int down[2], up[2];
    ck_assert_int_eq(pipe(down), 0);
    ck_assert_int_eq(pipe(up), 0);
    fflush(NULL);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        close(down[1]);
        close(up[0]);
        child_watch(key, down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    FILE *from_child = fdopen(up[0], "r");
    long long cv;
    int cn;
    double cat;
    ck_assert(child_line(from_child, up[0], 5000, &cv, &cn, &cat));
    ck_assert_int_eq(cn, 1); /* it opened on the key's topology, not the code's */

    sr_router *r = must_open(key, 50);
    ck_assert_int_eq(sr_router_version(r), 2); /* 1: the code's; 2: the key's, at open */
    ck_assert_str_eq(sr_router_shard_name(r, 0), "s0");
    read_shard(r, 0, "s0");

    /* A put: both switch within 1 s. */
    char *b = topology(2, 50);
    double put = mono_ms();
    etcd_put(key, b);
    double mine = wait_shards(r, 2, 3000, 0);
    ck_assert(child_line(from_child, up[0], 3000, &cv, &cn, &cat));
    ck_assert_int_eq(cn, 2);
    printf("etcd put -> switched: this process %.0f ms, the other %.0f ms\n", mine - put,
           cat - put);
    ck_assert_msg(mine > 0 && mine - put <= 1000, "this process switched after %.0f ms",
                  mine - put);
    ck_assert_msg(cat - put <= 1000, "the other process switched after %.0f ms", cat - put);
    read_shard(r, 1, "s1"); /* routed to the new shard's file */
    ck_assert_int_eq(metric(r, "shardroute_etcd_reloads_total "), 2);

    /* A malformed value: both keep their topology. */
    int64_t version = sr_router_version(r);
    etcd_put(key, "health.probe_interval_ms = 50\n[shard broken\n");
    ck_assert(!child_line(from_child, up[0], 700, &cv, &cn, &cat));
    ck_assert_int_eq(sr_router_version(r), version);
    ck_assert_int_eq(sr_router_nshards(r), 2);
    ck_assert_int_eq(metric(r, "shardroute_etcd_errors_total{kind=\"malformed\"} "), 1);
    read_shard(r, 1, "s1");

    /* A good value after it applies. */
    char *c3 = topology(3, 50);
    put = mono_ms();
    etcd_put(key, c3);
    mine = wait_shards(r, 3, 3000, 0);
    ck_assert(child_line(from_child, up[0], 3000, &cv, &cn, &cat));
    ck_assert_int_eq(cn, 3);
    ck_assert(mine > 0 && mine - put <= 1000 && cat - put <= 1000);
    read_shard(r, 2, "s2");

    close(down[1]);
    int status = 0;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fclose(from_child);
    sr_router_close(r);
    free(a), free(b), free(c3);
}
END_TEST

/* ---- etcd down and back ---- */

START_TEST(routing_goes_on_while_etcd_is_down_and_the_watch_resumes)
{
    const char *key = "/sr/test/down";
    char *a = topology(1, 50);
    etcd_put(key, a);
    sr_router *r = must_open(key, 50);
    ck_assert_int_eq(sr_router_nshards(r), 1);

    pid_t pid = etcd_pid();
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    for (int i = 0; i < 200 && kill(pid, 0) == 0; i++)
        usleep(10000);
    /* Routing goes on; the failed reads are counted. */
    long errors = 0;
    for (double end = mono_ms() + 3000; mono_ms() < end && errors == 0; usleep(20000)) {
        read_shard(r, 0, "s0");
        errors = metric(r, "shardroute_etcd_errors_total{kind=\"unreachable\"} ");
    }
    ck_assert_int_ge(errors, 1);
    usleep(500 * 1000);
    read_shard(r, 0, "s0");

    char why[512] = "";
    ck_assert_msg(tp_run_command(getenv("SR_ETCD_START"), 30000, why, sizeof why) == 0,
                  "restarting etcd: %s", why);
    char *b = topology(2, 50);
    double put = mono_ms();
    etcd_put(key, b);
    double at = wait_shards(r, 2, 8000, 0); /* the back-off is at most 5 s */
    printf("etcd restarted: the put was picked up after %.0f ms\n", at - put);
    ck_assert_msg(at > 0, "the watch did not resume");
    read_shard(r, 1, "s1");
    sr_router_close(r);
    free(a), free(b);
}
END_TEST

/* ---- no threads: sr_router_maintain alone ---- */

START_TEST(maintain_alone_follows_the_key)
{
    const char *key = "/sr/test/maintain";
    char *a = topology(1, 0);
    etcd_put(key, a);
    sr_router *r = must_open(key, 0);
    ck_assert_int_eq(sr_router_nshards(r), 1);
    char *b = topology(2, 0);
    etcd_put(key, b);
    usleep(300 * 1000);
    ck_assert_int_eq(sr_router_nshards(r), 1); /* nothing runs in the background */
    double put = mono_ms();
    double at = wait_shards(r, 2, 3000, 1);
    printf("maintain only: switched after %.0f ms of sr_router_maintain calls\n", at - put);
    ck_assert(at > 0 && at - put <= 1000);
    sr_router_close(r);
    free(a), free(b);
}
END_TEST

/* ---- a hung etcd ---- */

START_TEST(a_stopped_etcd_holds_neither_maintain_nor_open)
{
    const char *key = "/sr/test/stopped";
    char *a = topology(1, 0);
    etcd_put(key, a);
    sr_router *r = must_open(key, 0);
    pid_t pid = etcd_pid();
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    double slowest = 0;
    for (int i = 0; i < 40; i++) {
        double t0 = mono_ms();
        ck_assert_int_eq(sr_router_maintain(r), SR_OK);
        double took = mono_ms() - t0;
        slowest = took > slowest ? took : slowest;
        usleep(20000);
    }
    /* A router opened now waits for the key at most connect_timeout_ms (500), then opens on
     * the code's configuration. */
    double t0 = mono_ms();
    sr_router *r2 = must_open(key, 0);
    double open_ms = mono_ms() - t0;
    ck_assert_int_eq(sr_router_version(r2), 1);
    ck_assert_str_eq(sr_router_shard_name(r2, 0), "code");
    long errors = metric(r, "shardroute_etcd_errors_total{kind=\"unreachable\"} ");
    kill(pid, SIGCONT);
    printf("etcd stopped: slowest sr_router_maintain %.1f ms, sr_router_open %.0f ms, %ld failed "
           "reads\n",
           slowest, open_ms, errors);
    ck_assert_msg(slowest < 200, "sr_router_maintain took %.1f ms", slowest);
    ck_assert_msg(open_ms < 1500, "sr_router_open took %.0f ms", open_ms);
    ck_assert_int_ge(errors, 1);
    /* Back: r2 catches up with the key (the back-off is at most 5 s). */
    for (double end = mono_ms() + 8000;
         mono_ms() < end && strcmp(sr_router_shard_name(r2, 0), "s0") != 0; usleep(10000))
        ck_assert_int_eq(sr_router_maintain(r2), SR_OK);
    ck_assert_str_eq(sr_router_shard_name(r2, 0), "s0");
    sr_router_close(r2);
    sr_router_close(r);
    free(a);
}
END_TEST

START_TEST(bad_urls_are_refused_at_open)
{
    const char *bad[] = {"https://127.0.0.1:2379/k", "http://127.0.0.1:2379",
                         "http://127.0.0.1:2379/", "http://u:hunter2@127.0.0.1:2379/k",
                         "http://127.0.0.1:99999/k", "http://127.0.0.1:2379/k?x=1", "etcd://x/k",
                         NULL};
    for (int i = 0; bad[i]; i++) {
        char *text = xfmt("topology.etcd = %s\n[shard code]\nprimary = sqlite:%s/code.db\n",
                          bad[i], dir);
        sr_config *c = sr_config_new();
        ck_assert_int_eq(sr_config_parse(c, text), SR_OK);
        sr_router *r = NULL;
        ck_assert_int_eq(sr_router_open(c, &r), SR_EINVAL);
        ck_assert_ptr_null(r);
        ck_assert_ptr_nonnull(strstr(sr_config_errmsg(c), "topology.etcd"));
        ck_assert_ptr_null(strstr(sr_config_errmsg(c), "hunter2"));
        sr_config_free(c);
        free(text);
    }
}
END_TEST

int main(void)
{
    etcd_url = getenv("SR_ETCD_URL");
    if (!etcd_url || !getenv("SR_ETCD_PIDFILE") || !getenv("SR_ETCD_START")) {
        fprintf(stderr, "test_etcd: SR_ETCD_URL not set: run it under "
                        "tests/env/etcd_cluster.sh run%s\n",
                        getenv("CI") ? "" : " (skipped)");
        return getenv("CI") ? 1 : 77;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("etcd");
    TCase *tc = tcase_create("etcd");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, bad_urls_are_refused_at_open);
    tcase_add_test(tc, two_processes_follow_one_key);
    tcase_add_test(tc, maintain_alone_follows_the_key);
    tcase_add_test(tc, a_stopped_etcd_holds_neither_maintain_nor_open);
    /* Last: it kills etcd and starts it again. */
    tcase_add_test(tc, routing_goes_on_while_etcd_is_down_and_the_watch_resumes);
    suite_add_tcase(s, tc);
    int failed = run_suite(s);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
