/*
 * Scatter-gather (sr_exec_all, sr_exec_all_values, sr_explain_all): the
 * statement runs on every shard at once (fanout.c) and the rows are merged
 * as the SQL or the caller's spec says (merge.c): concatenated in shard
 * order, k-way merged for ORDER BY, combined for aggregates and groups.
 * A statement whose rows cannot be merged correctly is refused before
 * anything is sent. Partial failure is reported, never hidden.
 */
#include "scatter.h"

#include "exec.h"
#include "fanout.h"

#include <stdlib.h>
#include <string.h>

int sr__scatter_check_opts(sr_session *s, const sr_scatter_opts *o)
{
    if (!o)
        return SR_OK;
    if (o->version != SR_SCATTER_OPTS_VERSION)
        return sr__session_fail(s, SR_EINVAL,
                                "sr_scatter_opts.version is %d; this library knows version %d "
                                "(initialise with SR_SCATTER_OPTS_INIT)",
                                o->version, SR_SCATTER_OPTS_VERSION);
    if (o->merge < SR_MERGE_AUTO || o->merge > SR_MERGE_SPEC)
        return sr__session_fail(s, SR_EINVAL,
                                "unknown merge mode %d (SR_MERGE_AUTO, SR_MERGE_CONCAT or "
                                "SR_MERGE_SPEC)",
                                o->merge);
    if (o->merge == SR_MERGE_SPEC && !o->spec)
        return sr__session_fail(s, SR_EINVAL, "SR_MERGE_SPEC without a spec (opts->spec is NULL)");
    if (o->partial != 0 && o->partial != 1)
        return sr__session_fail(s, SR_EINVAL, "sr_scatter_opts.partial is %d (0 or 1)", o->partial);
    return sr__session_check_read_opts(s, o->read);
}

int sr__scatter_plan(sr_session *s, const sr_scatter_opts *o, const char *sql,
                     sr_merge_plan **plan, char **shard_sql)
{
    sr_topo *r = s->router;
    /* Shards of one router share a backend in practice; a mix merges NULLs as shard 0's
     * backend sorts them (docs/scatter.md). */
    sr_sql_dialect dialect = r->shards[0].nodes[0].b->driver->dialect;
    char why[512] = "";
    int mode = o ? o->merge : SR_MERGE_AUTO;
    int rc = sr__merge_plan_new(sql, dialect, mode, o ? o->spec : NULL, plan, shard_sql, why,
                                sizeof why);
    if (rc == SR_ENOMEM)
        return sr__session_fail(s, rc, "out of memory");
    if (rc != SR_OK)
        return sr__session_fail(s, rc, "cannot merge this statement's rows across shards: %s",
                                why[0] ? why : "(no reason given)");
    return SR_OK;
}

/*
 * The session's message for the failed shards of a fanout: "N of M shards
 * failed: [name] why; ...". Returns the status to report: the first
 * failure's when every shard failed, else SR_EPARTIAL; SR_OK when none did.
 */
int sr__scatter_failures(sr_session *s, const sr_fanout *f, int *nfailed, int *failed)
{
    sr_topo *r = s->router;
    char failures[SR_ERRMSG_LEN] = "";
    size_t flen = 0;
    int n = sr__fanout_count(f), first = SR_OK;
    char sqlstate[6] = "";
    *nfailed = 0;
    for (int i = 0; i < n; i++) {
        const sr_reason *why = NULL;
        const char *what = NULL, *text = NULL, *state = NULL;
        int rc = sr__fanout_failed(f, i, &why, &what, &text, &state);
        if (rc == SR_OK)
            continue;
        if (failed)
            failed[*nfailed] = sr__fanout_shard(f, i);
        if ((*nfailed)++ == 0) {
            first = rc;
            memcpy(sqlstate, state, sizeof sqlstate);
        }
        if (why) {
            sr__session_fail_reason(s, rc, what, why);
            text = sr_session_errmsg(s);
        }
        if (flen < sizeof failures - 1) {
            sr__fmt(failures + flen, sizeof failures - flen, "%s[%s] %s", flen ? "; " : "",
                    r->shards[sr__fanout_shard(f, i)].name, text);
            flen = strlen(failures);
        }
    }
    if (*nfailed == 0) {
        sr__session_clear_error(s);
        return SR_OK;
    }
    int rc = *nfailed == n ? first : SR_EPARTIAL;
    sr__session_fail(s, rc, "%d of %d shards failed: %s", *nfailed, n, failures);
    memcpy(s->sqlstate, sqlstate, sizeof sqlstate);
    return rc;
}

typedef struct pull_ctx {
    sr_fanout *f;
    int64_t deadline;
} pull_ctx;

static int pull_rows(void *ctx, int shard, sr_row_ref *out)
{
    pull_ctx *p = ctx;
    return sr__fanout_pull(p->f, shard, p->deadline, out);
}

/* The shards' rows in shard order, whole results appended at once. */
static int concat_all(sr_session *s, const sr_fanout *f, sr_result *merged)
{
    for (int i = 0; i < sr__fanout_count(f); i++) {
        const sr_result *part = sr__fanout_result(f, i);
        if (!part)
            continue; /* failed: its rows are left out of a partial result */
        int rc = sr__result_append(merged, part);
        if (rc != SR_OK)
            return sr__session_fail(s, rc, rc == SR_EINVAL
                                               ? "shard '%s' returned different columns from "
                                                 "the shards before it"
                                               : "out of memory merging shard '%s'",
                                    s->router->shards[sr__fanout_shard(f, i)].name);
    }
    return SR_OK;
}

/* The merger's rows, copied into `merged`. */
static int merge_all(sr_session *s, sr_fanout *f, const sr_merge_plan *plan, int64_t deadline,
                     sr_result *merged)
{
    pull_ctx ctx = {f, deadline};
    sr_merger *m = NULL;
    if (sr__merger_new(plan, sr__fanout_count(f), pull_rows, &ctx, &m) != SR_OK)
        return sr__session_fail(s, SR_ENOMEM, "out of memory");
    char why[512] = "";
    sr_row_ref ref;
    int rc;
    while ((rc = sr__merger_next(m, &ref, why, sizeof why)) > 0) {
        if (!merged->columns_set)
            rc = sr__result_copy_columns(merged, sr__merger_columns(m), -1);
        if (rc >= 0)
            rc = sr__result_append_row(merged, ref.res, ref.row, sr_result_shard(ref.res, ref.row));
        if (rc < 0)
            break;
    }
    if (rc == 0 && !merged->columns_set && sr__merger_columns(m))
        rc = sr__result_copy_columns(merged, sr__merger_columns(m), -1);
    sr__merger_free(m);
    if (rc == SR_ENOMEM)
        return sr__session_fail(s, rc, "out of memory merging the shards' rows");
    if (rc < 0)
        return sr__session_fail(s, rc, "merging the shards' rows failed: %s",
                                why[0] ? why : sr_strerror(rc));
    return SR_OK;
}

static int exec_all(sr_session *s, sr_intent intent, const sr_scatter_opts *o, const sr_stmt *st,
                    sr_result **out)
{
    int rc = sr__exec_begin_call(s, intent, st);
    if (rc == SR_OK)
        rc = sr__scatter_check_opts(s, o);
    if (rc != SR_OK)
        return rc;
    if (s->in_txn)
        return sr__session_fail(s, SR_ETXN, "sr_exec_all inside a transaction (a transaction "
                                            "stays on one shard)");
    sr_topo *r = s->router;
    sr_merge_plan *plan = NULL;
    char *shard_sql = NULL;
    rc = sr__scatter_plan(s, o, st->sql, &plan, &shard_sql);
    if (rc != SR_OK)
        return rc;
    sr_stmt sst = *st;
    sst.sql = shard_sql;
    if (s->trace) {
        /* On the text each shard runs (after any pushdown rewrite); the kind of statement
         * is the caller's SQL's. */
        intent = sr__exec_fixed_intent(r, NULL, 0, intent, st->sql);
        if (!(sst.sql = sr__session_trace_sql(s, shard_sql))) {
            rc = SR_ENOMEM;
            free(shard_sql);
            sr__merge_plan_free(plan);
            return rc;
        }
    }
    int64_t deadline = sr__statement_deadline(r);
    sr_fanout *f = NULL;
    sr_result *merged = NULL;
    int *failed = malloc((size_t)r->nshards * sizeof *failed);
    if (!failed || sr__fanout_start(s, NULL, 0, intent, o ? o->read : NULL, &sst, 0, deadline,
                                    &f) != SR_OK) {
        rc = sr__session_fail(s, SR_ENOMEM, "out of memory");
        goto done;
    }
    sr__fanout_run(f, deadline);
    int nfailed = 0;
    rc = sr__scatter_failures(s, f, &nfailed, failed);
    if (rc != SR_OK && (rc != SR_EPARTIAL || !o || !o->partial))
        goto done;
    /* The failures' message stays for a partial result; merging may replace it. */
    int partial_rc = rc;
    sr__fanout_skip_failed(f);
    merged = sr__result_new(-1);
    if (!merged) {
        rc = sr__session_fail(s, SR_ENOMEM, "out of memory");
        goto done;
    }
    rc = sr__merge_plan_is_concat(plan) ? concat_all(s, f, merged)
                                        : merge_all(s, f, plan, deadline, merged);
    if (rc == SR_OK && nfailed && sr__result_set_failed(merged, failed, nfailed) != SR_OK)
        rc = sr__session_fail(s, SR_ENOMEM, "out of memory");
    if (rc != SR_OK)
        goto done;
    merged->affected = sr__fanout_affected(f);
    rc = partial_rc;
    if (out) {
        *out = merged;
        merged = NULL;
    }
done:
    sr_result_free(merged);
    sr__fanout_free(f);
    free(failed);
    free(shard_sql);
    sr__merge_plan_free(plan);
    return rc;
}

static int explain_all(sr_session *s, sr_intent intent, const sr_scatter_opts *o, const char *sql,
                       char *buf, size_t buflen)
{
    sr_stmt st = {sql, 0, NULL, NULL, false, false};
    int rc = sr__exec_begin_call(s, intent, &st);
    if (rc == SR_OK)
        rc = sr__scatter_check_opts(s, o);
    if (rc == SR_OK && !buf && buflen > 0)
        rc = sr__session_fail(s, SR_EINVAL, "buf is NULL but buflen is %zu", buflen);
    if (rc != SR_OK)
        return rc;
    sr_merge_plan *plan = NULL;
    char *shard_sql = NULL;
    rc = sr__scatter_plan(s, o, sql, &plan, &shard_sql);
    if (rc != SR_OK)
        return rc;
    sr_topo *r = s->router;
    /* Built in a growing heap buffer: the caller's may be small, the length is returned. */
    size_t cap = 1024 + strlen(shard_sql) + (size_t)r->nshards * 96, len = 0;
    char *text = malloc(cap);
    if (!text) {
        free(shard_sql);
        sr__merge_plan_free(plan);
        return sr__session_fail(s, SR_ENOMEM, "out of memory");
    }
    sr__fmt(text, cap, "shards: %d (", r->nshards);
    len = strlen(text);
    for (int i = 0; i < r->nshards && len < cap; i++) {
        const sr_node *p = &r->shards[i].nodes[0];
        sr__fmt(text + len, cap - len, "%s%s%s", i ? ", " : "", r->shards[i].name,
                sr_driver_has_steps(p->b->driver) ? "" : " [one after another]");
        len = strlen(text);
    }
    sr__fmt(text + len, cap - len, ")\nintent: %s\nshard SQL: %s\nmerge: ",
            intent == SR_WRITE ? "write" : intent == SR_READ ? "read" : "auto", shard_sql);
    len = strlen(text);
    sr__merge_plan_describe(plan, text + len, cap - len);
    len = strlen(text);
    if (buflen > 0)
        sr__fmt(buf, buflen, "%s", text);
    free(text);
    free(shard_sql);
    sr__merge_plan_free(plan);
    return len > (size_t)INT32_MAX ? INT32_MAX : (int)len;
}

SR_API int sr_exec_all(sr_session *s, sr_intent intent, const char *sql, int nparams,
                       const char *const *params, sr_result **out)
{
    sr_stmt st = {sql, nparams, params, NULL, false, false};
    SR_SESSION_GUARDED(s, exec_all(s, intent, NULL, &st, out));
}

SR_API int sr_exec_all_values(sr_session *s, sr_intent intent, const sr_scatter_opts *opts,
                              const char *sql, int nparams, const sr_value *params,
                              sr_result **out)
{
    sr_stmt st = {sql, nparams, NULL, params, true, false};
    SR_SESSION_GUARDED(s, exec_all(s, intent, opts, &st, out));
}

SR_API int sr_explain_all(sr_session *s, sr_intent intent, const sr_scatter_opts *opts,
                          const char *sql, char *buf, size_t buflen)
{
    SR_SESSION_GUARDED(s, explain_all(s, intent, opts, sql, buf, buflen));
}
