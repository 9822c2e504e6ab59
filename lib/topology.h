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
#include "keymap/keymap.h"
#include "pool.h"

typedef struct sr_node {
    int shard;
    int index;         /* within the shard: 0 is the primary */
    sr_role role;
    const sr_driver *driver;
    sr_uri *uri;       /* parsed; owns its strings */
    sr_driver_connect_args connect_args; /* points into uri; the pool keeps a pointer */
    sr_pool *pool;
    sr_balance_stats bal;
    _Atomic uint64_t statements;
    _Atomic uint64_t errors;
    sr_health health;
    _Atomic int role_mismatch; /* the server last reported another role than configured */
    /* Replication lag (consistency.c): ms, -1 broken (not eligible), -2 never measured. */
    _Atomic int64_t lag_ms;
    _Atomic int64_t lag_stamp_ns;
    /* A position this replica is known to have replayed (a lower bound), "" when unknown. */
    pthread_mutex_t pos_lock;
    char replay_pos[SR_POSITION_MAX];
    /* The last connection-level failure, for "why was this node skipped" messages. */
    pthread_mutex_t last_error_lock;
    char last_error[256];
} sr_node;

typedef struct sr_shard {
    char *name;
    sr_node *nodes;       /* into the router's node_store; nodes[0] is the primary, then the replicas */
    int nnodes;
    _Atomic uint64_t rr_counter;
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
    /* Shard names sorted for token parsing, built on first use (consistency.c). */
    struct sr_token_index *_Atomic token_index;
};

/* consistency.c: frees the token index (sr_router_close). */
void sr__token_index_free(sr_router *r);

/* prober.c: starts the background prober when configured; stops and joins it. */
int sr__prober_start(sr_router *r);
void sr__prober_stop(sr_router *r);

/* Builds shards, nodes and pools from the config; on error fills err. */
int sr__topology_build(sr_router *r, const sr_config *c, char *err, size_t errlen);
void sr__topology_free(sr_router *r);

/* ---- node.c: a node's health as the statement path sees it ---- */

/*
 * Whether `n` may take a statement now. An up node may; an ejected node whose
 * back-off has passed may for exactly one caller, who becomes its probe
 * (*probe = true) and must report the outcome with sr__node_report().
 */
bool sr__node_admit(sr_node *n, int64_t now_ns, bool *probe);

/*
 * Reports one statement's outcome to the node's health: `status` and `err`
 * as the pool or driver returned them. Connection-level failures
 * (err->transient) count towards ejection; SQL errors prove the node alive.
 * Ejection drains the node's idle connections; every transition is logged
 * with its reason.
 */
void sr__node_report(sr_router *r, sr_node *n, int status, const sr_driver_error *err, bool probe);

/* Appends to buf why `n` cannot take a statement now ("ejected, retry in 300 ms: ..."). */
void sr__node_describe(sr_node *n, int64_t now_ns, char *buf, size_t len);

/* Emits a log line through the router's callback, if any. */
void sr__log(const sr_router *r, sr_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
