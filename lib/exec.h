/* Statements on one shard (exec.c), shared by the scatter entry point. */
#ifndef SR_EXEC_H
#define SR_EXEC_H

#include "session.h"
#include "stmt.h"

/*
 * Runs one statement on one shard: inside a transaction on its connection,
 * a write on the primary, a read where read.c sends it (no argument checks:
 * the caller did them). `ropts` may be NULL. `report`: deliver its routing
 * event (the caller's sampling decision). On error the session's message
 * and SQLSTATE are set.
 */
int sr__exec_on_shard(sr_session *s, int shard, sr_intent intent, const sr_read_opts *ropts,
                      const sr_stmt *st, bool report, sr_result **out);

/* Whether a statement on `shard` goes to the primary as a write (intent, or the lexer). */
bool sr__exec_is_write(const sr_topo *r, int shard, sr_intent intent, const char *sql);

/*
 * `intent` with SR_AUTO decided from `sql` as sr__exec_is_write would decide
 * it on the shards `shards` (n of them; NULL: every shard): SR_WRITE when
 * any of their dialects reads it as a write, else SR_READ. For entry points
 * that send other text than the caller's (a trace comment), so that the
 * layers below never classify the text they send.
 */
sr_intent sr__exec_fixed_intent(const sr_topo *r, const int *shards, int n, sr_intent intent,
                                const char *sql);

/* The argument checks of a statement (text or typed), with the session's message on error. */
int sr__exec_check_stmt(sr_session *s, const sr_stmt *st);

/* What every statement call starts with: the message cleared, the intent and statement checked. */
int sr__exec_begin_call(sr_session *s, sr_intent intent, const sr_stmt *st);

#endif
