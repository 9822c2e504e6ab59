/*
 * Where a read goes (read.c): from the router and a read plan, never from a
 * session, so that reads for a session, a transaction, a scatter or the
 * tests all take the same path.
 */
#ifndef SR_READ_H
#define SR_READ_H

#include "node.h"

/* What one read needs, decided by the caller from its session and options. */
typedef struct sr_read_plan {
    int mode;          /* sr_consistency */
    int max_lag_ms;    /* 0: no bound */
    const char *need;  /* position the node must have applied, or NULL */
    bool need_unknown; /* a position is needed but unknown: only the primary will do */
    uint64_t affinity; /* the session's key for the affinity policy */
    int last_node;     /* index of the node the session last read from on this shard, or -1 */
    int64_t written_ns; /* when the session last wrote on the shard (sr_clock_ns), 0: unknown */
    int sticky;        /* >= 0: the only node this read may use besides the primary (a
                          monotonic read goes on from the node it last read at,
                          sr__positions_note_read). -1: any */
    bool check_now;    /* no statement carries the check (a read-only transaction's BEGIN):
                          the node's position is checked before it is returned */
} sr_read_plan;

/*
 * What the tries of one read have learnt so far (the caller starts it
 * zeroed). The masks after `missed` only say why nodes were passed over, for
 * the metrics and routing events; setting them costs a bit operation on
 * paths that skip a node, nothing on the path that takes one.
 */
typedef struct sr_read_tries {
    uint64_t exclude; /* nodes not to use again (they failed); bit = sr__node_bit() */
    uint64_t stale;   /* replicas found behind plan->need */
    bool missed;      /* a check in the statement's own exchange found a replica behind */
    uint64_t ejected;     /* not admitted by their health state */
    uint64_t lagged;      /* measured over the plan's lag bound */
    uint64_t lag_unknown; /* replication broken, or (under a bound) lag never measured */
    uint64_t passed;      /* likely behind the plan's position (not asked) */
    uint64_t unreachable; /* checkout failed (connect error, or ... */
    uint64_t busy;        /* ... SR_EBUSY: pool exhausted) */
    int primary_why;      /* sr_primary_why when the read went to the primary */
    uint64_t checked;     /* replicas whose position was checked (not known from the cache) */
    int64_t wait_ns;      /* time spent waiting for a replica to catch up */
} sr_read_tries;

/*
 * Finds the node a read on `shard` goes to and checks out a connection on it
 * that satisfies the plan (health, lag, position), skipping the nodes of
 * `tries`. When the replica's position must still be checked, *check is set
 * to plan->need and the caller runs the statement with sr__node_exec_at(),
 * the check in the statement's own exchange; if that finds the replica
 * behind, the caller adds it to tries->stale, sets tries->missed and calls
 * again. Otherwise (*check NULL) the node already qualifies. When no replica
 * qualifies the read goes to the primary at once, unless the caller would
 * rather wait (sr__consistency_wait_ms() > 0): then it waits that long for a
 * replica first. Errors, with *why: SR_ESTALE, SR_EUNAVAILABLE, SR_ETIMEOUT,
 * connection errors.
 */
int sr__read_acquire(sr_topo *r, int shard, const sr_read_plan *plan, sr_read_tries *tries,
                     int64_t deadline, sr_node **node, sr_driver_conn **conn, bool *probe,
                     const char **check, sr_reason *why);

/* The node's bit in an `exclude` mask (SR_MAX_NODES_PER_SHARD bounds the index). */
static inline uint64_t sr__node_bit(const sr_node *n) { return (uint64_t)1 << n->index; }

/*
 * Counts a read that `n` is about to serve in shardroute_primary_reads_total
 * when `n` is the primary, with tries->primary_why. Called by the code that
 * runs reads, once per read that got its node (not by a read-only BEGIN).
 */
static inline void sr__read_count_primary(sr_topo *r, int shard, const sr_node *n,
                                          const sr_read_tries *tries)
{
    if (n->role == SR_PRIMARY && tries->primary_why != SR_PRIMARY_WHY_NONE)
        sr__count(&r->shards[shard].counters->primary_reads[tries->primary_why]);
}

#endif
