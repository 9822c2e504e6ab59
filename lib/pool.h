/*
 * Per-node connection pool: thread-safe, bounded, with a checkout timeout.
 * Idle connections are reused last-in first-out; broken ones are discarded.
 * Connects happen outside the lock, so a slow node does not block checkins.
 */
#ifndef SR_POOL_H
#define SR_POOL_H

#include "histogram.h"
#include "internal.h"

typedef struct sr_pool sr_pool;

/* `args` (and the sr_uri it points to) must outlive the pool. */
int sr__pool_new(const sr_driver *driver, const sr_driver_connect_args *args, int max_size,
                 sr_pool **out);
/* Closes every idle connection; in-use connections must have been returned. */
void sr__pool_free(sr_pool *p);

/*
 * Takes a connection: an idle one, else a new one while fewer than max_size
 * exist, else waits until one is returned or `deadline_ns` passes (SR_EBUSY).
 * A new connection's connect is bounded by connect_timeout_ms and, when
 * `connect_deadline_ns` is not 0, by that time too (the statement's deadline;
 * SR_ETIMEOUT when it has already passed). A failed connect returns the
 * driver's status (SR_ECONNECT / SR_ETIMEOUT) with err filled.
 */
int sr__pool_checkout(sr_pool *p, int64_t deadline_ns, int64_t connect_deadline_ns,
                      sr_driver_conn **out, sr_driver_error *err);

/* Returns a connection; broken != 0 closes it and frees its slot. */
void sr__pool_checkin(sr_pool *p, sr_driver_conn *conn, int broken);

/* Closes idle connections (a node that is ejected releases them). */
void sr__pool_drain_idle(sr_pool *p);

/* The pool's size limit (pool.max_size when it was made). */
int sr__pool_max_size(const sr_pool *p);

typedef struct sr_pool_stats {
    int open;   /* idle + in use */
    int idle;
    int waiting;
    int max_size;
    uint64_t exhausted;        /* checkouts that gave up: SR_EBUSY */
    const sr_histogram *waits; /* how long checkouts that had to wait waited (live counters) */
} sr_pool_stats;
void sr__pool_stats(sr_pool *p, sr_pool_stats *out);

#endif
