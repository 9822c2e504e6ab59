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
} sr_read_plan;

/*
 * Finds the node a read on `shard` goes to and checks out a connection on it
 * that satisfies the plan (health, lag, position checked on that very
 * connection), waiting up to consistency.wait_ms for a replica to catch up
 * before falling back to the primary. `exclude` is a bit mask of node
 * indexes not to use. Errors, with *why: SR_ESTALE, SR_EUNAVAILABLE,
 * SR_ETIMEOUT, connection errors.
 */
int sr__read_acquire(sr_router *r, int shard, const sr_read_plan *plan, uint64_t exclude,
                     int64_t deadline, sr_node **node, sr_driver_conn **conn, bool *probe,
                     sr_reason *why);

/* The node's bit in an `exclude` mask (SR_MAX_NODES_PER_SHARD bounds the index). */
static inline uint64_t sr__node_bit(const sr_node *n) { return (uint64_t)1 << n->index; }

#endif
