/*
 * One statement on several shards at once, driven by the caller's thread
 * (fanout.c): each shard's node is chosen as a read or a write on that shard
 * would choose it, the statement is sent on every shard before any answer
 * is awaited, and one poll() over all their sockets takes rows as they come
 * into a batch per shard. Shards whose driver cannot run a statement in
 * steps (driver ABI < 6) run whole, one after another, through the one-shard
 * path (exec.c), after the others were sent.
 *
 * The scatter entry points (scatter.c) and cursors (cursor.c) take rows from
 * it shard by shard (sr__fanout_pull, the merger's pull function). Failures
 * stay per shard, as a status and a reason; only those entry points turn
 * them into the session's message.
 */
#ifndef SR_FANOUT_H
#define SR_FANOUT_H

#include "merge.h"
#include "session.h"
#include "stmt.h"

typedef struct sr_fanout sr_fanout;

/*
 * Starts `st` on the shards `shards` (n of them; NULL: every shard of the
 * router, in order) for `intent` (a write on each primary, else reads as
 * `ropts` and the session's consistency say). `batch_rows` bounds the rows
 * held per shard before its socket is left unread (0: no bound, the whole
 * result is buffered). Inside a transaction (the session's), the one shard
 * runs on the transaction's connection. Returns SR_OK (failures of shards
 * are kept per shard: sr__fanout_failed) or SR_ENOMEM (*out untouched).
 * Each shard's acquisition and send are bounded by `deadline`.
 */
int sr__fanout_start(sr_session *s, const int *shards, int n, sr_intent intent,
                     const sr_read_opts *ropts, const sr_stmt *st, size_t batch_rows,
                     int64_t deadline, sr_fanout **out);

/* Drives every shard to its end (or failure) within `deadline`: the buffered case. */
void sr__fanout_run(sr_fanout *f, int64_t deadline);

/*
 * The next row of the i-th shard of the fanout (sr_merge_pull_fn's shape,
 * with the wait bound): 1 with *out, 0 at its end, or the shard's failure
 * status (0 instead when the fanout was told to skip failed shards). The
 * row stays valid until the next pull for the same shard. Waits at most
 * until `deadline` for it, reading every other shard meanwhile.
 */
int sr__fanout_pull(sr_fanout *f, int i, int64_t deadline, sr_row_ref *out);

/*
 * The statement given to sr__fanout_start is no longer valid (a cursor's
 * parameters are borrowed only while it opens): from now on a read that
 * fails is not retried elsewhere. Until then one that fails transiently
 * before any of its rows was pulled is sent once more to another node.
 */
void sr__fanout_forget_stmt(sr_fanout *f);

/* From now on a failed shard reads as ended (partial results). */
void sr__fanout_skip_failed(sr_fanout *f);

/* Number of shards in the fanout. */
int sr__fanout_count(const sr_fanout *f);

/* The router's index of the i-th shard. */
int sr__fanout_shard(const sr_fanout *f, int i);

/*
 * The status of the i-th shard: SR_OK when it has not failed; otherwise its
 * failure, with *why (a reason) or *text (the one-shard path's own message,
 * for drivers without steps) set, the other NULL; *what is "read" or
 * "write"; *sqlstate "" or the SQLSTATE.
 */
int sr__fanout_failed(const sr_fanout *f, int i, const sr_reason **why, const char **what,
                      const char **text, const char **sqlstate);

/* Rows changed, summed over the shards that ended (writes). */
int64_t sr__fanout_affected(const sr_fanout *f);

/* The i-th shard's whole result (after sr__fanout_run, for concatenation), or NULL. */
const sr_result *sr__fanout_result(const sr_fanout *f, int i);

/*
 * Stops whatever still runs (a cancel on each connection, or closing it,
 * within statement_timeout_ms), returns the connections and frees the
 * fanout. NULL is a no-op.
 */
void sr__fanout_free(sr_fanout *f);

#endif
