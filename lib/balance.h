/*
 * Replica policies behind one small interface: pick a node among candidates,
 * then report the outcome and its latency. State is per node and atomic, so
 * picks take no lock.
 */
#ifndef SR_BALANCE_H
#define SR_BALANCE_H

#include <stdatomic.h>
#include "internal.h"
#include "options.h"

typedef struct sr_balance_stats {
    _Atomic int weight; /* >= 1; a reload may change it (relaxed: one value or the other) */
    uint64_t id_hash;  /* stable per node: rendezvous hashing for affinity */
    _Atomic int64_t in_flight;
    _Atomic int64_t ewma_ns;      /* peak-EWMA latency estimate, ns */
    _Atomic int64_t ewma_stamp_ns;/* time of the last update */
} sr_balance_stats;

void sr__balance_init(sr_balance_stats *st, int weight, uint64_t id_hash);

/*
 * Picks one of `n` candidates (n >= 1) and returns its index.
 * rr_counter: per shard, for round_robin and weighted.
 * affinity: the session's affinity hash, for affinity.
 * last: the index among `cands` of the node the caller read from last time
 * (-1: none or not a candidate), for p2c_ewma, which stays there unless the
 * other draw costs clearly less (SR_P2C_STAY).
 */
int sr__balance_pick(sr_policy_kind policy, sr_balance_stats *const *cands, int n,
                     _Atomic uint64_t *rr_counter, uint64_t affinity, int last);

/* Call around each statement on a node: begin increments in-flight; end decrements and
 * folds the latency into the peak EWMA (decay time constant decay_ms). */
void sr__balance_begin(sr_balance_stats *st);
void sr__balance_end(sr_balance_stats *st, int64_t latency_ns, int decay_ms);
/* The same with the current time supplied (the statement path has just read the clock). */
void sr__balance_end_at(sr_balance_stats *st, int64_t latency_ns, int decay_ms, int64_t now_ns);
/* Ends a statement whose latency was not measured: only the in-flight count changes. */
void sr__balance_end_untimed(sr_balance_stats *st);

/* A fast thread-local random number (xorshift), seeded per thread. */
uint64_t sr__rand64(void);

#endif
