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

/*
 * A node's server as connections and statistics see it: its driver, URI,
 * pool, health, counters and replication caches. Shared by every topology
 * version that has a node of the same URI, role and connection options, so
 * a reload keeps them (topology.c); freed with the last topology that uses it.
 */
typedef struct sr_backend {
    _Atomic int refs;  /* topologies that have it */
    uint64_t claimed_by; /* the version being built that took it (one node per backend) */
    bool published;    /* part of a version that became current: its URI was handed out */
    const sr_driver *driver;
    sr_uri *uri;       /* parsed; owns its strings */
    char *config_uri;  /* as configured: what a reload compares */
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
} sr_backend;

/* A node's place in one topology version: its shard, index and role, and its backend. */
typedef struct sr_node {
    int shard;
    int index;         /* within the shard: 0 is the primary */
    sr_role role;
    sr_backend *b;
} sr_node;

typedef struct sr_shard {
    const char *name;     /* the router's interned copy (sr_named_counters): valid until close */
    sr_node *nodes;       /* into the topology's node_store; nodes[0] is the primary, then the replicas */
    int nnodes;
    _Atomic uint64_t rr_counter;
    sr_shard_counters *counters; /* the router's for this shard name: kept across reloads */
    /* Two nodes of the shard report themselves primary (failover.c): 0, or
     * SR_SPLIT_BRAIN_FLAG | a | b << 8 (node indexes). Writes are refused while it is set. */
    _Atomic uint32_t split_brain;
} sr_shard;

#define SR_SPLIT_BRAIN_FLAG 0x10000u

/*
 * One version of a router's topology: its options, shards, nodes and key
 * map, immutable once built except for the atomics inside. The statement
 * path reads it without a lock. A session holds a reference to the version
 * it routes on and moves to the current one at the start of its next call
 * (session.h); a reload (topology.c) builds a new version that shares the
 * backends of unchanged nodes and retires the old one, which is freed when
 * its last holder lets go.
 */
typedef struct sr_topo {
    _Atomic int refs;          /* the router while current, sessions and cursors on it */
    uint64_t version;          /* 1 for sr_router_open's, one more for each reload */
    sr_router *router;         /* the handle it belongs to */
    struct sr_topo *next_retired;
    sr_options opts;
    sr_health_policy health_policy;
    sr_shard *shards;
    int nshards;
    sr_node *node_store; /* every shard's nodes, in shard order (one allocation) */
    sr_keymap *keymap;
    sr_log_fn log_fn;
    void *log_ud;
    /* Routing events (events.c): the callback; the sampling counter is the router's. */
    sr_event_fn event_fn;
    void *event_ud;
    _Atomic uint64_t *event_tick;
    sr_scatter_counters *scatter; /* the router's: kept across reloads */
    /* Shard names sorted for token parsing, built on first use (token.c). */
    struct sr_token_index *_Atomic token_index;
} sr_topo;

/* Per-shard counters by shard name, for the life of the router (metrics survive reloads). */
typedef struct sr_named_counters {
    struct sr_named_counters *next;
    sr_shard_counters counters;
    char name[];
} sr_named_counters;

/* The handle the application holds (router.c). */
struct sr_router {
    _Atomic(sr_topo *) current;
    _Atomic uint64_t version;   /* current->version: what sessions compare on each call */
    pthread_mutex_t reload_lock; /* one sr_router_reload at a time */
    pthread_mutex_t lock;       /* current's swap and references, the retired list */
    pthread_mutex_t registry_lock; /* the shard counters and the graveyard (taken after `lock`) */
    sr_topo *retired;           /* older versions still held by a session or cursor */
    /* Router-level calls that read `current` without a reference (sr_router_shard_for ...):
     * a retired version is freed only once none is in progress. */
    _Atomic int borrowers;
    _Atomic int reclaim_pending; /* a retired version waits for the borrowers to leave */
    sr_scatter_counters scatter;
    _Atomic uint64_t reloads[2]; /* sr_router_reload calls: [0 refused, 1 applied] */
    _Atomic uint64_t event_tick;
    sr_named_counters *shard_counters;
    /* The configuration of the current version (reload.c): what a failover derives the next
     * one from. Read and replaced under reload_lock. */
    sr_config *applied;
    /* Strings handed out as valid until the router closes (shard names, node URIs) that a
     * freed version or backend owned: freed at close. */
    void **graveyard;
    size_t ngraveyard, graveyard_cap;
    /* The watched configuration file (watch.c): what its last check saw. */
    pthread_mutex_t watch_lock;
    struct sr_file_state {
        char path[SR_OPTION_STRING_MAX];
        uint64_t dev, ino;
        int64_t size, mtime_ns;
        bool seen; /* a stat succeeded */
    } watched;
    /* The topology shared through etcd (etcd.c): NULL without topology.etcd. Its counts, for
     * the metrics: [0] reloads applied from etcd, [1] reads that failed (etcd unreachable or
     * answering an error), [2] values that were no good configuration. */
    struct sr_etcd *etcd;
    _Atomic uint64_t etcd_counts[3];
    /* The opt-in active prober (prober.c); present when health.probe_interval_ms > 0. */
    pthread_t prober;
    int prober_started;
    int prober_stop;
    pthread_mutex_t prober_lock;
    pthread_cond_t prober_wake;
};

/* prober.c: starts the background prober when configured; stops and joins it. */
int sr__prober_start(sr_router *r);
void sr__prober_stop(sr_router *r);
/* After a new version (the caller holds reload_lock): starts the prober if the version asks
 * for it and wakes it, so that a changed interval applies now. From the prober's own round
 * the start is a no-op and the wake only shortens its next sleep. */
void sr__prober_follow_locked(sr_router *r);
/* Makes a running prober look at the current version's interval now (after a reload). */
void sr__prober_wake(sr_router *r);

/*
 * Builds a topology version from the config; nodes whose URI, role and
 * connection options are those of a node of `prev` (may be NULL) share its
 * backend (pool, health, statistics). On error fills err and frees what it
 * built. The new version has one reference (the caller's).
 */
int sr__topology_build(sr_router *h, const sr_config *c, const sr_topo *prev, uint64_t version,
                       sr_topo **out, char *err, size_t errlen);

/* The current version with a reference for the caller (released with sr__topo_release). */
sr_topo *sr__topo_acquire(sr_router *h);
/* Drops a reference; a retired version whose last reference this was is freed. */
void sr__topo_release(sr_topo *t);
/* Makes `old` (just replaced as current by `now`) a retired version, freed when its holders
 * let go; `now`'s backends are marked published (their URIs are handed out from now on). */
void sr__topo_retire(sr_router *h, sr_topo *old, sr_topo *now);
/* Marks a version's backends published (sr_router_open's first version). */
void sr__topo_publish(sr_topo *t);
/* Frees every version and backend (sr_router_close; no holder is left). */
void sr__topology_free_all(sr_router *h);

/* The current version for a router-level call that holds no reference: between
 * sr__topo_borrow and sr__topo_unborrow it is not freed, whatever reloads happen. */
static inline sr_topo *sr__topo_borrow(const sr_router *h)
{
    sr_router *m = (sr_router *)h;
    atomic_fetch_add(&m->borrowers, 1);
    return atomic_load(&m->current);
}
void sr__topo_reclaim_pending(sr_router *h);
static inline void sr__topo_unborrow(const sr_router *h)
{
    sr_router *m = (sr_router *)h;
    if (atomic_fetch_sub(&m->borrowers, 1) == 1 && atomic_load(&m->reclaim_pending))
        sr__topo_reclaim_pending(m); /* the last borrower frees what waited for it */
}

/* "primary" or "replica", for messages and logs. */
static inline const char *sr__role_name(sr_role role)
{
    return role == SR_PRIMARY ? "primary" : "replica";
}

/* The absolute deadline of a statement that starts now. */
static inline int64_t sr__statement_deadline(const sr_topo *r)
{
    return sr__deadline_after_ms(r->opts.statement_timeout_ms);
}

/* The driver that owns the positions of a shard (its primary's), or NULL when it has none. */
static inline const sr_driver *sr__shard_positions_driver(const sr_topo *r, int shard)
{
    const sr_driver *d = r->shards[shard].nodes[0].b->driver;
    return sr__driver_has_positions(d) ? d : NULL;
}

/*
 * Delivers a health transition of `n` ("ejected", "readmitted", "probe_failed") to the
 * router's event callback, if any (events.c; statement events are in events.h).
 */
void sr__event_health(sr_topo *r, const sr_node *n, const char *health, const char *detail);

/* Emits a log line through the router's callback, if any (log.c). */
void sr__log(const sr_topo *r, sr_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
