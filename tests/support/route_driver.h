/*
 * A fake driver with per-NODE behaviour for the `route` unit suite: routing
 * decisions (which node a statement ran on, retries, ejection, lag,
 * positions, deadlines) tested through the public API only, no server.
 *
 * It is registered through the public sr_driver_register() under the scheme
 * "fake". A node is named by the database part of its URI:
 * "fake://127.0.0.1/s0r1" is node "s0r1" (nothing is ever sent to the host).
 * Declare a node with route_node_add() before a router uses it; its
 * behaviour (role, failures, position, lag, stalls) is set through the
 * returned handle and its counters are read from it. Two routers that name
 * the same node share it, like two processes talking to the same server.
 *
 * Every read statement returns one row with one column "node" holding the
 * node's name, so a test also sees where a read ran from the result.
 * A statement that does not start with SELECT is a write: on success it
 * advances the node's position by one and reports one affected row.
 *
 * Positions are decimal integers ("0", "17"); a replica "has replayed" a
 * position when its own is at least that; merge is the maximum.
 *
 * Threads: every knob and counter is an atomic and the trace has a lock, so
 * the driver may be called from many threads. Call route_driver_reset() at
 * the start of each test (with CK_FORK=no the tests share one process).
 */
#ifndef SR_TEST_ROUTE_DRIVER_H
#define SR_TEST_ROUTE_DRIVER_H

#include <stdatomic.h>
#include <stdint.h>

#include <shardroute/driver.h>

enum { ROUTE_MAX_NODES = 32 };

/* How a failing call fails. */
typedef enum route_fail_kind {
    ROUTE_FAIL_TRANSIENT = 0, /* SR_ECONNECT, the connection is lost (counts against health) */
    ROUTE_FAIL_SQL = 1        /* SR_EQUERY with SQLSTATE 42P01, the connection is fine */
} route_fail_kind;

typedef struct route_node {
    char name[32];

    /* ---- knobs (set by the test; atomics, read on every call) ---- */
    _Atomic int role;           /* what server_role() reports: SR_PRIMARY / SR_REPLICA */
    _Atomic int fail_connects;  /* > 0: that many next connects fail; < 0: every one */
    _Atomic int connect_stall_ms; /* connect hangs this long (< 0: for ever), bounded by
                                     connect_timeout_ms, then fails with SR_ETIMEOUT */
    _Atomic int fail_execs;     /* > 0: that many next execs fail; < 0: every one */
    _Atomic int fail_kind;      /* route_fail_kind of failing execs */
    _Atomic int stall_ms;       /* exec hangs this long (< 0: for ever), never past its
                                   deadline: SR_ETIMEOUT (transient) when it gets there */
    _Atomic int fail_write_position; /* != 0: write_position() fails (transient = 0) */
    _Atomic int lose_after_write; /* > 0: that many next exec_at writes succeed but lose the
                                     connection after it (SR_OK, transient = 1, pos "") */
    _Atomic int down;           /* != 0: the server is gone: connects are refused, pings and
                                   statements on open connections fail (transient) */
    _Atomic int check_role;     /* != 0: a connect made for the other role than `role` is
                                   refused, as the real drivers refuse one */
    _Atomic int64_t position;   /* primary: written; replica: replayed */
    _Atomic int64_t lag_ms;     /* what replica_lag_ms() reports; -1: replication broken */
    _Atomic int rows;           /* rows a read returns through steps ("fakestep"), default 1 */
    _Atomic int fail_after_rows; /* > 0: a stepped read fails (transient) after that many rows */
    _Atomic int catch_up_ms;    /* wait_replayed(): the replica reaches the wanted position
                                   this long after the call (< 0: never); the wait never
                                   outlives its deadline */

    /* ---- counters (read by the test) ---- */
    _Atomic int connect_calls;  /* every connect() call */
    _Atomic int connects;       /* successful connects */
    _Atomic int closes;
    _Atomic int execs;          /* every exec() call, failed or not */
    _Atomic int exec_ok;        /* execs that succeeded */
    _Atomic int begins;
    _Atomic int read_only_begins;
    _Atomic int commits;
    _Atomic int rollbacks;
    _Atomic int pings;
    _Atomic int position_reads; /* replay_position() calls */
    _Atomic int write_position_reads;
    _Atomic int lag_reads;      /* replica_lag_ms() calls */
    _Atomic int waits;          /* wait_replayed() calls */
    _Atomic int exec_ats;       /* exec_at() calls ("fakeat" scheme) */
    _Atomic int sends;          /* send() calls ("fakestep" scheme) */
    _Atomic int cancels;        /* cancel() calls ("fakestep" scheme) */
    _Atomic int stale_checks;   /* exec_at() calls whose check found the node behind */
    _Atomic int64_t last_exec_deadline_ns; /* the deadline the last exec() was given */
    _Atomic int64_t last_wait_deadline_ns; /* the deadline the last wait_replayed() was given */
} route_node;

/*
 * The driver (registered on first use; the same struct for the process).
 * Scheme "fake" stands for a driver without exec_at: the core checks a
 * replica's position in a round trip of its own. Scheme "fakeat" is the same
 * driver with exec_at (driver ABI 5): the check or the write position comes
 * in the statement's own call; a stale check runs nothing, adds '?' to the
 * trace and counts in stale_checks. Scheme "fake4" is "fake" declared as
 * driver ABI 4, with a function that aborts in the exec_at slot (which an
 * ABI 4 struct does not have): the core must not read it. Scheme "fakestep"
 * is "fake" with the steps of driver ABI 6 and no socket (rows handed out
 * one per next_row, `rows` of them for a read; `fail_after_rows`). All reach
 * the same nodes.
 */
const sr_driver *route_driver(void);
const sr_driver *route_driver_at(void);
const sr_driver *route_driver_abi4(void);
const sr_driver *route_driver_steps(void);

/* Registers the driver if needed and forgets every node and the trace. */
void route_driver_reset(void);

/* Declares node `name` (at most 31 bytes): role as given, position 0, lag 0,
 * catch_up_ms -1, no failure. Aborts the test on a duplicate or overflow. */
route_node *route_node_add(const char *name, sr_role role);

/* The node of that name, or NULL. */
route_node *route_node_find(const char *name);

/*
 * The names of the nodes that ran statements since the last call, in order,
 * separated by spaces, a failed exec followed by '!', a timed-out one by
 * '~' and one whose position check found the node behind by '?' ("s0r1! s0p"). Writes the text into buf (truncated to fit) and clears
 * it.
 */
const char *route_trace_take(char *buf, size_t len);

#endif
