/*
 * The statement entry points: arguments -> shard -> (transaction: txn.c |
 * write: the primary | read: read.c, retried once elsewhere) -> node ->
 * result. Every outcome feeds the node's health (node.c); failures come
 * back as reasons and become the session's message here.
 */
#include "exec.h"

#include <string.h>

#include "classify.h"
#include "events.h"
#include "txn.h"

/* A write goes to the primary once: never retried after it was sent. */
static int write_on_shard(sr_session *s, int shard, const sr_stmt *st, sr_route_record *rec,
                          sr_result **out)
{
    sr_topo *r = s->router;
    sr_node *primary = &r->shards[shard].nodes[0];
    if (rec)
        rec->node = primary;
    int64_t deadline = sr__statement_deadline(r);
    sr_driver_conn *conn = NULL;
    bool probe = false;
    sr_reason why;
    int rc = sr__node_acquire_primary(r, shard, true, deadline, &conn, &probe, &why);
    if (rc != SR_OK)
        return sr__session_fail_reason(s, rc, "write", &why);
    sr__driver_error_clear(&why.err);
    bool timed = sr__session_timed(s);
    if (sr__mode_uses_positions(s->mode) && sr__shard_positions_driver(r, shard)) {
        /* The write position travels with the write where the driver can (exec_at). */
        char pos[SR_POSITION_MAX] = "";
        bool stale;
        rc = sr__node_has_exec_at(primary)
                 ? sr__node_exec_at(r, primary, conn, st, NULL, 0, deadline, timed, out, pos,
                                    sizeof pos, &stale, &why.err)
                 : sr__node_exec(r, primary, conn, st, deadline, timed, out, &why.err);
        if (rc == SR_OK)
            sr__positions_record_write(&s->positions, r, primary, conn, deadline, pos);
    } else {
        rc = sr__node_exec(r, primary, conn, st, deadline, timed, out, &why.err);
    }
    sr__node_release(r, primary, conn, rc, &why.err, probe);
    if (rc == SR_OK)
        return SR_OK;
    rc = sr__reason_driver(&why, primary, shard, &why.err, NULL);
    return sr__session_fail_reason(s, rc, "write", &why);
}

/*
 * A read: acquire a node for the plan, run, and retry once on another node
 * after a connection-level failure, all within one deadline.
 */
/* Keeps what a reported read learnt about its nodes, for its event. */
static inline void record_tries(sr_route_record *rec, const sr_read_tries *tries,
                                const sr_read_plan *plan)
{
    if (rec) {
        rec->tries = *tries;
        rec->max_lag_ms = plan->max_lag_ms;
    }
}

static int read_on_shard(sr_session *s, int shard, const sr_read_opts *ropts, const sr_stmt *st,
                         sr_route_record *rec, sr_result **out)
{
    sr_topo *r = s->router;
    char needbuf[SR_POSITION_MAX];
    sr_read_plan plan;
    sr__session_read_plan(s, ropts, shard, &plan, needbuf, sizeof needbuf);
    int64_t deadline = sr__statement_deadline(r);
    sr_read_tries tries = {0};
    sr_reason why;
    bool timed = sr__session_timed(s);
    for (int attempt = 0;;) {
        sr_node *n = NULL;
        sr_driver_conn *c = NULL;
        bool probe = false;
        const char *check = NULL;
        int rc = sr__read_acquire(r, shard, &plan, &tries, deadline, &n, &c, &probe, &check, &why);
        if (rc == SR_OK) {
            sr__read_count_primary(r, shard, n, &tries);
            if (check) /* checked in the statement's own exchange */
                tries.checked |= sr__node_bit(n);
        }
        record_tries(rec, &tries, &plan);
        if (rc != SR_OK)
            return sr__session_fail_reason(s, rc, "read", &why);
        if (rec)
            rec->node = n;
        sr_driver_error *e = &why.err;
        sr__driver_error_clear(e);
        bool stale = false;
        if (check) {
            char seen[SR_POSITION_MAX];
            rc = sr__node_exec_at(r, n, c, st, check, plan.written_ns, deadline, timed, out, seen,
                                  sizeof seen, &stale, e);
        } else {
            rc = sr__node_exec(r, n, c, st, deadline, timed, out, e);
        }
        if (rc == SR_OK && !stale && plan.mode == SR_CONSISTENCY_MONOTONIC)
            sr__positions_note_read(&s->positions, r, n, c, deadline);
        sr__node_release(r, n, c, rc, e, probe);
        if (rc == SR_OK && stale) {
            /* Behind: the replica answered (no failure); the next try goes elsewhere. */
            tries.stale |= sr__node_bit(n);
            tries.missed = true;
            continue;
        }
        if (rc == SR_OK) {
            s->last_read_shard = shard;
            s->last_read_node = n->index;
            return SR_OK;
        }
        /*
         * A read that failed because its node became unreachable is retried
         * once on another node within the same deadline; an SQL error would
         * fail the same way anywhere, and a timeout has used the deadline up.
         */
        /* On the primary, retried only where a replica was left out for its replication
         * alone (broken, or lag unknown): the primary going away is what breaks it. */
        bool elsewhere = n->role != SR_PRIMARY || (tries.lag_unknown & ~tries.exclude);
        if (!e->transient || rc == SR_ETIMEOUT || attempt > 0 || !elsewhere ||
            sr_clock_ns() >= deadline) {
            rc = sr__reason_driver(&why, n, shard, e, NULL);
            return sr__session_fail_reason(s, rc, attempt ? "read (retried)" : "read", &why);
        }
        sr__log(r, SR_LOG_INFO, "read on shard '%s' node %s failed (%s); retrying elsewhere",
                r->shards[shard].name, n->b->uri->redacted, e->message);
        tries.exclude |= sr__node_bit(n);
        attempt++;
        if (rec)
            rec->retries++;
    }
}

/* The statement routed: transaction, write or read; `rec` (NULL unless reported) collects. */
static inline int exec_routed(sr_session *s, int shard, sr_intent intent,
                              const sr_read_opts *ropts, const sr_stmt *st, sr_route_record *rec,
                              sr_result **out)
{
    if (s->in_txn) {
        /* In a read-write transaction a statement counts as a write unless said to read. */
        sr_stmt routed = *st;
        routed.write = intent != SR_READ && !s->txn_read_only;
        if (rec) {
            rec->in_txn = true;
            rec->write = routed.write;
            rec->node = shard == s->txn_shard ? s->txn_node : NULL; /* else refused: SR_ETXN */
        }
        return sr__txn_exec(s, shard, &routed, out);
    }
    if (sr__exec_is_write(s->router, shard, intent, st->sql)) {
        sr_stmt routed = *st;
        routed.write = true;
        if (rec)
            rec->write = true;
        return write_on_shard(s, shard, &routed, rec, out);
    }
    return read_on_shard(s, shard, ropts, st, rec, out);
}

/* The statement routed, and reported to the event callback when `report`. */
static int exec_reported(sr_session *s, int shard, sr_intent intent, const sr_read_opts *ropts,
                         const sr_stmt *st, bool report, sr_result **out)
{
    sr_topo *r = s->router;
    if (!report)
        return exec_routed(s, shard, intent, ropts, st, NULL, out);
    sr_route_record rec;
    memset(&rec, 0, sizeof rec);
    rec.start_ns = sr_clock_ns();
    rec.shard = shard;
    int rc = exec_routed(s, shard, intent, ropts, st, &rec, out);
    sr__event_statement(r, &rec, st->sql, rc, s->sqlstate);
    return rc;
}

static inline int exec_on_shard(sr_session *s, int shard, sr_intent intent,
                                const sr_read_opts *ropts, const sr_stmt *st, sr_result **out)
{
    return exec_reported(s, shard, intent, ropts, st, sr__event_sampled(s->router), out);
}

bool sr__exec_is_write(const sr_topo *r, int shard, sr_intent intent, const char *sql)
{
    const sr_node *primary = &r->shards[shard].nodes[0];
    return intent == SR_WRITE ||
           (intent == SR_AUTO && !sr__sql_is_read(sql, primary->b->driver->dialect));
}

int sr__exec_on_shard(sr_session *s, int shard, sr_intent intent, const sr_read_opts *ropts,
                      const sr_stmt *st, bool report, sr_result **out)
{
    return exec_reported(s, shard, intent, ropts, st, report, out);
}

int sr__exec_begin_call(sr_session *s, sr_intent intent, const sr_stmt *st)
{
    sr__session_clear_error(s);
    int rc = sr__session_check_intent(s, intent);
    return rc == SR_OK ? sr__exec_check_stmt(s, st) : rc;
}

int sr__exec_check_stmt(sr_session *s, const sr_stmt *st)
{
    if (!st->typed)
        return sr__session_check_statement(s, st->sql, st->nparams, st->text);
    /* The text check with a stand-in array: the SQL, nparams, and params NULL with nparams > 0. */
    int rc = sr__session_check_statement(s, st->sql, st->nparams,
                                         st->values ? (const char *const *)&st->values : NULL);
    int bad;
    const char *what;
    if (rc == SR_OK && sr__values_check(st->nparams, st->values, &bad, &what) != SR_OK)
        rc = sr__session_fail(s, SR_EINVAL, "parameter %d %s", bad + 1, what);
    return rc;
}

sr_intent sr__exec_fixed_intent(const sr_topo *r, const int *shards, int n, sr_intent intent,
                                const char *sql)
{
    if (intent != SR_AUTO)
        return intent;
    if (!shards)
        n = r->nshards;
    /* One lexing per dialect, not per shard: shards of a router share one in practice. */
    sr_sql_dialect seen[4];
    int nseen = 0;
    for (int i = 0; i < n; i++) {
        int shard = shards ? shards[i] : i;
        sr_sql_dialect d = r->shards[shard].nodes[0].b->driver->dialect;
        bool known = false;
        for (int j = 0; j < nseen && !known; j++)
            known = seen[j] == d;
        if (known)
            continue;
        if (sr__exec_is_write(r, shard, SR_AUTO, sql))
            return SR_WRITE;
        if (nseen < (int)SR_ARRAY_LEN(seen))
            seen[nseen++] = d;
    }
    return SR_READ;
}

/*
 * A statement of a session with a trace context: the SQL sent is the
 * caller's plus the comment, and whether it is a write is read from the
 * caller's SQL before that (the layers below classify what they are given).
 */
static int exec_traced(sr_session *s, int shard, sr_intent intent, const sr_read_opts *opts,
                       const sr_stmt *st, sr_result **out)
{
    const char *sql = sr__session_trace_sql(s, st->sql);
    if (!sql)
        return SR_ENOMEM;
    if (!s->in_txn)
        intent = sr__exec_fixed_intent(s->router, &shard, 1, intent, st->sql);
    sr_stmt traced = *st;
    traced.sql = sql;
    return exec_on_shard(s, shard, intent, opts, &traced, out);
}

static int exec_key(sr_session *s, sr_key key, sr_intent intent, const sr_read_opts *opts,
                    const sr_stmt *st, sr_result **out)
{
    int rc = sr__exec_begin_call(s, intent, st);
    if (rc == SR_OK)
        rc = sr__session_check_read_opts(s, opts);
    if (rc != SR_OK)
        return rc;
    int shard = sr__session_shard_for_key(s, key);
    if (shard < 0)
        return shard;
    if (s->trace)
        return exec_traced(s, shard, intent, opts, st, out);
    return exec_on_shard(s, shard, intent, opts, st, out);
}

static int exec_shard(sr_session *s, int shard, sr_intent intent, const sr_stmt *st,
                      sr_result **out)
{
    int rc = sr__exec_begin_call(s, intent, st);
    if (rc == SR_OK)
        rc = sr__session_check_shard(s, shard);
    if (rc != SR_OK)
        return rc;
    if (s->trace)
        return exec_traced(s, shard, intent, NULL, st, out);
    return exec_on_shard(s, shard, intent, NULL, st, out);
}

/* ---- public entry points: the NULL check, then the work inside the misuse guard ---- */

SR_API int sr_exec_opts(sr_session *s, sr_key key, sr_intent intent, const sr_read_opts *opts,
                        const char *sql, int nparams, const char *const *params, sr_result **out)
{
    sr_stmt st = {sql, nparams, params, NULL, false, false};
    SR_SESSION_GUARDED(s, exec_key(s, key, intent, opts, &st, out));
}

SR_API int sr_exec(sr_session *s, sr_key key, sr_intent intent, const char *sql, int nparams,
                   const char *const *params, sr_result **out)
{
    sr_stmt st = {sql, nparams, params, NULL, false, false};
    SR_SESSION_GUARDED(s, exec_key(s, key, intent, NULL, &st, out));
}

SR_API int sr_exec_values(sr_session *s, sr_key key, sr_intent intent, const sr_read_opts *opts,
                          const char *sql, int nparams, const sr_value *params, sr_result **out)
{
    sr_stmt st = {sql, nparams, NULL, params, true, false};
    SR_SESSION_GUARDED(s, exec_key(s, key, intent, opts, &st, out));
}

SR_API int sr_exec_shard(sr_session *s, int shard, sr_intent intent, const char *sql, int nparams,
                         const char *const *params, sr_result **out)
{
    sr_stmt st = {sql, nparams, params, NULL, false, false};
    SR_SESSION_GUARDED(s, exec_shard(s, shard, intent, &st, out));
}
