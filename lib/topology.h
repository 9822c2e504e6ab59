/*
 * The live topology of a router: shards, their nodes, each node's pool and
 * balance statistics. Built once by sr__topology_build() from a config and
 * immutable afterwards except for the atomics inside each node, so the hot
 * path (key -> shard -> node) reads it without a lock.
 */
#ifndef SR_TOPOLOGY_H
#define SR_TOPOLOGY_H

#include <stdatomic.h>

#include <pthread.h>

#include "balance.h"
#include "health.h"
#include "config.h"
#include "counters.h"
#include "keymap/keymap.h"
#include "pool.h"

/*
 * Nodes per shard (the primary and its replicas). The statement path keeps a
 * shard's candidates on the stack and excludes nodes with a 64-bit mask, so
 * this is also the width of that mask.
 */
#define SR_MAX_NODES_PER_SHARD 64

typedef struct sr_node {
    int shard;
    int index;         /* within the shard: 0 is the primary */
    sr_role role;
    const sr_driver *driver;
    sr_uri *uri;       /* parsed; owns its strings */
    sr_driver_connect_args connect_args; /* points into uri; the pool keeps a pointer */
    sr_pool *pool;
    sr_balance_stats bal;
    /* Statements that ended on this node: [0 read, 1 write][sr_outcome] (counters.h). */
    _Atomic uint64_t outcomes[2][SR_OUTCOMES];
    _Atomic uint64_t errors;
    sr_histogram latency;      /* of the statements whose latency is sampled (see session.h) */
    _Atomic uint64_t probes[2];/* health probes of this node: [0 failed, 1 succeeded] */
    sr_health health;
    _Atomic int role_mismatch; /* the server last reported another role than configured */
    /* Replication lag (node.c): ms, -1 broken (not eligible), -2 never measured. */
    _Atomic int64_t lag_ms;
    _Atomic int64_t lag_stamp_ns;
    /* A position this replica is known to have replayed (a lower bound), "" when unknown. */
    pthread_mutex_t pos_lock;
    char replay_pos[SR_POSITION_MAX];
    /* How long this replica usually takes to replay a write (ns, a decaying estimate kept by
     * node.c from position checks): a read younger than this goes to the primary unasked. */
    _Atomic int64_t replay_delay_ns;
    /* Reads that asked it whether it had applied their position, by answer (each check adds
     * to exactly one: a rendering between two additions never sees a counter go back). */
    _Atomic uint64_t applied_checks;
    _Atomic uint64_t stale_checks;
    /* The last connection-level failure, for "why was this node skipped" messages. */
    pthread_mutex_t last_error_lock;
    char last_error[256];
} sr_node;

typedef struct sr_shard {
    char *name;
    sr_node *nodes;       /* into the router's node_store; nodes[0] is the primary, then the replicas */
    int nnodes;
    _Atomic uint64_t rr_counter;
    sr_shard_counters counters;
} sr_shard;

struct sr_router {
    sr_options opts;
    sr_health_policy health_policy;
    sr_shard *shards;
    int nshards;
    sr_node *node_store; /* every shard's nodes, in shard order (one allocation) */
    sr_keymap *keymap;
    sr_log_fn log_fn;
    void *log_ud;
    /* The opt-in active prober (prober.c); present when health.probe_interval_ms > 0. */
    pthread_t prober;
    int prober_started;
    int prober_stop;
    pthread_mutex_t prober_lock;
    pthread_cond_t prober_wake;
    sr_scatter_counters scatter;
    /* Routing events (events.c): the callback, and the counter that samples statements. */
    sr_event_fn event_fn;
    void *event_ud;
    _Atomic uint64_t event_tick;
    /* Shard names sorted for token parsing, built on first use (token.c). */
    struct sr_token_index *_Atomic token_index;
};

/* prober.c: starts the background prober when configured; stops and joins it. */
int sr__prober_start(sr_router *r);
void sr__prober_stop(sr_router *r);

/* Builds shards, nodes and pools from the config; on error fills err. */
int sr__topology_build(sr_router *r, const sr_config *c, char *err, size_t errlen);
void sr__topology_free(sr_router *r);

/* "primary" or "replica", for messages and logs. */
static inline const char *sr__role_name(sr_role role)
{
    return role == SR_PRIMARY ? "primary" : "replica";
}

/* The absolute deadline of a statement that starts now. */
static inline int64_t sr__statement_deadline(const sr_router *r)
{
    return sr__deadline_after_ms(r->opts.statement_timeout_ms);
}

/* The driver that owns the positions of a shard (its primary's), or NULL when it has none. */
static inline const sr_driver *sr__shard_positions_driver(const sr_router *r, int shard)
{
    const sr_driver *d = r->shards[shard].nodes[0].driver;
    return sr__driver_has_positions(d) ? d : NULL;
}

/*
 * Delivers a health transition of `n` ("ejected", "readmitted", "probe_failed") to the
 * router's event callback, if any (events.c; statement events are in events.h).
 */
void sr__event_health(sr_router *r, const sr_node *n, const char *health, const char *detail);

/* Emits a log line through the router's callback, if any (log.c). */
void sr__log(const sr_router *r, sr_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
