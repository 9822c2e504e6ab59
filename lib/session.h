/*
 * Sessions and the statement path shared by session.c (entry points and
 * writes), read.c (where a read goes), txn.c (transactions), scatter.c and
 * consistency.c (positions, tokens, lag).
 */
#ifndef SR_SESSION_H
#define SR_SESSION_H

#include "result.h"
#include "topology.h"

struct sr_session {
    sr_router *router;
    _Atomic int busy;   /* 1 while a public call runs on this session (SR_EMISUSE) */
    uint64_t affinity;
    unsigned latency_tick; /* statements run: one in SR_LATENCY_SAMPLE is timed (session.c) */
    /* consistency (consistency.c) */
    int mode;           /* sr_consistency */
    int max_lag_ms;     /* -1: the router's replica.max_lag_ms */
    char **written;     /* [nshards]: position after this session's last write, or NULL */
    char **observed;    /* [nshards]: position this session has read at (monotonic), or NULL */
    char *token;        /* the text sr_session_token() last returned */
    int positions_lost; /* recording a position ran out of memory: reads that need one go to
                           the primary for the rest of the session (consistency.c) */
    /* the open transaction, if any (txn.c) */
    int in_txn;
    int txn_read_only;
    int txn_shard;
    sr_node *txn_node;
    sr_driver_conn *txn_conn;
    char errmsg[SR_ERRMSG_LEN];
    char sqlstate[6];
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

/* ---- errors (session.c) ---- */

void sr__session_clear_error(sr_session *s);
int sr__session_fail(sr_session *s, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Records a driver error with where it happened (shard, node, role); keeps the SQLSTATE. */
int sr__fail_on_node(sr_session *s, const sr_node *n, const char *what, const sr_driver_error *e);
/* SR_EUNAVAILABLE naming the shard and why each node was skipped. */
int sr__fail_unavailable(sr_session *s, const sr_shard *sh, const char *what);

/* Checks the arguments shared by every statement function. */
int sr__check_statement_args(sr_session *s, const char *sql, int nparams,
                             const char *const *params);

/* ---- the pieces of one statement on one node (session.c) ---- */

int64_t sr__statement_deadline(const sr_router *r);
/* Takes a pooled connection; a failure is reported to the node's health. */
int sr__node_checkout(sr_session *s, sr_node *n, bool probe, int64_t deadline,
                      sr_driver_conn **conn, sr_driver_error *e);
/* Runs the statement on a checked-out connection: balance stats, counters, result. */
int sr__node_exec(sr_session *s, sr_node *n, sr_driver_conn *conn, const char *sql, int nparams,
                  const char *const *params, int64_t deadline, sr_result **out,
                  sr_driver_error *e);
/* Returns the connection (dropped when the error cost it) and reports the outcome. */
void sr__node_release(sr_session *s, sr_node *n, sr_driver_conn *conn, int rc,
                      const sr_driver_error *e, bool probe);

/*
 * Runs one statement on one shard (no argument checks: the caller did them).
 * `ropts` may be NULL. On error the session's message and SQLSTATE are set.
 */
int sr__exec_on_shard(sr_session *s, int shard, sr_intent intent, const sr_read_opts *ropts,
                      const char *sql, int nparams, const char *const *params, sr_result **out);

/* ---- reads (read.c) ---- */

/* The effective consistency mode and lag bound of one read. */
typedef struct sr_read_plan {
    int mode;
    int max_lag_ms; /* 0: none */
} sr_read_plan;

sr_read_plan sr__read_plan(const sr_session *s, const sr_read_opts *ropts);

/*
 * Finds the node a read on `shard` goes to and checks out a connection on
 * it that satisfies the plan (health, lag, this session's positions), waiting
 * up to consistency.wait_ms for a replica to catch up before falling back to
 * the primary. `exclude` is a bit mask of node indexes not to use.
 * Errors (message set): SR_ESTALE, SR_EUNAVAILABLE, connection errors.
 */
int sr__read_acquire(sr_session *s, int shard, const sr_read_plan *plan, uint64_t exclude,
                     int64_t deadline, sr_node **node, sr_driver_conn **conn, bool *probe);

/* A whole read: acquire, run, retry once elsewhere after a connection-level failure. */
int sr__read_on_shard(sr_session *s, int shard, const sr_read_plan *plan, const char *sql,
                      int nparams, const char *const *params, sr_result **out);

/* Key -> shard index and index checks, setting the session's message on error (session.c). */
int sr__session_shard_for_key(sr_session *s, sr_key key);
int sr__session_check_shard(sr_session *s, int shard);
/*
 * Admits the shard's primary (health, role) and checks out a connection to
 * it; on error the session's message names `what` and why.
 */
int sr__primary_acquire(sr_session *s, int shard, const char *what, int64_t deadline,
                        sr_driver_conn **conn, bool *probe);

/* ---- transactions (txn.c) ---- */

int sr__txn_exec(sr_session *s, int shard, const char *sql, int nparams,
                 const char *const *params, sr_result **out);
/* Rolls back and unpins an open transaction (sr_session_free). */
void sr__txn_abandon(sr_session *s);

/* ---- positions, lag and tokens (consistency.c) ---- */

void sr__consistency_init(sr_session *s);
void sr__consistency_free(sr_session *s);

/* The marker for "this session wrote here but the position is unknown": read the primary. */
extern const char sr__position_unknown[];

/*
 * The position a read on `shard` must see under `mode`, copied to buf;
 * NULL when there is none (mode any/primary, no write yet, or a backend
 * without positions). May return sr__position_unknown.
 */
const char *sr__required_position(sr_session *s, int shard, int mode, char *buf, size_t len);

/* After a write (or commit) on the primary: fetches the write position on the same
 * connection and records it for read-your-writes and tokens. */
void sr__record_write(sr_session *s, sr_node *primary, sr_driver_conn *conn, int64_t deadline);

/* Monotonic reads: records what the node (just read from) has applied, fetched on `conn`. */
void sr__record_observed(sr_session *s, sr_node *n, sr_driver_conn *conn, int64_t deadline);

/*
 * Whether the replica `n` has applied `want`: from the node's cached position
 * when that already covers it, else asked on `conn` (and cached). A failed
 * check is reported in *e and returns the status.
 */
int sr__node_has_applied(sr_node *n, sr_driver_conn *conn, const char *want, int64_t deadline,
                         bool *applied, sr_driver_error *e);

/* Whether the replica `n` is within the lag bound (measured lazily, see replica.lag_refresh_ms). */
bool sr__node_lag_ok(sr_session *s, sr_node *n, int max_lag_ms);

/*
 * Tokens, split from the session so that tests and the fuzzer reach them.
 * A parsed token: for each shard of the router the offset of its position in
 * `text`, or -1; entries for shards the router does not have are counted.
 */
typedef struct sr_token_parsed {
    long *pos_of;           /* [nshards] */
    char *text;             /* the decoded positions, NUL-terminated each */
    int entries;            /* shards with a position */
    int unknown;            /* entries ignored: no such shard here */
    char first_unknown[64 * 4 + 8]; /* its name, control bytes escaped (for the log) */
} sr_token_parsed;

/*
 * Parses and checks a whole token against the router (topology, names,
 * positions the shard's driver accepts, the size and entry caps) without
 * changing anything. SR_EINVAL or SR_ENOMEM with the reason in `why`
 * (untrusted bytes escaped); on success free `out` with sr__token_parsed_free()
 * (pos_of is NULL for the empty token).
 */
int sr__token_parse(sr_router *r, const char *token, sr_token_parsed *out, char *why,
                    size_t whylen);
void sr__token_parsed_free(sr_token_parsed *t);
/*
 * Writes the token of `n` shards (names[i], positions[i]; NULL or the unknown
 * marker: no entry) into buf; its length, 0 when it has no entry or did not fit.
 */
size_t sr__token_encode(uint64_t topology, const char *const *names, const char *const *positions,
                        int n, char *buf, size_t cap);
/* The longest token the router accepts (>= the longest it can emit). */
size_t sr__token_max_bytes(sr_router *r);

/* Stores a lag measurement / a replayed position (also used by the prober). */
void sr__node_store_lag(sr_node *n, int64_t lag_ms);
void sr__node_store_position(sr_node *n, const char *pos);

#endif
