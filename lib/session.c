/*
 * Sessions and the statement path: arguments -> shard -> (write: the
 * primary | read: read.c | transaction: txn.c) -> pooled connection ->
 * driver -> result. Every outcome feeds the node's health (node.c).
 */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"

/* One statement in this many per session has its latency measured (see sr__node_exec). */
#define SR_LATENCY_SAMPLE 4

static const char *role_name(sr_role role) { return role == SR_PRIMARY ? "primary" : "replica"; }

/* ---- errors ---- */

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

int sr__fail_on_node(sr_session *s, const sr_node *n, const char *what, const sr_driver_error *e)
{
    const sr_shard *sh = &s->router->shards[n->shard];
    sr__fmt(s->errmsg, sizeof s->errmsg, "%s on shard '%s' node %s (%s): %s: %s", what, sh->name,
            n->uri->redacted, role_name(n->role), sr_strerror(e->status), e->message);
    memcpy(s->sqlstate, e->sqlstate, sizeof s->sqlstate);
    s->sqlstate[5] = '\0';
    return e->status;
}

int sr__fail_unavailable(sr_session *s, const sr_shard *sh, const char *what)
{
    char why[SR_ERRMSG_LEN - 200] = "";
    int64_t now = sr_clock_ns();
    for (int i = 0; i < sh->nnodes; i++)
        sr__node_describe(&sh->nodes[i], now, why, sizeof why);
    return sr__session_fail(s, SR_EUNAVAILABLE,
                            "%s on shard '%s': no eligible node (balance.primary_reads is %s): %s",
                            what, sh->name,
                            sr__option_enum_name("balance.primary_reads",
                                                 s->router->opts.primary_reads),
                            why);
}

/* A primary that reported itself read-only (in recovery) to the health checks. */
static int fail_primary_not_writable(sr_session *s, const sr_shard *sh, const char *what)
{
    return sr__session_fail(s, SR_EUNAVAILABLE,
                            "%s on shard '%s': its primary %s reports that it is not a primary "
                            "(in recovery or read-only); writes are refused until it is again",
                            what, sh->name, sh->nodes[0].uri->redacted);
}

/* ---- lifecycle ---- */

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
    sr__consistency_init(s);
    *out = s;
    return SR_OK;
}

SR_API void sr_session_free(sr_session *s)
{
    if (!s)
        return;
    if (!sr__session_enter(s)) {
        /* Freeing it now would pull it from under the other thread: leak it instead. */
        sr__log(s->router, SR_LOG_ERROR, "sr_session_free: the session is in use by another "
                                         "thread (misuse); it is not freed");
        return;
    }
    sr__txn_abandon(s);
    sr__consistency_free(s);
    free(s);
}

SR_API int sr_session_set_affinity(sr_session *s, sr_key key)
{
    if (!s)
        return SR_EINVAL;
    if (!sr__session_enter(s))
        return SR_EMISUSE;
    sr__session_clear_error(s);
    int rc = SR_OK;
    if (!sr__key_valid(key))
        rc = sr__session_fail(s, SR_EINVAL, "sr_session_set_affinity: invalid key");
    else
        s->affinity = sr__hash_key(key);
    sr__session_leave(s);
    return rc;
}

int sr__check_statement_args(sr_session *s, const char *sql, int nparams,
                             const char *const *params)
{
    if (!sql)
        return sr__session_fail(s, SR_EINVAL, "SQL is NULL");
    /* The union of the backends' white space (SQLite and PostgreSQL's scan.l: space
     * \t \n \f \r; MySQL/MariaDB's ctype: space and \t..\r, so \v too): text of only
     * these is empty, or a syntax error, on every backend: refused before it is sent. */
    const char *p = sql;
    while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
        p++;
    if (!*p)
        return sr__session_fail(s, SR_EINVAL, "SQL is empty");
    if (nparams < 0)
        return sr__session_fail(s, SR_EINVAL, "nparams is negative (%d)", nparams);
    if (nparams > 0 && !params)
        return sr__session_fail(s, SR_EINVAL, "params is NULL but nparams is %d", nparams);
    return SR_OK;
}

/* ---- one statement on one node ---- */

int64_t sr__statement_deadline(const sr_router *r)
{
    return sr__deadline_after_ms(r->opts.statement_timeout_ms);
}

int sr__node_checkout(sr_session *s, sr_node *n, bool probe, int64_t deadline,
                      sr_driver_conn **conn, sr_driver_error *e)
{
    sr_router *r = s->router;
    /* The deadline was set statement_timeout_ms from "now" a moment ago: derive the
     * checkout bound from it rather than reading the clock again. */
    int64_t d = deadline - (int64_t)(r->opts.statement_timeout_ms - r->opts.pool_checkout_timeout_ms) *
                               1000000;
    int rc = sr__pool_checkout(n->pool, d < deadline ? d : deadline, deadline, conn, e);
    if (rc != SR_OK) {
        /*
         * Could not connect: counts against the node. A timeout counts when
         * the driver says the connect itself timed out (transient), not when
         * the statement's deadline had passed before any connect was tried.
         */
        if (rc == SR_ECONNECT)
            e->transient = 1;
        atomic_fetch_add(&n->errors, 1);
        sr__node_report(r, n, rc, e, probe);
    }
    return rc;
}

int sr__node_exec(sr_session *s, sr_node *n, sr_driver_conn *conn, const char *sql, int nparams,
                  const char *const *params, int64_t deadline, sr_result **out,
                  sr_driver_error *e)
{
    sr_result_builder rb;
    if (sr__result_builder_init(&rb, n->shard) != SR_OK)
        return sr_driver_error_set(e, SR_ENOMEM, 0, NULL, 0, "out of memory");
    sr__balance_begin(&n->bal);
    int rc = n->driver->exec(conn, sql, nparams, params, deadline, &rb, e);
    /*
     * p2c_ewma's latency is sampled: one statement in SR_LATENCY_SAMPLE per
     * session is timed (the first one always). A clock read costs ~20 ns, a
     * measurable share of a local point read, and an average that decays over
     * seconds loses nothing to sampling. The start is derived from the
     * deadline, set statement_timeout_ms after the statement began, so the
     * latency includes the pool checkout: a node whose pool is busy is slow.
     */
    if (s->latency_tick++ % SR_LATENCY_SAMPLE == 0) {
        int64_t t0 = deadline - (int64_t)s->router->opts.statement_timeout_ms * 1000000;
        int64_t t1 = sr_clock_ns();
        sr__balance_end_at(&n->bal, t1 - t0, s->router->opts.ewma_decay_ms, t1);
    } else {
        sr__balance_end_untimed(&n->bal);
    }
    atomic_fetch_add(&n->statements, 1);
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

void sr__node_release(sr_session *s, sr_node *n, sr_driver_conn *conn, int rc,
                      const sr_driver_error *e, bool probe)
{
    sr__pool_checkin(n->pool, conn, rc != SR_OK && e->transient);
    sr__node_report(s->router, n, rc, e, probe);
}

int sr__primary_acquire(sr_session *s, int shard, const char *what, int64_t deadline,
                        sr_driver_conn **conn, bool *probe)
{
    sr_shard *sh = &s->router->shards[shard];
    sr_node *primary = &sh->nodes[0];
    if (atomic_load(&primary->role_mismatch))
        return fail_primary_not_writable(s, sh, what);
    if (!sr__node_admit(primary, sr_clock_ns(), probe)) {
        char why[SR_ERRMSG_LEN - 200] = "";
        sr__node_describe(primary, sr_clock_ns(), why, sizeof why);
        return sr__session_fail(s, SR_EUNAVAILABLE, "%s on shard '%s': %s", what, sh->name, why);
    }
    sr_driver_error e;
    sr__driver_error_clear(&e);
    if (sr__node_checkout(s, primary, *probe, deadline, conn, &e) != SR_OK)
        return sr__fail_on_node(s, primary, what, &e);
    return SR_OK;
}

/* A write goes to the primary once: never retried after it was sent. */
static int write_on_shard(sr_session *s, int shard, const char *sql, int nparams,
                          const char *const *params, sr_result **out)
{
    sr_node *primary = &s->router->shards[shard].nodes[0];
    int64_t deadline = sr__statement_deadline(s->router);
    sr_driver_conn *conn = NULL;
    bool probe = false;
    int rc = sr__primary_acquire(s, shard, "write", deadline, &conn, &probe);
    if (rc != SR_OK)
        return rc;
    sr_driver_error e;
    sr__driver_error_clear(&e);
    rc = sr__node_exec(s, primary, conn, sql, nparams, params, deadline, out, &e);
    if (rc == SR_OK)
        sr__record_write(s, primary, conn, deadline);
    sr__node_release(s, primary, conn, rc, &e, probe);
    return rc == SR_OK ? SR_OK : sr__fail_on_node(s, primary, "write", &e);
}

int sr__exec_on_shard(sr_session *s, int shard, sr_intent intent, const sr_read_opts *ropts,
                      const char *sql, int nparams, const char *const *params, sr_result **out)
{
    if (s->in_txn)
        return sr__txn_exec(s, shard, sql, nparams, params, out);
    const sr_node *primary = &s->router->shards[shard].nodes[0];
    int is_write = intent == SR_WRITE ||
                   (intent == SR_AUTO && !sr__sql_is_read(sql, primary->driver->dialect));
    if (is_write)
        return write_on_shard(s, shard, sql, nparams, params, out);
    sr_read_plan plan = sr__read_plan(s, ropts);
    return sr__read_on_shard(s, shard, &plan, sql, nparams, params, out);
}

/* ---- public entry points ---- */

/* Resolves a key to a shard index, setting the session's message on error. */
int sr__session_shard_for_key(sr_session *s, sr_key key)
{
    if (!sr__key_valid(key))
        return sr__session_fail(s, SR_EINVAL, "invalid shard key (build keys with sr_key_int, "
                                              "sr_key_text or sr_key_bytes)");
    int shard = sr__keymap_lookup(s->router->keymap, key);
    if (shard < 0)
        return sr__session_fail(s, shard, "no shard owns this key: %s", sr_strerror(shard));
    return shard;
}

int sr__session_check_shard(sr_session *s, int shard)
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

static int check_read_opts(sr_session *s, const sr_read_opts *o)
{
    if (!o)
        return SR_OK;
    if (o->max_lag_ms < -1)
        return sr__session_fail(s, SR_EINVAL, "read option max_lag_ms is %d (-1, 0 or more)",
                                o->max_lag_ms);
    if (o->consistency < -1 || o->consistency > SR_CONSISTENCY_PRIMARY)
        return sr__session_fail(s, SR_EINVAL, "read option consistency is %d (an sr_consistency "
                                              "or -1)", o->consistency);
    return SR_OK;
}

static int exec_key(sr_session *s, sr_key key, sr_intent intent, const sr_read_opts *opts,
                    const char *sql, int nparams, const char *const *params, sr_result **out)
{
    sr__session_clear_error(s);
    int rc = check_intent(s, intent);
    if (rc == SR_OK)
        rc = check_read_opts(s, opts);
    if (rc == SR_OK)
        rc = sr__check_statement_args(s, sql, nparams, params);
    if (rc != SR_OK)
        return rc;
    int shard = sr__session_shard_for_key(s, key);
    if (shard < 0)
        return shard;
    return sr__exec_on_shard(s, shard, intent, opts, sql, nparams, params, out);
}

SR_API int sr_exec_opts(sr_session *s, sr_key key, sr_intent intent, const sr_read_opts *opts,
                        const char *sql, int nparams, const char *const *params, sr_result **out)
{
    if (!s)
        return SR_EINVAL;
    if (!sr__session_enter(s))
        return SR_EMISUSE;
    int rc = exec_key(s, key, intent, opts, sql, nparams, params, out);
    sr__session_leave(s);
    return rc;
}

SR_API int sr_exec(sr_session *s, sr_key key, sr_intent intent, const char *sql, int nparams,
                   const char *const *params, sr_result **out)
{
    return sr_exec_opts(s, key, intent, NULL, sql, nparams, params, out);
}

static int exec_shard(sr_session *s, int shard, sr_intent intent, const char *sql, int nparams,
                      const char *const *params, sr_result **out)
{
    sr__session_clear_error(s);
    int rc = check_intent(s, intent);
    if (rc == SR_OK)
        rc = sr__check_statement_args(s, sql, nparams, params);
    if (rc == SR_OK)
        rc = sr__session_check_shard(s, shard);
    if (rc != SR_OK)
        return rc;
    return sr__exec_on_shard(s, shard, intent, NULL, sql, nparams, params, out);
}

SR_API int sr_exec_shard(sr_session *s, int shard, sr_intent intent, const char *sql, int nparams,
                         const char *const *params, sr_result **out)
{
    if (!s)
        return SR_EINVAL;
    if (!sr__session_enter(s))
        return SR_EMISUSE;
    int rc = exec_shard(s, shard, intent, sql, nparams, params, out);
    sr__session_leave(s);
    return rc;
}

SR_API const char *sr_session_errmsg(const sr_session *s)
{
    return s ? s->errmsg : "no session (NULL)";
}

SR_API const char *sr_session_sqlstate(const sr_session *s) { return s ? s->sqlstate : ""; }
