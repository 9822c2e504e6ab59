/*
 * One node as the statement path and the prober see it (node.c): admission
 * through its health state, a pooled connection checked out, a statement
 * run on it and the outcome reported, and what the node is known to have
 * replayed and how far it lags. Everything above picks nodes; this file is
 * the only one that touches a node's pool and health for a statement.
 */
#ifndef SR_NODE_H
#define SR_NODE_H

#include "reason.h"
#include "result.h"
#include "stmt.h"
#include "topology.h"

/*
 * Whether `n` may take a statement now. An up node may; an ejected node whose
 * back-off has passed may for exactly one caller, who becomes its probe
 * (*probe = true) and must report the outcome with sr__node_report().
 */
bool sr__node_admit(sr_node *n, bool *probe);

/* Gives back a probe that sr__node_admit() granted but the caller did not use. */
void sr__node_unclaim_probe(sr_node *n);

/*
 * Reports one outcome to the node's health: `status` and `err` as the pool or
 * driver returned them. Connection-level failures (err->transient) count
 * towards ejection; SQL errors prove the node alive. Ejection drains the
 * node's idle connections; every transition is logged with its reason.
 */
void sr__node_report(sr_topo *r, sr_node *n, int status, const sr_driver_error *err, bool probe);

/* Appends to buf why `n` cannot take a statement now ("ejected, next probe in 300 ms: ..."). */
void sr__node_describe(sr_node *n, int64_t now_ns, char *buf, size_t len);

/*
 * Takes a pooled connection within pool.checkout_timeout_ms (and never past
 * `deadline`, set statement_timeout_ms after the statement began). A failure
 * is counted and reported to the node's health; *e says why.
 */
int sr__node_checkout(sr_topo *r, sr_node *n, bool probe, int64_t deadline,
                      sr_driver_conn **conn, sr_driver_error *e);

/*
 * Runs a statement on a checked-out connection: balance statistics (the
 * latency is measured when `timed`), counters, the result (*out, or freed
 * when out is NULL). Does not report to health: sr__node_release() does.
 */
int sr__node_exec(sr_topo *r, sr_node *n, sr_driver_conn *conn, const sr_stmt *st,
                  int64_t deadline, bool timed, sr_result **out, sr_driver_error *e);

/*
 * sr__node_exec() through the driver's exec_at (driver ABI 5; callers check
 * sr__node_has_exec_at()), the statement and its position in one exchange:
 *  - `need` non-NULL (a read on a replica): runs only if the node has
 *    applied `need`; when it has not, *stale = true, *out stays NULL, the
 *    node's `statements` counter does not move, and SR_OK is returned. The
 *    position the check saw raises the node's cached position, and the
 *    outcome, with the age of the write (now - written_ns; 0: unknown),
 *    teaches the node's replay-delay estimate.
 *  - `need` NULL (an autocommit write on the primary): `pos` receives the
 *    write position after the commit, "" when the driver could not tell.
 */
int sr__node_exec_at(sr_topo *r, sr_node *n, sr_driver_conn *conn, const sr_stmt *st,
                     const char *need, int64_t written_ns,
                     int64_t deadline, bool timed, sr_result **out, char *pos, size_t poslen,
                     bool *stale, sr_driver_error *e);

/*
 * A statement in steps (driver ABI 6; callers check sr_driver_has_steps):
 * send() with the statement's parameters as typed values, next_row() until
 * it returns 0 with *want 0, sr__node_wait() in between (or the caller's own
 * poll() over sr__node_socket() of many connections). cancel() makes the
 * connection idle again after an early stop: false when it could not (the
 * caller then checks the connection in as broken). The caller counts the
 * statement's end with sr__node_step_end() (once, unless send failed:
 * then it was counted already) and reports it with sr__node_release().
 */
int sr__node_send(sr_node *n, sr_driver_conn *conn, const sr_stmt *st, int64_t deadline,
                  int *want, sr_driver_error *e);
int sr__node_next_row(sr_node *n, sr_driver_conn *conn, sr_result_builder *rb, int64_t deadline,
                      int *want, sr_driver_error *e);
/* Waits for `want` on the connection's socket until `deadline` (SR_ETIMEOUT, transient). */
int sr__node_wait(sr_node *n, sr_driver_conn *conn, int want, int64_t deadline,
                  sr_driver_error *e);
int sr__node_socket(const sr_node *n, sr_driver_conn *conn);
bool sr__node_cancel(sr_node *n, sr_driver_conn *conn, int64_t deadline);
void sr__node_step_end(sr_node *n, bool write, int rc);

/* Whether the node's driver runs a statement and its position in one exchange. */
static inline bool sr__node_has_exec_at(const sr_node *n)
{
    return n->b->driver->abi_version >= 5 && n->b->driver->exec_at;
}

/* Returns the connection (dropped when e->transient says it is lost, also after a statement
 * that succeeded) and reports the outcome. */
void sr__node_release(sr_topo *r, sr_node *n, sr_driver_conn *conn, int rc,
                      const sr_driver_error *e, bool probe);

/* Returns a connection whose outcome was already reported (a transaction's, at its end). */
void sr__node_checkin(sr_node *n, sr_driver_conn *conn, bool broken);

/*
 * Admits the shard's primary and checks out a connection to it. For a write
 * a primary that reports itself read-only is refused (SR_REASON_NOT_WRITABLE);
 * an ejected primary is SR_REASON_PRIMARY_DOWN for a write and
 * SR_REASON_NO_NODE for a read (the message then describes every node).
 */
int sr__node_acquire_primary(sr_topo *r, int shard, bool write, int64_t deadline,
                             sr_driver_conn **conn, bool *probe, sr_reason *why);

/*
 * Whether `n` is now the other role than configured, asked on a connection of its own (not
 * pooled, closed at once) that the driver opens only for that role (drivers check a new
 * connection's role): the prober's question when the node's pooled check failed, because a
 * promoted replica refuses the connections its pool makes as a replica. Bounded by the
 * connect timeout and `deadline`.
 */
bool sr__node_is_other_role(sr_node *n, int64_t deadline);

/* Rolls back whatever `conn` has open and returns it (dropped when the rollback failed). */
void sr__node_abandon(sr_topo *r, sr_node *n, sr_driver_conn *conn);

/* ---- replica caches: replayed position and lag ---- */

/* Raises the node's known replayed position to `pos` (positions only move forward). */
void sr__node_store_position(sr_node *n, const char *pos);
/* Stores a lag measurement (ms, -1 replication broken) and its time. */
void sr__node_store_lag(sr_node *n, int64_t lag_ms);

/* Whether the replica's cached position already covers `want` (no round trip). */
bool sr__node_cached_covers(sr_node *n, const char *want);

/*
 * Whether the replica `n` has applied `want`, asked on `conn` (and cached).
 * Callers try sr__node_cached_covers() first, which also answers for a
 * driver without positions; this one always asks. A failed check is reported in
 * *e and returns its status. The outcome teaches the replay-delay estimate
 * as sr__node_exec_at() does.
 */
int sr__node_has_applied(sr_node *n, sr_driver_conn *conn, const char *want, int64_t written_ns,
                         int64_t deadline, bool *applied, sr_driver_error *e);

/*
 * Whether a write made at `written_ns` (sr_clock_ns(); 0: unknown, never
 * "likely behind") is younger than the replica usually takes to replay one:
 * then asking it would most likely cost a round trip for nothing, and the
 * read goes to the primary. Each such skip decays the estimate a little, so
 * a replica that was once slow is asked again after a while.
 */
bool sr__node_likely_behind(sr_node *n, int64_t written_ns, int64_t now);

/* Waits on `conn` until the replica has applied `want` or `until` passes (driver wait_replayed). */
int sr__node_wait_applied(sr_node *n, sr_driver_conn *conn, const char *want, int64_t until,
                          bool *applied, sr_driver_error *e);

/*
 * Whether the replica `n` is within `max_lag_ms` (0: only a replica whose
 * replication is broken is not). The lag is measured lazily: the first
 * reader after replica.lag_refresh_ms measures it on a pooled connection.
 * `now` is sr_clock_ns() read by the caller (once for all the shard's
 * replicas); it is used only when max_lag_ms > 0.
 */
bool sr__node_lag_ok(sr_topo *r, sr_node *n, int max_lag_ms, int64_t now);

#endif
