/*
 * Scatter-gather (sr_exec_all): the statement runs once per shard and the
 * per-shard results are merged in shard order, each row remembering its
 * shard. Shards run one after another on the caller's thread for now;
 * partial failure is reported, never hidden.
 */
#include "exec.h"

#include <stdlib.h>
#include <string.h>

static int exec_all(sr_session *s, sr_intent intent, const char *sql, int nparams,
                    const char *const *params, sr_result **out)
{
    sr__session_clear_error(s);
    int rc = sr__session_check_intent(s, intent);
    if (rc == SR_OK)
        rc = sr__session_check_statement(s, sql, nparams, params);
    if (rc != SR_OK)
        return rc;
    if (s->in_txn)
        return sr__session_fail(s, SR_ETXN, "sr_exec_all inside a transaction (a transaction "
                                            "stays on one shard)");

    sr_router *r = s->router;
    sr_result *merged = sr__result_new(-1);
    if (!merged)
        return sr__session_fail(s, SR_ENOMEM, "out of memory");

    /* Failures are collected so that the message names every failed shard. */
    char failures[SR_ERRMSG_LEN] = "";
    size_t flen = 0;
    int nfailed = 0, first_error = SR_OK;
    char sqlstate[6] = "";
    for (int i = 0; i < r->nshards; i++) {
        sr_result *part = NULL;
        rc = sr__exec_on_shard(s, i, intent, NULL, sql, nparams, params, &part);
        if (rc == SR_OK) {
            rc = sr__result_append(merged, part);
            sr_result_free(part);
            if (rc != SR_OK) {
                sr_result_free(merged);
                return sr__session_fail(s, rc, rc == SR_EINVAL
                                                   ? "shard '%s' returned different columns "
                                                     "from the shards before it"
                                                   : "out of memory merging shard '%s'",
                                        r->shards[i].name);
            }
            continue;
        }
        if (nfailed++ == 0) {
            first_error = rc;
            memcpy(sqlstate, s->sqlstate, sizeof sqlstate);
        }
        if (flen < sizeof failures - 1) {
            sr__fmt(failures + flen, sizeof failures - flen, "%s[%s] %s", flen ? "; " : "",
                    r->shards[i].name, s->errmsg);
            flen = strlen(failures);
        }
    }
    if (nfailed == 0) {
        sr__session_clear_error(s);
        if (out)
            *out = merged;
        else
            sr_result_free(merged);
        return SR_OK;
    }
    sr_result_free(merged);
    rc = nfailed == r->nshards ? first_error : SR_EPARTIAL;
    sr__session_fail(s, rc, "%d of %d shards failed: %s", nfailed, r->nshards, failures);
    memcpy(s->sqlstate, sqlstate, sizeof sqlstate);
    return rc;
}

SR_API int sr_exec_all(sr_session *s, sr_intent intent, const char *sql, int nparams,
                       const char *const *params, sr_result **out)
{
    SR_SESSION_GUARDED(s, exec_all(s, intent, sql, nparams, params, out));
}
