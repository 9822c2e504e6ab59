/*
 * The statement path: a server-side prepared statement (from the cache or
 * prepared now), text parameters bound as MYSQL_TYPE_STRING, execution and
 * row fetching with the non-blocking API, every value fetched as text into
 * the result builder. Statements the server cannot prepare (ER_UNSUPPORTED_PS)
 * run through the text protocol when they have no parameters.
 *
 * The hot path allocates nothing once warm: binds and buffers live in the
 * connection's scratch space, and a cached statement keeps its column names
 * and result binds from one execution to the next.
 */
#include "my_internal.h"

#include <errmsg.h>
#include <mysqld_error.h>
#include <stdlib.h>
#include <string.h>

/* ---- scratch space ---- */

/* Grows the parameter scratch arrays to n entries. */
int sr__my_scratch_params(sr_my_scratch *s, int n)
{
    if (n <= s->pcap)
        return 0;
    MYSQL_BIND *b = realloc(s->pbind, (size_t)n * sizeof *b);
    if (b)
        s->pbind = b;
    unsigned long *l = realloc(s->plen, (size_t)n * sizeof *l);
    if (l)
        s->plen = l;
    my_bool *z = realloc(s->pnull, (size_t)n * sizeof *z);
    if (z)
        s->pnull = z;
    if (!b || !l || !z)
        return -1;
    s->pcap = n;
    return 0;
}

/* Grows the result scratch arrays to n columns; new buffers start small and
 * grow to the largest value seen. Any move invalidates the binds made with
 * the old addresses, hence the generation. */
int sr__my_scratch_cols(sr_my_scratch *s, int n)
{
    if (n <= s->rcap_cols)
        return 0;
    s->gen++;
#define GROW(field)                                                      \
    do {                                                                 \
        void *p_ = realloc(s->field, (size_t)n * sizeof *s->field);      \
        if (!p_)                                                         \
            return -1;                                                   \
        s->field = p_;                                                   \
    } while (0)
    GROW(rbind);
    GROW(rlen);
    GROW(rnull);
    GROW(rerr);
    GROW(rbuf);
    GROW(rcap);
    GROW(names);
    GROW(types);
#undef GROW
    for (int i = s->rcap_cols; i < n; i++) {
        s->rbuf[i] = malloc(64);
        if (!s->rbuf[i]) {
            s->rcap_cols = i;
            return -1;
        }
        s->rcap[i] = 64;
    }
    s->rcap_cols = n;
    return 0;
}

void sr__my_scratch_free(sr_my_scratch *s)
{
    for (int i = 0; i < s->rcap_cols; i++)
        free(s->rbuf[i]);
    free(s->pbind);
    free(s->plen);
    free(s->pnull);
    free(s->rbind);
    free(s->rlen);
    free(s->rnull);
    free(s->rerr);
    free(s->rbuf);
    free(s->rcap);
    free(s->names);
    free(s->types);
    free(s->pint);
    free(s->pdbl);
    free(s->pbytes);
    memset(s, 0, sizeof *s);
}

/* ---- errors ---- */

static int broken_error(sr_driver_error *err)
{
    return sr_driver_error_set(err, SR_ECONNECT, 1, "", 0,
                               "mysql connection is no longer usable (an earlier error broke it)");
}

/* A failure half-way through a result whose rest is still on the wire:
 * reading it away could block, so the connection is given up instead. */
int sr__my_abandon(sr_driver_conn *c, int status, const char *what, sr_driver_error *err)
{
    c->broken = 1;
    if (status == SR_ENOMEM)
        return sr_driver_error_set(err, SR_ENOMEM, 1, "", 0, "%s: out of memory", what);
    err->transient = 1;
    return status;
}

/* ---- results ---- */

/* Reads and drops further result sets (a CALL through a prepared statement). */
int sr__my_stmt_drain(sr_driver_conn *c, MYSQL_STMT *stmt, int64_t deadline_ns,
                      sr_driver_error *err)
{
    while (mysql_stmt_more_results(stmt)) {
        int nrc = 0;
        int st = mysql_stmt_next_result_start(&nrc, stmt);
        SR_MY_AWAIT(c->my, deadline_ns, st, &nrc, stmt, mysql_stmt_next_result_cont);
        if (st != 0)
            return sr__my_timed_out(c, "next result", 1, err);
        if (nrc > 0)
            return sr__my_fail_stmt(c, stmt, "next result", err);
        if (nrc < 0)
            break;
        if (mysql_stmt_field_count(stmt) > 0) {
            st = mysql_stmt_store_result_start(&nrc, stmt);
            SR_MY_AWAIT(c->my, deadline_ns, st, &nrc, stmt, mysql_stmt_store_result_cont);
            if (st != 0)
                return sr__my_timed_out(c, "next result", 1, err);
            if (nrc != 0)
                return sr__my_fail_stmt(c, stmt, "next result", err);
        }
    }
    return SR_OK;
}

/* Hands the column names and types to rb: remembered ones for a cached
 * statement (Connector/C itself refreshes names only when the column count
 * changes, and then this statement is prepared afresh), else from the
 * metadata. rb NULL: only remembers them. */
int sr__my_emit_columns(sr_driver_conn *c, sr_my_stmt *e, int cached, unsigned ncols,
                        sr_result_builder *rb, sr_driver_error *err)
{
    if (e->names && e->nnames == ncols) {
        if (rb && (sr_result_builder_columns(rb, (int)ncols, e->names) != SR_OK ||
                   sr_result_builder_types(rb, e->types) != SR_OK))
            return sr__my_abandon(c, SR_ENOMEM, "result columns", err);
        return SR_OK;
    }
    MYSQL_RES *meta = mysql_stmt_result_metadata(e->stmt);
    if (!meta)
        return sr__my_abandon(c, SR_ENOMEM, "result metadata", err);
    MYSQL_FIELD *fields = mysql_fetch_fields(meta);
    const char **names = c->scratch.names;
    sr_type *types = c->scratch.types;
    for (unsigned i = 0; i < ncols; i++) {
        names[i] = fields[i].name;
        types[i] = sr__my_column_type(&fields[i]);
    }
    int rc = SR_OK;
    if (rb && (sr_result_builder_columns(rb, (int)ncols, names) != SR_OK ||
               sr_result_builder_types(rb, types) != SR_OK))
        rc = sr__my_abandon(c, SR_ENOMEM, "result columns", err);
    /* Not remembering costs only speed. */
    if (rc == SR_OK && cached)
        (void)sr__my_stmt_remember_columns(e, ncols, names, types);
    mysql_free_result(meta);
    return rc;
}

/* Points the statement's result binds at the scratch buffers, unless they
 * already are (same buffers since the last execution). */
int sr__my_bind_results(sr_driver_conn *c, sr_my_stmt *e, unsigned ncols, sr_driver_error *err)
{
    sr_my_scratch *s = &c->scratch;
    if (e->bound_gen == s->gen && e->bound_cols == ncols)
        return SR_OK;
    memset(s->rbind, 0, ncols * sizeof *s->rbind);
    for (unsigned i = 0; i < ncols; i++) {
        s->rbind[i].buffer_type = MYSQL_TYPE_STRING;
        s->rbind[i].buffer = s->rbuf[i];
        s->rbind[i].buffer_length = (unsigned long)s->rcap[i];
        s->rbind[i].length = &s->rlen[i];
        s->rbind[i].is_null = &s->rnull[i];
        s->rbind[i].error = &s->rerr[i];
    }
    if (mysql_stmt_bind_result(e->stmt, s->rbind)) {
        e->bound_gen = 0;
        return sr__my_abandon(c, sr__my_fail_stmt(c, e->stmt, "bind result", err), "bind result", err);
    }
    e->bound_gen = s->gen;
    e->bound_cols = ncols;
    return SR_OK;
}

/* Hands the fetched row's values to rb (NULL: drops them), reading again a
 * value that did not fit its buffer (MYSQL_DATA_TRUNCATED) into a bigger one,
 * which later rows keep. */
int sr__my_row_values(sr_driver_conn *c, sr_my_stmt *e, unsigned ncols, sr_result_builder *rb,
                      sr_driver_error *err)
{
    sr_my_scratch *s = &c->scratch;
    MYSQL_STMT *stmt = e->stmt;
    int grown = 0;
    for (unsigned i = 0; i < ncols; i++) {
        if (s->rnull[i]) {
            if (rb && sr_result_builder_value(rb, NULL, 0) != SR_OK)
                return sr__my_abandon(c, SR_ENOMEM, "fetch", err);
            continue;
        }
        size_t len = s->rlen[i];
        if (len > s->rcap[i]) {
            size_t cap = s->rcap[i];
            while (cap < len)
                cap *= 2;
            char *nb = realloc(s->rbuf[i], cap);
            if (!nb)
                return sr__my_abandon(c, SR_ENOMEM, "fetch", err);
            s->rbuf[i] = nb;
            s->rcap[i] = cap;
            s->rbind[i].buffer = nb;
            s->rbind[i].buffer_length = (unsigned long)cap;
            grown = 1;
            if (mysql_stmt_fetch_column(stmt, &s->rbind[i], i, 0))
                return sr__my_abandon(c, sr__my_fail_stmt(c, stmt, "fetch column", err),
                                      "fetch column", err);
        }
        if (rb && sr_result_builder_value(rb, s->rbuf[i], len) != SR_OK)
            return sr__my_abandon(c, SR_ENOMEM, "fetch", err);
    }
    if (grown) {
        /* Every statement bound to the old buffer must bind again. */
        s->gen++;
        e->bound_gen = 0;
        return sr__my_bind_results(c, e, ncols, err);
    }
    return SR_OK;
}

/* Fetches the rows of an executed statement into rb. */
static int fetch_rows(sr_driver_conn *c, sr_my_stmt *e, int cached, unsigned ncols,
                      int64_t deadline_ns, sr_result_builder *rb, sr_driver_error *err)
{
    sr_my_scratch *s = &c->scratch;
    MYSQL_STMT *stmt = e->stmt;
    if (sr__my_scratch_cols(s, (int)ncols) != 0)
        return sr__my_abandon(c, SR_ENOMEM, "fetch", err);
    /* With more result sets to come (a CALL), Connector/C gives the
     * statement fresh, empty binds at every execution. */
    if (mysql_stmt_more_results(stmt))
        e->bound_gen = 0;
    int rc = sr__my_emit_columns(c, e, cached, ncols, rb, err);
    if (rc == SR_OK)
        rc = sr__my_bind_results(c, e, ncols, err);
    if (rc != SR_OK)
        return rc;

    for (;;) {
        int frc = 1;
        int st = mysql_stmt_fetch_start(&frc, stmt);
        SR_MY_AWAIT(c->my, deadline_ns, st, &frc, stmt, mysql_stmt_fetch_cont);
        if (st != 0)
            return sr__my_timed_out(c, "fetch", 1, err);
        if (frc == MYSQL_NO_DATA)
            break;
        if (frc == 1) {
            /* An error packet in place of a row (the statement was
             * interrupted) may be recorded on the connection only. */
            if (mysql_stmt_errno(stmt) == 0 && mysql_errno(c->my) != 0)
                return sr__my_fail_conn(c, "fetch", err);
            return sr__my_fail_stmt(c, stmt, "fetch", err);
        }
        if ((rc = sr__my_row_values(c, e, ncols, rb, err)) != SR_OK)
            return rc;
    }
    return SR_OK;
}

/* ---- parameters, preparing ---- */

/* Binds the text parameters (NULL element = SQL NULL). */
static int bind_params(sr_driver_conn *c, MYSQL_STMT *stmt, int nparams,
                       const char *const *params, sr_driver_error *err)
{
    sr_my_scratch *s = &c->scratch;
    if (sr__my_scratch_params(s, nparams) != 0)
        return sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory");
    memset(s->pbind, 0, (size_t)nparams * sizeof *s->pbind);
    for (int i = 0; i < nparams; i++) {
        s->pnull[i] = params[i] == NULL;
        s->plen[i] = params[i] ? (unsigned long)strlen(params[i]) : 0;
        s->pbind[i].buffer_type = MYSQL_TYPE_STRING;
        s->pbind[i].buffer = (void *)(uintptr_t)params[i];
        s->pbind[i].buffer_length = s->plen[i];
        s->pbind[i].length = &s->plen[i];
        s->pbind[i].is_null = &s->pnull[i];
    }
    if (mysql_stmt_bind_param(stmt, s->pbind))
        return sr__my_fail_stmt(c, stmt, "bind parameters", err);
    return SR_OK;
}

/*
 * Finds sql in the cache or prepares it. *out is the cache entry, or `local`
 * filled in for a statement the cache did not take (*cached = 0: close it
 * after use). Returns 1 (no error) when the server cannot prepare this
 * statement and the text protocol may run it instead.
 */
static int prepare(sr_driver_conn *c, const char *sql, size_t len, int nparams,
                   int64_t deadline_ns, sr_my_stmt *local, sr_my_stmt **out, int *cached,
                   sr_driver_error *err)
{
    sr_my_stmt *e = sr_stmt_cache_get(c->cache, sql, len);
    if (e) {
        *out = e;
        *cached = 1;
        return SR_OK;
    }
    MYSQL_STMT *stmt = mysql_stmt_init(c->my);
    if (!stmt)
        return sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory (mysql_stmt_init)");
    int prc = 1;
    int st = mysql_stmt_prepare_start(&prc, stmt, sql, (unsigned long)len);
    SR_MY_AWAIT(c->my, deadline_ns, st, &prc, stmt, mysql_stmt_prepare_cont);
    if (st != 0) {
        /* Suspended mid-operation: freed with the connection. */
        c->orphan = stmt;
        return sr__my_timed_out(c, "prepare", 1, err);
    }
    if (prc != 0) {
        unsigned code = mysql_stmt_errno(stmt);
        int rc = 1;
        if (!(code == ER_UNSUPPORTED_PS && nparams == 0))
            rc = sr__my_fail_stmt(c, stmt, "prepare", err);
        mysql_stmt_close(stmt);
        return rc;
    }
    /* Not taken (too large for the byte bound, caching off, out of memory):
     * the caller closes it after use. */
    memset(local, 0, sizeof *local);
    local->stmt = stmt;
    e = sr_stmt_cache_put(c->cache, sql, len, local, 0);
    *cached = e != NULL;
    *out = e ? e : local;
    return SR_OK;
}

/* Closes a statement with the non-blocking API: closing may have to read a
 * pending result away first, and that read must not outlive the deadline. */
int sr__my_close_stmt(sr_driver_conn *c, MYSQL_STMT *stmt, int64_t deadline_ns,
                      sr_driver_error *err)
{
    my_bool crc = 0;
    int st = mysql_stmt_close_start(&crc, stmt);
    SR_MY_AWAIT(c->my, deadline_ns, st, &crc, stmt, mysql_stmt_close_cont);
    if (st != 0) {
        /* Suspended mid-close: finished (freed) with the connection. */
        c->orphan = stmt;
        return sr__my_timed_out(c, "close statement", 1, err);
    }
    if (mysql_errno(c->my) && sr__my_is_conn_error(mysql_errno(c->my)))
        return sr__my_fail_conn(c, "close statement", err);
    return SR_OK;
}

/* ---- the vtable's exec ---- */

int sr__my_exec(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                int64_t deadline_ns, sr_result_builder *rb, sr_driver_error *err)
{
    if (!c || !sql || nparams < 0 || (nparams > 0 && !params))
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "mysql exec: bad arguments");
    if (c->broken)
        return broken_error(err);
    size_t len = strlen(sql);
    sr_my_stmt local, *e = NULL;
    int cached = 0, reprepared = 0;
again:;
    int rc = prepare(c, sql, len, nparams, deadline_ns, &local, &e, &cached, err);
    if (rc == 1)
        return sr__my_text_exec(c, sql, deadline_ns, rb, err);
    if (rc != SR_OK)
        return rc;
    MYSQL_STMT *stmt = e->stmt;

    unsigned long want = mysql_stmt_param_count(stmt);
    if (want != (unsigned long)nparams) {
        rc = sr_driver_error_set(err, SR_EINVAL, 0, "", 0,
                                 "the statement has %lu placeholder(s) but %d parameter(s) were given",
                                 want, nparams);
        goto done;
    }
    if (nparams > 0 && (rc = bind_params(c, stmt, nparams, params, err)) != SR_OK)
        goto done;

    int erc = 1;
    int st = mysql_stmt_execute_start(&erc, stmt);
    SR_MY_AWAIT(c->my, deadline_ns, st, &erc, stmt, mysql_stmt_execute_cont);
    if (st != 0) {
        rc = sr__my_timed_out(c, "execute", 1, err);
        goto done;
    }
    if (erc != 0) {
        if (mysql_stmt_errno(stmt) == CR_NEW_STMT_METADATA) {
            /* The table changed under the cached statement and the result
             * has another number of columns: Connector/C cannot read it with
             * this handle. Close it (reading the pending result away) and
             * prepare the statement afresh, once. */
            sr_my_stmt gone;
            if (cached && sr_stmt_cache_take(c->cache, sql, len, &gone)) /* e is invalid now */
                free((void *)gone.names);
            rc = sr__my_close_stmt(c, stmt, deadline_ns, err);
            if (rc != SR_OK)
                return rc;
            if (!reprepared) {
                reprepared = 1;
                goto again;
            }
            return sr_driver_error_set(err, SR_EQUERY, 0, "", CR_NEW_STMT_METADATA,
                                       "execute: the result's columns changed again while the "
                                       "statement was prepared afresh");
        }
        rc = sr__my_fail_stmt(c, stmt, "execute", err);
        goto done;
    }
    unsigned ncols = mysql_stmt_field_count(stmt);
    if (ncols == 0) {
        if (rb)
            sr_result_builder_affected(rb, (int64_t)mysql_stmt_affected_rows(stmt));
    } else {
        rc = fetch_rows(c, e, cached, ncols, deadline_ns, rb, err);
        if (!c->broken)
            mysql_stmt_free_result(stmt);
    }
    if (rc == SR_OK)
        rc = sr__my_stmt_drain(c, stmt, deadline_ns, err);

done:
    if (!cached) {
        if (c->broken) {
            /* Never touch a statement of a broken handle again: it is freed
             * after the handle is closed. */
            c->orphan = stmt;
        } else {
            mysql_stmt_close(stmt);
        }
        free((void *)local.names);
    }
    return rc;
}
