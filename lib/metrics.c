/*
 * The router's metrics in the Prometheus text exposition format (0.0.4):
 * the counters the statement path keeps (counters.h, histogram.h, the
 * nodes' and pools' own) read with relaxed loads and written out family by
 * family, through the caller's sink in chunks of a buffer. Names follow the
 * Prometheus conventions: base units (seconds), `_total` for counters.
 * docs/observability.md lists every family; a test checks the text with
 * `promtool check metrics`.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topology.h"

/* The text goes out through the sink in pieces of this size at most. */
#define OUT_CHUNK 16384

typedef struct out {
    sr_write_fn write;
    void *ud;
    int status; /* SR_OK until the sink refuses or memory runs out */
    size_t used;
    char buf[OUT_CHUNK];
} out;

static void flush(out *o)
{
    if (o->status == SR_OK && o->used && o->write(o->ud, o->buf, o->used) != 0)
        o->status = SR_EINVAL;
    o->used = 0;
}

static void emit(out *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void emit(out *o, const char *fmt, ...)
{
    if (o->status != SR_OK)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->used, sizeof o->buf - o->used, fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->status = SR_ENOMEM;
        return;
    }
    if ((size_t)n < sizeof o->buf - o->used) {
        o->used += (size_t)n;
        return;
    }
    flush(o);
    if (o->status != SR_OK)
        return; /* the sink said stop: it is not called again */
    va_start(ap, fmt);
    if ((size_t)n < sizeof o->buf) {
        vsnprintf(o->buf, sizeof o->buf, fmt, ap);
        o->used = (size_t)n;
    } else { /* a line longer than the buffer (a very long URI): formatted on its own */
        char *big = malloc((size_t)n + 1);
        if (!big)
            o->status = SR_ENOMEM;
        else {
            vsnprintf(big, (size_t)n + 1, fmt, ap);
            if (o->write(o->ud, big, (size_t)n) != 0)
                o->status = SR_EINVAL;
            free(big);
        }
    }
    va_end(ap);
}

/* A label value with backslash, double quote and line feed escaped, as the format says. */
static char *escape_label(const char *v)
{
    size_t n = 0;
    for (const char *p = v; *p; p++)
        n += (*p == '\\' || *p == '"' || *p == '\n') ? 2 : 1;
    char *e = malloc(n + 1);
    if (!e)
        return NULL;
    char *q = e;
    for (const char *p = v; *p; p++) {
        if (*p == '\\' || *p == '"' || *p == '\n') {
            *q++ = '\\';
            *q++ = *p == '\n' ? 'n' : *p;
        } else {
            *q++ = *p;
        }
    }
    *q = '\0';
    return e;
}

/* Every node's label set, `shard="..",node="..",role=".."`, escaped once per rendering. A
 * URI that two nodes of one shard share gets "#INDEX" on the later ones: series stay unique. */
static char **node_labels(const sr_topo *r, int *nnodes)
{
    int total = 0;
    for (int s = 0; s < r->nshards; s++)
        total += r->shards[s].nnodes;
    char **labels = calloc((size_t)(total ? total : 1), sizeof *labels);
    if (!labels)
        return NULL;
    int k = 0;
    for (int s = 0; s < r->nshards; s++) {
        const sr_shard *sh = &r->shards[s];
        char *shard = escape_label(sh->name);
        for (int i = 0; i < sh->nnodes; i++, k++) {
            const sr_node *n = &sh->nodes[i];
            bool dup = false;
            for (int j = 0; j < i; j++)
                dup = dup || strcmp(sh->nodes[j].b->uri->redacted, n->b->uri->redacted) == 0;
            char *uri = escape_label(n->b->uri->redacted);
            if (shard && uri) {
                size_t len = strlen(shard) + strlen(uri) + 64;
                labels[k] = malloc(len);
                if (labels[k] && dup)
                    snprintf(labels[k], len, "shard=\"%s\",node=\"%s#%d\",role=\"%s\"", shard,
                             uri, i, sr__role_name(n->role));
                else if (labels[k])
                    snprintf(labels[k], len, "shard=\"%s\",node=\"%s\",role=\"%s\"", shard, uri,
                             sr__role_name(n->role));
            }
            free(uri);
            if (!labels[k]) {
                free(shard);
                for (int j = 0; j < k; j++)
                    free(labels[j]);
                free(labels);
                return NULL;
            }
        }
        free(shard);
    }
    *nnodes = total;
    return labels;
}

static void family(out *o, const char *name, const char *type, const char *help)
{
    emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t load(const _Atomic uint64_t *c)
{
    return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

static void histogram(out *o, const char *name, const char *labels, const sr_histogram *h)
{
    static const int64_t bounds[SR_HIST_NBOUNDS] = SR_HIST_BOUNDS;
    uint64_t cum = 0;
    for (int b = 0; b <= SR_HIST_NBOUNDS; b++) {
        cum += load(&h->buckets[b]);
        if (b < SR_HIST_NBOUNDS)
            emit(o, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, (double)bounds[b] / 1e9,
                 (unsigned long long)cum);
        else
            emit(o, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
    }
    emit(o, "%s_sum{%s} %.9f\n", name, labels, (double)load(&h->sum_ns) / 1e9);
    emit(o, "%s_count{%s} %llu\n", name, labels, (unsigned long long)cum);
}

static const char *const intent_names[2] = {"read", "write"};
static const char *const outcome_names[SR_OUTCOMES] = {"ok", "sql_error", "timeout", "connection",
                                                       "other"};
static const char *const primary_why_names[SR_PRIMARY_WHYS] = {
    "", "consistency_primary", "stale", "position_unknown", "lag", "no_replica", "primary_reads_always"};
static const char *const wait_names[SR_WAIT_OUTCOMES] = {"caught_up", "timed_out", "failed"};

/* Per-node families: one loop over the nodes per family, as the format groups them. */
static void node_families(out *o, const sr_topo *r, char **labels)
{
#define EACH_NODE(...)                                           \
    do {                                                         \
        int k_ = 0;                                              \
        for (int s_ = 0; s_ < r->nshards; s_++)                  \
            for (int i_ = 0; i_ < r->shards[s_].nnodes; i_++) { \
                const sr_node *n = &r->shards[s_].nodes[i_];     \
                const char *l = labels[k_++];                    \
                (void)n;                                         \
                (void)l;                                         \
                __VA_ARGS__                                      \
            }                                                    \
    } while (0)

    family(o, "shardroute_statements_total", "counter",
           "Statements that ended on a node, by intent as routed and outcome.");
    EACH_NODE({
        for (int w = 0; w < 2; w++)
            for (int oc = 0; oc < SR_OUTCOMES; oc++)
                emit(o, "shardroute_statements_total{%s,intent=\"%s\",outcome=\"%s\"} %llu\n", l,
                     intent_names[w], outcome_names[oc],
                     (unsigned long long)load(&n->b->outcomes[w][oc]));
    });
    family(o, "shardroute_statement_duration_seconds", "histogram",
           "Latency of a sample of statements (one in 4 per session; pool checkout included).");
    EACH_NODE({ histogram(o, "shardroute_statement_duration_seconds", l, &n->b->latency); });
    family(o, "shardroute_node_errors_total", "counter",
           "Statements and connection attempts that failed on the node.");
    EACH_NODE({
        emit(o, "shardroute_node_errors_total{%s} %llu\n", l, (unsigned long long)load(&n->b->errors));
    });
    family(o, "shardroute_node_in_flight", "gauge", "Statements running on the node now.");
    EACH_NODE({
        int64_t f = atomic_load_explicit(&((sr_node *)n)->b->bal.in_flight, memory_order_relaxed);
        emit(o, "shardroute_node_in_flight{%s} %lld\n", l, (long long)(f > 0 ? f : 0));
    });
    family(o, "shardroute_node_up", "gauge", "1 when the node is admitted, 0 while ejected.");
    EACH_NODE({ emit(o, "shardroute_node_up{%s} %d\n", l, sr__health_is_up(&n->b->health) ? 1 : 0); });
    family(o, "shardroute_node_ejections_total", "counter", "Times health checks ejected the node.");
    EACH_NODE({
        emit(o, "shardroute_node_ejections_total{%s} %llu\n", l,
             (unsigned long long)load(&n->b->health.ejections));
    });
    family(o, "shardroute_node_probes_total", "counter",
           "Health checks of the node (prober rounds, sr_router_maintain, an ejected node's probe).");
    EACH_NODE({
        emit(o, "shardroute_node_probes_total{%s,result=\"ok\"} %llu\n", l,
             (unsigned long long)load(&n->b->probes[1]));
        emit(o, "shardroute_node_probes_total{%s,result=\"failed\"} %llu\n", l,
             (unsigned long long)load(&n->b->probes[0]));
    });
    family(o, "shardroute_node_role_mismatch", "gauge",
           "1 when the server last reported another role than the configured one.");
    EACH_NODE({
        emit(o, "shardroute_node_role_mismatch{%s} %d\n", l,
             atomic_load_explicit(&((sr_node *)n)->b->role_mismatch, memory_order_relaxed) ? 1 : 0);
    });

    sr_pool_stats *ps = NULL;
    int total = 0;
    for (int s = 0; s < r->nshards; s++)
        total += r->shards[s].nnodes;
    ps = calloc((size_t)(total ? total : 1), sizeof *ps);
    if (!ps) {
        o->status = SR_ENOMEM;
        return;
    }
    EACH_NODE({ sr__pool_stats(n->b->pool, &ps[k_ - 1]); });
    family(o, "shardroute_pool_connections", "gauge", "Open pooled connections by state.");
    EACH_NODE({
        const sr_pool_stats *p = &ps[k_ - 1];
        int in_use = p->open - p->idle;
        emit(o, "shardroute_pool_connections{%s,state=\"idle\"} %d\n", l, p->idle);
        emit(o, "shardroute_pool_connections{%s,state=\"in_use\"} %d\n", l, in_use > 0 ? in_use : 0);
    });
    family(o, "shardroute_pool_max_connections", "gauge", "The pool's size limit (pool.max_size).");
    EACH_NODE({ emit(o, "shardroute_pool_max_connections{%s} %d\n", l, ps[k_ - 1].max_size); });
    family(o, "shardroute_pool_waiting", "gauge", "Callers waiting for a pooled connection now.");
    EACH_NODE({ emit(o, "shardroute_pool_waiting{%s} %d\n", l, ps[k_ - 1].waiting); });
    family(o, "shardroute_pool_checkout_wait_seconds", "histogram",
           "How long checkouts that found no free connection waited (immediate ones are not observed).");
    EACH_NODE({ histogram(o, "shardroute_pool_checkout_wait_seconds", l, ps[k_ - 1].waits); });
    family(o, "shardroute_pool_exhausted_total", "counter",
           "Checkouts that gave up after pool.checkout_timeout_ms (SR_EBUSY).");
    EACH_NODE({
        emit(o, "shardroute_pool_exhausted_total{%s} %llu\n", l,
             (unsigned long long)ps[k_ - 1].exhausted);
    });
    free(ps);

    family(o, "shardroute_replica_lag_seconds", "gauge",
           "A replica's last measured replication lag (replicas whose lag was measured and whose "
           "replication runs).");
    EACH_NODE({
        int64_t lag = atomic_load_explicit(&((sr_node *)n)->b->lag_ms, memory_order_relaxed);
        if (n->role == SR_REPLICA && lag >= 0)
            emit(o, "shardroute_replica_lag_seconds{%s} %.3f\n", l, (double)lag / 1e3);
    });
    family(o, "shardroute_replica_replication_broken", "gauge",
           "1 when a replica's replication was last found broken (not eligible for reads).");
    EACH_NODE({
        int64_t lag = atomic_load_explicit(&((sr_node *)n)->b->lag_ms, memory_order_relaxed);
        if (n->role == SR_REPLICA && lag != -2)
            emit(o, "shardroute_replica_replication_broken{%s} %d\n", l, lag == -1 ? 1 : 0);
    });
    family(o, "shardroute_replica_position_checks_total", "counter",
           "Reads that asked a replica whether it had applied their position, by answer.");
    EACH_NODE({
        if (n->role == SR_REPLICA) {
            emit(o, "shardroute_replica_position_checks_total{%s,result=\"applied\"} %llu\n", l,
                 (unsigned long long)load(&n->b->applied_checks));
            emit(o, "shardroute_replica_position_checks_total{%s,result=\"behind\"} %llu\n", l,
                 (unsigned long long)load(&n->b->stale_checks));
        }
    });
#undef EACH_NODE
}

/* Per-shard families, or their sums over shards under metrics.shards = aggregate. */
static void shard_families(out *o, const sr_topo *r, char **shard_labels)
{
    bool agg = r->opts.metrics_shards == SR_METRICS_AGGREGATE;
    int nseries = agg ? 1 : r->nshards;
    family(o, "shardroute_primary_reads_total", "counter",
           "Reads sent to a shard's primary, by reason.");
    for (int w = 1; w < SR_PRIMARY_WHYS; w++)
        for (int k = 0; k < nseries; k++) {
            uint64_t v = 0;
            for (int s = agg ? 0 : k; s < (agg ? r->nshards : k + 1); s++)
                v += load(&r->shards[s].counters->primary_reads[w]);
            emit(o, "shardroute_primary_reads_total{%s%sreason=\"%s\"} %llu\n",
                 agg ? "" : shard_labels[k], agg ? "" : ",", primary_why_names[w],
                 (unsigned long long)v);
        }
    family(o, "shardroute_consistency_waits_total", "counter",
           "Reads that waited for a replica to replay their position (consistency.wait_ms), by outcome.");
    for (int w = 0; w < SR_WAIT_OUTCOMES; w++)
        for (int k = 0; k < nseries; k++) {
            uint64_t v = 0;
            for (int s = agg ? 0 : k; s < (agg ? r->nshards : k + 1); s++)
                v += load(&r->shards[s].counters->waits[w]);
            emit(o, "shardroute_consistency_waits_total{%s%soutcome=\"%s\"} %llu\n",
                 agg ? "" : shard_labels[k], agg ? "" : ",", wait_names[w], (unsigned long long)v);
        }
    family(o, "shardroute_consistency_wait_seconds_total", "counter",
           "Time reads spent in those waits.");
    for (int k = 0; k < nseries; k++) {
        uint64_t v = 0;
        for (int s = agg ? 0 : k; s < (agg ? r->nshards : k + 1); s++)
            v += load(&r->shards[s].counters->wait_ns);
        if (agg)
            emit(o, "shardroute_consistency_wait_seconds_total %.9f\n", (double)v / 1e9);
        else
            emit(o, "shardroute_consistency_wait_seconds_total{%s} %.9f\n", shard_labels[k],
                 (double)v / 1e9);
    }
    family(o, "shardroute_failovers_total", "counter",
           "Topology versions made because another node of the shard became its primary "
           "(failover.discovery).");
    for (int k = 0; k < nseries; k++) {
        uint64_t v = 0;
        for (int s = agg ? 0 : k; s < (agg ? r->nshards : k + 1); s++)
            v += load(&r->shards[s].counters->failovers);
        emit(o, "shardroute_failovers_total%s%s%s %llu\n", agg ? "" : "{",
             agg ? "" : shard_labels[k], agg ? "" : "}", (unsigned long long)v);
    }
    family(o, "shardroute_split_brain", "gauge",
           "Shards where two nodes report themselves primary: their writes are refused.");
    for (int k = 0; k < nseries; k++) {
        int v = 0;
        for (int s = agg ? 0 : k; s < (agg ? r->nshards : k + 1); s++)
            v += atomic_load_explicit(&((sr_shard *)&r->shards[s])->split_brain,
                                      memory_order_relaxed) != 0;
        emit(o, "shardroute_split_brain%s%s%s %d\n", agg ? "" : "{", agg ? "" : shard_labels[k],
             agg ? "" : "}", v);
    }
}

static void router_families(out *o, const sr_topo *r)
{
    family(o, "shardroute_info", "gauge", "The library's version.");
    emit(o, "shardroute_info{version=\"%s\"} 1\n", sr_version());
    family(o, "shardroute_shards", "gauge", "Shards in the topology.");
    emit(o, "shardroute_shards %d\n", r->nshards);
    family(o, "shardroute_topology_version", "gauge",
           "The topology's version: 1 when opened, one more for each reload.");
    emit(o, "shardroute_topology_version %llu\n", (unsigned long long)r->version);
    family(o, "shardroute_topology_reloads_total", "counter",
           "Reloads of the topology (sr_router_reload), applied or refused.");
    emit(o, "shardroute_topology_reloads_total{result=\"applied\"} %llu\n",
         (unsigned long long)load(&r->router->reloads[1]));
    emit(o, "shardroute_topology_reloads_total{result=\"refused\"} %llu\n",
         (unsigned long long)load(&r->router->reloads[0]));
    if (r->router->etcd) { /* topology.etcd set */
        family(o, "shardroute_etcd_reloads_total", "counter",
               "Topologies applied from the topology.etcd key.");
        emit(o, "shardroute_etcd_reloads_total %llu\n",
             (unsigned long long)load(&r->router->etcd_counts[0]));
        family(o, "shardroute_etcd_errors_total", "counter",
               "Reads of the topology.etcd key that failed (etcd unreachable or answering an "
               "error), and values that were no good configuration.");
        emit(o, "shardroute_etcd_errors_total{kind=\"unreachable\"} %llu\n",
             (unsigned long long)load(&r->router->etcd_counts[1]));
        emit(o, "shardroute_etcd_errors_total{kind=\"malformed\"} %llu\n",
             (unsigned long long)load(&r->router->etcd_counts[2]));
    }
    const sr_scatter_counters *sc = r->scatter;
    family(o, "shardroute_scatter_statements_total", "counter",
           "Statements run on every shard (sr_exec_all, sr_exec_all_values, sr_cursor_open_all).");
    emit(o, "shardroute_scatter_statements_total %llu\n", (unsigned long long)load(&sc->statements));
    family(o, "shardroute_scatter_shards_total", "counter",
           "Shard parts those statements ran (their fan-out, summed).");
    emit(o, "shardroute_scatter_shards_total %llu\n", (unsigned long long)load(&sc->shards));
    family(o, "shardroute_scatter_shard_failures_total", "counter", "Shard parts that failed.");
    emit(o, "shardroute_scatter_shard_failures_total %llu\n",
         (unsigned long long)load(&sc->failed_shards));
    family(o, "shardroute_scatter_partial_failures_total", "counter",
           "Scatter statements that failed on some shards but not on all.");
    emit(o, "shardroute_scatter_partial_failures_total %llu\n", (unsigned long long)load(&sc->partial));
}

static int render(const sr_topo *r, sr_write_fn write, void *userdata)
{
    out *o = malloc(sizeof *o);
    int nnodes = 0;
    char **labels = node_labels(r, &nnodes);
    char **shard_labels = calloc((size_t)r->nshards, sizeof *shard_labels);
    int rc = o && labels && shard_labels ? SR_OK : SR_ENOMEM;
    for (int s = 0; rc == SR_OK && s < r->nshards; s++) {
        char *e = escape_label(r->shards[s].name);
        size_t len = e ? strlen(e) + 16 : 0;
        shard_labels[s] = e ? malloc(len) : NULL;
        if (shard_labels[s])
            snprintf(shard_labels[s], len, "shard=\"%s\"", e);
        else
            rc = SR_ENOMEM;
        free(e);
    }
    if (rc == SR_OK) {
        o->write = write;
        o->ud = userdata;
        o->status = SR_OK;
        o->used = 0;
        router_families(o, r);
        node_families(o, r, labels);
        shard_families(o, r, shard_labels);
        flush(o);
        rc = o->status;
    }
    for (int k = 0; labels && k < nnodes; k++)
        free(labels[k]);
    free(labels);
    for (int s = 0; shard_labels && s < r->nshards; s++)
        free(shard_labels[s]);
    free(shard_labels);
    free(o);
    return rc;
}

SR_API int sr_router_metrics(const sr_router *r, sr_write_fn write, void *userdata)
{
    if (!r || !write)
        return SR_EINVAL;
    /* A reference, not a borrow: the sink may take its time. */
    sr_topo *t = sr__topo_acquire((sr_router *)r);
    int rc = render(t, write, userdata);
    sr__topo_release(t);
    return rc;
}

/* sr_router_metrics_text's sink: copies what fits, counts everything. */
typedef struct text_sink {
    char *buf;
    size_t cap;
    size_t len;
} text_sink;

static int to_buffer(void *ud, const char *data, size_t len)
{
    text_sink *t = ud;
    if (t->len < t->cap) {
        size_t room = t->cap - 1 - t->len; /* one byte stays for the NUL */
        memcpy(t->buf + t->len, data, len < room ? len : room);
    }
    t->len += len;
    return t->len > (size_t)INT_MAX ? 1 : 0;
}

SR_API int sr_router_metrics_text(const sr_router *r, char *buf, size_t cap)
{
    if (!r || (!buf && cap > 0))
        return SR_EINVAL;
    text_sink t = {buf, cap, 0};
    int rc = sr_router_metrics(r, to_buffer, &t);
    if (cap > 0)
        buf[t.len < cap ? t.len : cap - 1] = '\0';
    if (rc == SR_EINVAL) /* only the sink stops it: the text passed INT_MAX */
        return SR_ENOMEM;
    return rc == SR_OK ? (int)t.len : rc;
}
