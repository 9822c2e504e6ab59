/*
 * The PostgreSQL driver (libpq): connect, statements through a per-connection
 * prepared-statement cache, transactions and ping. Bounded waits live in
 * pg_io.c, the replication hooks in replication.c.
 *
 * Statements are prepared once per connection under generated names and
 * executed with the extended protocol and text parameters; the cache is keyed
 * by the statement's original text, so the '?' → $n rewrite also runs once.
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

    int ncols = PQnfields(res), nrows = PQntuples(res);
    const char *stack_names[32];
    const char **names = stack_names;
    if (ncols > (int)(sizeof stack_names / sizeof stack_names[0])) {
        names = malloc((size_t)ncols * sizeof *names);
        if (!names)
            return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
    }
    for (int j = 0; j < ncols; j++)
        names[j] = PQfname(res, j);
    int rc = sr_result_builder_columns(rb, ncols, names);
    if (names != stack_names)
        free(names);
    for (int i = 0; rc == SR_OK && i < nrows; i++)
        for (int j = 0; rc == SR_OK && j < ncols; j++)
            rc = PQgetisnull(res, i, j)
                     ? sr_result_builder_value(rb, NULL, 0)
                     : sr_result_builder_value(rb, PQgetvalue(res, i, j),
                                               (size_t)PQgetlength(res, i, j));
    if (rc != SR_OK)
        return sr_driver_error_set(err, rc, 0, NULL, 0, "building the result: %s", sr_strerror(rc));
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
    int rc = sr_sql_rewrite_placeholders(sql, SR_SQL_POSTGRES, owned, NULL);
    if (rc != SR_OK)
        return sr_driver_error_set(err, rc, 0, NULL, 0, "rewriting placeholders: %s",
                                   sr_strerror(rc));
    *text = *owned;
    return SR_OK;
}

/*
 * Several statements in one string cannot be prepared; they go as a simple
 * query. White space is scan.l's {space} (space \t \n \r \f). Erring towards
 * "several" is safe: the server parses a simple query whole before running
 * any of it, so nothing runs twice or runs and then fails on the tail.
 */
static int is_multi_statement(const char *sql)
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

static int exec_unnamed(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                        int64_t deadline, PGresult **res, sr_driver_error *err)
{
    int ok;
    if (nparams == 0 && is_multi_statement(sql)) {
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
    if (!ok)
        return sr__pg_conn_error(c, "sending a statement", err);
    return sr__pg_finish_request(c, deadline, res, err);
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

/* Prepares `sql` under a new name and caches it, evicting the least recently used. */
static int prepare(sr_driver_conn *c, const char *sql, size_t len, int nparams, int64_t deadline,
                   sr_pg_stmt **out, PGresult **res, sr_driver_error *err)
{
    char *owned;
    const char *text;
    int rc = rewrite(sql, nparams, &owned, &text, err);
    if (rc != SR_OK)
        return rc;
    sr_pg_stmt fresh;
    snprintf(fresh.name, sizeof fresh.name, "sr_%llu", (unsigned long long)++c->next_stmt_id);
    int ok = PQsendPrepare(c->pg, fresh.name, text, 0, NULL);
    free(owned);
    if (!ok)
        return sr__pg_conn_error(c, "sending a statement", err);
    rc = sr__pg_finish_request(c, deadline, res, err);
    if (rc != SR_OK || is_error_result(*res))
        return rc; /* an SQL error is in *res */
    PQclear(*res);
    *res = NULL;
    c->evict_deadline = deadline;
    c->evict_rc = SR_OK;
    sr_pg_stmt *e = sr_stmt_cache_put(c->cache, sql, len, &fresh, 0);
    if (c->evict_rc != SR_OK) {
        *err = c->evict_err;
        return c->evict_rc;
    }
    if (!e) {
        /* The caller checked that the cache admits it: only memory ran out. */
        rc = deallocate(c, fresh.name, deadline, err);
        return rc != SR_OK ? rc : sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
    }
    *out = e;
    return SR_OK;
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

        /*
         * 0A000 "cached plan must not change result type" (DDL changed the
         * columns) and 26000 (the statement is gone, e.g. DISCARD ALL) mean
         * our entry is stale. Outside a transaction the failed statement
         * changed nothing, so it is prepared again and rerun once; inside
         * one the transaction is aborted and the caller has to decide.
         */
        const char *state = sqlstate_of(*res);
        int stale = strcmp(state, "0A000") == 0 || strcmp(state, "26000") == 0;
        if (!stale)
            return SR_OK;
        sr_pg_stmt gone;
        (void)sr_stmt_cache_take(c->cache, sql, len, &gone); /* e is invalid from here */
        int idle = PQtransactionStatus(c->pg) == PQTRANS_IDLE;
        if (idle && state[1] == 'A') {
            rc = deallocate(c, gone.name, deadline, err);
            if (rc != SR_OK) {
                PQclear(*res);
                *res = NULL;
                return rc;
            }
        }
        if (!idle || attempt > 0)
            return SR_OK;
        PQclear(*res);
        *res = NULL;
    }
}

static int pg_exec(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                   int64_t deadline_ns, sr_result_builder *rb, sr_driver_error *err)
{
    if (!c || !sql || nparams < 0 || (nparams > 0 && !params))
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "postgres: invalid exec arguments");
    if (!c->pg)
        return sr__pg_gone(c, err);
    int64_t deadline = sr__pg_deadline(c, deadline_ns);
    PGresult *res = NULL;
    /* Statements the cache would refuse (too large for its byte bound, or
     * caching off) run unnamed: no prepare-and-deallocate round trips. */
    size_t len = strlen(sql);
    int rc = sr_stmt_cache_admits(c->cache, len, 0) && !(nparams == 0 && is_multi_statement(sql))
                 ? exec_cached(c, sql, len, nparams, params, deadline, &res, err)
                 : exec_unnamed(c, sql, nparams, params, deadline, &res, err);
    if (rc == SR_OK)
        rc = res ? build_result(c, res, rb, err)
                 : sr_driver_error_set(err, SR_EQUERY, 0, NULL, 0, "the server sent no result");
    PQclear(res);
    return rc;
}

/* ---- transactions and liveness -------------------------------------------- */

static int pg_begin(sr_driver_conn *c, int read_only, int64_t deadline_ns, sr_driver_error *err)
{
    return sr__pg_simple(c, read_only ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN",
                         sr__pg_deadline(c, deadline_ns), NULL, err);
}

static int pg_commit(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    PGresult *res = NULL;
    int rc = sr__pg_simple(c, "COMMIT", sr__pg_deadline(c, deadline_ns), &res, err);
    if (rc != SR_OK)
        return rc;
    /* COMMIT of a transaction that had failed succeeds as "ROLLBACK": that is no commit. */
    int rolled_back = strcmp(PQcmdStatus(res), "ROLLBACK") == 0;
    PQclear(res);
    if (rolled_back)
        return sr_driver_error_set(err, SR_EQUERY, 0, "25P02", 0,
                                   "the transaction had failed and was rolled back, not committed");
    return SR_OK;
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
};
