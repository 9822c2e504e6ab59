/*
 * Sessions (session.c): the caller's handle, its options, its positions and
 * open transaction, and the one place that writes its message. The entry
 * points (exec.c, txn.c, scatter.c) call down into session.c; session.c
 * calls down into read.c, positions.c, token.c and node.c, never up.
 */
#ifndef SR_SESSION_H
#define SR_SESSION_H

#include "positions.h"
#include "read.h"
#include "reason.h"
#include "result.h"
#include "topology.h"

/* One statement in this many per session has its latency measured (p2c_ewma). */
#define SR_LATENCY_SAMPLE 4

struct sr_session {
    /* The topology version the session routes on (a reference), and the router it belongs
     * to: at the start of each call the session moves to the router's current version
     * (sr__session_refresh), except while a transaction or cursor of it is open. */
    sr_topo *router;
    sr_router *handle;
    int open_cursors;
    _Atomic int busy;   /* 1 while a public call runs on this session (SR_EMISUSE) */
    uint64_t affinity;
    unsigned latency_tick; /* statements run: one in SR_LATENCY_SAMPLE is timed */
    /* The node the last read ran on (p2c_ewma stays there unless another is clearly
     * cheaper, see balance.c); -1 before any read. */
    int last_read_shard;
    int last_read_node;
    /* consistency */
    int mode;           /* sr_consistency */
    int max_lag_ms;     /* -1: the router's replica.max_lag_ms */
    sr_positions positions;
    char *token;        /* the text sr_session_token() last returned */
    /* the open transaction, if any (txn.c) */
    int in_txn;
    int txn_read_only;
    int txn_shard;
    sr_node *txn_node;
    sr_driver_conn *txn_conn;
    /* The trace context (sr_session_set_trace): the comment each statement sent gets, NULL
     * when none; and the buffer its statements are written into, kept for the next call. */
    char *trace;
    size_t trace_len;
    char *trace_sql;
    size_t trace_cap;
    char errmsg[SR_ERRMSG_LEN];
    char sqlstate[6];
    /* Where the failure errmsg describes happened (sr_session_error_location); -1: not on
     * one shard / no node reached. */
    int err_shard;
    int err_node;
};

/*
 * Two threads in one session is misuse (documented), and it used to end in a
 * use-after-free. Every public function that takes a session runs between
 * enter and leave: one uncontended atomic exchange and one store. A second
 * thread that enters while the first is inside gets false and returns
 * SR_EMISUSE without touching the session, not even its message. Acquire /
 * release make one call's writes visible to the next call on another thread.
 */
static inline bool sr__session_enter(sr_session *s)
{
    return atomic_exchange_explicit(&s->busy, 1, memory_order_acquire) == 0;
}

static inline void sr__session_leave(sr_session *s)
{
    atomic_store_explicit(&s->busy, 0, memory_order_release);
}

/* Moves the session to the router's current topology version (see struct sr_session). */
void sr__session_refresh(sr_session *s);

/* At the start of a call: one load of the router's version, compared with the session's. */
static inline void sr__session_follow(sr_session *s)
{
    if (s->router->version != atomic_load_explicit(&s->handle->version, memory_order_acquire))
        sr__session_refresh(s);
}

/* The body of a public function that takes a session: the NULL check, then
 * `call` inside the misuse guard, on the current topology. */
#define SR_SESSION_GUARDED(s, call)      \
    do {                                 \
        if (!(s))                        \
            return SR_EINVAL;            \
        if (!sr__session_enter(s))       \
            return SR_EMISUSE;           \
        sr__session_follow(s);           \
        int rc_ = (call);                \
        sr__session_leave(s);            \
        return rc_;                      \
    } while (0)

/* Whether this statement's latency is measured (one in SR_LATENCY_SAMPLE, the first always). */
static inline bool sr__session_timed(sr_session *s)
{
    return s->latency_tick++ % SR_LATENCY_SAMPLE == 0;
}

/* ---- the trace context ---- */

/*
 * `sql` followed by the session's trace comment (s->trace must be set), in
 * the session's buffer: valid until the next call that writes it, which is
 * the next entry point of this session. NULL when out of memory (message
 * set). Only entry points call it, once per call, on the final text sent.
 */
const char *sr__session_trace_sql(sr_session *s, const char *sql);

/* ---- the session's message ---- */

static inline void sr__session_clear_error(sr_session *s)
{
    s->errmsg[0] = '\0';
    s->sqlstate[0] = '\0';
    s->err_shard = s->err_node = -1;
}

int sr__session_fail(sr_session *s, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/*
 * Writes the message of a failure that a lower layer returned as a reason
 * (what the caller was doing, e.g. "write", then where and why; the SQLSTATE
 * of a driver error is kept). Returns `status`.
 */
int sr__session_fail_reason(sr_session *s, int status, const char *what, const sr_reason *why);
/* Appends text to the session's message (a consequence of the failure it states). */
void sr__session_append(sr_session *s, const char *text);

/* ---- checks shared by the entry points (message set on error) ---- */

int sr__session_check_statement(sr_session *s, const char *sql, int nparams,
                                const char *const *params);
int sr__session_check_intent(sr_session *s, sr_intent intent);
int sr__session_check_read_opts(sr_session *s, const sr_read_opts *o);
/* Key -> shard index, or a negative status. */
int sr__session_shard_for_key(sr_session *s, sr_key key);
int sr__session_check_shard(sr_session *s, int shard);

/*
 * The read plan of one read on `shard` from the session's consistency
 * settings and `ropts` (may be NULL); the needed position is copied into buf.
 */
void sr__session_read_plan(const sr_session *s, const sr_read_opts *ropts, int shard,
                           sr_read_plan *plan, char *buf, size_t len);

#endif
