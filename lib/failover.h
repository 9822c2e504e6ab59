/*
 * Failover discovery (failover.c): what a round of role checks (prober.c)
 * saw of a shard's nodes decides whether another node has become its
 * primary (a new topology version follows it) or two nodes claim to be
 * (split brain: the shard's writes are refused until one steps down).
 */
#ifndef SR_FAILOVER_H
#define SR_FAILOVER_H

#include "topology.h"

/* What one round learnt of a node. */
typedef enum sr_seen_role {
    SR_SEEN_UNKNOWN = 0, /* not checked, or its driver cannot tell a role */
    SR_SEEN_DOWN,        /* unreachable: the check failed, or the node is ejected */
    SR_SEEN_HUNG,        /* unreachable: the check timed out (counts as down) */
    SR_SEEN_PRIMARY,     /* reports itself writable */
    SR_SEEN_REPLICA      /* reports itself in recovery / read-only */
} sr_seen_role;

typedef enum sr_failover_kind {
    SR_FAILOVER_CLEAR = 0, /* the configured primary is the only one: no split brain */
    SR_FAILOVER_KEEP,      /* cannot tell (a node's role is unknown): change nothing */
    SR_FAILOVER_PROMOTE,   /* node `a` is the one primary and node 0 is down or a replica */
    SR_FAILOVER_SPLIT      /* nodes `a` and `b` both report themselves primary */
} sr_failover_kind;

typedef struct sr_failover_verdict {
    sr_failover_kind kind;
    int a, b;
} sr_failover_verdict;

/*
 * The rule, on the roles `seen` of a shard's `n` nodes (node 0 is the configured primary):
 * two nodes reporting primary are a split brain; exactly one other node reporting primary
 * while node 0 is down or reports replica is a promotion; anything else clears, unless a
 * node's role is unknown this round (then nothing changes). Pure: unit-tested alone.
 */
sr_failover_verdict sr__failover_decide(const sr_seen_role *seen, int n);

/*
 * Acts on a round of role checks of every node of `t` (`seen` in t->node_store order):
 * sets or clears each shard's split brain, logging transitions, and, when a shard's verdict
 * is a promotion and `t` is still the current version, makes the next version from the
 * router's applied configuration with that node as the shard's primary and the old one as
 * a replica (reload.c; counted and logged). Does nothing when failover.discovery is off.
 */
void sr__failover_round(sr_router *h, sr_topo *t, const sr_seen_role *seen);

#endif
