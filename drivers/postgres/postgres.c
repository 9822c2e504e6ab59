/*
 * The PostgreSQL driver (libpq): connect, statements through a per-connection
 * prepared-statement cache, transactions and ping. Bounded waits live in
 * pg_io.c, the replication hooks in replication.c.
 *
 * Statements are prepared once per connection under generated names and
 * executed with the extended protocol and text parameters; the cache is keyed
 * by the statement's original text, so the '?' → $n rewrite also runs once.
 * exec_at (driver ABI 5) sends a statement with its consistency check or
 * write position in one round trip through libpq's pipeline mode, on the
 * same routing, cache and result building as exec.
 */
#include "pg_conn.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How often a backend checks that its client is still there during a long statement. */
#define PG_CLIENT_CHECK_MS "1000"

static void notice_sink(void *arg, const char *message)
{
    /* libpq's default prints NOTICEs to stderr: a library must stay quiet. */
    (void)arg;
    (void)message;
}

static void conn_free(sr_driver_conn *c)
{
    if (!c)
        return;
    sr__pg_discard(c); /* first: the cache's release then sends nothing */
    sr_stmt_cache_free(c->cache);
    PQclear(c->step_error);
    free(c->scratch);
    free(c->redacted);
    if (c->password) {
        /* volatile: the compiler may not drop the wipe of memory about to be freed */
        volatile char *p = c->password;
        while (*p)
            *p++ = '\0';
        free(c->password);
    }
    free(c);
}

static int connect_failed(sr_driver_conn *c, int status, const char *what, sr_driver_error *err)
{
    char msg[400];
    sr__pg_clean_message(msg, sizeof msg, c->pg ? PQerrorMessage(c->pg) : "", c->password);
    sr_driver_error_set(err, status, 1, NULL, 0, "%s %s%s%s", what, c->redacted,
                        msg[0] ? ": " : "", msg);
    conn_free(c);
    return status;
}

/*
 * One round trip after the handshake: the server's actual role, checked
 * against the configured one (a standby configured as primary, or a
 * promoted server still configured as replica, is reported rather than
 * used), and, on PostgreSQL >= 14, client_connection_check_interval, which
 * lets the backend abandon a statement whose client went away (our answer
 * to a timeout is to close the socket). A value the user set through the
 * `options` parameter is kept.
 */
static int check_new_connection(sr_driver_conn *c, sr_role role, int64_t deadline,
                                sr_driver_error *err)
{
    const char *sql = PQserverVersion(c->pg) >= 140000
                          ? "SELECT pg_is_in_recovery(), CASE WHEN "
                            "current_setting('client_connection_check_interval') = '0' THEN "
                            "set_config('client_connection_check_interval', '" PG_CLIENT_CHECK_MS
                            "', false) END"
                          : "SELECT pg_is_in_recovery()";
    PGresult *res = NULL;
    int rc = sr__pg_simple(c, sql, deadline, &res, err);
    if (rc != SR_OK)
        return rc;
    int in_recovery = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (in_recovery == (role == SR_REPLICA))
        return SR_OK;
    sr__pg_discard(c);
    return sr_driver_error_set(err, SR_ECONNECT, 1, NULL, 0,
                               "%s is configured as a %s but the server is %s", c->redacted,
                               role == SR_PRIMARY ? "primary" : "replica",
                               in_recovery ? "in recovery (a standby)"
                                           : "not in recovery (a primary)");
}

/* The password to keep out of messages: the URI's, else a "password" parameter's. */
static const char *password_of(const sr_uri *u)
{
    const char *pw = u->password;
    for (int i = 0; i < u->nparams; i++)
        if (u->params[i].key && strcmp(u->params[i].key, "password") == 0)
            pw = u->params[i].value; /* libpq takes the last value */
    return pw;
}

static void add_kw(const char **kw, const char **val, int *n, const char *k, const char *v)
{
    if (k && v) {
        kw[*n] = k;
        val[*n] = v;
        (*n)++;
    }
}

static void release_stmt(void *ctx, void *value);

static int pg_connect(const sr_driver_connect_args *args, sr_driver_conn **out, sr_driver_error *err)
{
    if (!args || !args->uri || !out)
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "postgres: missing connect arguments");
    const sr_uri *u = args->uri;
    int64_t deadline = sr_deadline_after_ms(args->connect_timeout_ms); /* 0: none */

    sr_driver_conn *c = calloc(1, sizeof *c);
    if (!c)
        return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
    c->statement_timeout_ms = args->statement_timeout_ms;
    c->redacted = sr_strdup(u->redacted ? u->redacted : "postgresql://");
    c->password = sr_strdup(password_of(u));
    if (!c->redacted || (password_of(u) && !c->password) ||
        sr_stmt_cache_new(args->stmt_cache_size > 0 ? args->stmt_cache_size : 0,
                          args->stmt_cache_bytes, sizeof(sr_pg_stmt), release_stmt, c,
                          &c->cache) != SR_OK) {
        conn_free(c);
        return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
    }

    /* URI parts first, then its parameters: libpq keeps the last value of a keyword. */
    int nkw = 7 + (u->nparams > 0 ? u->nparams : 0);
    const char **kw = calloc((size_t)nkw, sizeof *kw);
    const char **val = calloc((size_t)nkw, sizeof *val);
    if (!kw || !val) {
        free(kw);
        free(val);
        conn_free(c);
        return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
    }
    char port[16];
    int n = 0;
    add_kw(kw, val, &n, "host", u->host);
    if (u->port > 0) {
        snprintf(port, sizeof port, "%d", u->port);
        add_kw(kw, val, &n, "port", port);
    }
    add_kw(kw, val, &n, "user", u->user);
    add_kw(kw, val, &n, "password", u->password);
    add_kw(kw, val, &n, "dbname", u->database);
    add_kw(kw, val, &n, "fallback_application_name", "shardroute");
    for (int i = 0; i < u->nparams; i++)
        add_kw(kw, val, &n, u->params[i].key, u->params[i].value);
    kw[n] = NULL;
    val[n] = NULL;

    /* expand_dbname = 0: a database name is a name, never a connection string. */
    c->pg = PQconnectStartParams(kw, val, 0);
    free(kw);
    free(val);
    if (!c->pg) {
        conn_free(c);
        return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
    }
    if (PQstatus(c->pg) == CONNECTION_BAD)
        return connect_failed(c, SR_ECONNECT, "cannot connect to", err);

    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED)
            return connect_failed(c, SR_ECONNECT, "cannot connect to", err);
        /* The socket can change between calls (several hosts, SSL fallback): ask each time. */
        int ev = sr__pg_wait_fd(PQsocket(c->pg), st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
                                deadline);
        if (ev == 0) {
            sr_driver_error_set(err, SR_ETIMEOUT, 1, NULL, 0, "connecting to %s timed out after %d ms",
                                c->redacted, args->connect_timeout_ms);
            conn_free(c);
            return SR_ETIMEOUT;
        }
        if (ev < 0)
            return connect_failed(c, SR_ECONNECT, "cannot connect to", err);
        st = PQconnectPoll(c->pg);
    }
    if (PQstatus(c->pg) != CONNECTION_OK)
        return connect_failed(c, SR_ECONNECT, "cannot connect to", err);

    PQsetNoticeProcessor(c->pg, notice_sink, NULL);
    if (PQsetnonblocking(c->pg, 1) != 0)
        return connect_failed(c, SR_ECONNECT, "cannot set up the connection to", err);
    int rc = check_new_connection(c, args->role, deadline > 0 ? deadline : sr__pg_deadline(c, 0),
                                  err);
    if (rc != SR_OK) {
        conn_free(c);
        return rc;
    }
    *out = c;
    return SR_OK;
}

static void pg_close(sr_driver_conn *c) { conn_free(c); }

/* ---- results ------------------------------------------------------------ */

/* Commands whose row count is a number of rows written. */
static int is_write_tag(const char *tag)
{
    static const char *const writes[] = {"INSERT ", "UPDATE ", "DELETE ", "MERGE ", "COPY "};
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++)
        if (strncmp(tag, writes[i], strlen(writes[i])) == 0)
            return 1;
    return 0;
}

static int build_result(sr_driver_conn *c, const PGresult *res, sr_result_builder *rb,
                        sr_driver_error *err)
{
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_EMPTY_QUERY || !rb)
        return SR_OK;
    if (st == PGRES_COMMAND_OK) {
        const char *n = PQcmdTuples((PGresult *)res);
        sr_result_builder_affected(rb, n && *n ? strtoll(n, NULL, 10) : 0);
        return SR_OK;
    }
    if (st != PGRES_TUPLES_OK)
        return sr__pg_result_error(c, res, err);

    int nrows = PQntuples(res);
    int rc = sr__pg_columns(res, rb, err);
    for (int i = 0; rc == SR_OK && i < nrows; i++)
        rc = sr__pg_row(c, res, i, rb, err);
    if (rc != SR_OK)
        return rc;
    if (is_write_tag(PQcmdStatus((PGresult *)res))) /* INSERT ... RETURNING and the like */
        sr_result_builder_affected(rb, strtoll(PQcmdTuples((PGresult *)res), NULL, 10));
    return SR_OK;
}

/* ---- statements ----------------------------------------------------------- */

static int is_error_result(const PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    return st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY;
}

static const char *sqlstate_of(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

/*
 * '?' → $n, done only when there are parameters: with none, a '?' is left
 * to PostgreSQL (the jsonb operator), and the text is sent as written.
 */
static int rewrite(const char *sql, int nparams, char **owned, const char **text,
                   sr_driver_error *err)
{
    *owned = NULL;
    *text = sql;
    if (nparams == 0)
        return SR_OK;
    int want = 0;
    int rc = sr_sql_rewrite_placeholders(sql, SR_SQL_POSTGRES, owned, &want);
    if (rc != SR_OK)
        return sr_driver_error_set(err, rc, 0, NULL, 0, "rewriting placeholders: %s",
                                   sr_strerror(rc));
    if (want != nparams) {
        free(*owned);
        *owned = NULL;
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                   "the statement has %d placeholder(s) but %d parameter(s) were "
                                   "given",
                                   want, nparams);
    }
    *text = *owned;
    return SR_OK;
}

/*
 * Several statements in one string cannot be prepared; they go as a simple
 * query. White space is scan.l's {space} (space \t \n \r \f). Erring towards
 * "several" is safe: the server parses a simple query whole before running
 * any of it, so nothing runs twice or runs and then fails on the tail.
 */
int sr__pg_is_multi_statement(const char *sql)
{
    const char *p = strchr(sql, ';');
    while (p) {
        for (const char *q = p + 1; *q; q++)
            if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r' && *q != '\f' && *q != ';')
                return 1;
        p = strchr(p + 1, ';');
    }
    return 0;
}

/*
 * How a statement goes to the server, decided once for exec and exec_at:
 * several statements as one simple query; what the cache would refuse (a traced one-off text, too
 * large for its byte bound, or caching off) unnamed, with no prepare and
 * deallocate round trips; the rest as a cached prepared statement.
 */
typedef enum stmt_route { STMT_SIMPLE, STMT_UNNAMED, STMT_CACHED } stmt_route;

static stmt_route route_of(const sr_driver_conn *c, const char *sql, size_t len, int nparams)
{
    if (nparams == 0 && sr__pg_is_multi_statement(sql))
        return STMT_SIMPLE;
    return sr_stmt_cache_admits_text(c->cache, sql, len, 0) ? STMT_CACHED : STMT_UNNAMED;
}

/* Queues an unnamed statement (extended protocol), or several as a simple query. */
static int send_unnamed(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                        stmt_route route, sr_driver_error *err)
{
    int ok;
    if (route == STMT_SIMPLE) {
        ok = PQsendQuery(c->pg, sql);
    } else {
        char *owned;
        const char *text;
        int rc = rewrite(sql, nparams, &owned, &text, err);
        if (rc != SR_OK)
            return rc;
        ok = PQsendQueryParams(c->pg, text, nparams, NULL, params, NULL, NULL, 0);
        free(owned);
    }
    return ok ? SR_OK : sr__pg_conn_error(c, "sending a statement", err);
}

/* Queues the preparation of `sql` under a new name, written to `fresh`. */
static int send_prepare(sr_driver_conn *c, const char *sql, int nparams, sr_pg_stmt *fresh,
                        sr_driver_error *err)
{
    char *owned;
    const char *text;
    int rc = rewrite(sql, nparams, &owned, &text, err);
    if (rc != SR_OK)
        return rc;
    snprintf(fresh->name, sizeof fresh->name, "sr_%llu", (unsigned long long)++c->next_stmt_id);
    int ok = PQsendPrepare(c->pg, fresh->name, text, 0, NULL);
    free(owned);
    return ok ? SR_OK : sr__pg_conn_error(c, "sending a statement", err);
}

/* Best effort: a statement that cannot be deallocated lives until the connection closes. */
static int deallocate(sr_driver_conn *c, const char *name, int64_t deadline, sr_driver_error *err)
{
    char sql[64];
    snprintf(sql, sizeof sql, "DEALLOCATE %s", name);
    sr_driver_error ignored;
    int rc = sr__pg_simple(c, sql, deadline, NULL, &ignored);
    if (rc != SR_OK && ignored.transient) {
        *err = ignored;
        return rc;
    }
    return SR_OK;
}

/*
 * The cache's release callback: an evicted statement is deallocated on the
 * server, so the server's prepared statements stay within the same bounds.
 * Without a connection (closing, or an earlier eviction lost it) there is
 * nothing to deallocate.
 */
static void release_stmt(void *ctx, void *value)
{
    sr_driver_conn *c = ctx;
    if (!c->pg || c->evict_rc != SR_OK)
        return;
    c->evict_rc = deallocate(c, ((sr_pg_stmt *)value)->name, c->evict_deadline, &c->evict_err);
}

/*
 * Caches `fresh`, just prepared on the server, evicting (and deallocating)
 * the least recently used. Outside pipeline mode: an eviction is a round
 * trip of its own.
 */
static int cache_prepared(sr_driver_conn *c, const char *sql, size_t len, const sr_pg_stmt *fresh,
                          int64_t deadline, sr_pg_stmt **out, sr_driver_error *err)
{
    c->evict_deadline = deadline;
    c->evict_rc = SR_OK;
    sr_pg_stmt *e = sr_stmt_cache_put(c->cache, sql, len, fresh, 0);
    if (c->evict_rc != SR_OK) {
        *err = c->evict_err;
        return c->evict_rc;
    }
    if (!e) {
        /* route_of() checked that the cache admits it: memory ran out, or the
         * same text was prepared twice in one pipeline (a statement that is
         * exec_at's own check): one copy is enough. */
        int rc = deallocate(c, fresh->name, deadline, err);
        if (rc != SR_OK || sr_stmt_cache_get(c->cache, sql, len))
            return rc;
        return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
    }
    if (out)
        *out = e;
    return SR_OK;
}

/*
 * After a cached statement failed: 0A000 "cached plan must not change
 * result type" (DDL changed the columns) and 26000 (the statement is gone,
 * e.g. DISCARD ALL) mean our entry is stale, so it leaves the cache (and the
 * server, for 0A000). Returns SR_OK with *retry = 1 when the statement can
 * simply be run again: outside a transaction the failed statement changed
 * nothing; inside one the transaction is aborted and the caller has to
 * decide. A negative status only when deallocating lost the connection.
 */
static int drop_stale_plan(sr_driver_conn *c, const char *sql, size_t len, const PGresult *res,
                           int64_t deadline, int *retry, sr_driver_error *err)
{
    *retry = 0;
    const char *state = sqlstate_of(res);
    if (strcmp(state, "0A000") != 0 && strcmp(state, "26000") != 0)
        return SR_OK;
    sr_pg_stmt gone;
    (void)sr_stmt_cache_take(c->cache, sql, len, &gone);
    int idle = PQtransactionStatus(c->pg) == PQTRANS_IDLE;
    if (idle && state[1] == 'A') {
        int rc = deallocate(c, gone.name, deadline, err);
        if (rc != SR_OK)
            return rc;
    }
    *retry = idle;
    return SR_OK;
}

static int exec_unnamed(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                        stmt_route route, int64_t deadline, PGresult **res, sr_driver_error *err)
{
    int rc = send_unnamed(c, sql, nparams, params, route, err);
    return rc != SR_OK ? rc : sr__pg_finish_request(c, deadline, res, err);
}

/* Prepares `sql` under a new name and caches it, evicting the least recently used. */
static int prepare(sr_driver_conn *c, const char *sql, size_t len, int nparams, int64_t deadline,
                   sr_pg_stmt **out, PGresult **res, sr_driver_error *err)
{
    sr_pg_stmt fresh;
    int rc = send_prepare(c, sql, nparams, &fresh, err);
    if (rc != SR_OK)
        return rc;
    rc = sr__pg_finish_request(c, deadline, res, err);
    if (rc != SR_OK || is_error_result(*res))
        return rc; /* an SQL error is in *res */
    PQclear(*res);
    *res = NULL;
    return cache_prepared(c, sql, len, &fresh, deadline, out, err);
}

static int exec_cached(sr_driver_conn *c, const char *sql, size_t len, int nparams,
                       const char *const *params, int64_t deadline, PGresult **res,
                       sr_driver_error *err)
{
    for (int attempt = 0;; attempt++) {
        sr_pg_stmt *e = sr_stmt_cache_get(c->cache, sql, len);
        if (!e) {
            int rc = prepare(c, sql, len, nparams, deadline, &e, res, err);
            if (rc != SR_OK || *res)
                return rc;
        }
        if (!PQsendQueryPrepared(c->pg, e->name, nparams, params, NULL, NULL, 0))
            return sr__pg_conn_error(c, "sending a statement", err);
        int rc = sr__pg_finish_request(c, deadline, res, err);
        if (rc != SR_OK || !is_error_result(*res))
            return rc;
        int retry;
        rc = drop_stale_plan(c, sql, len, *res, deadline, &retry, err); /* e is invalid from here */
        if (rc != SR_OK) {
            PQclear(*res);
            *res = NULL;
            return rc;
        }
        if (!retry || attempt > 0)
            return SR_OK;
        PQclear(*res);
        *res = NULL;
    }
}

/* The rows (or affected count) of a statement's final result into rb, or its error. */
static int finish_result(sr_driver_conn *c, const PGresult *res, sr_result_builder *rb,
                         sr_driver_error *err)
{
    return res ? build_result(c, res, rb, err)
               : sr_driver_error_set(err, SR_EQUERY, 0, NULL, 0, "the server sent no result");
}

static int check_exec_args(const sr_driver_conn *c, const char *sql, int nparams,
                           const char *const *params, sr_driver_error *err)
{
    if (!c || !sql || nparams < 0 || (nparams > 0 && !params))
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "postgres: invalid exec arguments");
    return c->pg ? SR_OK : sr__pg_gone(c, err);
}

static int pg_exec(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                   int64_t deadline_ns, sr_result_builder *rb, sr_driver_error *err)
{
    int rc = check_exec_args(c, sql, nparams, params, err);
    if (rc != SR_OK)
        return rc;
    int64_t deadline = sr__pg_deadline(c, deadline_ns);
    PGresult *res = NULL;
    size_t len = strlen(sql);
    stmt_route route = route_of(c, sql, len, nparams);
    rc = route == STMT_CACHED ? exec_cached(c, sql, len, nparams, params, deadline, &res, err)
                              : exec_unnamed(c, sql, nparams, params, route, deadline, &res, err);
    if (rc == SR_OK)
        rc = finish_result(c, res, rb, err);
    PQclear(res);
    return rc;
}

/* ---- a statement with its consistency check or write position (exec_at) ---- */

/*
 * Several statements in one string cannot go through pipeline mode (it only
 * speaks the extended protocol), nor can the first statement after one in
 * steps (see single_row_armed). A read checks first, in a round trip of its
 * own; a write reports no position ("": the core asks write_position()).
 */
static int exec_at_unpipelined(sr_driver_conn *c, const char *sql, int nparams,
                               const char *const *params, const char *need, int64_t deadline,
                               sr_result_builder *rb, char *pos, size_t poslen, int *stale,
                               sr_driver_error *err)
{
    /* Any statement sent outside pipeline mode resets libpq's single-row mode. */
    c->single_row_armed = 0;
    if (need) {
        int rc = sr__pg_replay_position(c, deadline, pos, poslen, err);
        if (rc != SR_OK)
            return rc;
        if (sr__pg_position_covers(pos, need) != 1) {
            *stale = 1;
            return SR_OK;
        }
    }
    return pg_exec(c, sql, nparams, params, deadline, rb, err);
}

/*
 * One statement of exec_at's pipeline: the check, the caller's statement or
 * the write position query. Each goes the way exec() sends a statement
 * (cached prepared, prepared now and cached afterwards, or unnamed), so the
 * check and the position query are prepared once per connection too (their
 * parsing and planning cost the server more than the round trip on a
 * loopback), and stmt_cache.max_size = 0 (no named statements, e.g. behind
 * PgBouncer's transaction pooling) keeps meaning none at all.
 */
typedef struct queued {
    const char *sql;
    size_t len;
    int prep;          /* plan slot of its Prepare, -1 when none was sent */
    int run;           /* plan slot of its execution */
    int cached;        /* it ran as a cached statement (whose plan may be stale) */
    sr_pg_stmt named;  /* its server-side name, when prepared */
} queued;

static int queue_stmt(sr_driver_conn *c, queued *q, int nparams, const char *const *params,
                      int unnamed, char *plan, int *n, sr_driver_error *err)
{
    q->len = strlen(q->sql);
    q->prep = -1;
    q->cached = 0;
    stmt_route route = unnamed ? STMT_UNNAMED : route_of(c, q->sql, q->len, nparams);
    int rc = SR_OK;
    if (route != STMT_CACHED) {
        rc = send_unnamed(c, q->sql, nparams, params, route, err);
    } else {
        sr_pg_stmt *e = sr_stmt_cache_get(c->cache, q->sql, q->len);
        if (e) {
            q->named = *e;
            q->cached = 1;
        } else {
            rc = send_prepare(c, q->sql, nparams, &q->named, err);
            if (rc != SR_OK)
                return rc;
            q->prep = *n;
            plan[(*n)++] = 'q';
        }
        if (!PQsendQueryPrepared(c->pg, q->named.name, nparams, params, NULL, NULL, 0))
            rc = sr__pg_conn_error(c, "sending a statement", err);
    }
    if (rc == SR_OK) {
        q->run = *n;
        plan[(*n)++] = 'q';
    }
    return rc;
}

/*
 * After the pipeline: caches what was prepared (even when its execution then
 * failed: the statement exists on the server) and returns the result that
 * tells how the statement went: its Prepare's error, else its execution's.
 */
static int settle(sr_driver_conn *c, const queued *q, PGresult *const *res, int64_t deadline,
                  const PGresult **out, sr_driver_error *err)
{
    /* run < 0: queueing it failed after its Prepare was sent (or before anything was). */
    *out = q->run >= 0 ? res[q->run] : NULL;
    if (q->prep < 0)
        return SR_OK;
    if (is_error_result(res[q->prep])) {
        *out = res[q->prep];
        return SR_OK;
    }
    return cache_prepared(c, q->sql, q->len, &q->named, deadline, NULL, err);
}

/*
 * A write that committed (its result is in res[], its Sync was answered)
 * but whose position was lost with the connection afterwards (*err says
 * how): reporting the failure would make a caller retry a write that
 * happened. Its rows and affected count are built as usual, `pos` is "",
 * and SR_OK is returned with *err still describing the lost connection
 * (transient): the core closes the connection, and reads the primary until
 * the next write brings a position. A statement that failed itself keeps
 * the failure.
 */
static int position_lost(sr_driver_conn *c, const queued *stmt, PGresult *const *res,
                         sr_result_builder *rb, char *pos, sr_driver_error *err)
{
    const PGresult *r = stmt->run >= 0 ? res[stmt->run] : NULL;
    if (!r || is_error_result(r) || (stmt->prep >= 0 && is_error_result(res[stmt->prep])))
        return err->status ? err->status : SR_EDRIVER;
    sr_driver_error lost = *err;
    int rc = finish_result(c, r, rb, err);
    if (rc != SR_OK)
        return rc;
    pos[0] = '\0';
    *err = lost;
    err->transient = 1;
    return SR_OK;
}

/*
 * One exchange: queues the check (a read), the statement, a Sync, and for a
 * write the position query and a second Sync, then reads everything back.
 * *retry = 1 (nothing added to rb) when a cached statement of the exchange
 * turned out stale and was dropped: the caller runs the exchange again.
 */
static int exec_at_once(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                        const char *need, int64_t deadline, sr_result_builder *rb, char *pos,
                        size_t poslen, int *stale, int *retry, sr_driver_error *err)
{
    *retry = 0;
    if (!PQenterPipelineMode(c->pg))
        return sr__pg_conn_error(c, "entering pipeline mode", err);

    /* At most: check (2), statement (2), Sync, position (2), Sync. */
    char plan[8];
    int n = 0, rc = SR_OK;
    queued check = {.sql = sr__pg_check_sql, .run = -1};
    queued stmt = {.sql = sql, .run = -1};
    queued wpos = {.sql = sr__pg_write_position_sql(c), .run = -1};
    /* The first position query also asks for the WAL sizes: once per connection, not cached. */
    int wpos_unnamed = c->wal_block_size == 0;
    if (need)
        rc = queue_stmt(c, &check, 1, &need, 0, plan, &n, err);
    if (rc == SR_OK)
        rc = queue_stmt(c, &stmt, nparams, params, 0, plan, &n, err);
    if (rc != SR_OK) {
        /* rewrite() failed (the connection is fine): what was queued is synced
         * and drained, so that the connection is left clean. */
        if (c->pg) {
            sr_driver_error drain_err;
            PGresult *drained[8];
            plan[n++] = 's';
            if (!PQpipelineSync(c->pg))
                return sr__pg_conn_error(c, "sending a statement", err);
            int drc = sr__pg_pipeline_finish(c, deadline, plan, n, drained, NULL, &drain_err);
            if (drc != SR_OK) {
                *err = drain_err;
                return drc;
            }
            const PGresult *ignored;
            if (need && settle(c, &check, drained, deadline, &ignored, &drain_err) != SR_OK)
                *err = drain_err; /* caching the check lost the connection: say that */
            for (int i = 0; i < n; i++)
                PQclear(drained[i]);
        }
        return rc;
    }
    /*
     * A write's Sync ends the implicit transaction the statement ran in, so
     * the position query behind it reads the WAL after the commit. A read
     * has one Sync: the check and the statement share an implicit
     * transaction (under READ COMMITTED the statement still takes its own
     * snapshot, after the check).
     */
    if (!PQpipelineSync(c->pg))
        return sr__pg_conn_error(c, "sending a statement", err);
    plan[n++] = 's';
    if (!need) {
        rc = queue_stmt(c, &wpos, 0, NULL, wpos_unnamed, plan, &n, err);
        if (rc != SR_OK)
            return rc; /* nothing to rewrite: only a lost connection fails here */
        if (!PQpipelineSync(c->pg))
            return sr__pg_conn_error(c, "sending a statement", err);
        plan[n++] = 's';
    }

    PGresult *res[8];
    int synced = 0;
    rc = sr__pg_pipeline_finish(c, deadline, plan, n, res, need ? NULL : &synced, err);
    if (rc != SR_OK) {
        /* A write whose Sync was answered has committed, whatever became of its position. */
        if (!need && synced > stmt.run)
            rc = position_lost(c, &stmt, res, rb, pos, err);
        for (int i = 0; i < n; i++)
            PQclear(res[i]);
        return rc;
    }

    const PGresult *check_res = NULL, *stmt_res = NULL, *wpos_res = NULL;
    if (need)
        rc = settle(c, &check, res, deadline, &check_res, err);
    if (rc == SR_OK)
        rc = settle(c, &stmt, res, deadline, &stmt_res, err);
    if (rc == SR_OK && !need && settle(c, &wpos, res, deadline, &wpos_res, err) != SR_OK) {
        rc = position_lost(c, &stmt, res, rb, pos, err); /* caching its plan lost the connection */
        goto out;
    }
    if (rc != SR_OK)
        goto out;
    /*
     * Stale cached statements (DDL, DISCARD ALL) leave the cache whichever
     * of the three failed, before anything is decided: a retry then
     * prepares all of them again at once. A stale check or statement means
     * the statement did not run: run the exchange again.
     */
    int stale_check = 0, stale_stmt = 0, stale_wpos = 0;
    if (need && check.cached && is_error_result(check_res))
        rc = drop_stale_plan(c, check.sql, check.len, check_res, deadline, &stale_check, err);
    if (rc == SR_OK && stmt.cached && is_error_result(stmt_res))
        rc = drop_stale_plan(c, sql, stmt.len, stmt_res, deadline, &stale_stmt, err);
    if (rc != SR_OK)
        goto out;
    if (!need && wpos.cached && is_error_result(wpos_res) &&
        drop_stale_plan(c, wpos.sql, wpos.len, wpos_res, deadline, &stale_wpos, err) != SR_OK) {
        rc = position_lost(c, &stmt, res, rb, pos, err);
        goto out;
    }
    if (stale_check || stale_stmt) {
        *retry = 1;
        goto out;
    }

    if (need) {
        int own_snapshot;
        if (sr__pg_check_result(check_res, need, pos, poslen, stale, &own_snapshot) != SR_OK) {
            pos[0] = '\0';
            rc = is_error_result(check_res)
                     ? sr__pg_result_error(c, check_res, err)
                     : sr_driver_error_set(err, SR_EQUERY, 0, NULL, 0,
                                           "unexpected reply to the position check on %s",
                                           c->redacted);
            goto out;
        }
        if (*stale)
            goto out; /* behind: the statement's rows or error are dropped */
        if (!own_snapshot) {
            /*
             * REPEATABLE READ (a default_transaction_isolation the user
             * set): the statement ran on the snapshot the check took before
             * it read the position, which may predate `need`. Its rows are
             * dropped and it runs again, on a snapshot taken after the check.
             */
            rc = pg_exec(c, sql, nparams, params, deadline, rb, err);
            goto out;
        }
    }

    rc = finish_result(c, stmt_res, rb, err);
    if (rc == SR_OK && !need) {
        /* The write committed; without its position the core asks write_position(). */
        sr_driver_error ignored;
        if (is_error_result(wpos_res) ||
            sr__pg_write_position_result(c, wpos_res, pos, poslen, &ignored) != SR_OK)
            pos[0] = '\0';
    }
out:
    for (int i = 0; i < n; i++)
        PQclear(res[i]);
    return rc;
}

/*
 * exec_at (driver ABI 5). See sr_driver.exec_at for the contract; what
 * PostgreSQL makes of it:
 *  - a read (`need` set): check, statement, Sync in one round trip. `pos`
 *    is the server's applied position as replay_position() reports it
 *    (replay LSN on a replica, flush LSN on a primary), stale or not. On a
 *    stale replica the statement still runs; its rows or error are dropped.
 *  - a write: statement, Sync, position query, Sync in one round trip;
 *    `pos` is what write_position() would report right after, or "" when
 *    the position query failed although the statement succeeded.
 *  - several statements in one string (no pipeline possible): see
 *    exec_at_unpipelined.
 *  - inside an explicit transaction (the core does not call it there): a
 *    write runs as exec() does with `pos` "" (nothing is committed yet); a
 *    read with `need` is refused (SR_EINVAL, the connection stays usable)
 *    because the transaction's snapshot may be older than the check.
 */
static int pg_exec_at(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                      const char *need, int64_t deadline_ns, sr_result_builder *rb, char *pos,
                      size_t poslen, int *stale, sr_driver_error *err)
{
    if (!pos || poslen == 0 || !stale)
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                   "postgres: invalid exec_at arguments");
    pos[0] = '\0';
    *stale = 0;
    int rc = check_exec_args(c, sql, nparams, params, err);
    if (rc != SR_OK)
        return rc;
    uint64_t lsn;
    if (need && sr__pg_lsn_parse(need, &lsn) != SR_OK)
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                   "\"%s\" is not a PostgreSQL WAL position (X/Y)", need);
    int64_t deadline = sr__pg_deadline(c, deadline_ns);
    if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        if (need)
            return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                       "postgres: a read cannot be checked against a position "
                                       "inside a transaction (on %s)",
                                       c->redacted);
        return pg_exec(c, sql, nparams, params, deadline, rb, err);
    }
    if (nparams == 0 && sr__pg_is_multi_statement(sql))
        return exec_at_unpipelined(c, sql, 0, NULL, need, deadline, rb, pos, poslen, stale, err);
    if (c->single_row_armed)
        return exec_at_unpipelined(c, sql, nparams, params, need, deadline, rb, pos, poslen,
                                   stale, err);
    /* Each retry has dropped a stale cached statement of the exchange (at most three). */
    for (int attempt = 0;; attempt++) {
        int retry;
        rc = exec_at_once(c, sql, nparams, params, need, deadline, rb, pos, poslen, stale, &retry,
                          err);
        if (rc != SR_OK || !retry)
            return rc;
        if (attempt == 3)
            return sr_driver_error_set(err, SR_EQUERY, 0, "0A000", 0,
                                       "prepared statements kept going stale on %s", c->redacted);
    }
}

/* ---- transactions and liveness -------------------------------------------- */

static int pg_begin(sr_driver_conn *c, int read_only, int64_t deadline_ns, sr_driver_error *err)
{
    return sr__pg_simple(c, read_only ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN",
                         sr__pg_deadline(c, deadline_ns), NULL, err);
}

static int pg_commit(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    return sr__pg_end_transaction(c, "COMMIT", "committed", sr__pg_deadline(c, deadline_ns), err);
}

static int pg_rollback(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    return sr__pg_simple(c, "ROLLBACK", sr__pg_deadline(c, deadline_ns), NULL, err);
}

static int pg_ping(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    /* The empty query is a full round trip that the server does not parse or plan. */
    return sr__pg_simple(c, "", sr__pg_deadline(c, deadline_ns), NULL, err);
}

static const char *const pg_schemes[] = {"postgresql", "postgres", NULL};

const sr_driver sr__driver_postgres = {
    .abi_version = SR_DRIVER_ABI_VERSION,
    .name = "postgres",
    .schemes = pg_schemes,
    .dialect = SR_SQL_POSTGRES,
    .connect = pg_connect,
    .close = pg_close,
    .exec = pg_exec,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .ping = pg_ping,
    .server_role = sr__pg_server_role,
    .write_position = sr__pg_write_position,
    .has_replayed = sr__pg_has_replayed,
    .replica_lag_ms = sr__pg_replica_lag_ms,
    .replay_position = sr__pg_replay_position,
    .position_covers = sr__pg_position_covers,
    .position_merge = sr__pg_position_merge,
    .wait_replayed = sr__pg_wait_replayed,
    .exec_at = pg_exec_at,
    .socket = sr__pg_socket,
    .send = sr__pg_send,
    .next_row = sr__pg_next_row,
    .cancel = sr__pg_cancel,
    .begin_global = sr__pg_begin_global,
    .prepare = sr__pg_prepare,
    .commit_prepared = sr__pg_commit_prepared,
    .rollback_prepared = sr__pg_rollback_prepared,
    .list_prepared = sr__pg_list_prepared,
};
