/*
 * The PostgreSQL driver's typed results and its statements in steps (driver
 * ABI 6).
 *
 * Types: each column's type OID maps to a portable sr_type; values stay in
 * PostgreSQL's text format except bytea (its "\x..." hex decoded to the raw
 * bytes) and bool ("t"/"f" given as "1"/"0").
 *
 * Steps: libpq's asynchronous API on the connection's non-blocking socket.
 * send() is PQsendQueryParams (unnamed: a typed statement's parameter types
 * are part of the request), or PQsendQueryPrepared for a statement exec
 * prepared on the connection when every parameter is text as exec sends
 * it, with single-row mode, and a PQflush; next_row() consumes what the
 * socket has and hands out one row per call, never waiting. Typed
 * parameters go in binary where the type allows (int8, float8, bool,
 * bytea), the others as text of unknown type that the server infers, as
 * exec's parameters are.
 */
#include "pg_conn.h"

#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Type OIDs of pg_type.dat (stable since PostgreSQL 7). */
enum {
    OID_BOOL = 16, OID_BYTEA = 17, OID_CHAR = 18, OID_NAME = 19, OID_INT8 = 20, OID_INT2 = 21,
    OID_INT4 = 23, OID_TEXT = 25, OID_OID = 26, OID_XID = 28, OID_JSON = 114, OID_XML = 142,
    OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_BPCHAR = 1042, OID_VARCHAR = 1043, OID_DATE = 1082,
    OID_TIME = 1083, OID_TIMESTAMP = 1114, OID_TIMESTAMPTZ = 1184, OID_INTERVAL = 1186,
    OID_TIMETZ = 1266, OID_NUMERIC = 1700, OID_UUID = 2950, OID_JSONB = 3802
};

static sr_type type_of(Oid oid)
{
    switch (oid) {
    case OID_INT2: case OID_INT4: case OID_INT8: case OID_OID: case OID_XID:
        return SR_TYPE_INT;
    case OID_FLOAT4: case OID_FLOAT8:
        return SR_TYPE_FLOAT;
    case OID_NUMERIC:
        return SR_TYPE_NUMERIC;
    case OID_BOOL:
        return SR_TYPE_BOOL;
    case OID_BYTEA:
        return SR_TYPE_BYTES;
    case OID_DATE: case OID_TIME: case OID_TIMETZ: case OID_TIMESTAMP: case OID_TIMESTAMPTZ:
    case OID_INTERVAL:
        return SR_TYPE_DATETIME;
    case OID_TEXT: case OID_VARCHAR: case OID_BPCHAR: case OID_NAME: case OID_CHAR:
    case OID_UUID: case OID_JSON: case OID_JSONB: case OID_XML:
        return SR_TYPE_TEXT;
    default:
        return SR_TYPE_UNKNOWN;
    }
}

int sr__pg_columns(const PGresult *res, sr_result_builder *rb, sr_driver_error *err)
{
    int ncols = PQnfields(res);
    const char *stack_names[32];
    sr_type stack_types[32];
    const char **names = stack_names;
    sr_type *types = stack_types;
    if (ncols > 32) {
        names = malloc((size_t)ncols * sizeof *names);
        types = malloc((size_t)ncols * sizeof *types);
        if (!names || !types) {
            free(names);
            free(types);
            return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
        }
    }
    for (int j = 0; j < ncols; j++) {
        names[j] = PQfname(res, j);
        types[j] = type_of(PQftype(res, j));
    }
    int rc = sr_result_builder_columns(rb, ncols, names);
    if (rc == SR_OK)
        rc = sr_result_builder_types(rb, types);
    if (names != stack_names) {
        free(names);
        free(types);
    }
    return rc == SR_OK ? SR_OK : sr_driver_error_set(err, rc, 0, NULL, 0, "out of memory");
}

static int hexval(int ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0'
           : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                    : -1;
}

/* A bytea in text format to its bytes, into the connection's scratch buffer. */
static int bytea_value(sr_driver_conn *c, const char *v, size_t len, sr_result_builder *rb,
                       sr_driver_error *err)
{
    if (len < 2 || v[0] != '\\' || v[1] != 'x') {
        /* bytea_output = escape: libpq's decoder (rare; allocates). */
        size_t n = 0;
        unsigned char *b = PQunescapeBytea((const unsigned char *)v, &n);
        if (!b)
            return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
        int rc = sr_result_builder_value(rb, (const char *)b, n);
        PQfreemem(b);
        return rc;
    }
    size_t n = (len - 2) / 2;
    if (n + 1 > c->scratch_cap) {
        char *s = realloc(c->scratch, n + 1);
        if (!s)
            return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
        c->scratch = s;
        c->scratch_cap = n + 1;
    }
    for (size_t i = 0; i < n; i++) {
        int hi = hexval((unsigned char)v[2 + 2 * i]), lo = hexval((unsigned char)v[3 + 2 * i]);
        if (hi < 0 || lo < 0)
            return sr_driver_error_set(err, SR_EQUERY, 0, NULL, 0, "malformed bytea from the server");
        c->scratch[i] = (char)(hi << 4 | lo);
    }
    return sr_result_builder_value(rb, c->scratch, n);
}

int sr__pg_row(sr_driver_conn *c, const PGresult *res, int row, sr_result_builder *rb,
               sr_driver_error *err)
{
    int ncols = PQnfields(res);
    for (int j = 0; j < ncols; j++) {
        int rc;
        if (PQgetisnull(res, row, j)) {
            rc = sr_result_builder_value(rb, NULL, 0);
        } else {
            const char *v = PQgetvalue(res, row, j);
            size_t len = (size_t)PQgetlength(res, row, j);
            Oid t = PQftype(res, j);
            if (t == OID_BYTEA) {
                rc = bytea_value(c, v, len, rb, err);
                if (rc != SR_OK && err->status != SR_OK)
                    return err->status;
            } else if (t == OID_BOOL) {
                rc = sr_result_builder_value(rb, v[0] == 't' ? "1" : "0", 1);
            } else {
                rc = sr_result_builder_value(rb, v, len);
            }
        }
        if (rc != SR_OK)
            return sr_driver_error_set(err, rc, 0, NULL, 0, "building the result: %s",
                                       sr_strerror(rc));
    }
    return SR_OK;
}

/* ---- steps ---- */

int sr__pg_socket(sr_driver_conn *c) { return c->pg ? PQsocket(c->pg) : -1; }

/* Encodes the typed parameters (binary where the type has a fixed binary form). */
typedef struct pg_params {
    const char **values;
    int *lengths, *formats;
    Oid *types;
    char (*bin)[8];
} pg_params;

static void params_free(pg_params *p)
{
    free(p->values);
    free(p->lengths);
    free(p->formats);
    free(p->types);
    free(p->bin);
}

static int params_encode(int n, const sr_value *v, pg_params *p, sr_driver_error *err)
{
    memset(p, 0, sizeof *p);
    if (n <= 0)
        return SR_OK;
    p->values = calloc((size_t)n, sizeof *p->values);
    p->lengths = calloc((size_t)n, sizeof *p->lengths);
    p->formats = calloc((size_t)n, sizeof *p->formats);
    p->types = calloc((size_t)n, sizeof *p->types);
    p->bin = calloc((size_t)n, sizeof *p->bin);
    if (!p->values || !p->lengths || !p->formats || !p->types || !p->bin) {
        params_free(p);
        return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        unsigned char *b = (unsigned char *)p->bin[i];
        switch (v[i].type) {
        case SR_TYPE_NULL:
            p->values[i] = NULL;
            break;
        case SR_TYPE_INT: {
            uint64_t u = (uint64_t)v[i].i;
            for (int k = 0; k < 8; k++)
                b[k] = (unsigned char)(u >> (56 - 8 * k)); /* network order */
            p->values[i] = p->bin[i];
            p->lengths[i] = 8;
            p->formats[i] = 1;
            p->types[i] = OID_INT8;
            break;
        }
        case SR_TYPE_FLOAT: {
            uint64_t u;
            memcpy(&u, &v[i].f, sizeof u);
            for (int k = 0; k < 8; k++)
                b[k] = (unsigned char)(u >> (56 - 8 * k));
            p->values[i] = p->bin[i];
            p->lengths[i] = 8;
            p->formats[i] = 1;
            p->types[i] = OID_FLOAT8;
            break;
        }
        case SR_TYPE_BOOL:
            b[0] = v[i].i != 0;
            p->values[i] = p->bin[i];
            p->lengths[i] = 1;
            p->formats[i] = 1;
            p->types[i] = OID_BOOL;
            break;
        case SR_TYPE_BYTES:
            if (v[i].len > (size_t)INT32_MAX)
                goto too_long;
            p->values[i] = v[i].p ? v[i].p : "";
            p->lengths[i] = (int)v[i].len;
            p->formats[i] = 1;
            p->types[i] = OID_BYTEA;
            break;
        case SR_TYPE_TEXT:
        case SR_TYPE_NUMERIC:
        case SR_TYPE_DATETIME:
            /* Text of unknown type that the server infers from the statement, as exec's
             * parameters are (so "5" compares with an integer column); libpq wants text
             * format values NUL-terminated: terminate_text() copies them. */
            if (v[i].len > (size_t)INT32_MAX)
                goto too_long;
            if (v[i].len && memchr(v[i].p, '\0', v[i].len)) {
                params_free(p);
                return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                           "parameter %d: text with a NUL byte", i + 1);
            }
            p->values[i] = v[i].p ? v[i].p : "";
            break;
        default:
            params_free(p);
            return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                       "parameter %d: unknown type %d", i + 1, (int)v[i].type);
        }
    }
    return SR_OK;
too_long:
    params_free(p);
    return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "a parameter longer than 2 GiB");
}

/* Text-format values must be NUL-terminated for libpq: copies of those that are not. */
static int terminate_text(int n, const sr_value *v, pg_params *p, char **owned,
                          sr_driver_error *err)
{
    for (int i = 0; i < n; i++) {
        if (p->values[i] && p->formats[i] == 0 && p->types[i] == 0 && v[i].type != SR_TYPE_NULL) {
            owned[i] = malloc(v[i].len + 1);
            if (!owned[i])
                return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
            if (v[i].len)
                memcpy(owned[i], v[i].p, v[i].len);
            owned[i][v[i].len] = '\0';
            p->values[i] = owned[i];
        }
    }
    return SR_OK;
}

int sr__pg_send(sr_driver_conn *c, const char *sql, int nparams, const sr_value *params,
                int64_t deadline_ns, int *want, sr_driver_error *err)
{
    (void)deadline_ns;
    *want = 0;
    if (!c->pg)
        return sr__pg_gone(c, err);
    if (c->stepping)
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "send while a statement runs");
    if (nparams < 0 || nparams > 65535 || (nparams > 0 && !params))
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                   "postgres: 0 to 65535 parameters, not %d", nparams);
    if (sr__pg_is_multi_statement(sql))
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                   "several statements in one string cannot run in steps");
    char *rewritten = NULL;
    const char *text = sql;
    if (nparams > 0) {
        int want_n = 0;
        int rc = sr_sql_rewrite_placeholders(sql, SR_SQL_POSTGRES, &rewritten, &want_n);
        if (rc != SR_OK)
            return sr_driver_error_set(err, rc, 0, NULL, 0, "rewriting placeholders: %s",
                                       sr_strerror(rc));
        /* The server takes parameters a statement never uses when their types are given
         * (typed ones are): refused here, as the other drivers do. */
        if (want_n != nparams) {
            free(rewritten);
            return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                       "the statement has %d placeholder(s) but %d parameter(s) "
                                       "were given",
                                       want_n, nparams);
        }
        text = rewritten;
    }
    pg_params p;
    int rc = params_encode(nparams, params, &p, err);
    char **owned = rc == SR_OK && nparams > 0 ? calloc((size_t)nparams, sizeof *owned) : NULL;
    if (rc == SR_OK && nparams > 0 && !owned)
        rc = sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
    if (rc == SR_OK && nparams > 0)
        rc = terminate_text(nparams, params, &p, owned, err);
    /* Parameters that are all text of unknown type (or none) are what exec sends: a statement
     * exec already prepared on this connection runs by name, without a parse and plan. */
    bool as_text = true;
    for (int i = 0; rc == SR_OK && i < nparams; i++)
        as_text &= p.types[i] == 0;
    sr_pg_stmt *cached = rc == SR_OK && as_text ? sr_stmt_cache_get(c->cache, sql, strlen(sql))
                                                : NULL;
    if (rc == SR_OK) {
        int ok = cached ? PQsendQueryPrepared(c->pg, cached->name, nparams, p.values, NULL, NULL,
                                              0)
                        : PQsendQueryParams(c->pg, text, nparams, p.types, p.values, p.lengths,
                                            p.formats, 0);
        if (!ok)
            rc = sr__pg_conn_error(c, "sending a statement", err);
        else if (!PQsetSingleRowMode(c->pg))
            rc = sr__pg_conn_error(c, "asking for single rows", err);
        else
            c->single_row_armed = 1;
    }
    for (int i = 0; owned && i < nparams; i++)
        free(owned[i]);
    free(owned);
    if (nparams > 0)
        params_free(&p);
    free(rewritten);
    if (rc != SR_OK)
        return rc;
    c->stepping = 1;
    c->step_named = NULL;
    PQclear(c->step_error);
    c->step_error = NULL;
    int f = PQflush(c->pg);
    if (f < 0)
        return sr__pg_conn_error(c, "sending a statement", err);
    c->step_flushing = f == 1;
    *want = f == 1 ? POLLOUT | POLLIN : 0;
    return SR_OK;
}

/* The statement ended (libpq gave its NULL result): its error, or done. */
static int step_done(sr_driver_conn *c, sr_result_builder *rb, sr_driver_error *err)
{
    c->stepping = 0;
    if (c->step_error) {
        int rc = sr__pg_result_error(c, c->step_error, err);
        PQclear(c->step_error);
        c->step_error = NULL;
        return rc;
    }
    (void)rb;
    return 0;
}

int sr__pg_next_row(sr_driver_conn *c, sr_result_builder *rb, int64_t deadline_ns, int *want,
                    sr_driver_error *err)
{
    (void)deadline_ns;
    *want = 0;
    if (!c->pg)
        return sr__pg_gone(c, err);
    if (!c->stepping)
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "next_row without send");
    if (c->step_flushing) {
        int f = PQflush(c->pg);
        if (f < 0)
            return sr__pg_conn_error(c, "sending a statement", err);
        if (f == 1) {
            /* Reading too: the server may answer (an error) before taking it all. */
            if (!PQconsumeInput(c->pg))
                return sr__pg_conn_error(c, "reading a result", err);
            *want = POLLOUT | POLLIN;
            return 0;
        }
        c->step_flushing = 0;
    }
    /*
     * The socket is read only when libpq has no whole result buffered: reading
     * on every call would pull a fast server's whole stream into libpq's
     * buffer (memory that grows with the result, and libpq moves what is
     * left to the buffer's start on every read: quadratic time), where a
     * consumer that stops taking rows should leave the rest in the socket.
     */
    if (PQisBusy(c->pg) && !PQconsumeInput(c->pg))
        return sr__pg_conn_error(c, "reading a result", err);
    while (!PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);
        if (!res)
            return step_done(c, rb, err);
        ExecStatusType st = PQresultStatus(res);
        int rc = SR_OK;
        if (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK) {
            if (rb != c->step_named && !c->step_error) {
                rc = sr__pg_columns(res, rb, err);
                c->step_named = rb;
            }
            if (rc == SR_OK && st == PGRES_SINGLE_TUPLE) {
                rc = sr__pg_row(c, res, 0, rb, err);
                PQclear(res);
                if (rc != SR_OK) {
                    sr__pg_discard(c); /* rows still coming: the connection is dropped */
                    err->transient = 1;
                    c->stepping = 0;
                    return rc;
                }
                return 1;
            }
            const char *n = PQcmdTuples(res);
            if (rc == SR_OK && n && *n && strncmp(PQcmdStatus(res), "SELECT", 6) != 0)
                sr_result_builder_affected(rb, strtoll(n, NULL, 10)); /* INSERT ... RETURNING */
            PQclear(res);
            if (rc != SR_OK) {
                sr__pg_discard(c);
                err->transient = 1;
                c->stepping = 0;
                return rc;
            }
        } else if (st == PGRES_COMMAND_OK) {
            const char *n = PQcmdTuples(res);
            sr_result_builder_affected(rb, n && *n ? strtoll(n, NULL, 10) : 0);
            PQclear(res);
        } else if (st == PGRES_EMPTY_QUERY) {
            PQclear(res);
        } else if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(res);
            sr__pg_discard(c);
            c->stepping = 0;
            return sr_driver_error_set(err, SR_EQUERY, 1, NULL, 0,
                                       "COPY is not supported through shardroute (on %s)",
                                       c->redacted);
        } else {
            /* An error: kept until libpq says the statement ended (the connection idle). */
            if (!c->step_error)
                c->step_error = res;
            else
                PQclear(res);
        }
    }
    *want = POLLIN;
    return 0;
}

int sr__pg_cancel(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    if (!c->pg)
        return sr__pg_gone(c, err);
    if (!c->stepping)
        return SR_OK;
    /*
     * What is left is read and dropped for a short while (a statement near
     * its end); a long stream is cut by closing the connection instead:
     * libpq 15's cancel request blocks without a bound, which a frozen
     * server would turn into a hang.
     */
    int64_t until = sr_clock_ns() + 20 * 1000000LL;
    if (deadline_ns > 0 && deadline_ns < until)
        until = deadline_ns;
    int flushed = !c->step_flushing;
    for (;;) {
        if (!flushed) {
            int f = PQflush(c->pg);
            if (f < 0)
                break;
            flushed = f == 0;
        }
        if (!PQconsumeInput(c->pg))
            break;
        while (flushed && !PQisBusy(c->pg)) {
            PGresult *res = PQgetResult(c->pg);
            if (!res) {
                c->stepping = 0;
                PQclear(c->step_error);
                c->step_error = NULL;
                return SR_OK;
            }
            PQclear(res);
        }
        if (sr__pg_wait_fd(PQsocket(c->pg), flushed ? POLLIN : POLLIN | POLLOUT, until) <= 0)
            break;
    }
    sr__pg_discard(c);
    c->stepping = 0;
    PQclear(c->step_error);
    c->step_error = NULL;
    return sr_driver_error_set(err, SR_ETIMEOUT, 1, NULL, 0,
                               "the statement did not end soon enough; connection closed");
}
