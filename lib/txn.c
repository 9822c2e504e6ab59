/*
 * Transactions: a session pinned to one connection until commit or rollback.
 * A read-write transaction runs on the shard's primary; a read-only one on a
 * node chosen as a read would be (read.c), under REPEATABLE READ so that all
 * its statements see one snapshot. A statement for another shard is SR_ETXN.
 */
#include "txn.h"

#include <string.h>

static void unpin(sr_session *s, int rc, const sr_driver_error *e)
{
    sr__node_checkin(s->txn_node, s->txn_conn, rc != SR_OK && (!e || e->transient));
    s->in_txn = 0;
    s->txn_read_only = 0;
    s->txn_shard = -1;
    s->txn_node = NULL;
    s->txn_conn = NULL;
}

static void pin(sr_session *s, int shard, sr_node *n, sr_driver_conn *conn, int read_only)
{
    s->in_txn = 1;
    s->txn_read_only = read_only;
    s->txn_shard = shard;
    s->txn_node = n;
    s->txn_conn = conn;
}

/* The session's message for a driver error on the transaction's node. */
static int fail_on_node(sr_session *s, int rc, const char *what, const sr_driver_error *e)
{
    sr_reason why;
    sr__reason_driver(&why, s->txn_node, s->txn_shard, e, NULL);
    return sr__session_fail_reason(s, rc, what, &why);
}

/*
 * Whether a reload since the transaction began took its shard or its node away: the
 * current version has no shard of that name, or (a read-write transaction) another
 * primary there, or (a read-only one, on a replica or the primary) not its node. The
 * transaction goes on, on the version it began on, only while both are still there.
 */
static bool txn_vanished(sr_session *s)
{
    sr_topo *r = s->router;
    if (r->version == atomic_load_explicit(&s->handle->version, memory_order_acquire))
        return false;
    const char *name = r->shards[s->txn_shard].name;
    sr_topo *now = sr__topo_borrow(s->handle);
    bool kept = false;
    for (int i = 0; i < now->nshards && !kept; i++) {
        const sr_shard *sh = &now->shards[i];
        if (strcmp(sh->name, name) != 0)
            continue;
        for (int j = 0; j < (s->txn_read_only ? sh->nnodes : 1) && !kept; j++)
            kept = sh->nodes[j].b == s->txn_node->b;
        break;
    }
    sr__topo_unborrow(s->handle);
    return !kept;
}

/* Ends a transaction whose shard or primary a reload removed: rolled back, SR_EUNAVAILABLE. */
static int fail_vanished(sr_session *s)
{
    sr_topo *r = s->router;
    int rc = sr__session_fail(s, SR_EUNAVAILABLE,
                              "a topology reload removed shard '%s' or its node %s while this "
                              "transaction was open; the transaction was rolled back",
                              r->shards[s->txn_shard].name, s->txn_node->b->uri->redacted);
    sr__node_abandon(r, s->txn_node, s->txn_conn);
    s->in_txn = 0;
    s->txn_read_only = 0;
    s->txn_shard = -1;
    s->txn_node = NULL;
    s->txn_conn = NULL;
    return rc;
}

int sr__txn_exec(sr_session *s, int shard, const sr_stmt *st, sr_result **out)
{
    sr_topo *r = s->router;
    if (txn_vanished(s))
        return fail_vanished(s);
    if (shard != s->txn_shard)
        return sr__session_fail(s, SR_ETXN,
                                "statement for shard '%s' inside a transaction on shard '%s' "
                                "(a transaction stays on one shard)",
                                r->shards[shard].name, r->shards[s->txn_shard].name);
    sr_node *n = s->txn_node;
    sr_driver_error e;
    sr__driver_error_clear(&e);
    int rc = sr__node_exec(r, n, s->txn_conn, st, sr__statement_deadline(r),
                           sr__session_timed(s), out, &e);
    sr__node_report(r, n, rc, &e, false);
    if (rc == SR_OK)
        return SR_OK;
    fail_on_node(s, rc, "statement in transaction", &e);
    if (e.transient) {
        /* The connection is gone and the transaction with it. */
        unpin(s, rc, &e);
        sr__session_append(s, " (the transaction was aborted)");
    }
    return rc;
}

static int refuse_nested(sr_session *s)
{
    return sr__session_fail(s, SR_ETXN, "a transaction is already open on shard '%s'",
                            s->router->shards[s->txn_shard].name);
}

/* Begins on a checked-out connection and pins the session to it. */
static int begin_on(sr_session *s, int shard, sr_node *n, sr_driver_conn *conn, bool probe,
                    int read_only, int64_t deadline)
{
    sr_driver_error e;
    sr__driver_error_clear(&e);
    int rc = n->b->driver->begin(conn, read_only, deadline, &e);
    if (rc != SR_OK) {
        sr__node_release(s->router, n, conn, rc, &e, probe);
        sr_reason why;
        rc = sr__reason_driver(&why, n, shard, &e, NULL);
        return sr__session_fail_reason(s, rc, read_only ? "begin read-only" : "begin", &why);
    }
    sr__node_report(s->router, n, rc, &e, probe);
    pin(s, shard, n, conn, read_only);
    return SR_OK;
}

static int begin_shard(sr_session *s, int shard)
{
    sr__session_clear_error(s);
    int rc = sr__session_check_shard(s, shard);
    if (rc != SR_OK)
        return rc;
    if (s->in_txn)
        return refuse_nested(s);
    sr_topo *r = s->router;
    int64_t deadline = sr__statement_deadline(r);
    sr_driver_conn *conn = NULL;
    bool probe = false;
    sr_reason why;
    rc = sr__node_acquire_primary(r, shard, true, deadline, &conn, &probe, &why);
    if (rc != SR_OK)
        return sr__session_fail_reason(s, rc, "begin", &why);
    return begin_on(s, shard, &r->shards[shard].nodes[0], conn, probe, 0, deadline);
}

static int begin(sr_session *s, sr_key key)
{
    sr__session_clear_error(s);
    int shard = sr__session_shard_for_key(s, key);
    if (shard < 0)
        return shard;
    return begin_shard(s, shard);
}

static int begin_read_only(sr_session *s, sr_key key)
{
    sr__session_clear_error(s);
    int shard = sr__session_shard_for_key(s, key);
    if (shard < 0)
        return shard;
    if (s->in_txn)
        return refuse_nested(s);
    sr_topo *r = s->router;
    int64_t deadline = sr__statement_deadline(r);
    char needbuf[SR_POSITION_MAX];
    sr_read_plan plan;
    sr__session_read_plan(s, NULL, shard, &plan, needbuf, sizeof needbuf);
    plan.check_now = true; /* BEGIN cannot carry the position check */
    sr_node *n = NULL;
    sr_driver_conn *conn = NULL;
    bool probe = false;
    sr_read_tries tries = {0};
    const char *check = NULL; /* stays NULL: checked before the node is returned */
    sr_reason why;
    int rc = sr__read_acquire(r, shard, &plan, &tries, deadline, &n, &conn, &probe, &check, &why);
    if (rc != SR_OK)
        return sr__session_fail_reason(s, rc, "read", &why);
    return begin_on(s, shard, n, conn, probe, 1, deadline);
}

static int commit(sr_session *s)
{
    sr__session_clear_error(s);
    if (!s->in_txn)
        return sr__session_fail(s, SR_ETXN, "commit without an open transaction");
    if (txn_vanished(s))
        return fail_vanished(s);
    sr_topo *r = s->router;
    sr_node *n = s->txn_node;
    int64_t deadline = sr__statement_deadline(r);
    sr_driver_error e;
    sr__driver_error_clear(&e);
    int rc = n->b->driver->commit(s->txn_conn, deadline, &e);
    if (rc == SR_OK) {
        if (!s->txn_read_only && sr__mode_uses_positions(s->mode))
            sr__positions_record_write(&s->positions, r, n, s->txn_conn, deadline, NULL);
        unpin(s, rc, NULL);
        return SR_OK;
    }
    fail_on_node(s, rc, "commit", &e);
    if (!e.transient) {
        /* Some backends leave the transaction open after a failed commit. */
        sr_driver_error e2;
        sr__driver_error_clear(&e2);
        if (n->b->driver->rollback(s->txn_conn, deadline, &e2) != SR_OK)
            e.transient = 1;
    }
    unpin(s, rc, &e);
    return rc;
}

static int rollback(sr_session *s)
{
    sr__session_clear_error(s);
    if (!s->in_txn)
        return sr__session_fail(s, SR_ETXN, "rollback without an open transaction");
    sr_node *n = s->txn_node;
    sr_driver_error e;
    sr__driver_error_clear(&e);
    int rc = n->b->driver->rollback(s->txn_conn, sr__statement_deadline(s->router), &e);
    if (rc != SR_OK)
        fail_on_node(s, rc, "rollback", &e);
    /* Whatever the outcome the session is unpinned; a connection in doubt is dropped. */
    e.transient = 1;
    unpin(s, rc, &e);
    return rc;
}

/* The public entry points (SR_SESSION_GUARDED: session.h). */
SR_API int sr_begin_shard(sr_session *s, int shard) { SR_SESSION_GUARDED(s, begin_shard(s, shard)); }
SR_API int sr_begin(sr_session *s, sr_key key) { SR_SESSION_GUARDED(s, begin(s, key)); }
SR_API int sr_begin_read_only(sr_session *s, sr_key key) { SR_SESSION_GUARDED(s, begin_read_only(s, key)); }
SR_API int sr_commit(sr_session *s) { SR_SESSION_GUARDED(s, commit(s)); }
SR_API int sr_rollback(sr_session *s) { SR_SESSION_GUARDED(s, rollback(s)); }
