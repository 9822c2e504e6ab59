/*
 * Bounded I/O on a libpq connection: every wait is a poll() against an
 * absolute deadline, so a server that stops answering cannot hold a caller.
 *
 * On expiry the connection is discarded rather than cancelled: libpq 15's
 * PQcancel() opens a blocking socket and waits, unbounded, for the server to
 * close it, which a stopped (SIGSTOP) or wedged server never does; libpq only
 * gained a non-blocking cancel in version 17. Closing the socket lets the
 * server abandon the statement on its own: the driver sets
 * client_connection_check_interval at connect (PostgreSQL >= 14), so the
 * backend notices the closed socket and stops.
 */
#include "pg_conn.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t sr__pg_deadline(const sr_driver_conn *c, int64_t deadline_ns)
{
    if (deadline_ns > 0)
        return deadline_ns;
    return sr_deadline_after_ms(c->statement_timeout_ms); /* 0 when none */
}

/* Folds white space; dst has room for strlen(src) + 1 bytes. */
static void fold_space(char *dst, const char *src)
{
    size_t o = 0;
    int space = 0;
    for (const char *p = src; *p; p++) {
        if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') {
            space = o > 0;
            continue;
        }
        if (space)
            dst[o++] = ' ';
        space = 0;
        dst[o++] = *p;
    }
    dst[o] = '\0';
}

void sr__pg_clean_message(char *dst, size_t dstlen, const char *src, const char *password)
{
    if (dstlen == 0)
        return;
    src = src ? src : "";
    char *tmp = malloc(strlen(src) + 1);
    if (!tmp) {
        snprintf(dst, dstlen, "%s", "(message lost: out of memory)");
        return;
    }
    fold_space(tmp, src);

    /*
     * Neither libpq nor the server should echo the password, but a message is
     * the one place it must never leak through. It is scrubbed before the
     * message is cut to size, so no prefix of it can survive at the cut.
     */
    sr_scrub_secret(tmp, password);
    snprintf(dst, dstlen, "%s", tmp);
    free(tmp);
}

void sr__pg_discard(sr_driver_conn *c)
{
    if (c->pg) {
        /* Non-blocking mode: PQfinish sends Terminate only if the socket can take it. */
        PQfinish(c->pg);
        c->pg = NULL;
    }
}

int sr__pg_gone(const sr_driver_conn *c, sr_driver_error *err)
{
    return sr_driver_error_set(err, SR_ECONNECT, 1, NULL, 0,
                               "connection to %s was closed after an earlier failure", c->redacted);
}

int sr__pg_conn_error(sr_driver_conn *c, const char *what, sr_driver_error *err)
{
    char msg[400];
    sr__pg_clean_message(msg, sizeof msg, c->pg ? PQerrorMessage(c->pg) : "", c->password);
    sr__pg_discard(c);
    return sr_driver_error_set(err, SR_ECONNECT, 1, NULL, 0, "%s on %s: %s", what, c->redacted,
                               msg[0] ? msg : "connection lost");
}

int sr__pg_wait_fd(int fd, short events, int64_t deadline)
{
    int revents;
    int rc = sr_wait_fd(fd, events, deadline, &revents);
    if (rc < 0)
        return -1;
    return rc == 0 ? 0 : revents;
}

static int wait_socket(PGconn *pg, short events, int64_t deadline)
{
    return sr__pg_wait_fd(PQsocket(pg), events, deadline);
}

static int timed_out(sr_driver_conn *c, const char *what, sr_driver_error *err)
{
    sr__pg_discard(c);
    return sr_driver_error_set(err, SR_ETIMEOUT, 1, NULL, 0,
                               "%s on %s timed out; the connection was closed", what, c->redacted);
}

/* Sends what libpq has queued, reading meanwhile so that neither side stalls. */
static int flush_request(sr_driver_conn *c, int64_t deadline, sr_driver_error *err)
{
    for (;;) {
        int r = PQflush(c->pg);
        if (r == 0)
            return SR_OK;
        if (r < 0)
            return sr__pg_conn_error(c, "sending a statement", err);
        int ev = wait_socket(c->pg, POLLIN | POLLOUT, deadline);
        if (ev == 0)
            return timed_out(c, "sending a statement", err);
        if (ev < 0)
            return sr__pg_conn_error(c, "waiting for the server", err);
        if ((ev & (POLLIN | POLLHUP | POLLERR)) && !PQconsumeInput(c->pg))
            return sr__pg_conn_error(c, "reading from the server", err);
    }
}

int sr__pg_finish_request(sr_driver_conn *c, int64_t deadline, PGresult **out, sr_driver_error *err)
{
    *out = NULL;
    int rc = flush_request(c, deadline, err);
    if (rc != SR_OK)
        return rc;
    PGresult *keep = NULL;
    int keep_is_error = 0;
    for (;;) {
        while (!PQisBusy(c->pg)) {
            PGresult *r = PQgetResult(c->pg);
            if (!r) {
                *out = keep;
                return SR_OK;
            }
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
                /* A COPY has to be fed or drained by its caller: the connection is unusable. */
                PQclear(r);
                PQclear(keep);
                sr__pg_discard(c);
                return sr_driver_error_set(err, SR_EQUERY, 1, NULL, 0,
                                           "COPY is not supported through shardroute (on %s)",
                                           c->redacted);
            }
            int is_error = st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE ||
                           st == PGRES_NONFATAL_ERROR;
            if (keep_is_error) {
                PQclear(r); /* the first error is the one that explains the failure */
            } else {
                PQclear(keep);
                keep = r;
                keep_is_error = is_error;
            }
        }
        int ev = wait_socket(c->pg, POLLIN, deadline);
        if (ev == 0) {
            PQclear(keep);
            return timed_out(c, "statement", err);
        }
        if (ev < 0 || !PQconsumeInput(c->pg)) {
            PQclear(keep);
            return sr__pg_conn_error(c, "reading a result", err);
        }
    }
}

/* Clears out[from..n). */
static void clear_after(PGresult **out, int n, int from)
{
    for (int i = from; i < n; i++) {
        PQclear(out[i]);
        out[i] = NULL;
    }
}

static int is_error_status(ExecStatusType st)
{
    return st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR ||
           st == PGRES_PIPELINE_ABORTED;
}

int sr__pg_pipeline_finish(sr_driver_conn *c, int64_t deadline, const char *plan, int nplan,
                           PGresult **out, int *synced, sr_driver_error *err)
{
    for (int i = 0; i < nplan; i++)
        out[i] = NULL;
    /* On a failure the results before the last Sync answered are kept when the caller asks
     * (`synced`): what they reported was committed. */
    int keep = 0;
    if (synced)
        *synced = 0;
    int rc = flush_request(c, deadline, err);
    if (rc != SR_OK)
        return rc;
    /*
     * libpq hands out a query's results followed by NULL, and a Sync as one
     * PGRES_PIPELINE_SYNC result. `at` is the operation being read. A Sync
     * result seen while queries are still expected (should libpq skip the
     * NULL of an aborted one) closes them all up to that Sync; a second NULL
     * in a row while a Sync is expected means libpq and we disagree about
     * the queue, and the connection cannot be trusted.
     */
    int at = 0, nulls = 0;
    while (at < nplan) {
        if (PQstatus(c->pg) == CONNECTION_BAD) {
            clear_after(out, nplan, keep);
            return sr__pg_conn_error(c, "reading a result", err);
        }
        if (PQisBusy(c->pg)) {
            int ev = wait_socket(c->pg, POLLIN, deadline);
            if (ev == 0) {
                clear_after(out, nplan, keep);
                return timed_out(c, "statement", err);
            }
            if (ev < 0 || !PQconsumeInput(c->pg)) {
                clear_after(out, nplan, keep);
                return sr__pg_conn_error(c, "reading a result", err);
            }
            continue;
        }
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            if (plan[at] == 'q')
                at++;
            else if (++nulls > 1) {
                clear_after(out, nplan, keep);
                sr__pg_discard(c);
                return sr_driver_error_set(err, SR_EDRIVER, 1, NULL, 0,
                                           "pipeline out of step on %s; the connection was closed",
                                           c->redacted);
            }
            continue;
        }
        nulls = 0;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            while (at < nplan && plan[at] == 'q')
                at++;
            at++;
            if (synced)
                keep = *synced = at;
            continue;
        }
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH ||
            plan[at] != 'q') {
            /* COPY would have to be fed or drained; anything else is out of step. */
            PQclear(r);
            clear_after(out, nplan, keep);
            sr__pg_discard(c);
            return sr_driver_error_set(err, SR_EQUERY, 1, NULL, 0,
                                       st == PGRES_COPY_IN || st == PGRES_COPY_OUT ||
                                               st == PGRES_COPY_BOTH
                                           ? "COPY is not supported through shardroute (on %s)"
                                           : "unexpected result in a pipeline on %s",
                                       c->redacted);
        }
        if (out[at] && is_error_status(PQresultStatus(out[at]))) {
            PQclear(r); /* the first error is the one that explains the failure */
        } else {
            PQclear(out[at]);
            out[at] = r;
        }
    }
    if (!PQexitPipelineMode(c->pg)) {
        clear_after(out, nplan, keep);
        return sr__pg_conn_error(c, "leaving pipeline mode", err);
    }
    return SR_OK;
}

int sr__pg_result_error(sr_driver_conn *c, const PGresult *res, sr_driver_error *err)
{
    if (!c->pg)
        return sr__pg_gone(c, err);
    if (PQstatus(c->pg) == CONNECTION_BAD)
        return sr__pg_conn_error(c, "statement failed", err);
    if (!res)
        return sr_driver_error_set(err, SR_EQUERY, 0, NULL, 0, "the server sent no result");

    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    char msg[480];
    sr__pg_clean_message(msg, sizeof msg, primary ? primary : PQresultErrorMessage(res),
                         c->password);
    if (!msg[0])
        snprintf(msg, sizeof msg, "%s", PQresStatus(PQresultStatus(res)));

    int status = SR_EQUERY, transient = 0;
    if (state && strncmp(state, "08", 2) == 0) {
        /*
         * A parameter-count mismatch is reported as 08P01 (protocol violation)
         * although the connection is intact; discarding it (and counting a
         * node failure) for a caller's mistake would be wrong.
         */
        if (strcmp(state, "08P01") != 0 || PQtransactionStatus(c->pg) == PQTRANS_UNKNOWN) {
            status = SR_ECONNECT;
            transient = 1;
        }
    } else if (state && (strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 ||
                         strcmp(state, "57P03") == 0)) {
        /* admin/crash shutdown, server starting: the session is gone */
        status = SR_ECONNECT;
        transient = 1;
    } else if (state && strcmp(state, "57014") == 0) {
        status = SR_ETIMEOUT; /* statement_timeout or a cancel: the connection is fine */
    }
    if (transient)
        sr__pg_discard(c);
    return sr_driver_error_set(err, status, transient, state, 0, "%s", msg);
}

int sr__pg_simple(sr_driver_conn *c, const char *sql, int64_t deadline, PGresult **out,
                  sr_driver_error *err)
{
    if (!c->pg)
        return sr__pg_gone(c, err);
    if (!PQsendQuery(c->pg, sql))
        return sr__pg_conn_error(c, "sending a statement", err);
    PGresult *res = NULL;
    int rc = sr__pg_finish_request(c, deadline, &res, err);
    if (rc != SR_OK)
        return rc;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        rc = sr__pg_result_error(c, res, err);
        PQclear(res);
        return rc;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return SR_OK;
}

int sr__pg_end_transaction(sr_driver_conn *c, const char *sql, const char *what, int64_t deadline,
                           sr_driver_error *err)
{
    PGresult *res = NULL;
    int rc = sr__pg_simple(c, sql, deadline, &res, err);
    if (rc != SR_OK)
        return rc;
    /* The server ends a transaction that had failed with a rollback, and its tag says so. */
    int rolled_back = strcmp(PQcmdStatus(res), "ROLLBACK") == 0;
    PQclear(res);
    if (rolled_back)
        return sr_driver_error_set(err, SR_EQUERY, 0, "25P02", 0,
                                   "the transaction had failed and was rolled back, not %s", what);
    return SR_OK;
}
