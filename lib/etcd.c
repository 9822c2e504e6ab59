/*
 * The topology shared through etcd: the configuration text lives under one
 * key; every router that names it (topology.etcd = http://HOST:PORT/KEY)
 * reads it at open and again on each round of health checks (the prober
 * thread, or the application's sr_router_maintain), and reloads when the
 * key's mod_revision changes.
 *
 * Why a read per round, not etcd's watch stream: the rounds are already
 * there (as for topology.file), a read is one small HTTP exchange on a kept
 * connection, and a read cannot miss an event or leave a stream to resume
 * after etcd restarts: whatever happened while it was away, the next read
 * sees the key as it is. The price is a read per round per router.
 *
 * Nothing here blocks on etcd past a bound: the read at open is bounded by
 * connect_timeout_ms; a round's read runs on a curl multi handle, started in
 * one round and finished in the same one (waiting at most
 * SR_ETCD_POLL_WAIT_MS) or a later one, each transfer bounded by
 * connect_timeout_ms. etcd unreachable: the topology stays, the failure is
 * logged when it starts and when it ends, counted, and retried with
 * back-off (100 ms doubling to 5 s).
 */
#include "etcd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SR_HAVE_ETCD

#include <curl/curl.h>

#include "etcd_proto.h"
#include "reload.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define ANSWER_MAX (4u << 20) /* etcd's own limit on a value is 1.5 MiB */

struct sr_etcd {
    sr_etcd_url url;
    pthread_mutex_t lock; /* one poll at a time */
    int timeout_ms;       /* each transfer's bound: connect_timeout_ms at open */
    char *body;           /* the range request's body, the same for every read */
    struct curl_slist *headers;
    CURLM *multi;
    CURL *easy; /* the read under way, NULL when none */
    char *answer;
    size_t answer_len;
    bool too_big;
    int64_t applied_rev; /* the mod_revision acted on last (applied or refused); 0 none */
    bool had_key;        /* the key existed at the last read */
    bool down;           /* the last read failed: logged once, until one succeeds */
    int backoff_ms;
    int64_t next_ns; /* no read starts before this (back-off) */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void init_curl(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static size_t take_answer(char *data, size_t size, size_t n, void *arg)
{
    struct sr_etcd *e = arg;
    size_t len = size * n;
    if (e->answer_len + len > ANSWER_MAX) {
        e->too_big = true;
        return 0; /* curl fails the transfer */
    }
    char *grown = realloc(e->answer, e->answer_len + len + 1);
    if (!grown)
        return 0;
    memcpy(grown + e->answer_len, data, len);
    e->answer = grown;
    e->answer_len += len;
    e->answer[e->answer_len] = '\0';
    return len;
}

/* A transfer of the range read, set up and bounded; NULL when out of memory. */
static CURL *new_read(struct sr_etcd *e)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    free(e->answer);
    e->answer = NULL;
    e->answer_len = 0;
    e->too_big = false;
    curl_easy_setopt(c, CURLOPT_URL, e->url.range_url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, e->body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, e->headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, take_answer);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, e);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
    curl_easy_setopt(c, CURLOPT_PROXY, "");    /* never an http_proxy of the environment */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    return c;
}

/* Logs through the current version's callback (held while it runs). */
static void log_now(sr_router *r, sr_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void log_now(sr_router *r, sr_log_level level, const char *fmt, ...)
{
    char line[SR_ERRMSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    sr_topo *t = sr__topo_acquire(r);
    sr__log(t, level, "%s", line);
    sr__topo_release(t);
}

static void read_failed(sr_router *r, struct sr_etcd *e, const char *why)
{
    sr__count(&r->etcd_counts[1]);
    if (!e->down)
        log_now(r, SR_LOG_WARN, "topology.etcd %s: %s: the topology is unchanged; retrying",
                e->url.range_url, why);
    e->down = true;
    e->next_ns = sr_clock_ns() + (int64_t)e->backoff_ms * 1000000;
    e->backoff_ms = e->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : e->backoff_ms * 2;
}

/* Applies a value read at `rev` (its text `text`); counts and logs a refusal. */
static void apply(sr_router *r, struct sr_etcd *e, const char *text, int64_t rev)
{
    e->applied_rev = rev; /* a bad value is tried again only once the key changes */
    sr_topo *cur = sr__topo_acquire(r);
    sr_config *c = sr_config_new();
    char err[SR_ERRMSG_LEN] = "";
    int rc = c ? sr_config_parse(c, text) : SR_ENOMEM;
    if (rc == SR_OK)
        rc = sr__reload_from_source(r, cur, c, "reloaded from topology.etcd", err, sizeof err);
    else
        sr__fmt(err, sizeof err, "%s", c ? sr_config_errmsg(c) : "out of memory");
    if (rc == SR_OK) {
        sr__count(&r->etcd_counts[0]);
    } else {
        sr__count(&r->etcd_counts[2]);
        sr__log(cur, SR_LOG_WARN,
                "topology.etcd %s revision %lld: %s: the topology is unchanged until the key "
                "changes",
                e->url.key, (long long)rev, err);
    }
    sr_config_free(c);
    sr__topo_release(cur);
}

/* Acts on a finished read: `status` its curl result, `http` its status code. */
static void finished(sr_router *r, struct sr_etcd *e, CURLcode status, long http)
{
    char why[SR_ERRMSG_LEN];
    if (status != CURLE_OK || http != 200) {
        if (e->too_big)
            sr__fmt(why, sizeof why, "an answer over %u bytes", ANSWER_MAX);
        else if (status != CURLE_OK)
            sr__fmt(why, sizeof why, "%s", curl_easy_strerror(status));
        else
            sr__fmt(why, sizeof why, "HTTP status %ld", http);
        read_failed(r, e, why);
        return;
    }
    sr_etcd_value v;
    if (sr__etcd_parse_range(e->answer ? e->answer : "", e->answer_len, &v, why, sizeof why) !=
        SR_OK) {
        read_failed(r, e, why);
        return;
    }
    if (e->down)
        log_now(r, SR_LOG_INFO, "topology.etcd %s answers again", e->url.range_url);
    e->down = false;
    e->backoff_ms = BACKOFF_MIN_MS;
    e->next_ns = 0;
    if (!v.found) {
        if (e->had_key)
            log_now(r, SR_LOG_WARN, "topology.etcd: the key %s is gone: the topology is unchanged",
                    e->url.key);
        e->had_key = false;
        return;
    }
    e->had_key = true;
    if (v.mod_revision != e->applied_rev)
        apply(r, e, v.value, v.mod_revision);
    free(v.value);
}

static void free_etcd(struct sr_etcd *e)
{
    if (!e)
        return;
    if (e->easy) {
        curl_multi_remove_handle(e->multi, e->easy);
        curl_easy_cleanup(e->easy);
    }
    if (e->multi)
        curl_multi_cleanup(e->multi);
    curl_slist_free_all(e->headers);
    free(e->body);
    free(e->answer);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

int sr__etcd_open(sr_router *r, char *err, size_t errlen)
{
    sr_topo *t = atomic_load(&r->current); /* the caller (open) holds it */
    if (!t->opts.topology_etcd[0])
        return SR_OK;
    struct sr_etcd *e = calloc(1, sizeof *e);
    if (!e)
        return SR_ENOMEM;
    pthread_mutex_init(&e->lock, NULL);
    int rc = sr__etcd_url_parse(t->opts.topology_etcd, &e->url, err, errlen);
    if (rc != SR_OK) {
        free_etcd(e);
        return rc;
    }
    pthread_once(&curl_once, init_curl);
    e->timeout_ms = t->opts.connect_timeout_ms;
    e->backoff_ms = BACKOFF_MIN_MS;
    e->body = sr__etcd_range_body(e->url.key);
    e->headers = curl_slist_append(NULL, "Content-Type: application/json");
    e->multi = curl_init_rc == CURLE_OK ? curl_multi_init() : NULL;
    if (!e->body || !e->headers || !e->multi) {
        free_etcd(e);
        sr__fmt(err, errlen, "topology.etcd: cannot set up libcurl");
        return SR_ENOMEM;
    }
    r->etcd = e;
    /* The first read waits for its answer (bounded): a router opens on the shared topology. */
    CURL *c = new_read(e);
    if (!c)
        return SR_ENOMEM; /* r->etcd is freed by the caller's sr__etcd_close */
    CURLcode status = curl_easy_perform(c);
    long http = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_cleanup(c);
    finished(r, e, status, http);
    return SR_OK;
}

void sr__etcd_poll(sr_router *r)
{
    struct sr_etcd *e = r->etcd;
    if (!e || pthread_mutex_trylock(&e->lock) != 0)
        return;
    if (!e->easy && sr_clock_ns() >= e->next_ns) {
        e->easy = new_read(e);
        if (e->easy && curl_multi_add_handle(e->multi, e->easy) != CURLM_OK) {
            curl_easy_cleanup(e->easy);
            e->easy = NULL;
        }
    }
    if (e->easy) {
        int running = 0;
        curl_multi_perform(e->multi, &running);
        if (running) { /* most answers come within a millisecond or two */
            curl_multi_poll(e->multi, NULL, 0, SR_ETCD_POLL_WAIT_MS, NULL);
            curl_multi_perform(e->multi, &running);
        }
        int left = 0;
        CURLMsg *m;
        while ((m = curl_multi_info_read(e->multi, &left))) {
            if (m->msg != CURLMSG_DONE || m->easy_handle != e->easy)
                continue;
            CURLcode status = m->data.result;
            long http = 0;
            curl_easy_getinfo(e->easy, CURLINFO_RESPONSE_CODE, &http);
            curl_multi_remove_handle(e->multi, e->easy);
            curl_easy_cleanup(e->easy);
            e->easy = NULL;
            finished(r, e, status, http);
            break;
        }
    }
    pthread_mutex_unlock(&e->lock);
}

void sr__etcd_close(sr_router *r)
{
    free_etcd(r->etcd);
    r->etcd = NULL;
}

#else /* built without etcd: the option is refused, nothing else exists */

int sr__etcd_open(sr_router *r, char *err, size_t errlen)
{
    sr_topo *t = atomic_load(&r->current);
    if (!t->opts.topology_etcd[0])
        return SR_OK;
    sr__fmt(err, errlen, "topology.etcd: this shardroute was built without etcd support "
                         "(meson -Detcd=enabled; needs libcurl4-openssl-dev and libjson-c-dev)");
    return SR_EINVAL;
}

void sr__etcd_poll(sr_router *r) { (void)r; }

void sr__etcd_close(sr_router *r) { (void)r; }

#endif
