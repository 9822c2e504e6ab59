/*
 * Cursors (sr_cursor_*): a statement's rows handed out one at a time as
 * they arrive, from one shard or merged from many. The fanout (fanout.c)
 * keeps at most SR_CURSOR_BATCH rows per shard; the merger (merge.c) takes
 * them lazily, so memory is bounded by shards x batch for a stream of any
 * length (groups and aggregates hold one row per group until the end).
 */
#include "scatter.h"

#include "exec.h"

#include <stdlib.h>
#include <string.h>

/* Rows read ahead per shard: enough to keep a socket busy, small enough to stay in cache. */
#define SR_CURSOR_BATCH 64

enum { CURSOR_OPEN = 1, CURSOR_ENDED = 0 };

struct sr_cursor {
    sr_session *s;
    sr_merge_plan *plan;
    sr_fanout *f;
    sr_merger *m;
    int64_t deadline; /* of the wait in progress (the merger's pull reads it) */
    int state;        /* CURSOR_OPEN, CURSOR_ENDED, or the failure's status */
    bool partial;
    bool nexted;      /* sr_cursor_next was called: the columns may be known */
    sr_row_ref cur;   /* the current row; res NULL when none */
};

static int pull_rows(void *ctx, int shard, sr_row_ref *out)
{
    sr_cursor *c = ctx;
    return sr__fanout_pull(c->f, shard, c->deadline, out);
}

/* Releases the connections and the merge state; the cursor keeps its final state. */
static void cursor_release(sr_cursor *c)
{
    sr__merger_free(c->m);
    c->m = NULL;
    sr__fanout_free(c->f);
    c->f = NULL;
    sr__merge_plan_free(c->plan);
    c->plan = NULL;
    c->cur.res = NULL;
}

static int open_on(sr_session *s, const int *shards, int n, sr_intent intent,
                   const sr_scatter_opts *o, const sr_stmt *st, sr_cursor **out)
{
    sr_cursor *c = calloc(1, sizeof *c);
    if (!c)
        return sr__session_fail(s, SR_ENOMEM, "out of memory");
    c->s = s;
    c->partial = o && o->partial;
    char *shard_sql = NULL;
    int rc = sr__scatter_plan(s, o, st->sql, &c->plan, &shard_sql);
    if (rc != SR_OK) {
        free(c);
        return rc;
    }
    sr_stmt sst = *st;
    sst.sql = shard_sql;
    if (s->trace) {
        /* On the text each shard runs (after any pushdown rewrite); the kind of statement
         * is the caller's SQL's. */
        intent = sr__exec_fixed_intent(s->router, shards, n, intent, st->sql);
        if (!(sst.sql = sr__session_trace_sql(s, shard_sql))) {
            free(shard_sql);
            sr__merge_plan_free(c->plan);
            free(c);
            return SR_ENOMEM;
        }
    }
    c->deadline = sr__statement_deadline(s->router);
    rc = sr__fanout_start(s, shards, n, intent, o ? o->read : NULL, &sst, SR_CURSOR_BATCH,
                          c->deadline, &c->f);
    free(shard_sql); /* sent (or run) by now */
    if (c->f)
        sr__fanout_forget_stmt(c->f);
    if (rc == SR_OK)
        rc = sr__merger_new(c->plan, sr__fanout_count(c->f), pull_rows, c, &c->m);
    if (rc != SR_OK) {
        cursor_release(c);
        free(c);
        return sr__session_fail(s, SR_ENOMEM, "out of memory");
    }
    /* A shard that could not even start fails the cursor now, unless partial results were
     * asked for: then its rows are left out and the end reports it. */
    int nfailed = 0;
    rc = sr__scatter_failures(s, c->f, &nfailed, NULL);
    if (rc != SR_OK && !(c->partial && rc == SR_EPARTIAL)) {
        cursor_release(c);
        free(c);
        return rc;
    }
    sr__session_clear_error(s);
    if (c->partial)
        sr__fanout_skip_failed(c->f);
    c->state = CURSOR_OPEN;
    s->open_cursors++; /* the session stays on this topology version until it is closed */
    *out = c;
    return SR_OK;
}

static int check_open(sr_session *s, sr_intent intent, const sr_scatter_opts *o,
                      const sr_stmt *st, sr_cursor **out)
{
    int rc = sr__exec_begin_call(s, intent, st);
    if (rc == SR_OK)
        rc = sr__scatter_check_opts(s, o);
    if (rc == SR_OK && !out)
        rc = sr__session_fail(s, SR_EINVAL, "out is NULL (a cursor must be closed by its owner)");
    if (rc == SR_OK && s->in_txn)
        rc = sr__session_fail(s, SR_ETXN, "cursors run outside transactions (the session has one "
                                          "open on shard '%s')",
                              s->router->shards[s->txn_shard].name);
    return rc;
}

static int cursor_open(sr_session *s, sr_key key, sr_intent intent, const sr_read_opts *ropts,
                       const sr_stmt *st, sr_cursor **out)
{
    sr_scatter_opts o = SR_SCATTER_OPTS_INIT;
    o.merge = SR_MERGE_CONCAT; /* one shard: its rows as they come */
    o.read = ropts;
    int rc = check_open(s, intent, &o, st, out);
    if (rc != SR_OK)
        return rc;
    int shard = sr__session_shard_for_key(s, key);
    if (shard < 0)
        return shard;
    return open_on(s, &shard, 1, intent, &o, st, out);
}

static int cursor_open_all(sr_session *s, sr_intent intent, const sr_scatter_opts *o,
                           const sr_stmt *st, sr_cursor **out)
{
    int rc = check_open(s, intent, o, st, out);
    return rc != SR_OK ? rc : open_on(s, NULL, 0, intent, o, st, out);
}

static int cursor_next(sr_cursor *c)
{
    sr_session *s = c->s;
    if (c->state != CURSOR_OPEN)
        return c->state;
    sr__session_clear_error(s);
    c->nexted = true;
    c->deadline = sr__statement_deadline(s->router);
    char why[512] = "";
    int rc = sr__merger_next(c->m, &c->cur, why, sizeof why);
    if (rc > 0)
        return 1;
    c->cur.res = NULL;
    int nfailed = 0;
    int failures = sr__scatter_failures(s, c->f, &nfailed, NULL);
    if (rc == 0 && failures == SR_OK) {
        c->state = CURSOR_ENDED;
    } else if (rc == 0 || failures != SR_OK) {
        /* A shard's failure (its message is set), or the end of a partial stream. */
        c->state = failures;
    } else {
        c->state = sr__session_fail(s, rc, rc == SR_ENOMEM ? "out of memory merging the shards' "
                                                             "rows: %s"
                                                           : "merging the shards' rows failed: %s",
                                    why[0] ? why : sr_strerror(rc));
    }
    /* The columns stay readable after the end: the merger is kept until close. */
    sr__fanout_free(c->f);
    c->f = NULL;
    return c->state;
}

static const sr_result *cursor_row(const sr_cursor *c, int *row)
{
    if (c->cur.res) {
        *row = c->cur.row;
        return c->cur.res;
    }
    *row = -1;
    return c->nexted && c->m ? sr__merger_columns(c->m) : NULL;
}

SR_API int sr_cursor_open(sr_session *s, sr_key key, sr_intent intent, const sr_read_opts *opts,
                          const char *sql, int nparams, const sr_value *params, sr_cursor **out)
{
    sr_stmt st = {sql, nparams, NULL, params, true, false};
    SR_SESSION_GUARDED(s, cursor_open(s, key, intent, opts, &st, out));
}

SR_API int sr_cursor_open_all(sr_session *s, sr_intent intent, const sr_scatter_opts *opts,
                              const char *sql, int nparams, const sr_value *params,
                              sr_cursor **out)
{
    sr_stmt st = {sql, nparams, NULL, params, true, false};
    SR_SESSION_GUARDED(s, cursor_open_all(s, intent, opts, &st, out));
}

SR_API int sr_cursor_next(sr_cursor *c)
{
    if (!c)
        return SR_EINVAL;
    SR_SESSION_GUARDED(c->s, cursor_next(c));
}

SR_API const sr_result *sr_cursor_row(const sr_cursor *c, int *row)
{
    int ignored;
    return c ? cursor_row(c, row ? row : &ignored) : NULL;
}

SR_API void sr_cursor_close(sr_cursor *c)
{
    if (!c)
        return;
    cursor_release(c);
    c->s->open_cursors--;
    free(c);
}
