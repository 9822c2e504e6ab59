/* Sessions and the statement path shared by session.c and scatter.c. */
#ifndef SR_SESSION_H
#define SR_SESSION_H

#include "result.h"
#include "topology.h"

struct sr_session {
    sr_router *router;
    uint64_t affinity;
    /* the open transaction, if any */
    int in_txn;
    int txn_shard;
    sr_node *txn_node;
    sr_driver_conn *txn_conn;
    char errmsg[SR_ERRMSG_LEN];
    char sqlstate[6];
};

/* Clears the session's last error (every public call starts with it). */
void sr__session_clear_error(sr_session *s);
/* Sets the session's message (and no SQLSTATE) and returns status. */
int sr__session_fail(sr_session *s, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Checks the arguments shared by every statement function. */
int sr__check_statement_args(sr_session *s, const char *sql, int nparams,
                             const char *const *params);

/*
 * Runs one statement on one shard (no argument checks: the caller did them).
 * On error the session's message and SQLSTATE are set.
 */
int sr__exec_on_shard(sr_session *s, int shard, sr_intent intent, const char *sql, int nparams,
                      const char *const *params, sr_result **out);

#endif
