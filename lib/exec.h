/* Statements on one shard (exec.c), shared by the scatter entry point. */
#ifndef SR_EXEC_H
#define SR_EXEC_H

#include "session.h"

/*
 * Runs one statement on one shard: inside a transaction on its connection,
 * a write on the primary, a read where read.c sends it (no argument checks:
 * the caller did them). `ropts` may be NULL. On error the session's message
 * and SQLSTATE are set.
 */
int sr__exec_on_shard(sr_session *s, int shard, sr_intent intent, const sr_read_opts *ropts,
                      const char *sql, int nparams, const char *const *params, sr_result **out);

#endif
