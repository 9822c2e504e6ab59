/*
 * A node: admission through its health state machine (including the
 * half-open probe), a pooled connection checked out, a statement run and its
 * outcome reported, the "why was this node skipped" text that SR_EUNAVAILABLE
 * messages carry, and the replica caches (replayed position, lag) that let a
 * read skip asking a replica what is already known. The statement path and
 * the prober both come here; nothing here knows about sessions.
 */
#include "node.h"

#include <stdlib.h>
#include <string.h>

bool sr__node_admit(sr_node *n, bool *probe)
{
    *probe = false;
    if (sr__health_is_up(&n->b->health))
        return true; /* the common case, without reading the clock */
    if (sr__health_try_probe(&n->b->health, sr_clock_ns())) {
        *probe = true;
        return true;
    }
    return false;
}

void sr__node_unclaim_probe(sr_node *n)
{
    sr__health_abandon_probe(&n->b->health);
}

void sr__node_report(sr_topo *r, sr_node *n, int status, const sr_driver_error *err, bool probe)
{
    bool failed = status != SR_OK && err && err->transient;
    if (!failed && !probe) {
        /* The statement path's case (success, or an SQL error: the node answered):
         * at most a reset of the failure count, no event, no clock read. */
        sr__health_note_success(&n->b->health);
        return;
    }
    if (status == SR_EBUSY && probe) {
        /* A full pool says nothing about the node: let the next caller probe. */
        sr__health_abandon_probe(&n->b->health);
        return;
    }
    if (probe)
        sr__count(&n->b->probes[!failed]);
    if (failed) {
        pthread_mutex_lock(&n->b->last_error_lock);
        sr__fmt(n->b->last_error, sizeof n->b->last_error, "%s: %s", sr_strerror(status), err->message);
        pthread_mutex_unlock(&n->b->last_error_lock);
    }
    int64_t now = sr_clock_ns();
    sr_health_event ev = sr__health_report(&n->b->health, &r->health_policy, failed, probe, now);
    const char *shard = r->shards[n->shard].name;
    switch (ev) {
    case SR_HEALTH_EJECTED_NOW:
        /* Idle connections to a node that just failed are likely dead too. */
        sr__pool_drain_idle(n->b->pool);
        sr__log(r, SR_LOG_WARN,
                "node ejected: shard '%s' %s %s after %d consecutive failures (%s); probe in %d ms",
                shard, sr__role_name(n->role), n->b->uri->redacted, r->health_policy.fail_threshold,
                err ? err->message : "?", r->health_policy.retry_ms);
        sr__event_health(r, n, "ejected", err ? err->message : "");
        break;
    case SR_HEALTH_READMITTED:
        sr__log(r, SR_LOG_INFO, "node re-admitted: shard '%s' %s %s answered its probe", shard,
                sr__role_name(n->role), n->b->uri->redacted);
        sr__event_health(r, n, "readmitted", "");
        break;
    case SR_HEALTH_PROBE_FAILED:
        sr__pool_drain_idle(n->b->pool);
        sr__log(r, SR_LOG_WARN, "node still down: shard '%s' %s %s failed its probe (%s); next in %d ms",
                shard, sr__role_name(n->role), n->b->uri->redacted, err ? err->message : "?",
                atomic_load(&n->b->health.backoff_ms));
        sr__event_health(r, n, "probe_failed", err ? err->message : "");
        break;
    case SR_HEALTH_NO_CHANGE:
        break;
    }
}

void sr__node_describe(sr_node *n, int64_t now_ns, char *buf, size_t len)
{
    size_t used = strlen(buf);
    if (used >= len - 1)
        return;
    char last[256];
    pthread_mutex_lock(&n->b->last_error_lock);
    memcpy(last, n->b->last_error, sizeof last);
    pthread_mutex_unlock(&n->b->last_error_lock);
    if (sr__health_is_up(&n->b->health))
        sr__fmt(buf + used, len - used, "%s%s %s: up", used ? "; " : "", sr__role_name(n->role),
                n->b->uri->redacted);
    else
        sr__fmt(buf + used, len - used, "%s%s %s: ejected, next probe in %lld ms (last error: %s)",
                used ? "; " : "", sr__role_name(n->role), n->b->uri->redacted,
                (long long)sr__health_retry_in_ms(&n->b->health, now_ns), last[0] ? last : "none");
}

/* ---- one statement on one node ---- */

int sr__node_checkout(sr_topo *r, sr_node *n, bool probe, int64_t deadline,
                      sr_driver_conn **conn, sr_driver_error *e)
{
    /* The deadline was set statement_timeout_ms from "now" a moment ago: derive the
     * checkout bound from it rather than reading the clock again. */
    int64_t d = deadline - (int64_t)(r->opts.statement_timeout_ms - r->opts.pool_checkout_timeout_ms) *
                               1000000;
    int rc = sr__pool_checkout(n->b->pool, d < deadline ? d : deadline, deadline, conn, e);
    if (rc != SR_OK) {
        /*
         * Could not connect: counts against the node. A timeout counts when
         * the driver says the connect itself timed out (transient), not when
         * the statement's deadline had passed before any connect was tried.
         */
        if (rc == SR_ECONNECT)
            e->transient = 1;
        atomic_fetch_add(&n->b->errors, 1);
        sr__node_report(r, n, rc, e, probe);
    }
    return rc;
}

/* How a statement is sent: plain exec, or exec_at with its position (see sr__node_exec_at). */
typedef struct exec_at_args {
    const char *need;
    char *pos;
    size_t poslen;
    int stale;
} exec_at_args;

static int send_values(sr_node *n, sr_driver_conn *conn, const sr_stmt *st, int64_t deadline,
                       int *want, sr_driver_error *e);

/*
 * A typed statement run to its end through the driver's steps (ABI 6) on
 * one connection, waiting on its socket within `deadline`.
 */
static int run_steps(sr_node *n, sr_driver_conn *conn, const sr_stmt *st, int64_t deadline,
                     sr_result_builder *rb, sr_driver_error *e)
{
    if (!sr_driver_has_steps(n->b->driver))
        return sr_driver_error_set(e, SR_EDRIVER, 0, NULL, 0,
                                   "the %s driver takes no typed parameters (driver ABI %d; "
                                   "typed parameters need ABI 6 steps)",
                                   n->b->driver->name, n->b->driver->abi_version);
    int want = 0;
    int rc = send_values(n, conn, st, deadline, &want, e);
    while (rc == SR_OK) {
        if (want) {
            rc = sr__node_wait(n, conn, want, deadline, e);
            if (rc != SR_OK)
                break;
        }
        rc = n->b->driver->next_row(conn, rb, deadline, &want, e);
        if (rc > 0)
            rc = SR_OK;
        else if (rc == 0 && !want)
            return SR_OK;
    }
    return rc;
}

/* The driver's send() with the statement's parameters as typed values. */
static int send_values(sr_node *n, sr_driver_conn *conn, const sr_stmt *st, int64_t deadline,
                       int *want, sr_driver_error *e)
{
    sr_value few[16];
    sr_value *buf = few;
    if (st->nparams > 16 && !st->values) {
        buf = malloc((size_t)st->nparams * sizeof *buf);
        if (!buf)
            return sr_driver_error_set(e, SR_ENOMEM, 0, NULL, 0, "out of memory");
    }
    *want = 0;
    int rc = n->b->driver->send(conn, st->sql, st->nparams, sr__stmt_values(st, buf), deadline, want,
                             e);
    if (buf != few)
        free(buf);
    return rc;
}

int sr__node_wait(sr_node *n, sr_driver_conn *conn, int want, int64_t deadline,
                  sr_driver_error *e)
{
    int fd = n->b->driver->socket(conn);
    if (fd < 0)
        return SR_OK; /* nothing to wait on: the driver does its work in its calls */
    int revents = 0;
    int w = sr_wait_fd(fd, want, deadline, &revents);
    if (w > 0)
        return SR_OK;
    if (w == 0)
        return sr_driver_error_set(e, SR_ETIMEOUT, 1, NULL, 0,
                                   "no answer within the statement deadline");
    return sr_driver_error_set(e, SR_EDRIVER, 1, NULL, 0, "waiting on the connection failed");
}

static int run(sr_topo *r, sr_node *n, sr_driver_conn *conn, const sr_stmt *st,
               int64_t deadline, bool timed, sr_result **out, exec_at_args *at,
               sr_driver_error *e)
{
    sr_result_builder rb;
    if (sr__result_builder_init(&rb, n->shard) != SR_OK)
        return sr_driver_error_set(e, SR_ENOMEM, 0, NULL, 0, "out of memory");
    sr__balance_begin(&n->b->bal);
    int rc;
    if (sr__stmt_typed(st))
        rc = run_steps(n, conn, st, deadline, &rb, e); /* exec_at callers checked first */
    else if (at)
        rc = n->b->driver->exec_at(conn, st->sql, st->nparams, st->text, at->need, deadline, &rb,
                                at->pos, at->poslen, &at->stale, e);
    else
        rc = n->b->driver->exec(conn, st->sql, st->nparams, st->text, deadline, &rb, e);
    /*
     * p2c_ewma's latency is sampled by the caller (a clock read costs ~20 ns,
     * a measurable share of a local point read, and an average that decays
     * over seconds loses nothing to sampling). The start is derived from the
     * deadline, set statement_timeout_ms after the statement began, so the
     * latency includes the pool checkout: a node whose pool is busy is slow.
     */
    if (timed) {
        int64_t t0 = deadline - (int64_t)r->opts.statement_timeout_ms * 1000000;
        int64_t t1 = sr_clock_ns();
        sr__balance_end_at(&n->b->bal, t1 - t0, r->opts.ewma_decay_ms, t1);
        sr__hist_observe(&n->b->latency, t1 - t0);
    } else {
        sr__balance_end_untimed(&n->b->bal);
    }
    if (rc == SR_OK && at && at->stale) {
        /* Behind: the node answered, but served nothing. */
        sr__result_builder_discard(&rb);
        if (out)
            *out = NULL;
        return SR_OK;
    }
    sr__count(&n->b->outcomes[st->write][sr__outcome_of(rc)]);
    if (rc != SR_OK) {
        atomic_fetch_add(&n->b->errors, 1);
        sr__result_builder_discard(&rb);
        return rc;
    }
    sr_result *res = sr__result_builder_finish(&rb);
    if (!res)
        return sr_driver_error_set(e, SR_ENOMEM, 0, NULL, 0, "out of memory building the result");
    if (out)
        *out = res;
    else
        sr_result_free(res);
    return SR_OK;
}

int sr__node_exec(sr_topo *r, sr_node *n, sr_driver_conn *conn, const sr_stmt *st,
                  int64_t deadline, bool timed, sr_result **out, sr_driver_error *e)
{
    return run(r, n, conn, st, deadline, timed, out, NULL, e);
}

static void learn_replay_delay(sr_node *n, int64_t written_ns, bool applied);

static void count_check(sr_node *n, bool applied)
{
    sr__count(applied ? &n->b->applied_checks : &n->b->stale_checks);
}

int sr__node_exec_at(sr_topo *r, sr_node *n, sr_driver_conn *conn, const sr_stmt *st,
                     const char *need, int64_t written_ns,
                     int64_t deadline, bool timed, sr_result **out, char *pos, size_t poslen,
                     bool *stale, sr_driver_error *e)
{
    pos[0] = '\0';
    if (sr__stmt_typed(st)) {
        /* Steps carry no check: the position is asked first, in a round trip of its own
         * (a write's position is then "", and the caller asks write_position). */
        *stale = false;
        if (need) {
            bool applied = false;
            int rc = sr__node_has_applied(n, conn, need, written_ns, deadline, &applied, e);
            if (rc != SR_OK)
                return rc;
            if (!applied) {
                *stale = true;
                if (out)
                    *out = NULL;
                return SR_OK;
            }
        }
        return run(r, n, conn, st, deadline, timed, out, NULL, e);
    }
    exec_at_args at = {.need = need, .pos = pos, .poslen = poslen, .stale = 0};
    int rc = run(r, n, conn, st, deadline, timed, out, &at, e);
    *stale = rc == SR_OK && at.stale;
    if (rc == SR_OK && need) {
        if (pos[0])
            sr__node_store_position(n, pos);
        count_check(n, !at.stale);
        learn_replay_delay(n, written_ns, !at.stale);
    }
    return rc;
}

void sr__node_release(sr_topo *r, sr_node *n, sr_driver_conn *conn, int rc,
                      const sr_driver_error *e, bool probe)
{
    /* SR_OK with `transient` set: the statement succeeded, the connection did not survive
     * (exec_at: a write committed, its position was lost); dropped, but no failure. */
    sr__pool_checkin(n->b->pool, conn, e->transient);
    sr__node_report(r, n, rc, e, probe);
}

void sr__node_checkin(sr_node *n, sr_driver_conn *conn, bool broken)
{
    sr__pool_checkin(n->b->pool, conn, broken);
}

int sr__node_acquire_primary(sr_topo *r, int shard, bool write, int64_t deadline,
                             sr_driver_conn **conn, bool *probe, sr_reason *why)
{
    sr_node *primary = &r->shards[shard].nodes[0];
    if (write && atomic_load_explicit(&r->shards[shard].split_brain, memory_order_relaxed))
        return sr__reason_shard(why, SR_EUNAVAILABLE, SR_REASON_SPLIT_BRAIN, shard, NULL);
    if (write && atomic_load_explicit(&primary->b->role_mismatch, memory_order_relaxed))
        return sr__reason_shard(why, SR_EUNAVAILABLE, SR_REASON_NOT_WRITABLE, shard, NULL);
    if (!sr__node_admit(primary, probe))
        return sr__reason_shard(why, SR_EUNAVAILABLE,
                                write ? SR_REASON_PRIMARY_DOWN : SR_REASON_NO_NODE, shard, NULL);
    sr__driver_error_clear(&why->err);
    if (sr__node_checkout(r, primary, *probe, deadline, conn, &why->err) != SR_OK)
        return sr__reason_driver(why, primary, shard, &why->err, NULL);
    return SR_OK;
}

bool sr__node_is_other_role(sr_node *n, int64_t deadline)
{
    sr_driver_connect_args args = n->b->connect_args; /* lives as long as the connection */
    args.role = n->role == SR_PRIMARY ? SR_REPLICA : SR_PRIMARY;
    int64_t left_ms = (deadline - sr_clock_ns()) / 1000000;
    if (left_ms <= 0)
        return false;
    if (args.connect_timeout_ms <= 0 || args.connect_timeout_ms > left_ms)
        args.connect_timeout_ms = (int)(left_ms < 1 ? 1 : left_ms);
    sr_driver_conn *conn = NULL;
    sr_driver_error e;
    sr__driver_error_clear(&e);
    if (n->b->driver->connect(&args, &conn, &e) != SR_OK)
        return false;
    n->b->driver->close(conn);
    return true;
}

void sr__node_abandon(sr_topo *r, sr_node *n, sr_driver_conn *conn)
{
    sr_driver_error e;
    sr__driver_error_clear(&e);
    int rc = n->b->driver->rollback(conn, sr__statement_deadline(r), &e);
    sr__node_checkin(n, conn, rc != SR_OK);
}

/* ---- replica caches ---- */

void sr__node_store_position(sr_node *n, const char *pos)
{
    const sr_driver *d = n->b->driver;
    if (!sr__driver_has_positions(d) || strlen(pos) >= sizeof n->b->replay_pos)
        return;
    pthread_mutex_lock(&n->b->pos_lock);
    /* Positions only move forward: keep the cache monotonic even when answers race. */
    if (!n->b->replay_pos[0] || d->position_covers(pos, n->b->replay_pos) == 1)
        memcpy(n->b->replay_pos, pos, strlen(pos) + 1);
    pthread_mutex_unlock(&n->b->pos_lock);
}

void sr__node_store_lag(sr_node *n, int64_t lag_ms)
{
    atomic_store(&n->b->lag_ms, lag_ms);
    atomic_store(&n->b->lag_stamp_ns, sr_clock_ns());
}

bool sr__node_cached_covers(sr_node *n, const char *want)
{
    const sr_driver *d = n->b->driver;
    if (!sr__driver_has_positions(d))
        return true; /* no positions: every node is consistent */
    pthread_mutex_lock(&n->b->pos_lock);
    bool cached = n->b->replay_pos[0] && d->position_covers(n->b->replay_pos, want) == 1;
    pthread_mutex_unlock(&n->b->pos_lock);
    return cached;
}

int sr__node_has_applied(sr_node *n, sr_driver_conn *conn, const char *want, int64_t written_ns,
                         int64_t deadline, bool *applied, sr_driver_error *e)
{
    const sr_driver *d = n->b->driver;
    *applied = false;
    char pos[SR_POSITION_MAX];
    int rc = d->replay_position(conn, deadline, pos, sizeof pos, e);
    if (rc != SR_OK)
        return rc;
    sr__node_store_position(n, pos);
    *applied = d->position_covers(pos, want) == 1;
    count_check(n, *applied);
    learn_replay_delay(n, written_ns, *applied);
    return SR_OK;
}

/*
 * The replay-delay estimate: how long after a write this replica has
 * usually replayed it. It is learnt from position checks of reads that
 * follow a write of known age a:
 *  - behind at age a: the delay is more than a; the estimate rises to at
 *    least 2a (a read that young would most likely miss again);
 *  - caught up: the estimate decays by 1/16, so it settles where checks
 *    mostly succeed and a miss now and then pushes it back up;
 *  - a read the estimate sent to the primary decays it by 1/64: without
 *    that, a replica that was once slow (replay paused, a long catch-up)
 *    would never be asked again while the session keeps writing.
 * Races between threads lose an update now and then: it is an estimate.
 */
#define SR_REPLAY_DELAY_MAX_NS ((int64_t)10 * 1000000000)

static void learn_replay_delay(sr_node *n, int64_t written_ns, bool applied)
{
    if (written_ns <= 0)
        return; /* a position from a token or a monotonic read: its age is unknown */
    int64_t est = atomic_load_explicit(&n->b->replay_delay_ns, memory_order_relaxed);
    int64_t next;
    if (applied) {
        next = est - est / 16;
    } else {
        int64_t age = sr_clock_ns() - written_ns;
        int64_t twice = age < SR_REPLAY_DELAY_MAX_NS / 2 ? 2 * age : SR_REPLAY_DELAY_MAX_NS;
        next = twice > est ? twice : est;
    }
    if (next != est)
        atomic_store_explicit(&n->b->replay_delay_ns, next, memory_order_relaxed);
}

bool sr__node_likely_behind(sr_node *n, int64_t written_ns, int64_t now)
{
    if (written_ns <= 0)
        return false;
    int64_t est = atomic_load_explicit(&n->b->replay_delay_ns, memory_order_relaxed);
    if (now - written_ns >= est)
        return false;
    atomic_store_explicit(&n->b->replay_delay_ns, est - est / 64, memory_order_relaxed);
    return true;
}

int sr__node_wait_applied(sr_node *n, sr_driver_conn *conn, const char *want, int64_t until,
                          bool *applied, sr_driver_error *e)
{
    *applied = false;
    const sr_driver *d = n->b->driver;
    if (d->abi_version < 2 || !d->wait_replayed)
        return SR_OK;
    int done = 0;
    int rc = d->wait_replayed(conn, want, until, &done, e);
    if (rc == SR_OK && done) {
        sr__node_store_position(n, want);
        *applied = true;
    }
    return rc;
}

/* Measures a replica's lag now, on a pooled connection (the first stale reader does it). */
static void refresh_lag(sr_topo *r, sr_node *n)
{
    int64_t deadline = sr__statement_deadline(r);
    sr_driver_error e;
    sr__driver_error_clear(&e);
    sr_driver_conn *conn = NULL;
    if (sr__node_checkout(r, n, false, deadline, &conn, &e) != SR_OK)
        return;
    int64_t lag = -2;
    int rc = n->b->driver->replica_lag_ms(conn, deadline, &lag, &e);
    sr__node_release(r, n, conn, rc, &e, false);
    if (rc == SR_OK) {
        int64_t before = atomic_exchange(&n->b->lag_ms, lag);
        if ((before == -1) != (lag == -1))
            sr__log(r, lag == -1 ? SR_LOG_WARN : SR_LOG_INFO,
                    "shard '%s' replica %s: replication %s", r->shards[n->shard].name,
                    n->b->uri->redacted, lag == -1 ? "is broken (not eligible for reads)" : "runs again");
    }
}

bool sr__node_lag_ok(sr_topo *r, sr_node *n, int max_lag_ms, int64_t now)
{
    if (!n->b->driver->replica_lag_ms)
        return true; /* no replication, no lag (SQLite) */
    if (max_lag_ms > 0) {
        int64_t stamp = atomic_load(&n->b->lag_stamp_ns);
        int64_t every = (int64_t)r->opts.replica_lag_refresh_ms * 1000000;
        /* One reader wins the stamp and measures; the others use the last figure. */
        if (now - stamp >= every && atomic_compare_exchange_strong(&n->b->lag_stamp_ns, &stamp, now))
            refresh_lag(r, n);
        int64_t lag = atomic_load(&n->b->lag_ms);
        return lag >= 0 && lag <= max_lag_ms;
    }
    /* No bound: only a replica known to be broken is skipped. */
    return atomic_load(&n->b->lag_ms) != -1;
}

/* ---- a statement in steps, driven by the caller (fanout.c) ---- */

int sr__node_send(sr_node *n, sr_driver_conn *conn, const sr_stmt *st, int64_t deadline,
                  int *want, sr_driver_error *e)
{
    sr__balance_begin(&n->b->bal);
    int rc = send_values(n, conn, st, deadline, want, e);
    if (rc != SR_OK)
        sr__node_step_end(n, st->write, rc);
    return rc;
}

int sr__node_next_row(sr_node *n, sr_driver_conn *conn, sr_result_builder *rb, int64_t deadline,
                      int *want, sr_driver_error *e)
{
    *want = 0;
    return n->b->driver->next_row(conn, rb, deadline, want, e);
}

int sr__node_socket(const sr_node *n, sr_driver_conn *conn) { return n->b->driver->socket(conn); }

void sr__node_step_end(sr_node *n, bool write, int rc)
{
    sr__balance_end_untimed(&n->b->bal);
    sr__count(&n->b->outcomes[write][sr__outcome_of(rc)]);
    if (rc != SR_OK)
        atomic_fetch_add(&n->b->errors, 1);
}

bool sr__node_cancel(sr_node *n, sr_driver_conn *conn, int64_t deadline)
{
    if (n->b->driver->abi_version < 6 || !n->b->driver->cancel)
        return false;
    sr_driver_error e;
    sr__driver_error_clear(&e);
    return n->b->driver->cancel(conn, deadline, &e) == SR_OK;
}
