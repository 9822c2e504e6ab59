/*
 * Sessions and the statement path: shard -> intent -> node -> pooled
 * connection -> driver -> result, plus transactions that pin a session to one
 * primary connection.
 */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"

static const char *role_name(sr_role role) { return role == SR_PRIMARY ? "primary" : "replica"; }

void sr__session_clear_error(sr_session *s)
{
    s->errmsg[0] = '\0';
    s->sqlstate[0] = '\0';
}

int sr__session_fail(sr_session *s, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sr__vfmt(s->errmsg, sizeof s->errmsg, fmt, ap);
    va_end(ap);
    s->sqlstate[0] = '\0';
    return status;
}

/* Records a driver error with where it happened; the SQLSTATE is kept. */
static int fail_on_node(sr_session *s, const sr_node *n, const char *what,
                        const sr_driver_error *e)
{
    const sr_shard *sh = &s->router->shards[n->shard];
    sr__fmt(s->errmsg, sizeof s->errmsg, "%s on shard '%s' node %s (%s): %s: %s", what, sh->name,
            n->uri->redacted, role_name(n->role), sr_strerror(e->status), e->message);
    memcpy(s->sqlstate, e->sqlstate, sizeof s->sqlstate);
    s->sqlstate[5] = '\0';
    return e->status;
}

static int64_t statement_deadline(const sr_router *r)
{
    return sr__deadline_after_ms(r->opts.statement_timeout_ms);
}

static int64_t checkout_deadline(const sr_router *r, int64_t statement_deadline_ns)
{
    int64_t d = sr__deadline_after_ms(r->opts.pool_checkout_timeout_ms);
    return d < statement_deadline_ns ? d : statement_deadline_ns;
}

SR_API int sr_session_new(sr_router *r, sr_session **out)
{
    if (!r || !out)
        return SR_EINVAL;
    sr_session *s = calloc(1, sizeof *s);
    if (!s)
        return SR_ENOMEM;
    s->router = r;
    /* Each session sticks to its own replica under `affinity` unless told otherwise. */
    s->affinity = sr__rand64();
    s->txn_shard = -1;
    *out = s;
    return SR_OK;
}

static void end_transaction(sr_session *s, int broken)
{
    sr__pool_checkin(s->txn_node->pool, s->txn_conn, broken);
    s->in_txn = 0;
    s->txn_shard = -1;
    s->txn_node = NULL;
    s->txn_conn = NULL;
}

SR_API void sr_session_free(sr_session *s)
{
    if (!s)
        return;
    if (s->in_txn) {
        sr_driver_error e = {0};
        int rc = s->txn_node->driver->rollback(s->txn_conn, statement_deadline(s->router), &e);
        end_transaction(s, rc != SR_OK);
    }
    free(s);
}

SR_API int sr_session_set_affinity(sr_session *s, sr_key key)
{
    if (!s)
        return SR_EINVAL;
    sr__session_clear_error(s);
    if (!sr__key_valid(key))
        return sr__session_fail(s, SR_EINVAL, "sr_session_set_affinity: invalid key");
    s->affinity = sr__hash_key(key);
    return SR_OK;
}

int sr__check_statement_args(sr_session *s, const char *sql, int nparams,
                             const char *const *params)
{
    if (!sql)
        return sr__session_fail(s, SR_EINVAL, "SQL is NULL");
    const char *p = sql;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (!*p)
        return sr__session_fail(s, SR_EINVAL, "SQL is empty");
    if (nparams < 0)
        return sr__session_fail(s, SR_EINVAL, "nparams is negative (%d)", nparams);
    if (nparams > 0 && !params)
        return sr__session_fail(s, SR_EINVAL, "params is NULL but nparams is %d", nparams);
    return SR_OK;
}

/*
 * One statement on one node through its pool. Every outcome is reported to
 * the node's health; `probe` says this statement is the node's half-open probe.
 */
static int run_on_node(sr_session *s, sr_node *n, bool probe, const char *sql, int nparams,
                       const char *const *params, int64_t deadline, sr_result **out,
                       sr_driver_error *e)
{
    sr_router *r = s->router;
    sr_driver_conn *conn = NULL;
    int rc = sr__pool_checkout(n->pool, checkout_deadline(r, deadline), &conn, e);
    if (rc != SR_OK) {
        if (rc != SR_EBUSY)
            e->transient = 1; /* could not connect: counts against the node */
        atomic_fetch_add(&n->errors, 1);
        sr__node_report(r, n, rc, e, probe);
        return rc;
    }
    sr_result_builder rb;
    if (sr__result_builder_init(&rb, n->shard) != SR_OK) {
        sr__pool_checkin(n->pool, conn, 0);
        if (probe)
            sr__health_abandon_probe(&n->health);
        return sr_driver_error_set(e, SR_ENOMEM, 0, NULL, 0, "out of memory");
    }
    sr__balance_begin(&n->bal);
    int64_t t0 = sr_clock_ns();
    rc = n->driver->exec(conn, sql, nparams, params, deadline, &rb, e);
    sr__balance_end(&n->bal, sr_clock_ns() - t0, r->opts.ewma_decay_ms);
    sr__pool_checkin(n->pool, conn, rc != SR_OK && e->transient);
    atomic_fetch_add(&n->statements, 1);
    sr__node_report(r, n, rc, e, probe);
    if (rc != SR_OK) {
        atomic_fetch_add(&n->errors, 1);
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

/*
 * Picks a node for a read among admitted replicas (and the primary when
 * balance.primary_reads says so), skipping `exclude`. An ejected node whose
 * back-off has passed is taken first, as its probe, so that recovered nodes
 * come back without waiting for the others to fail. NULL when none.
 */
static sr_node *pick_read_node(sr_session *s, sr_shard *sh, const sr_node *exclude, bool *probe)
{
    const sr_router *r = s->router;
    sr_balance_stats *cands[64];
    sr_node *nodes[64];
    int n = 0;
    int64_t now = 0;
    *probe = false;
    int first = r->opts.primary_reads == SR_PRIMARY_READS_ALWAYS ? 0 : 1;
    for (int i = first; i < sh->nnodes && n < 64; i++) {
        sr_node *node = &sh->nodes[i];
        if (node == exclude)
            continue;
        if (sr__health_is_up(&node->health)) {
            cands[n] = &node->bal;
            nodes[n] = node;
            n++;
            continue;
        }
        if (!now)
            now = sr_clock_ns();
        if (sr__health_try_probe(&node->health, now)) {
            *probe = true;
            return node;
        }
    }
    if (n == 0) {
        sr_node *primary = &sh->nodes[0];
        if (r->opts.primary_reads == SR_PRIMARY_READS_FALLBACK && primary != exclude &&
            sr__node_admit(primary, sr_clock_ns(), probe))
            return primary;
        return NULL;
    }
    if (n == 1)
        return nodes[0];
    int i = sr__balance_pick((sr_policy_kind)r->opts.balance_policy, cands, n, &sh->rr_counter,
                             s->affinity);
    return nodes[i];
}

/* A primary that reported itself read-only (in recovery) to the health checks. */
static int fail_primary_not_writable(sr_session *s, const sr_shard *sh, const char *what)
{
    return sr__session_fail(s, SR_EUNAVAILABLE,
                            "%s on shard '%s': its primary %s reports that it is not a primary "
                            "(in recovery or read-only); writes are refused until it is again",
                            what, sh->name, sh->nodes[0].uri->redacted);
}

/* SR_EUNAVAILABLE with the shard and why each node was skipped. */
static int fail_unavailable(sr_session *s, sr_shard *sh, const char *what, int from_node)
{
    char why[SR_ERRMSG_LEN - 200] = "";
    int64_t now = sr_clock_ns();
    for (int i = from_node; i < sh->nnodes; i++)
        sr__node_describe(&sh->nodes[i], now, why, sizeof why);
    return sr__session_fail(s, SR_EUNAVAILABLE, "%s on shard '%s': no eligible node "
                            "(balance.primary_reads is %s): %s",
                            what, sh->name,
                            sr__option_enum_name("balance.primary_reads",
                                                 s->router->opts.primary_reads),
                            why);
}

static int exec_in_transaction(sr_session *s, int shard, const char *sql, int nparams,
                               const char *const *params, sr_result **out)
{
    sr_router *r = s->router;
    if (shard != s->txn_shard)
        return sr__session_fail(s, SR_ETXN,
                                "statement for shard '%s' inside a transaction on shard '%s' "
                                "(a transaction stays on one shard)",
                                r->shards[shard].name, r->shards[s->txn_shard].name);
    sr_node *n = s->txn_node;
    sr_result_builder rb;
    if (sr__result_builder_init(&rb, shard) != SR_OK)
        return sr__session_fail(s, SR_ENOMEM, "out of memory");
    sr_driver_error e = {0};
    sr__balance_begin(&n->bal);
    int64_t t0 = sr_clock_ns();
    int rc = n->driver->exec(s->txn_conn, sql, nparams, params, statement_deadline(r), &rb, &e);
    sr__balance_end(&n->bal, sr_clock_ns() - t0, r->opts.ewma_decay_ms);
    atomic_fetch_add(&n->statements, 1);
    sr__node_report(r, n, rc, &e, false);
    if (rc != SR_OK) {
        atomic_fetch_add(&n->errors, 1);
        sr__result_builder_discard(&rb);
        fail_on_node(s, n, "statement in transaction", &e);
        if (e.transient) {
            /* The connection is gone and the transaction with it. */
            end_transaction(s, 1);
            size_t len = strlen(s->errmsg);
            sr__fmt(s->errmsg + len, sizeof s->errmsg - len, " (the transaction was aborted)");
        }
        return rc;
    }
    sr_result *res = sr__result_builder_finish(&rb);
    if (!res)
        return sr__session_fail(s, SR_ENOMEM, "out of memory building the result");
    if (out)
        *out = res;
    else
        sr_result_free(res);
    return SR_OK;
}

int sr__exec_on_shard(sr_session *s, int shard, sr_intent intent, const char *sql, int nparams,
                      const char *const *params, sr_result **out)
{
    sr_router *r = s->router;
    if (s->in_txn)
        return exec_in_transaction(s, shard, sql, nparams, params, out);

    sr_shard *sh = &r->shards[shard];
    sr_node *primary = &sh->nodes[0];
    int is_write = intent == SR_WRITE ||
                   (intent == SR_AUTO && !sr__sql_is_read(sql, primary->driver->dialect));
    int64_t deadline = statement_deadline(r);
    sr_driver_error e = {0};

    if (is_write) {
        if (atomic_load(&primary->role_mismatch))
            return fail_primary_not_writable(s, sh, "write");
        bool probe = false;
        if (!sr__node_admit(primary, sr_clock_ns(), &probe)) {
            char why[SR_ERRMSG_LEN - 200] = "";
            sr__node_describe(primary, sr_clock_ns(), why, sizeof why);
            return sr__session_fail(s, SR_EUNAVAILABLE, "write on shard '%s': %s", sh->name, why);
        }
        int rc = run_on_node(s, primary, probe, sql, nparams, params, deadline, out, &e);
        return rc == SR_OK ? SR_OK : fail_on_node(s, primary, "write", &e);
    }

    bool probe = false;
    sr_node *n = pick_read_node(s, sh, NULL, &probe);
    if (!n)
        return fail_unavailable(s, sh, "read", 0);
    int rc = run_on_node(s, n, probe, sql, nparams, params, deadline, out, &e);
    if (rc == SR_OK)
        return SR_OK;
    /*
     * A read that failed because its node is unreachable is retried once on
     * another node within the same deadline; an SQL error would fail the same
     * way anywhere, and a timeout has used the deadline up.
     */
    if (e.transient && rc != SR_ETIMEOUT && sr_clock_ns() < deadline) {
        sr_node *other = pick_read_node(s, sh, n, &probe);
        if (other) {
            sr__log(r, SR_LOG_INFO, "read on shard '%s' node %s failed (%s); retrying on %s",
                    sh->name, n->uri->redacted, e.message, other->uri->redacted);
            sr_driver_error e2 = {0};
            rc = run_on_node(s, other, probe, sql, nparams, params, deadline, out, &e2);
            if (rc == SR_OK)
                return SR_OK;
            return fail_on_node(s, other, "read (retried)", &e2);
        }
    }
    return fail_on_node(s, n, "read", &e);
}

/* Resolves a key to a shard index, setting the session's message on error. */
static int shard_for_key(sr_session *s, sr_key key)
{
    if (!sr__key_valid(key))
        return sr__session_fail(s, SR_EINVAL, "invalid shard key (build keys with sr_key_int, "
                                              "sr_key_text or sr_key_bytes)");
    int shard = sr__keymap_lookup(s->router->keymap, key);
    if (shard < 0)
        return sr__session_fail(s, shard, "no shard owns this key: %s", sr_strerror(shard));
    return shard;
}

static int check_shard_index(sr_session *s, int shard)
{
    if (shard < 0 || shard >= s->router->nshards)
        return sr__session_fail(s, SR_ENOSHARD, "shard index %d is out of range (0..%d)", shard,
                                s->router->nshards - 1);
    return SR_OK;
}

static int check_intent(sr_session *s, sr_intent intent)
{
    if (intent != SR_AUTO && intent != SR_READ && intent != SR_WRITE)
        return sr__session_fail(s, SR_EINVAL, "unknown intent %d (SR_AUTO, SR_READ or SR_WRITE)",
                                (int)intent);
    return SR_OK;
}

SR_API int sr_exec(sr_session *s, sr_key key, sr_intent intent, const char *sql, int nparams,
                   const char *const *params, sr_result **out)
{
    if (!s)
        return SR_EINVAL;
    sr__session_clear_error(s);
    int rc = check_intent(s, intent);
    if (rc == SR_OK)
        rc = sr__check_statement_args(s, sql, nparams, params);
    if (rc != SR_OK)
        return rc;
    int shard = shard_for_key(s, key);
    if (shard < 0)
        return shard;
    return sr__exec_on_shard(s, shard, intent, sql, nparams, params, out);
}

SR_API int sr_exec_shard(sr_session *s, int shard, sr_intent intent, const char *sql, int nparams,
                         const char *const *params, sr_result **out)
{
    if (!s)
        return SR_EINVAL;
    sr__session_clear_error(s);
    int rc = check_intent(s, intent);
    if (rc == SR_OK)
        rc = sr__check_statement_args(s, sql, nparams, params);
    if (rc == SR_OK)
        rc = check_shard_index(s, shard);
    if (rc != SR_OK)
        return rc;
    return sr__exec_on_shard(s, shard, intent, sql, nparams, params, out);
}

SR_API int sr_begin_shard(sr_session *s, int shard)
{
    if (!s)
        return SR_EINVAL;
    sr__session_clear_error(s);
    int rc = check_shard_index(s, shard);
    if (rc != SR_OK)
        return rc;
    if (s->in_txn)
        return sr__session_fail(s, SR_ETXN, "a transaction is already open on shard '%s'",
                                s->router->shards[s->txn_shard].name);
    sr_router *r = s->router;
    sr_node *n = &r->shards[shard].nodes[0];
    if (atomic_load(&n->role_mismatch))
        return fail_primary_not_writable(s, &r->shards[shard], "begin");
    bool probe = false;
    if (!sr__node_admit(n, sr_clock_ns(), &probe)) {
        char why[SR_ERRMSG_LEN - 200] = "";
        sr__node_describe(n, sr_clock_ns(), why, sizeof why);
        return sr__session_fail(s, SR_EUNAVAILABLE, "begin on shard '%s': %s",
                                r->shards[shard].name, why);
    }
    int64_t deadline = statement_deadline(r);
    sr_driver_error e = {0};
    sr_driver_conn *conn = NULL;
    rc = sr__pool_checkout(n->pool, checkout_deadline(r, deadline), &conn, &e);
    if (rc != SR_OK) {
        if (rc != SR_EBUSY)
            e.transient = 1;
        sr__node_report(r, n, rc, &e, probe);
        return fail_on_node(s, n, "begin", &e);
    }
    rc = n->driver->begin(conn, 0, deadline, &e);
    sr__node_report(r, n, rc, &e, probe);
    if (rc != SR_OK) {
        sr__pool_checkin(n->pool, conn, e.transient);
        return fail_on_node(s, n, "begin", &e);
    }
    s->in_txn = 1;
    s->txn_shard = shard;
    s->txn_node = n;
    s->txn_conn = conn;
    return SR_OK;
}

SR_API int sr_begin(sr_session *s, sr_key key)
{
    if (!s)
        return SR_EINVAL;
    sr__session_clear_error(s);
    int shard = shard_for_key(s, key);
    if (shard < 0)
        return shard;
    return sr_begin_shard(s, shard);
}

SR_API int sr_commit(sr_session *s)
{
    if (!s)
        return SR_EINVAL;
    sr__session_clear_error(s);
    if (!s->in_txn)
        return sr__session_fail(s, SR_ETXN, "commit without an open transaction");
    sr_node *n = s->txn_node;
    int64_t deadline = statement_deadline(s->router);
    sr_driver_error e = {0};
    int rc = n->driver->commit(s->txn_conn, deadline, &e);
    if (rc == SR_OK) {
        end_transaction(s, 0);
        return SR_OK;
    }
    fail_on_node(s, n, "commit", &e);
    int broken = e.transient;
    if (!broken) {
        /* Some backends leave the transaction open after a failed commit. */
        sr_driver_error e2 = {0};
        broken = n->driver->rollback(s->txn_conn, deadline, &e2) != SR_OK;
    }
    end_transaction(s, broken);
    return rc;
}

SR_API int sr_rollback(sr_session *s)
{
    if (!s)
        return SR_EINVAL;
    sr__session_clear_error(s);
    if (!s->in_txn)
        return sr__session_fail(s, SR_ETXN, "rollback without an open transaction");
    sr_node *n = s->txn_node;
    sr_driver_error e = {0};
    int rc = n->driver->rollback(s->txn_conn, statement_deadline(s->router), &e);
    if (rc != SR_OK)
        fail_on_node(s, n, "rollback", &e);
    /* Whatever the outcome the session is unpinned; a connection in doubt is dropped. */
    end_transaction(s, rc != SR_OK);
    return rc;
}

SR_API int sr_in_transaction(const sr_session *s) { return s ? s->in_txn : 0; }

SR_API const char *sr_session_errmsg(const sr_session *s)
{
    return s ? s->errmsg : "no session (NULL)";
}

SR_API const char *sr_session_sqlstate(const sr_session *s) { return s ? s->sqlstate : ""; }
