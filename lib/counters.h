/*
 * What the statement path counts for the metrics (metrics.c renders it):
 * the vocabularies of outcomes and reasons, each with the label value the
 * metrics text uses, and the per-shard counters. Every update is one
 * relaxed atomic increment; nothing here takes a lock or reads a clock.
 */
#ifndef SR_COUNTERS_H
#define SR_COUNTERS_H

#include <stdatomic.h>
#include <stdint.h>

#include "histogram.h"
#include "internal.h"

/* How a statement ended on a node. */
typedef enum sr_outcome {
    SR_OUTCOME_OK = 0,
    SR_OUTCOME_SQL_ERROR,  /* the database rejected it (SR_EQUERY) */
    SR_OUTCOME_TIMEOUT,    /* SR_ETIMEOUT */
    SR_OUTCOME_CONNECTION, /* SR_ECONNECT: the connection failed or was lost */
    SR_OUTCOME_OTHER,      /* anything else (SR_ENOMEM, SR_EDRIVER, ...) */
    SR_OUTCOMES
} sr_outcome;

static inline sr_outcome sr__outcome_of(int status)
{
    switch (status) {
    case SR_OK: return SR_OUTCOME_OK;
    case SR_EQUERY: return SR_OUTCOME_SQL_ERROR;
    case SR_ETIMEOUT: return SR_OUTCOME_TIMEOUT;
    case SR_ECONNECT: return SR_OUTCOME_CONNECTION;
    default: return SR_OUTCOME_OTHER;
    }
}

/* Why a read went to the primary. */
typedef enum sr_primary_why {
    SR_PRIMARY_WHY_NONE = 0,        /* it did not (a replica served it) */
    SR_PRIMARY_WHY_CONSISTENCY,     /* the session's consistency is `primary` */
    SR_PRIMARY_WHY_STALE,           /* replicas behind the session's position (checked or likely) */
    SR_PRIMARY_WHY_POSITION_UNKNOWN,/* the session's last write position is unknown */
    SR_PRIMARY_WHY_LAG,             /* no replica within the lag bound */
    SR_PRIMARY_WHY_NO_REPLICA,      /* no healthy, reachable replica (or none configured) */
    SR_PRIMARY_WHY_BALANCE,         /* balance.primary_reads = always and the policy chose it */
    SR_PRIMARY_WHYS
} sr_primary_why;

/* How a wait for a replica to catch up (consistency.wait_ms) ended. */
typedef enum sr_wait_outcome {
    SR_WAIT_CAUGHT_UP = 0,
    SR_WAIT_TIMED_OUT,
    SR_WAIT_FAILED, /* the replica could not be asked (connection, checkout) */
    SR_WAIT_OUTCOMES
} sr_wait_outcome;

/* Per shard. */
typedef struct sr_shard_counters {
    _Atomic uint64_t primary_reads[SR_PRIMARY_WHYS];
    _Atomic uint64_t waits[SR_WAIT_OUTCOMES];
    _Atomic uint64_t wait_ns; /* total time spent in those waits */
    _Atomic uint64_t failovers; /* versions made because another node became the primary */
} sr_shard_counters;

/* Per router: scatter statements (sr_exec_all, cursors over all shards). */
typedef struct sr_scatter_counters {
    _Atomic uint64_t statements;     /* scatter statements started */
    _Atomic uint64_t shards;         /* shard parts they ran (the fan-out, summed) */
    _Atomic uint64_t failed_shards;  /* shard parts that failed */
    _Atomic uint64_t partial;        /* statements that failed on some shards but not all */
} sr_scatter_counters;

static inline void sr__count(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

#endif
