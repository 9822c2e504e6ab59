/* What the scatter entry points (scatter.c) share with cursors (cursor.c). */
#ifndef SR_SCATTER_H
#define SR_SCATTER_H

#include "fanout.h"
#include "merge.h"
#include "session.h"

/* Checks sr_scatter_opts (NULL is fine) with the session's message on error. */
int sr__scatter_check_opts(sr_session *s, const sr_scatter_opts *o);

/* The merge plan and the SQL every shard runs; SR_EINVAL (why in the message), SR_ENOMEM. */
int sr__scatter_plan(sr_session *s, const sr_scatter_opts *o, const char *sql,
                     sr_merge_plan **plan, char **shard_sql);

/*
 * Writes the session's message for the failed shards of a fanout ("N of M
 * shards failed: [name] why; ...") and returns the status: the failure's
 * when every shard failed, SR_EPARTIAL when some did, SR_OK (message
 * cleared) when none. *nfailed gets their number and `failed` (may be NULL;
 * room for every shard) their router indexes.
 */
int sr__scatter_failures(sr_session *s, const sr_fanout *f, int *nfailed, int *failed);

#endif
