/*
 * Per-node connection pool.
 *
 * One mutex and one condition variable per pool. A connection is in one of
 * three places: on the idle stack, checked out by a caller, or being opened
 * or closed by a thread that dropped the lock to talk to the driver. `open`
 * counts all three, so max_size bounds every connection the driver has open
 * for this node, including one being closed (the slot is released only after
 * close() returns) or one still connecting (the slot is reserved before
 * connect() starts).
 *
 * Driver calls never run under the lock: a node that takes seconds to
 * connect must not stop other threads from returning or reusing connections.
 *
 * The most recently returned connections sit in `hot`, SR_POOL_SLOTS atomic
 * slots on top of the idle stack, one per thread (threads share them round
 * robin: thread_slot()), so the statement path (check out, run, check in)
 * takes no lock: a mutex pair costs ~100 instructions per statement, a large
 * share of a local point read. With one slot, two threads displaced each
 * other's connection into the locked stack on every statement. A connection
 * goes into a slot only while nobody waits, and a returner that finds a
 * waiter after filling it takes it back and hands it over under the lock:
 * both sides use sequentially consistent operations (the waiter counts
 * itself, then looks at every slot; the returner fills its slot, then looks
 * at the count), so at least one of them sees the other and no wake-up is
 * lost.
 *
 * Each thread gets back the connection it returned last when that one is
 * idle (a thread-local hint per pool): a connection is a server process or
 * thread, and a client thread that keeps one partner is woken on, and wakes,
 * the same CPU. Two threads that swapped connections on every statement (the
 * slot hands the last one returned to whoever comes next) ran at 0.55x the
 * throughput of two direct connections on one MariaDB replica, unpinned, on
 * two CPUs (bench_mixed --only 2/0).
 *
 * Every event that could let a waiter proceed (a connection returned, a slot
 * released) signals the condition variable once (a return skips the signal
 * when no caller waits, the statement path's case); a woken waiter re-checks
 * the idle stack and the slot count before looking at its deadline, so a
 * wake-up that races with a timeout is never lost.
 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * The connection this thread last returned to a pool, per pool, in a few
 * direct-mapped slots: only a hint, compared by address, never dereferenced
 * (a pool freed and another allocated at its address costs nothing but a
 * worse guess).
 */
typedef struct pool_hint {
    const struct sr_pool *pool;
    sr_driver_conn *conn;
} pool_hint;
enum { SR_POOL_HINTS = 8, SR_POOL_SLOTS = 4 };
static _Thread_local pool_hint hints[SR_POOL_HINTS];

static inline pool_hint *hint_for(const struct sr_pool *p)
{
    return &hints[(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ULL) >> 61];
}

struct sr_pool {
    const sr_driver *driver;
    /* Borrowed from sr__pool_new's caller; must outlive the pool. */
    const sr_driver_connect_args *args;
    int max_size;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC, the clock of sr_clock_ns() */

    sr_driver_conn **idle; /* a stack of max_size slots: LIFO keeps hot connections hot */
    int nidle;
    int open;    /* idle + in use + being opened or closed */
    /* Checked out, being opened for a caller, or in `hot` (which is outside
     * the lock, so it keeps the count it had when checked out). */
    int in_use;
    _Atomic int waiting; /* callers blocked in checkout; changed under the lock */
    /* Checkouts that had to wait (how long) and those that gave up (SR_EBUSY), for the
     * metrics; one that found a connection at once costs nothing here. */
    sr_histogram waits;
    _Atomic uint64_t exhausted;
    /* The tops of the idle stack, taken without the lock; each on a cache line of its own. */
    struct {
        _Alignas(64) _Atomic(sr_driver_conn *) conn;
    } hot[SR_POOL_SLOTS];
};

/* This thread's slot: threads take them in turn, so up to SR_POOL_SLOTS threads each have
 * one of their own (more, or threads that come and go, share them as all once shared one). */
static inline int thread_slot(void)
{
    static _Atomic unsigned next;
    static _Thread_local int slot = -1;
    if (slot < 0)
        slot = (int)(atomic_fetch_add_explicit(&next, 1, memory_order_relaxed) % SR_POOL_SLOTS);
    return slot;
}

/* Takes a connection from any slot (this thread's first), or NULL. */
static sr_driver_conn *take_any_slot(sr_pool *p)
{
    int mine = thread_slot();
    for (int k = 0; k < SR_POOL_SLOTS; k++) {
        sr_driver_conn *c = atomic_exchange(&p->hot[(mine + k) % SR_POOL_SLOTS].conn, NULL);
        if (c)
            return c;
    }
    return NULL;
}

/* Connections sitting in the slots now. */
static int slots_filled(sr_pool *p)
{
    int n = 0;
    for (int k = 0; k < SR_POOL_SLOTS; k++)
        n += atomic_load(&p->hot[k].conn) != NULL;
    return n;
}

int sr__pool_new(const sr_driver *driver, const sr_driver_connect_args *args, int max_size,
                 sr_pool **out)
{
    if (!out)
        return SR_EINVAL;
    *out = NULL;
    if (!driver || !driver->connect || !driver->close || !args || max_size < 1)
        return SR_EINVAL;

    /* aligned_alloc: the slots ask for cache-line alignment, which calloc does not give. */
    sr_pool *p = aligned_alloc(_Alignof(sr_pool), sizeof *p);
    if (!p)
        return SR_ENOMEM;
    memset(p, 0, sizeof *p);
    p->idle = calloc((size_t)max_size, sizeof *p->idle);
    if (!p->idle) {
        free(p);
        return SR_ENOMEM;
    }
    p->driver = driver;
    p->args = args;
    p->max_size = max_size;
    atomic_init(&p->waiting, 0);
    for (int k = 0; k < SR_POOL_SLOTS; k++)
        atomic_init(&p->hot[k].conn, NULL);

    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        goto fail_alloc;
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 || pthread_cond_init(&p->cv, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        goto fail_alloc;
    }
    pthread_condattr_destroy(&ca);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        pthread_cond_destroy(&p->cv);
        goto fail_alloc;
    }
    *out = p;
    return SR_OK;

fail_alloc:
    free(p->idle);
    free(p);
    return SR_ENOMEM;
}

void sr__pool_free(sr_pool *p)
{
    if (!p)
        return;
    /* The caller guarantees no other thread uses the pool any more. */
    for (int k = 0; k < SR_POOL_SLOTS; k++) {
        sr_driver_conn *top = atomic_load(&p->hot[k].conn);
        if (top)
            p->driver->close(top);
    }
    for (int i = 0; i < p->nidle; i++)
        p->driver->close(p->idle[i]);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->idle);
    free(p);
}

static struct timespec timespec_from_ns(int64_t ns)
{
    struct timespec ts;
    if (ns < 0)
        ns = 0;
    ts.tv_sec = (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

/*
 * Called with the lock held; drops it. The connect is bounded by
 * connect_timeout_ms and, when connect_deadline_ns is set, by what is left
 * of the statement's own deadline: a caller never waits on a connect past it.
 */
static int open_new(sr_pool *p, int64_t connect_deadline_ns, sr_driver_conn **out,
                    sr_driver_error *err)
{
    p->open++;
    p->in_use++;
    pthread_mutex_unlock(&p->mu);

    const sr_driver_connect_args *args = p->args;
    sr_driver_connect_args bounded;
    sr_driver_conn *conn = NULL;
    int rc = SR_OK;
    if (connect_deadline_ns > 0) {
        int64_t left_ms = (connect_deadline_ns - sr_clock_ns()) / 1000000;
        if (left_ms <= 0) {
            rc = sr_driver_error_set(err, SR_ETIMEOUT, 0, NULL, 0,
                                     "the statement deadline passed before a connection could "
                                     "be opened");
        } else if (left_ms < args->connect_timeout_ms) {
            bounded = *args;
            bounded.connect_timeout_ms = (int)left_ms;
            args = &bounded;
        }
    }
    if (rc == SR_OK)
        rc = p->driver->connect(args, &conn, err);
    if (rc == SR_OK && conn) {
        *out = conn;
        return SR_OK;
    }
    if (rc == SR_OK) /* a driver bug: success without a connection */
        rc = sr_driver_error_set(err, SR_EDRIVER, 1, NULL, 0, "driver %s: connect returned no connection",
                                 p->driver->name ? p->driver->name : "?");
    else if (conn)
        p->driver->close(conn); /* a driver that failed but still handed something back */

    pthread_mutex_lock(&p->mu);
    p->open--;
    p->in_use--;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* The checkout when the slot was empty or held another thread's connection: this thread's
 * last connection if idle, else the slot, the stack, a new connection, or a wait. */
static int checkout_locked_path(sr_pool *p, sr_driver_conn *want, int64_t deadline_ns,
                                int64_t connect_deadline_ns, sr_driver_conn **out,
                                sr_driver_error *err, int64_t *start);

static __attribute__((noinline)) int checkout_slow(sr_pool *p, sr_driver_conn *want,
                                                   int64_t deadline_ns,
                                                   int64_t connect_deadline_ns,
                                                   sr_driver_conn **out, sr_driver_error *err)
{
    int64_t start = 0; /* set only when the caller had to wait */
    int rc = checkout_locked_path(p, want, deadline_ns, connect_deadline_ns, out, err, &start);
    if (start) {
        sr__hist_observe(&p->waits, sr_clock_ns() - start);
        if (rc == SR_EBUSY)
            atomic_fetch_add_explicit(&p->exhausted, 1, memory_order_relaxed);
    }
    return rc;
}

static int checkout_locked_path(sr_pool *p, sr_driver_conn *want, int64_t deadline_ns,
                                int64_t connect_deadline_ns, sr_driver_conn **out,
                                sr_driver_error *err, int64_t *startp)
{
    sr_driver_error local;
    if (!err)
        err = &local;
    if (!p || !out)
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "pool checkout: NULL argument");
    *out = NULL;

    sr_driver_conn *c;
    int64_t start = 0; /* read only when the caller has to wait */

    pthread_mutex_lock(&p->mu);
    for (int i = want ? p->nidle - 1 : -1; i >= 0; i--) {
        if (p->idle[i] == want) {
            p->idle[i] = p->idle[--p->nidle];
            p->in_use++;
            pthread_mutex_unlock(&p->mu);
            *out = want;
            return SR_OK;
        }
    }
    for (;;) {
        if ((c = take_any_slot(p)) != NULL) {
            *out = c;
            pthread_mutex_unlock(&p->mu);
            return SR_OK;
        }
        if (p->nidle > 0) {
            *out = p->idle[--p->nidle];
            p->in_use++;
            pthread_mutex_unlock(&p->mu);
            return SR_OK;
        }
        /*
         * A free slot is always used, even past the wait deadline: that bounds
         * waiting for another caller's connection; the connect has its own
         * bounds (connect_timeout_ms and the statement's deadline).
         */
        if (p->open < p->max_size)
            return open_new(p, connect_deadline_ns, out, err);
        int64_t now = sr_clock_ns();
        if (!start)
            *startp = start = now;
        if (now >= deadline_ns)
            break;
        /* Converted here, not on entry: the common checkout never waits. */
        struct timespec until = timespec_from_ns(deadline_ns);
        atomic_fetch_add(&p->waiting, 1);
        /* Counted first, then the slot: see the top of the file. */
        if ((c = take_any_slot(p)) != NULL) {
            atomic_fetch_sub(&p->waiting, 1);
            *out = c;
            pthread_mutex_unlock(&p->mu);
            return SR_OK;
        }
        int rc = pthread_cond_timedwait(&p->cv, &p->mu, &until);
        atomic_fetch_sub(&p->waiting, 1);
        if (rc != 0 && rc != ETIMEDOUT && rc != EINTR)
            break;
    }
    int in_use = p->in_use - slots_filled(p);
    pthread_mutex_unlock(&p->mu);

    int64_t waited_ms = start ? (sr_clock_ns() - start) / 1000000 : 0;
    return sr_driver_error_set(err, SR_EBUSY, 0, NULL, 0,
                               "pool exhausted: %d connections in use, waited %lld ms", in_use,
                               (long long)waited_ms);
}

int sr__pool_checkout(sr_pool *p, int64_t deadline_ns, int64_t connect_deadline_ns,
                      sr_driver_conn **out, sr_driver_error *err)
{
    /* The statement path's case, kept apart from the slow path's 500-byte
     * error buffer so that it needs no stack frame: the slot holds this
     * thread's last connection (one thread), or nothing was returned yet. */
    if (!p || !out)
        return checkout_slow(p, NULL, deadline_ns, connect_deadline_ns, out, err);
    pool_hint *h = hint_for(p);
    sr_driver_conn *want = h->pool == p ? h->conn : NULL;
    _Atomic(sr_driver_conn *) *slot = &p->hot[thread_slot()].conn;
    sr_driver_conn *c = want;
    if (want ? atomic_compare_exchange_strong(slot, &c, NULL)
             : (c = atomic_exchange(slot, NULL)) != NULL) {
        *out = c; /* still counted in in_use */
        return SR_OK;
    }
    return checkout_slow(p, want, deadline_ns, connect_deadline_ns, out, err);
}

/*
 * After a return through the slot: `below` was in the slot before (or NULL),
 * and a waiter may have counted itself meanwhile. Moves what is still there
 * to the stack, where the waiter looks, and wakes it.
 */
static __attribute__((noinline)) void hand_over(sr_pool *p, _Atomic(sr_driver_conn *) *slot,
                                                sr_driver_conn *below)
{
    pthread_mutex_lock(&p->mu);
    if (below) {
        p->in_use--;
        p->idle[p->nidle++] = below;
    }
    if (atomic_load(&p->waiting) > 0 && (below = atomic_exchange(slot, NULL)) != NULL) {
        p->in_use--;
        p->idle[p->nidle++] = below;
    }
    if (atomic_load(&p->waiting) > 0)
        pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static __attribute__((noinline)) void checkin_locked(sr_pool *p, sr_driver_conn *conn, int broken)
{
    if (broken) {
        /* Close before releasing the slot so the node never sees more than max_size. */
        p->driver->close(conn);
        pthread_mutex_lock(&p->mu);
        p->open--;
        p->in_use--;
    } else {
        pthread_mutex_lock(&p->mu);
        p->in_use--;
        /* Cannot overflow: idle + in use <= open <= max_size. */
        p->idle[p->nidle++] = conn;
    }
    /* `waiting` only changes under the lock and a waiter counts itself before it
     * sleeps, so none can be missed. */
    if (atomic_load(&p->waiting) > 0)
        pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void sr__pool_checkin(sr_pool *p, sr_driver_conn *conn, int broken)
{
    if (!p || !conn)
        return;
    pool_hint *h = hint_for(p);
    h->pool = p;
    h->conn = broken ? NULL : conn;
    if (broken || atomic_load(&p->waiting) > 0) {
        checkin_locked(p, conn, broken);
        return;
    }
    /* The fast lane: into the slot; what was there goes under it. Filled,
     * then the count looked at again: see the top of the file. */
    _Atomic(sr_driver_conn *) *slot = &p->hot[thread_slot()].conn;
    sr_driver_conn *below = atomic_exchange(slot, conn);
    if (below || atomic_load(&p->waiting) > 0)
        hand_over(p, slot, below);
}

void sr__pool_drain_idle(sr_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    for (int k = 0; k < SR_POOL_SLOTS; k++) {
        sr_driver_conn *top = atomic_exchange(&p->hot[k].conn, NULL);
        if (!top)
            continue;
        p->in_use--;
        pthread_mutex_unlock(&p->mu);
        p->driver->close(top);
        pthread_mutex_lock(&p->mu);
        p->open--;
        pthread_cond_signal(&p->cv);
    }
    /* Bounded by the idle count on entry: connections returned meanwhile stay. */
    int n = p->nidle;
    while (n-- > 0 && p->nidle > 0) {
        sr_driver_conn *conn = p->idle[--p->nidle];
        pthread_mutex_unlock(&p->mu);
        p->driver->close(conn);
        pthread_mutex_lock(&p->mu);
        p->open--;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
}

void sr__pool_stats(sr_pool *p, sr_pool_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    out->open = p->open;
    out->idle = p->nidle + slots_filled(p);
    out->waiting = atomic_load(&p->waiting);
    pthread_mutex_unlock(&p->mu);
    out->max_size = p->max_size;
    out->exhausted = atomic_load_explicit(&p->exhausted, memory_order_relaxed);
    out->waits = &p->waits;
}

int sr__pool_max_size(const sr_pool *p) { return p ? p->max_size : 0; }
