/*
 * Passive health: a per-node state machine fed by the outcome of every
 * statement (twemproxy-style failure-count ejection, with a half-open probe).
 *
 *   UP --(fail_threshold transient failures in a row)--> EJECTED
 *   EJECTED --(back-off passed; one caller wins the probe)--> PROBING
 *   PROBING --success--> UP            PROBING --failure--> EJECTED, back-off doubled
 *
 * All state is atomic: statements consult it without a lock. Time is passed
 * in (sr_clock_ns() in production) so the unit tests drive a fake clock.
 */
#ifndef SR_HEALTH_H
#define SR_HEALTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum sr_health_state {
    SR_HEALTH_UP = 0,
    SR_HEALTH_EJECTED = 1,
    SR_HEALTH_PROBING = 2
} sr_health_state;

typedef struct sr_health_policy {
    int fail_threshold; /* consecutive transient failures that eject, >= 1 */
    int retry_ms;       /* first back-off before a probe */
    int retry_max_ms;   /* the back-off doubles up to this */
} sr_health_policy;

typedef struct sr_health {
    _Atomic int state;
    _Atomic int failures;         /* consecutive transient failures while up */
    _Atomic int64_t retry_at_ns;  /* ejected: earliest time of the next probe */
    _Atomic int backoff_ms;       /* ejected: the back-off now in force */
    _Atomic uint64_t ejections;
    _Atomic uint64_t readmissions;
} sr_health;

/* What a report changed, so the caller can log it and act (drain the pool). */
typedef enum sr_health_event {
    SR_HEALTH_NO_CHANGE = 0,
    SR_HEALTH_EJECTED_NOW,   /* was up, now ejected */
    SR_HEALTH_READMITTED,    /* a probe succeeded: up again */
    SR_HEALTH_PROBE_FAILED   /* still ejected, back-off doubled */
} sr_health_event;

void sr__health_init(sr_health *h);

/* true when the node is up (the common case: one acquire load; inline, as every statement asks). */
static inline bool sr__health_is_up(const sr_health *h)
{
    return atomic_load_explicit(&h->state, memory_order_acquire) == SR_HEALTH_UP;
}

/*
 * A statement that was not a probe succeeded (or failed with an SQL error:
 * the node answered): the same as sr__health_report(h, p, false, false, now),
 * inline for the statement path, where there is almost never a failure count
 * to reset.
 */
static inline void sr__health_note_success(sr_health *h)
{
    if (atomic_load_explicit(&h->failures, memory_order_relaxed) != 0)
        atomic_store(&h->failures, 0);
}

/*
 * For an ejected node whose back-off has passed: exactly one caller gets
 * true and becomes the probe (the node turns PROBING); it must then call
 * sr__health_report(..., was_probe = true) or sr__health_abandon_probe().
 */
bool sr__health_try_probe(sr_health *h, int64_t now_ns);

/* Milliseconds until an ejected node may be probed (0 when due or up). */
int64_t sr__health_retry_in_ms(const sr_health *h, int64_t now_ns);

/*
 * Folds one outcome in. `failed` is a transient (node-level) failure: a lost
 * or refused connection, a timeout. A statement that the database rejected
 * proves the node alive and counts as success here.
 */
sr_health_event sr__health_report(sr_health *h, const sr_health_policy *p, bool failed,
                                  bool was_probe, int64_t now_ns);

/* A probe that could not run (e.g. the pool was busy): the next caller may probe. */
void sr__health_abandon_probe(sr_health *h);

#endif
