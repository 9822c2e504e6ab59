/*
 * Sessions: lifecycle, options, consistency tokens, and the session's
 * message. This is the one file that writes a session's errmsg: the entry
 * points call sr__session_fail*() with what they were doing and the reason a
 * lower layer returned.
 */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"
#include "trace.h"

static const char *const mode_names[] = {"any", "monotonic", "read_your_writes", "primary"};

/* ---- the message ---- */

int sr__session_fail(sr_session *s, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sr__vfmt(s->errmsg, sizeof s->errmsg, fmt, ap);
    va_end(ap);
    s->sqlstate[0] = '\0';
    s->err_shard = s->err_node = -1;
    return status;
}

void sr__session_append(sr_session *s, const char *text)
{
    size_t len = strlen(s->errmsg);
    sr__fmt(s->errmsg + len, sizeof s->errmsg - len, "%s", text);
}

/* SR_EUNAVAILABLE naming the shard and why each node was skipped. */
static int fail_unavailable(sr_session *s, int status, const sr_shard *sh, const char *what)
{
    char why[SR_ERRMSG_LEN - 200] = "";
    int64_t now = sr_clock_ns();
    for (int i = 0; i < sh->nnodes; i++)
        sr__node_describe(&sh->nodes[i], now, why, sizeof why);
    return sr__session_fail(s, status,
                            "%s on shard '%s': no eligible node (balance.primary_reads is %s): %s",
                            what, sh->name,
                            sr__option_enum_name("balance.primary_reads",
                                                 s->router->opts.primary_reads),
                            why);
}

static int fail_reason(sr_session *s, int status, const char *what, const sr_reason *why);

int sr__session_fail_reason(sr_session *s, int status, const char *what, const sr_reason *why)
{
    int rc = fail_reason(s, status, what, why);
    s->err_shard = why->shard;
    s->err_node = why->kind == SR_REASON_DRIVER && why->node
                      ? (int)(why->node - s->router->shards[why->shard].nodes)
                      : why->kind == SR_REASON_NOT_WRITABLE ? 0 : -1;
    return rc;
}

static int fail_reason(sr_session *s, int status, const char *what, const sr_reason *why)
{
    const sr_topo *r = s->router;
    const sr_shard *sh = &r->shards[why->shard];
    switch (why->kind) {
    case SR_REASON_DRIVER: {
        const sr_node *n = why->node;
        const sr_driver_error *e = &why->err;
        sr__fmt(s->errmsg, sizeof s->errmsg, "%s%s on shard '%s' node %s (%s): %s: %s", what,
                why->note ? why->note : "", sh->name, n->b->uri->redacted, sr__role_name(n->role),
                sr_strerror(e->status), e->message);
        memcpy(s->sqlstate, e->sqlstate, sizeof s->sqlstate);
        s->sqlstate[5] = '\0';
        return status;
    }
    case SR_REASON_NO_NODE:
        return fail_unavailable(s, status, sh, what);
    case SR_REASON_PRIMARY_DOWN: {
        char desc[SR_ERRMSG_LEN - 200] = "";
        sr__node_describe(&sh->nodes[0], sr_clock_ns(), desc, sizeof desc);
        return sr__session_fail(s, status, "%s on shard '%s': %s", what, sh->name, desc);
    }
    case SR_REASON_NOT_WRITABLE:
        return sr__session_fail(s, status,
                                "%s on shard '%s': its primary %s reports that it is not a primary "
                                "(in recovery or read-only); writes are refused until it is again",
                                what, sh->name, sh->nodes[0].b->uri->redacted);
    case SR_REASON_SPLIT_BRAIN: {
        uint32_t sb = atomic_load_explicit(&((sr_shard *)sh)->split_brain, memory_order_relaxed);
        if (!sb) /* over since the write was refused: still, say what refused it */
            return sr__session_fail(s, status, "%s on shard '%s': two nodes reported themselves "
                                    "primary (split brain); writes were refused", what, sh->name);
        return sr__session_fail(s, status,
                                "%s on shard '%s': split brain: %s and %s both report themselves "
                                "primary; writes are refused until one of them steps down",
                                what, sh->name, sh->nodes[sb & 0xff].b->uri->redacted,
                                sh->nodes[(sb >> 8) & 0xff].b->uri->redacted);
    }
    case SR_REASON_STALE:
        return sr__session_fail(s, status,
                                "%s on shard '%s': %s (needed %s, waited up to %d ms) and "
                                "balance.primary_reads is never",
                                what, sh->name, why->detail,
                                why->err.message[0] ? why->err.message : "the primary",
                                sr__consistency_wait_ms(&r->opts, false));
    case SR_REASON_LATE:
        return sr__session_fail(s, status, "%s on shard '%s': the statement deadline "
                                "(statement_timeout_ms = %d) passed while looking for a node: %s",
                                what, sh->name, r->opts.statement_timeout_ms, why->detail);
    }
    return sr__session_fail(s, status, "%s on shard '%s' failed", what, sh->name);
}

/* ---- checks shared by the entry points ---- */

int sr__session_check_statement(sr_session *s, const char *sql, int nparams,
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

int sr__session_check_intent(sr_session *s, sr_intent intent)
{
    if (intent != SR_AUTO && intent != SR_READ && intent != SR_WRITE)
        return sr__session_fail(s, SR_EINVAL, "unknown intent %d (SR_AUTO, SR_READ or SR_WRITE)",
                                (int)intent);
    return SR_OK;
}

int sr__session_check_read_opts(sr_session *s, const sr_read_opts *o)
{
    if (!o)
        return SR_OK;
    if (o->version < 1 || o->version > SR_READ_OPTS_VERSION)
        return sr__session_fail(s, SR_EINVAL, "read options version is %d (this library knows "
                                              "1..%d; initialise with SR_READ_OPTS_INIT)",
                                o->version, SR_READ_OPTS_VERSION);
    if (o->max_lag_ms < -1)
        return sr__session_fail(s, SR_EINVAL, "read option max_lag_ms is %d (-1, 0 or more)",
                                o->max_lag_ms);
    if (o->consistency < -1 || o->consistency > SR_CONSISTENCY_PRIMARY)
        return sr__session_fail(s, SR_EINVAL, "read option consistency is %d (an sr_consistency "
                                              "or -1)", o->consistency);
    return SR_OK;
}

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

void sr__session_read_plan(const sr_session *s, const sr_read_opts *ropts, int shard,
                           sr_read_plan *plan, char *buf, size_t len)
{
    plan->mode = ropts && ropts->consistency >= 0 ? ropts->consistency : s->mode;
    if (ropts && ropts->max_lag_ms >= 0)
        plan->max_lag_ms = ropts->max_lag_ms;
    else if (s->max_lag_ms >= 0)
        plan->max_lag_ms = s->max_lag_ms;
    else
        plan->max_lag_ms = s->router->opts.replica_max_lag_ms;
    plan->affinity = s->affinity;
    plan->last_node = s->last_read_shard == shard ? s->last_read_node : -1;
    plan->written_ns = 0;
    plan->check_now = false;
    plan->sticky = -1;
    const sr_positions *pos = &s->positions;
    if (plan->mode == SR_CONSISTENCY_MONOTONIC)
        plan->sticky = sr__positions_sticky_node(pos, shard);
    if (!sr__mode_uses_positions(plan->mode) || (!pos->written && !pos->observed && !pos->lost)) {
        /* any or primary, or nothing recorded yet: no position, decided without a call */
        plan->need = NULL;
        plan->need_unknown = false;
        return;
    }
    const char *need = sr__positions_required(pos, s->router, shard, plan->mode, buf, len);
    /* The write's age teaches the replay-delay estimate only when the write is what the
     * read needs; a monotonic read's observed position is of no known age. */
    bool observed = plan->mode == SR_CONSISTENCY_MONOTONIC && pos->observed && pos->observed[shard];
    plan->written_ns = observed ? 0 : sr__positions_written_ns(pos, shard);
    plan->need_unknown = need == sr__position_unknown;
    plan->need = plan->need_unknown ? NULL : need;
}

/* ---- lifecycle ---- */

SR_API int sr_session_new(sr_router *r, sr_session **out)
{
    if (!r || !out)
        return SR_EINVAL;
    sr_session *s = calloc(1, sizeof *s);
    if (!s)
        return SR_ENOMEM;
    s->handle = r;
    s->router = sr__topo_acquire(r);
    /* Each session sticks to its own replica under `affinity` unless told otherwise. */
    s->affinity = sr__rand64();
    s->txn_shard = -1;
    s->last_read_shard = s->last_read_node = -1;
    s->err_shard = s->err_node = -1;
    s->mode = s->router->opts.consistency_mode;
    s->max_lag_ms = -1;
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
    if (s->in_txn) /* rolled back: an open transaction never outlives its session */
        sr__node_abandon(s->router, s->txn_node, s->txn_conn);
    sr__positions_free(&s->positions, s->router->nshards);
    sr__topo_release(s->router);
    free(s->token);
    free(s->trace);
    free(s->trace_sql);
    free(s);
}

void sr__session_refresh(sr_session *s)
{
    if (s->in_txn || s->open_cursors)
        return; /* they finish on the version they began on; the session moves after */
    sr_topo *old = s->router;
    sr_topo *t = sr__topo_acquire(s->handle);
    if (t == old) {
        sr__topo_release(t);
        return;
    }
    if (sr__positions_remap(&s->positions, old, t) != SR_OK)
        sr__log(t, SR_LOG_WARN, "out of memory moving a session's positions to topology "
                                "version %llu: its reads that need one go to the primaries",
                (unsigned long long)t->version);
    s->router = t;
    s->last_read_shard = s->last_read_node = -1;
    sr__topo_release(old);
}

static int set_affinity(sr_session *s, sr_key key)
{
    sr__session_clear_error(s);
    if (!sr__key_valid(key))
        return sr__session_fail(s, SR_EINVAL, "sr_session_set_affinity: invalid key");
    s->affinity = sr__hash_key(key);
    return SR_OK;
}

static int session_set(sr_session *s, const char *option, const char *value)
{
    sr__session_clear_error(s);
    if (!option || !value)
        return sr__session_fail(s, SR_EINVAL, "sr_session_set: option and value must not be NULL");
    if (strcmp(option, "consistency") == 0) {
        for (int i = 0; i < (int)SR_ARRAY_LEN(mode_names); i++) {
            if (strcmp(value, mode_names[i]) == 0) {
                s->mode = i;
                return SR_OK;
            }
        }
        return sr__session_fail(s, SR_EINVAL, "consistency: '%.64s' is not one of any, monotonic, "
                                              "read_your_writes, primary", value);
    }
    if (strcmp(option, "max_lag_ms") == 0) {
        if (strcmp(value, "default") == 0) {
            s->max_lag_ms = -1;
            return SR_OK;
        }
        long long v;
        bool overflow;
        if (!sr__parse_int64(value, &v, &overflow) || overflow || v < 0 || v > 86400000)
            return sr__session_fail(s, SR_EINVAL, "max_lag_ms: '%.64s' is not 0..86400000 or "
                                                  "'default'", value);
        s->max_lag_ms = (int)v;
        return SR_OK;
    }
    return sr__session_fail(s, SR_EINVAL, "unknown session option '%.64s' (consistency, max_lag_ms)",
                            option);
}

/* ---- the trace context ---- */

static int set_trace(sr_session *s, const char *traceparent, int ntags, const char *const *tags)
{
    sr__session_clear_error(s);
    if (!traceparent || !*traceparent) {
        free(s->trace);
        s->trace = NULL;
        s->trace_len = 0;
        return SR_OK;
    }
    char *text = NULL;
    size_t len = 0;
    int bad = 0;
    const char *why = NULL;
    /* Built whole before the old one is dropped: a refused context changes nothing. */
    int rc = sr__trace_build(traceparent, ntags, tags, &text, &len, &bad, &why);
    if (rc == SR_ENOMEM)
        return sr__session_fail(s, rc, "sr_session_set_trace: out of memory");
    if (rc != SR_OK) {
        if (bad == SR_TRACE_BAD_TRACEPARENT)
            return sr__session_fail(s, rc, "sr_session_set_trace: the traceparent %s", why);
        if (bad == SR_TRACE_BAD_TAGS)
            return sr__session_fail(s, rc, "sr_session_set_trace: %s", why);
        return sr__session_fail(s, rc, "sr_session_set_trace: tag %d (of %d) %s", bad + 1, ntags,
                                why);
    }
    free(s->trace);
    s->trace = text;
    s->trace_len = len;
    return SR_OK;
}

const char *sr__session_trace_sql(sr_session *s, const char *sql)
{
    size_t n = strlen(sql), need = n + s->trace_len + 1;
    if (need > s->trace_cap) {
        /* Grown, never shrunk: a session repeats statements of similar sizes. */
        size_t cap = s->trace_cap ? s->trace_cap : 256;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        char *p = realloc(s->trace_sql, cap);
        if (!p) {
            sr__session_fail(s, SR_ENOMEM, "out of memory adding the trace context to the "
                                           "statement");
            return NULL;
        }
        s->trace_sql = p;
        s->trace_cap = cap;
    }
    memcpy(s->trace_sql, sql, n);
    memcpy(s->trace_sql + n, s->trace, s->trace_len + 1);
    return s->trace_sql;
}

/* ---- tokens ---- */

static const char *session_token(sr_session *s)
{
    sr__session_clear_error(s);
    sr_topo *r = s->router;
    /* A token that left out a write would let the importing session read a
     * replica that has not replayed it: no token at all is the honest answer.
     * This session itself reads those shards from the primary. */
    if (s->positions.lost) {
        sr__session_fail(s, SR_ESTALE, "a write position of this session was lost (out of "
                                       "memory): no token can carry it");
        return NULL;
    }
    int unknown = sr__positions_first_unknown(&s->positions, r->nshards);
    if (unknown >= 0) {
        sr__session_fail(s, SR_ESTALE, "the write position on shard '%s' is unknown (it could "
                         "not be read after the write): no token can carry it until the "
                         "next write there records one", r->shards[unknown].name);
        return NULL;
    }
    char *buf = NULL;
    if (sr__token_build(r, (const char *const *)s->positions.written, &buf) != SR_OK) {
        sr__session_fail(s, SR_ENOMEM, "out of memory building the token");
        return NULL;
    }
    free(s->token);
    s->token = buf;
    return buf;
}

static int session_set_token(sr_session *s, const char *token)
{
    sr__session_clear_error(s);
    if (!token)
        return sr__session_fail(s, SR_EINVAL, "sr_session_set_token: token is NULL");
    sr_topo *r = s->router;
    sr_token_parsed t;
    char why[SR_ERRMSG_LEN];
    /* Every entry is checked before any is merged, so a bad token changes nothing. */
    int rc = sr__token_parse(r, token, &t, why, sizeof why);
    if (rc != SR_OK)
        return sr__session_fail(s, rc, "%s", why);
    if (t.unknown > 0)
        sr__log(r, SR_LOG_INFO, "consistency token: %d entr%s for shards this router does not "
                                "have ignored (first: '%s')",
                t.unknown, t.unknown == 1 ? "y" : "ies", t.first_unknown);
    for (int i = 0; t.pos_of && i < r->nshards; i++)
        if (t.pos_of[i] >= 0)
            sr__positions_merge_written(&s->positions, r, i, t.text + t.pos_of[i]);
    sr__token_parsed_free(&t);
    return SR_OK;
}

/* ---- public entry points: the NULL check, then the work inside the misuse guard ---- */

SR_API int sr_session_set_affinity(sr_session *s, sr_key key)
{
    SR_SESSION_GUARDED(s, set_affinity(s, key));
}

SR_API int sr_session_set_trace(sr_session *s, const char *traceparent, int ntags,
                                const char *const *tags)
{
    SR_SESSION_GUARDED(s, set_trace(s, traceparent, ntags, tags));
}

SR_API int sr_session_set(sr_session *s, const char *option, const char *value)
{
    SR_SESSION_GUARDED(s, session_set(s, option, value));
}

SR_API const char *sr_session_token(sr_session *s)
{
    if (!s || !sr__session_enter(s))
        return NULL;
    sr__session_follow(s);
    const char *t = session_token(s);
    sr__session_leave(s);
    return t;
}

SR_API int sr_session_set_token(sr_session *s, const char *token)
{
    SR_SESSION_GUARDED(s, session_set_token(s, token));
}

SR_API const char *sr_session_errmsg(const sr_session *s)
{
    return s ? s->errmsg : "no session (NULL)";
}

SR_API const char *sr_session_sqlstate(const sr_session *s) { return s ? s->sqlstate : ""; }

SR_API int sr_session_error_location(const sr_session *s, int *shard, int *node)
{
    if (!s)
        return SR_EINVAL;
    if (shard)
        *shard = s->err_shard;
    if (node)
        *node = s->err_node;
    return SR_OK;
}

SR_API int sr_in_transaction(const sr_session *s) { return s ? s->in_txn : 0; }
