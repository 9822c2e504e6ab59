/*
 * Routing events (events.c): what the entry points and node.c hand to the
 * application's event callback (sr_config_set_event_fn). Without a callback
 * nothing here runs: the entry points test sr__event_sampled() once per
 * statement and take the plain path when it says no.
 */
#ifndef SR_EVENTS_H
#define SR_EVENTS_H

#include "read.h"

/* What one statement's routing left to say, collected only for a sampled statement. */
typedef struct sr_route_record {
    int64_t start_ns;
    int shard;            /* -1 before the key was mapped */
    const sr_node *node;  /* the last node the statement ran on (or tried), NULL when none */
    bool write;
    bool in_txn;
    int retries;
    int max_lag_ms;       /* the read's lag bound (0: none) */
    sr_read_tries tries;  /* the read's, at its end (zero for writes) */
} sr_route_record;

/* Whether this statement is to be reported (a callback is set and the sample picks it). */
static inline bool sr__event_sampled(sr_topo *r)
{
    if (!r->event_fn)
        return false;
    int every = r->opts.events_sample;
    return every <= 1 ||
           atomic_fetch_add_explicit(r->event_tick, 1, memory_order_relaxed) % (uint64_t)every == 0;
}

/* Delivers a statement event: `status` and `sqlstate` are the statement's outcome. */
void sr__event_statement(sr_topo *r, const sr_route_record *rec, const char *sql, int status,
                         const char *sqlstate);

/* sr__event_health() is declared in topology.h, for node.c, which is below this file's read.h. */

#endif
