/*
 * The MySQL/MariaDB driver's statements in steps (driver ABI 6), so one
 * thread can drive many connections at once (scatter) and take rows as they
 * arrive (cursors).
 *
 * Built on Connector/C's non-blocking API: every operation is started with
 * its _start() function and, while it waits for the socket, resumed with
 * _cont() when the core saw the socket ready. A statement is a server-side
 * prepared statement (from the connection's cache, or prepared now and put
 * there, as exec does) with typed parameters bound in binary where the type
 * has a binary form; rows are fetched one by one without buffering the
 * result (mysql_stmt_fetch without mysql_stmt_store_result), so a consumer
 * that stops taking rows leaves the rest in the socket.
 *
 * Not in steps, but bounded by the deadline given to next_row(): the extra
 * result sets of a CALL, closing a statement the cache did not take, and
 * re-preparing a cached statement whose result columns changed.
 */
#include "my_internal.h"

#include <errmsg.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef enum step_state {
    STEP_IDLE = 0,
    STEP_PREPARE, /* mysql_stmt_prepare running */
    STEP_EXECUTE, /* to start, or running */
    STEP_FETCH,   /* rows: the next fetch to start, or running */
    STEP_END      /* the rows are read: further result sets, closing */
} step_state;

struct sr_my_step {
    step_state state;
    int pending;                /* the operation of `state` waits: resume with _cont() */
    int complete;               /* the execution send() started has ended (not yet seen) */
    int status;                 /* what it waits for (MYSQL_WAIT_*) */
    int ret;                    /* the int result of the _start()/_cont() functions */
    char *sql;                  /* a copy: the cache keeps it once prepared */
    size_t len, cap;
    int nparams;
    int cached;                 /* e is the cache's entry (else &local, closed at the end) */
    int reprepared;
    sr_my_stmt *e;
    sr_my_stmt local;
    unsigned ncols;
    const sr_result_builder *named; /* the builder that was given the columns */
};

static int broken_error(sr_driver_error *err)
{
    return sr_driver_error_set(err, SR_ECONNECT, 1, "", 0,
                               "mysql connection is no longer usable (an earlier error broke it)");
}

int sr__my_step_running(const sr_driver_conn *c)
{
    return c->step && c->step->state != STEP_IDLE;
}

void sr__my_step_free(sr_driver_conn *c)
{
    struct sr_my_step *p = c->step;
    if (!p)
        return;
    /* Called after the handle was closed: an uncached statement left
     * mid-operation is only freed. */
    if (p->state != STEP_IDLE && !p->cached && p->local.stmt)
        mysql_stmt_close(p->local.stmt);
    free((void *)p->local.names);
    free(p->sql);
    free(p);
    c->step = NULL;
}

int sr__my_socket(sr_driver_conn *c)
{
    return c && c->my && !c->broken ? (int)mysql_get_socket(c->my) : -1;
}

/* The operation waits for the socket: the poll() events for the core. */
static int wait_for(struct sr_my_step *p, int st, int *want)
{
    p->pending = 1;
    p->status = st;
    int w = ((st & MYSQL_WAIT_READ) ? POLLIN : 0) | ((st & MYSQL_WAIT_WRITE) ? POLLOUT : 0) |
            ((st & MYSQL_WAIT_EXCEPT) ? POLLPRI : 0);
    /* Only the library's own timeout: the core's deadline bounds the wait. */
    *want = w ? w : POLLIN;
    return 0;
}

/* The events a resumed operation is told happened: those it waited for. */
static int events_of(const struct sr_my_step *p)
{
    int ev = p->status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE | MYSQL_WAIT_EXCEPT);
    return ev ? ev : MYSQL_WAIT_TIMEOUT;
}

/* The statement is over (done or failed): the connection is idle again, an
 * uncached statement closed (or, on a broken handle, left to close()). */
static int finish(sr_driver_conn *c, int rc)
{
    struct sr_my_step *p = c->step;
    if (!p->cached && p->local.stmt) {
        if (c->broken)
            c->orphan = p->local.stmt; /* freed after the handle, as exec's */
        else
            mysql_stmt_close(p->local.stmt);
        free((void *)p->local.names);
        memset(&p->local, 0, sizeof p->local);
    }
    p->e = NULL;
    p->state = STEP_IDLE;
    p->pending = 0;
    p->complete = 0;
    return rc;
}

/* Starts preparing p->sql. */
static int start_prepare(sr_driver_conn *c, int *want, sr_driver_error *err)
{
    struct sr_my_step *p = c->step;
    MYSQL_STMT *stmt = mysql_stmt_init(c->my);
    if (!stmt)
        return sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory (mysql_stmt_init)");
    memset(&p->local, 0, sizeof p->local);
    p->local.stmt = stmt;
    p->e = &p->local;
    p->cached = 0;
    p->state = STEP_PREPARE;
    p->pending = 0;
    p->complete = 0;
    p->ret = 1;
    int st = mysql_stmt_prepare_start(&p->ret, stmt, p->sql, (unsigned long)p->len);
    if (st)
        return wait_for(p, st, want);
    p->pending = 0;
    return 0;
}

/* The statement is prepared: into the cache, its parameters bound. */
static int prepared(sr_driver_conn *c, sr_driver_error *err)
{
    struct sr_my_step *p = c->step;
    MYSQL_STMT *stmt = p->local.stmt;
    if (p->ret != 0)
        return sr__my_fail_stmt(c, stmt, "prepare", err);
    sr_my_stmt *e = sr_stmt_cache_put(c->cache, p->sql, p->len, &p->local, 0);
    if (e) {
        /* The cache owns it now. */
        p->e = e;
        p->cached = 1;
        memset(&p->local, 0, sizeof p->local);
    }
    return SR_OK;
}

/* Binds the staged parameters (sr__my_stage_values) after checking their count. */
static int bind(sr_driver_conn *c, sr_driver_error *err)
{
    struct sr_my_step *p = c->step;
    MYSQL_STMT *stmt = p->e->stmt;
    unsigned long want = mysql_stmt_param_count(stmt);
    if (want != (unsigned long)p->nparams)
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0,
                                   "the statement has %lu placeholder(s) but %d parameter(s) were "
                                   "given",
                                   want, p->nparams);
    if (p->nparams > 0 && mysql_stmt_bind_param(stmt, c->scratch.pbind))
        return sr__my_fail_stmt(c, stmt, "bind parameters", err);
    p->state = STEP_EXECUTE;
    p->pending = 0;
    return SR_OK;
}

int sr__my_send(sr_driver_conn *c, const char *sql, int nparams, const sr_value *params,
                int64_t deadline_ns, int *want, sr_driver_error *err)
{
    (void)deadline_ns;
    *want = 0;
    if (!c || !sql || nparams < 0 || nparams > 65535 || (nparams > 0 && !params))
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0,
                                   "mysql send: bad arguments (0 to 65535 parameters)");
    if (c->broken)
        return broken_error(err);
    if (!c->step) {
        c->step = calloc(1, sizeof *c->step);
        if (!c->step)
            return sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory");
    }
    struct sr_my_step *p = c->step;
    if (p->state != STEP_IDLE)
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "send while a statement runs");
    size_t len = strlen(sql);
    if (len + 1 > p->cap) {
        char *s = realloc(p->sql, len + 1);
        if (!s)
            return sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory");
        p->sql = s;
        p->cap = len + 1;
    }
    memcpy(p->sql, sql, len + 1);
    p->len = len;
    int rc = sr__my_stage_values(c, nparams, params, err);
    if (rc != SR_OK)
        return rc;
    p->nparams = nparams;
    p->named = NULL;
    p->reprepared = 0;
    p->ncols = 0;
    sr_my_stmt *e = sr_stmt_cache_get(c->cache, sql, len);
    if (e) {
        p->e = e;
        p->cached = 1;
        if ((rc = bind(c, err)) != SR_OK)
            return finish(c, rc);
        /* The request goes out now, so all shards of a scatter work at once. */
        p->ret = 1;
        int st = mysql_stmt_execute_start(&p->ret, e->stmt);
        if (st)
            return wait_for(p, st, want);
        p->complete = 1; /* next_row() reads its outcome */
        return SR_OK;
    }
    if ((rc = start_prepare(c, want, err)) != SR_OK)
        return finish(c, rc);
    return SR_OK;
}

/* The execution ended: its error, the affected rows of a write, or the
 * columns of a result about to be fetched. 1: prepare again (the result's
 * columns changed under a cached statement). */
static int executed(sr_driver_conn *c, sr_result_builder *rb, int64_t deadline_ns,
                    sr_driver_error *err)
{
    struct sr_my_step *p = c->step;
    MYSQL_STMT *stmt = p->e->stmt;
    if (p->ret != 0) {
        if (mysql_stmt_errno(stmt) == CR_NEW_STMT_METADATA) {
            /* As in exec: the cached handle cannot read the new columns. It is closed
             * here (reading the pending result away, within the deadline), not by
             * finish(), and prepared afresh once. */
            sr_my_stmt gone;
            if (p->cached && sr_stmt_cache_take(c->cache, p->sql, p->len, &gone))
                free((void *)gone.names);
            free((void *)p->local.names);
            memset(&p->local, 0, sizeof p->local);
            p->cached = 0;
            p->e = NULL;
            int rc = sr__my_close_stmt(c, stmt, deadline_ns, err);
            if (rc != SR_OK)
                return rc;
            if (p->reprepared)
                return sr_driver_error_set(err, SR_EQUERY, 0, "", CR_NEW_STMT_METADATA,
                                           "execute: the result's columns changed again while "
                                           "the statement was prepared afresh");
            p->reprepared = 1;
            return 1;
        }
        return sr__my_fail_stmt(c, stmt, "execute", err);
    }
    unsigned ncols = mysql_stmt_field_count(stmt);
    p->ncols = ncols;
    if (ncols == 0) {
        if (rb)
            sr_result_builder_affected(rb, (int64_t)mysql_stmt_affected_rows(stmt));
        p->state = STEP_END;
        return SR_OK;
    }
    if (sr__my_scratch_cols(&c->scratch, (int)ncols) != 0)
        return sr__my_abandon(c, SR_ENOMEM, "fetch", err);
    if (mysql_stmt_more_results(stmt))
        p->e->bound_gen = 0; /* a CALL: Connector/C gave it fresh binds */
    int rc = sr__my_emit_columns(c, p->e, p->cached, ncols, rb, err);
    if (rc == SR_OK)
        rc = sr__my_bind_results(c, p->e, ncols, err);
    if (rc != SR_OK)
        return rc;
    p->named = rb;
    p->state = STEP_FETCH;
    p->pending = 0;
    return SR_OK;
}

/* Gives rb the columns unless it has them (the core may change builders). */
static int name_columns(sr_driver_conn *c, sr_result_builder *rb, sr_driver_error *err)
{
    struct sr_my_step *p = c->step;
    if (!rb || rb == p->named)
        return SR_OK;
    int rc = sr__my_emit_columns(c, p->e, p->cached, p->ncols, rb, err);
    if (rc == SR_OK)
        p->named = rb;
    return rc;
}

/*
 * Advances the statement: `ev` are the events that woke a pending operation.
 * Returns 1 with a row given to rb (NULL: dropped), 0 with *want set when it
 * waits, 0 with *want = 0 when it ended, or a negative status (the step
 * ended, the connection idle unless the error broke it).
 */
static int advance(sr_driver_conn *c, sr_result_builder *rb, int ev, int64_t deadline_ns,
                   bool cancelling, int *want, sr_driver_error *err)
{
    struct sr_my_step *p = c->step;
    *want = 0;
    for (;;) {
        int st, rc;
        switch (p->state) {
        case STEP_PREPARE:
            if (p->pending) {
                st = mysql_stmt_prepare_cont(&p->ret, p->local.stmt, ev);
                if (st)
                    return wait_for(p, st, want);
                p->pending = 0;
            }
            rc = prepared(c, err);
            /* Cancelled before it ran: prepared (and cached), never executed. */
            if (rc != SR_OK || cancelling)
                return finish(c, cancelling && !c->broken ? SR_OK : rc);
            if ((rc = bind(c, err)) != SR_OK)
                return finish(c, rc);
            break;
        case STEP_EXECUTE:
            if (cancelling && !p->pending && !p->complete)
                return finish(c, SR_OK); /* bound, not sent: nothing to undo */
            if (!p->complete) {
                if (!p->pending)
                    p->ret = 1;
                st = p->pending ? mysql_stmt_execute_cont(&p->ret, p->e->stmt, ev)
                                : mysql_stmt_execute_start(&p->ret, p->e->stmt);
                if (st)
                    return wait_for(p, st, want);
            }
            p->complete = 0;
            p->pending = 0;
            rc = executed(c, rb, deadline_ns, err);
            if (rc == 1 && cancelling)
                return finish(c, SR_OK); /* not prepared again just to be cancelled */
            if (rc == 1) {
                if ((rc = start_prepare(c, want, err)) != SR_OK)
                    return finish(c, rc);
                if (*want)
                    return 0;
                break;
            }
            if (rc != SR_OK)
                return finish(c, rc);
            break;
        case STEP_FETCH:
            if (!p->pending)
                p->ret = 1;
            st = p->pending ? mysql_stmt_fetch_cont(&p->ret, p->e->stmt, ev)
                            : mysql_stmt_fetch_start(&p->ret, p->e->stmt);
            if (st)
                return wait_for(p, st, want);
            p->pending = 0;
            if (p->ret == MYSQL_NO_DATA) {
                if ((rc = name_columns(c, rb, err)) != SR_OK)
                    return finish(c, rc);
                mysql_stmt_free_result(p->e->stmt); /* all read: no I/O */
                p->state = STEP_END;
                break;
            }
            if (p->ret == 1) {
                MYSQL_STMT *stmt = p->e->stmt;
                /* An error packet in place of a row may be recorded on the
                 * connection only (as in exec). */
                rc = mysql_stmt_errno(stmt) == 0 && mysql_errno(c->my) != 0
                         ? sr__my_fail_conn(c, "fetch", err)
                         : sr__my_fail_stmt(c, stmt, "fetch", err);
                return finish(c, rc);
            }
            if ((rc = name_columns(c, rb, err)) != SR_OK ||
                (rc = sr__my_row_values(c, p->e, p->ncols, rb, err)) != SR_OK)
                return finish(c, rc);
            return 1;
        case STEP_END:
            rc = mysql_stmt_more_results(p->e->stmt)
                     ? sr__my_stmt_drain(c, p->e->stmt, deadline_ns, err)
                     : SR_OK;
            return finish(c, rc);
        case STEP_IDLE:
        default:
            return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "next_row without send");
        }
        ev = 0;
    }
}

int sr__my_next_row(sr_driver_conn *c, sr_result_builder *rb, int64_t deadline_ns, int *want,
                    sr_driver_error *err)
{
    *want = 0;
    if (!c)
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "mysql: NULL connection");
    if (!c->step || c->step->state == STEP_IDLE)
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "next_row without send");
    if (c->broken)
        return finish(c, broken_error(err));
    return advance(c, rb, c->step->pending ? events_of(c->step) : 0, deadline_ns, false, want,
                   err);
}

int sr__my_cancel(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    if (!c)
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "mysql: NULL connection");
    struct sr_my_step *p = c->step;
    if (!p || p->state == STEP_IDLE)
        return SR_OK;
    if (c->broken)
        return finish(c, broken_error(err));
    /*
     * The rest is read and dropped for a short while (a statement near its
     * end); past that the connection is given up: a server still computing
     * gets a KILL QUERY, one sending rows sees the socket close.
     */
    int64_t until = sr_clock_ns() + 20 * 1000000LL;
    if (deadline_ns > 0 && deadline_ns < until)
        until = deadline_ns;
    int ev = 0;
    for (;;) {
        /* Checked on every pass too: a fast server keeps the socket readable, so the
         * wait alone would never see the time run out. */
        if (sr_clock_ns() >= until)
            break;
        if (p->pending) {
            ev = sr__my_wait(c->my, p->status, until);
            if (ev < 0)
                break;
        }
        int want = 0;
        int rc = advance(c, NULL, ev, until, true, &want, err);
        if (rc < 0)
            /* An SQL error ends the statement with the connection idle. */
            return c->broken ? rc : SR_OK;
        if (rc == 0 && !want)
            return SR_OK;
        ev = 0;
    }
    int rc = sr__my_timed_out(c, "cancel", p->state != STEP_FETCH, err);
    return finish(c, rc);
}
