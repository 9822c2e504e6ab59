/*
 * A fake sr_driver for pure-logic unit tests (pool, balance, health): it
 * counts calls, can be told to fail or to stall, and gives every connection
 * an id. It never talks to a database and returns no rows; anything about
 * real backend behaviour is tested against the real server instead.
 *
 * Header-only so any unit test can include it without a build change: every
 * function is `static inline` (no unused-function warnings) and the state is
 * a function-local static behind fake_driver_state(), one per test program.
 * All counters are atomics, so the driver is safe to call from many threads.
 * Call fake_driver_reset() at the start of every test: with CK_FORK=no
 * (the valgrind setup) tests share one process.
 */
#ifndef SR_TEST_FAKE_DRIVER_H
#define SR_TEST_FAKE_DRIVER_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "shardroute/driver.h"

struct sr_driver_conn {
    uint64_t id;          /* 1, 2, 3, ... in connect order */
    _Atomic int users;    /* for tests that check exclusive use: 0 while idle */
    const sr_driver_connect_args *args;
};

typedef struct fake_driver_state {
    /* knobs (set by tests) */
    _Atomic int fail_connects;     /* > 0: that many next connects fail; < 0: all fail */
    _Atomic int connect_sleep_us;  /* each connect sleeps this long first */
    _Atomic int connect_gate;      /* != 0: connects block until it is cleared */
    _Atomic int fail_exec;         /* != 0: exec fails with a transient SR_ECONNECT */
    _Atomic int fail_ping;         /* != 0: ping fails with a transient SR_ECONNECT */
    /* counters (read by tests) */
    _Atomic int connect_calls;     /* every connect() call, failed or not */
    _Atomic int connects;          /* successful connects */
    _Atomic int closes;
    _Atomic int execs;
    _Atomic int pings;
    _Atomic int live;              /* connects - closes */
    _Atomic int high_water;        /* maximum of live ever seen */
    _Atomic uint64_t next_id;
    const sr_driver_connect_args *_Atomic last_args;
} fake_driver_state;

static inline fake_driver_state *fake_driver_state_get(void)
{
    static fake_driver_state st;
    return &st;
}

static inline void fake_driver_reset(void)
{
    fake_driver_state *s = fake_driver_state_get();
    atomic_store(&s->fail_connects, 0);
    atomic_store(&s->connect_sleep_us, 0);
    atomic_store(&s->connect_gate, 0);
    atomic_store(&s->fail_exec, 0);
    atomic_store(&s->fail_ping, 0);
    atomic_store(&s->connect_calls, 0);
    atomic_store(&s->connects, 0);
    atomic_store(&s->closes, 0);
    atomic_store(&s->execs, 0);
    atomic_store(&s->pings, 0);
    atomic_store(&s->live, 0);
    atomic_store(&s->high_water, 0);
    atomic_store(&s->next_id, 0);
    atomic_store(&s->last_args, NULL);
}

static inline void fake_driver_sleep_us(int us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Consumes one failure from fail_connects; returns 1 when this connect must fail. */
static inline int fake_driver_take_failure(fake_driver_state *s)
{
    int f = atomic_load(&s->fail_connects);
    for (;;) {
        if (f == 0)
            return 0;
        if (f < 0)
            return 1;
        if (atomic_compare_exchange_weak(&s->fail_connects, &f, f - 1))
            return 1;
    }
}

static inline int fake_driver_connect(const sr_driver_connect_args *args, sr_driver_conn **out,
                                      sr_driver_error *err)
{
    fake_driver_state *s = fake_driver_state_get();
    *out = NULL;
    atomic_fetch_add(&s->connect_calls, 1);
    atomic_store(&s->last_args, args);
    while (atomic_load(&s->connect_gate))
        fake_driver_sleep_us(1000);
    int us = atomic_load(&s->connect_sleep_us);
    if (us > 0)
        fake_driver_sleep_us(us);
    if (fake_driver_take_failure(s))
        return sr_driver_error_set(err, SR_ECONNECT, 1, "08006", 0, "fake: connect refused");

    sr_driver_conn *c = calloc(1, sizeof *c);
    if (!c)
        return sr_driver_error_set(err, SR_ENOMEM, 1, NULL, 0, "fake: out of memory");
    c->id = atomic_fetch_add(&s->next_id, 1) + 1;
    atomic_init(&c->users, 0);
    c->args = args;
    atomic_fetch_add(&s->connects, 1);
    int live = atomic_fetch_add(&s->live, 1) + 1;
    int hw = atomic_load(&s->high_water);
    while (live > hw && !atomic_compare_exchange_weak(&s->high_water, &hw, live))
        ;
    *out = c;
    return SR_OK;
}

static inline void fake_driver_close(sr_driver_conn *conn)
{
    if (!conn)
        return;
    fake_driver_state *s = fake_driver_state_get();
    atomic_fetch_add(&s->closes, 1);
    atomic_fetch_sub(&s->live, 1);
    free(conn);
}

static inline int fake_driver_exec(sr_driver_conn *conn, const char *sql, int nparams,
                                   const char *const *params, int64_t deadline_ns,
                                   sr_result_builder *rb, sr_driver_error *err)
{
    (void)conn, (void)sql, (void)nparams, (void)params, (void)deadline_ns, (void)rb;
    fake_driver_state *s = fake_driver_state_get();
    atomic_fetch_add(&s->execs, 1);
    if (atomic_load(&s->fail_exec))
        return sr_driver_error_set(err, SR_ECONNECT, 1, "08006", 0, "fake: connection lost");
    return SR_OK;
}

static inline int fake_driver_txn(sr_driver_conn *conn, int64_t deadline_ns, sr_driver_error *err)
{
    (void)conn, (void)deadline_ns, (void)err;
    return SR_OK;
}

static inline int fake_driver_begin(sr_driver_conn *conn, int read_only, int64_t deadline_ns,
                                    sr_driver_error *err)
{
    (void)read_only;
    return fake_driver_txn(conn, deadline_ns, err);
}

static inline int fake_driver_ping(sr_driver_conn *conn, int64_t deadline_ns, sr_driver_error *err)
{
    (void)conn, (void)deadline_ns;
    fake_driver_state *s = fake_driver_state_get();
    atomic_fetch_add(&s->pings, 1);
    if (atomic_load(&s->fail_ping))
        return sr_driver_error_set(err, SR_ECONNECT, 1, "08006", 0, "fake: ping failed");
    return SR_OK;
}

/* The vtable; optional methods (role, positions, lag) are absent. */
static inline const sr_driver *fake_driver(void)
{
    static const char *const schemes[] = {"fake", NULL};
    static const sr_driver drv = {
        .abi_version = SR_DRIVER_ABI_VERSION,
        .name = "fake",
        .schemes = schemes,
        .dialect = SR_SQL_GENERIC,
        .connect = fake_driver_connect,
        .close = fake_driver_close,
        .exec = fake_driver_exec,
        .begin = fake_driver_begin,
        .commit = fake_driver_txn,
        .rollback = fake_driver_txn,
        .ping = fake_driver_ping,
    };
    return &drv;
}

#endif
