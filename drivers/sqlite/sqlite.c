/*
 * The SQLite driver. A shard is a database file: the primary is a read-write
 * connection (the file is switched to WAL so readers never block the
 * writer), replicas are read-only connections (SQLITE_OPEN_READONLY) to the
 * same file or to another file. Deadlines are enforced by a busy handler
 * (lock waits) and a progress handler (long statements), both reading the
 * deadline of the statement in progress.
 *
 * URI: sqlite:PATH. Query parameters: journal_mode (primary, default "wal"),
 * synchronous (default SQLite's), foreign_keys (on/off).
 *
 * Column types (driver ABI 6) come from each column's declared type by
 * SQLite's affinity rules; a column without one (an expression, an
 * aggregate) takes the storage class of its first non-NULL value. The steps
 * of ABI 6 have no socket: send() prepares and binds, next_row() is one
 * sqlite3_step().
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shardroute/driver.h"

/* What the statement cache (sr_stmt_cache) keeps per prepared statement. */
typedef struct stmt_entry {
    sqlite3_stmt *stmt;
    /* The statement's column names, shared by its results (see sr_colset_new), and
     * the re-prepare count they belong to: SQLite re-prepares after a schema change. */
    sr_colset *cols;
    int cols_reprepares;
} stmt_entry;

struct sr_driver_conn {
    sqlite3 *db;
    int read_only;
    int64_t deadline_ns; /* of the statement in progress; read by the handlers */
    int timed_out;       /* set by a handler when it gave up because of the deadline */
    sr_stmt_cache *cache; /* keyed by SQL text, bounded by count and bytes */
    char redacted[512];
    /* A statement in steps (send / next_row), NULL when none runs. */
    sqlite3_stmt *step;
    stmt_entry *step_entry;     /* its cache entry, NULL when it is finalized at the end */
    int step_ncols;             /* -1 until the first step */
    uint64_t step_untyped;      /* columns (< 64) typed by their first value */
    sr_result_builder *step_named; /* the builder that was given the columns */
};

/* ---- deadlines ---- */

static int busy_handler(void *arg, int attempt)
{
    sr_driver_conn *c = arg;
    int64_t now = sr_clock_ns();
    if (now >= c->deadline_ns) {
        c->timed_out = 1;
        return 0; /* give up: SQLITE_BUSY */
    }
    /* Back off from 50 us to 5 ms, never sleeping past the deadline. */
    int64_t sleep_ns = attempt < 7 ? (int64_t)50000 << attempt : 5000000;
    if (sleep_ns > c->deadline_ns - now)
        sleep_ns = c->deadline_ns - now;
    struct timespec ts = {(time_t)(sleep_ns / 1000000000), (long)(sleep_ns % 1000000000)};
    nanosleep(&ts, NULL);
    return 1;
}

static int progress_handler(void *arg)
{
    sr_driver_conn *c = arg;
    if (sr_clock_ns() >= c->deadline_ns) {
        c->timed_out = 1;
        return 1; /* interrupts the statement: SQLITE_INTERRUPT */
    }
    return 0;
}

/* ---- errors ---- */

/* SQLite has no SQLSTATE; constraint violations get the standard class-23 codes. */
static const char *sqlstate_for(int ext)
{
    switch (ext) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY: return "23505";
    case SQLITE_CONSTRAINT_NOTNULL: return "23502";
    case SQLITE_CONSTRAINT_FOREIGNKEY: return "23503";
    case SQLITE_CONSTRAINT_CHECK: return "23514";
    default: return NULL;
    }
}

static int fail_sqlite(sr_driver_conn *c, int rc, sr_driver_error *err)
{
    int ext = c->db ? sqlite3_extended_errcode(c->db) : rc;
    const char *msg = c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        /* Memory, not the statement or the file: the connection stays usable. */
        return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, ext, "%s", msg);
    case SQLITE_INTERRUPT:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        if (c->timed_out || (rc & 0xff) == SQLITE_INTERRUPT)
            return sr_driver_error_set(err, SR_ETIMEOUT, 0, NULL, ext,
                                       "statement deadline passed (%s)", msg);
        return sr_driver_error_set(err, SR_EQUERY, 0, NULL, ext, "%s", msg);
    case SQLITE_IOERR:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
        /* The file is unusable from this connection: let the core discard it. */
        return sr_driver_error_set(err, SR_ECONNECT, 1, NULL, ext, "%s", msg);
    default:
        return sr_driver_error_set(err, SR_EQUERY, 0, sqlstate_for(ext), ext, "%s", msg);
    }
}

/* ---- connect / close ---- */

static const char *uri_param(const sr_uri *u, const char *key)
{
    for (int i = 0; i < u->nparams; i++)
        if (strcmp(u->params[i].key, key) == 0)
            return u->params[i].value;
    return NULL;
}

/* Pragma values are spliced into SQL, so they are restricted to identifier characters. */
static int safe_pragma_value(const char *v)
{
    if (!v || !*v || strlen(v) > 32)
        return 0;
    for (const char *p = v; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return 0;
    return 1;
}

static int run_pragma(sr_driver_conn *c, const char *name, const char *value, sr_driver_error *err)
{
    if (!safe_pragma_value(value))
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                   "sqlite node %s: bad value for %s", c->redacted, name);
    char sql[96];
    snprintf(sql, sizeof sql, "PRAGMA %s=%s", name, value);
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return fail_sqlite(c, rc, err);
    return SR_OK;
}

/* The statement cache's release callback: the entry was evicted or the connection closes. */
static void release_stmt(void *ctx, void *value)
{
    (void)ctx;
    stmt_entry *e = value;
    sqlite3_finalize(e->stmt);
    sr_colset_release(e->cols);
}

static void step_end(sr_driver_conn *c);

static void sqlite_close(sr_driver_conn *c)
{
    if (!c)
        return;
    step_end(c);
    sr_stmt_cache_free(c->cache); /* finalizes every cached statement */
    sqlite3_close_v2(c->db);
    free(c);
}

static int sqlite_connect(const sr_driver_connect_args *a, sr_driver_conn **out,
                          sr_driver_error *err)
{
    const sr_uri *u = a->uri;
    if (!u->path || !*u->path)
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "sqlite node %s: no file path",
                                   u->redacted);
    sr_driver_conn *c = calloc(1, sizeof *c);
    if (!c)
        return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
    snprintf(c->redacted, sizeof c->redacted, "%s", u->redacted);
    c->read_only = a->role == SR_REPLICA;
    if (sr_stmt_cache_new(a->stmt_cache_size > 0 ? a->stmt_cache_size : 0, a->stmt_cache_bytes,
                          sizeof(stmt_entry), release_stmt, NULL, &c->cache) != SR_OK) {
        free(c);
        return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
    }

    /* Each connection is used by one thread at a time: SQLite's own mutex is not needed. */
    int flags = SQLITE_OPEN_NOMUTEX |
                (c->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(u->path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        /* Out of memory says nothing about the file: not a failure of the node. */
        int st = rc == SQLITE_NOMEM ? SR_ENOMEM : SR_ECONNECT;
        sr_driver_error_set(err, st, st == SR_ECONNECT, NULL, rc, "cannot open %.280s: %s", u->redacted,
                            c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sqlite_close(c);
        return st;
    }
    sqlite3_extended_result_codes(c->db, 1);
    c->deadline_ns = sr_clock_ns() + (int64_t)a->connect_timeout_ms * 1000000;
    sqlite3_busy_handler(c->db, busy_handler, c);
    sqlite3_progress_handler(c->db, 1000, progress_handler, c);

    /* Opening is lazy in SQLite: touch the schema so a bad file fails here, not later. */
    rc = sqlite3_exec(c->db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int st = fail_sqlite(c, rc, err);
        if (st == SR_EQUERY) /* e.g. "file is not a database" reported as a plain error */
            err->status = st = SR_ECONNECT;
        err->transient = st != SR_ENOMEM;
        char why[200];
        snprintf(why, sizeof why, "%.199s", err->message);
        snprintf(err->message, sizeof err->message, "cannot open %.280s: %s", u->redacted, why);
        sqlite_close(c);
        return st;
    }
    const char *jm = uri_param(u, "journal_mode");
    int st = SR_OK;
    if (!c->read_only)
        st = run_pragma(c, "journal_mode", jm ? jm : "wal", err);
    const char *sync = uri_param(u, "synchronous");
    if (st == SR_OK && sync)
        st = run_pragma(c, "synchronous", sync, err);
    const char *fk = uri_param(u, "foreign_keys");
    if (st == SR_OK && fk)
        st = run_pragma(c, "foreign_keys", fk, err);
    if (st != SR_OK) {
        sqlite_close(c);
        return st;
    }
    *out = c;
    return SR_OK;
}

/* ---- prepared statements and their cache ---- */

static int prepare(sr_driver_conn *c, const char *sql, size_t len, unsigned flags,
                   sqlite3_stmt **stmt, const char **tail, sr_driver_error *err)
{
    int rc = sqlite3_prepare_v3(c->db, sql, (int)len, flags, stmt, tail);
    if (rc != SQLITE_OK)
        return fail_sqlite(c, rc, err);
    if (!*stmt) /* only whitespace or comments */
        return sr_driver_error_set(err, SR_EQUERY, 0, NULL, 0, "statement is empty");
    return SR_OK;
}

/*
 * true when `p` holds no further statement: only white space, ';' and
 * comments. White space is what SQLite's tokenizer skips (space, \t, \n, \f,
 * \r) and \v too: SQLite calls \v an illegal token, but only after the
 * statements before it ran, so "INSERT ...;\v" used to insert and then report
 * a failure (a caller retrying it would insert twice). \v is white space to
 * MySQL and to the core's check for empty SQL, so here it ends the string.
 */
static int only_space(const char *p)
{
    while (p && *p) {
        if (*p == ' ' || (*p >= '\t' && *p <= '\r') || *p == ';') {
            p++;
        } else if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");
            if (!end)
                return 1; /* an unterminated comment runs to the end */
            p = end + 2;
        } else {
            return 0;
        }
    }
    return 1;
}

/*
 * Returns a statement for `sql`: cached (and reset) when the cache has it,
 * else freshly prepared and cached. *cached is its cache entry, NULL when it
 * is not cached (the caller then finalizes it): several statements in one
 * string, or one too large for the cache's byte bound. *tail points past the
 * first statement.
 */
static int get_stmt(sr_driver_conn *c, const char *sql, sqlite3_stmt **out, stmt_entry **cached,
                    const char **tail, sr_driver_error *err)
{
    size_t len = strlen(sql);
    stmt_entry *e = sr_stmt_cache_get(c->cache, sql, len);
    if (e) {
        *out = e->stmt;
        *cached = e;
        *tail = NULL;
        return SR_OK;
    }
    *cached = NULL;
    if (!sr_stmt_cache_admits_text(c->cache, sql, len, 0))
        return prepare(c, sql, len, 0, out, tail, err);
    int rc = prepare(c, sql, len, SQLITE_PREPARE_PERSISTENT, out, tail, err);
    if (rc != SR_OK)
        return rc;
    if (!only_space(*tail))
        return SR_OK; /* several statements: run uncached */
    /* Charged with what SQLite holds for it (its own copy of the text, the
     * program, constants, column names) on top of the key: a statement with a
     * huge literal costs several times its length. Not taken (too large, out
     * of memory): still usable, finalized after this run. */
    stmt_entry fresh = {*out, NULL, 0};
    int memused = sqlite3_stmt_status(*out, SQLITE_STMTSTATUS_MEMUSED, 0);
    *cached = sr_stmt_cache_put(c->cache, sql, len, &fresh, memused > 0 ? (size_t)memused : 0);
    *tail = NULL;
    return SR_OK;
}

/* ---- statements ---- */

/* The statement takes as many parameters as were given, else SR_EINVAL (as every driver). */
static int check_param_count(sqlite3_stmt *st, int nparams, sr_driver_error *err)
{
    int expected = sqlite3_bind_parameter_count(st);
    if (expected == nparams)
        return SR_OK;
    return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                               "the statement has %d placeholders but %d parameters were given",
                               expected, nparams);
}

static int bind_params(sr_driver_conn *c, sqlite3_stmt *st, int nparams, const char *const *params,
                       sr_driver_error *err)
{
    if (check_param_count(st, nparams, err) != SR_OK)
        return err->status;
    for (int i = 0; i < nparams; i++) {
        /* SQLITE_STATIC: the caller's strings outlive the statement's execution. */
        int rc = params[i] ? sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC)
                           : sqlite3_bind_null(st, i + 1);
        if (rc != SQLITE_OK)
            return fail_sqlite(c, rc, err);
    }
    return SR_OK;
}

/* A declared column type by SQLite's affinity rules (section 3.1 of "Datatypes In SQLite"). */
static sr_type declared_type(const char *decl)
{
    if (!decl || !*decl)
        return SR_TYPE_UNKNOWN;
    char up[64];
    size_t n = 0;
    for (; decl[n] && n + 1 < sizeof up; n++)
        up[n] = (char)(decl[n] >= 'a' && decl[n] <= 'z' ? decl[n] - 32 : decl[n]);
    up[n] = '\0';
    if (strstr(up, "BOOL"))
        return SR_TYPE_BOOL;
    if (strstr(up, "INT"))
        return SR_TYPE_INT;
    if (strstr(up, "CHAR") || strstr(up, "CLOB") || strstr(up, "TEXT"))
        return SR_TYPE_TEXT;
    if (strstr(up, "BLOB"))
        return SR_TYPE_BYTES;
    if (strstr(up, "REAL") || strstr(up, "FLOA") || strstr(up, "DOUB"))
        return SR_TYPE_FLOAT;
    if (strstr(up, "DATE") || strstr(up, "TIME"))
        return SR_TYPE_DATETIME;
    if (strstr(up, "DEC") || strstr(up, "NUM"))
        return SR_TYPE_NUMERIC;
    return SR_TYPE_UNKNOWN; /* numeric affinity of an unknown name: typed by its values */
}

/* The type a value's storage class stands for. */
static sr_type storage_type(int t)
{
    switch (t) {
    case SQLITE_INTEGER: return SR_TYPE_INT;
    case SQLITE_FLOAT: return SR_TYPE_FLOAT;
    case SQLITE_BLOB: return SR_TYPE_BYTES;
    case SQLITE_TEXT: return SR_TYPE_TEXT;
    default: return SR_TYPE_UNKNOWN;
    }
}

/* Columns (of the first 64) without a declared type: typed by their first value. */
static uint64_t untyped_columns(sqlite3_stmt *st, int ncols)
{
    uint64_t mask = 0;
    for (int i = 0; i < ncols && i < 64; i++)
        if (declared_type(sqlite3_column_decltype(st, i)) == SR_TYPE_UNKNOWN)
            mask |= (uint64_t)1 << i;
    return mask;
}

/*
 * The result's columns and their declared types: a cached statement shares
 * one set with all its results (rebuilt when SQLite re-prepared it), others
 * copy theirs.
 */
static int set_columns(sqlite3_stmt *st, int ncols, stmt_entry *entry, sr_result_builder *rb,
                       sr_driver_error *err)
{
    if (entry) {
        int reprepares = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_REPREPARE, 0);
        if (!entry->cols || entry->cols_reprepares != reprepares) {
            sr_colset_release(entry->cols);
            entry->cols = NULL;
        }
    }
    if (entry && entry->cols)
        return sr_result_builder_colset(rb, entry->cols) == SR_OK
                   ? SR_OK
                   : sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
    const char *stack_names[16] = {0};
    sr_type stack_types[16] = {0};
    const char **names = ncols <= 16 ? stack_names : malloc((size_t)ncols * sizeof *names);
    sr_type *types = ncols <= 16 ? stack_types : malloc((size_t)ncols * sizeof *types);
    if (!names || !types) {
        if (names != stack_names)
            free(names);
        if (types != stack_types)
            free(types);
        return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "out of memory");
    }
    for (int i = 0; i < ncols; i++) {
        names[i] = sqlite3_column_name(st, i);
        types[i] = declared_type(sqlite3_column_decltype(st, i));
    }
    int rc;
    if (entry && (entry->cols = sr_colset_new_typed(ncols, names, types)) != NULL) {
        entry->cols_reprepares = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_REPREPARE, 0);
        rc = sr_result_builder_colset(rb, entry->cols);
    } else {
        rc = sr_result_builder_columns(rb, ncols, names);
        if (rc == SR_OK)
            rc = sr_result_builder_types(rb, types);
    }
    if (names != stack_names)
        free(names);
    if (types != stack_types)
        free(types);
    return rc == SR_OK ? SR_OK : sr_driver_error_set(err, rc, 0, NULL, 0, "out of memory");
}

/* One row's values into rb; columns in `untyped` take the type of their first value. */
static int add_row(sqlite3_stmt *st, int ncols, uint64_t untyped, sr_result_builder *rb,
                   sr_driver_error *err)
{
    for (int i = 0; i < ncols; i++) {
        /* The type first: it is undefined once column_text converted the value (a BLOB
         * would then read as TEXT). column_text / column_blob are NULL for SQL NULL (a
         * 0-length blob too), and column_text on out-of-memory, which the type tells. */
        int t = sqlite3_column_type(st, i);
        const unsigned char *v = t == SQLITE_BLOB ? sqlite3_column_blob(st, i)
                                                  : sqlite3_column_text(st, i);
        if (!v && t == SQLITE_BLOB)
            v = (const unsigned char *)""; /* an empty blob, not NULL */
        int r2;
        if (!v && t == SQLITE_NULL) {
            r2 = sr_result_builder_value(rb, NULL, 0);
        } else {
            if (!v)
                return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, SQLITE_NOMEM,
                                           "out of memory reading a value");
            int n = sqlite3_column_bytes(st, i);
            r2 = sr_result_builder_value(rb, (const char *)v, (size_t)n);
            if (r2 == SR_OK && i < 64 && (untyped >> i & 1))
                r2 = sr_result_builder_refine_type(rb, i, storage_type(t));
        }
        if (r2 != SR_OK)
            return sr_driver_error_set(err, r2, 0, NULL, 0, "out of memory");
    }
    return SR_OK;
}

/*
 * Steps a bound statement to completion, feeding rows to rb (when not NULL).
 * Columns are read after the first step: SQLite may re-prepare the statement
 * there (after a schema change) and its columns may differ from before.
 */
static int step_all(sr_driver_conn *c, sqlite3_stmt *st, stmt_entry *entry, sr_result_builder *rb,
                    sr_driver_error *err)
{
    int ncols = -1;
    uint64_t untyped = 0;
    for (;;) {
        int rc = sqlite3_step(st);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            return fail_sqlite(c, rc, err);
        if (ncols < 0) {
            ncols = sqlite3_column_count(st);
            if (rb && ncols > 0) {
                int r = set_columns(st, ncols, entry, rb, err);
                if (r != SR_OK)
                    return r;
                untyped = untyped_columns(st, ncols);
            }
        }
        if (rc == SQLITE_DONE)
            break;
        if (!rb)
            continue;
        int r2 = add_row(st, ncols, untyped, rb, err);
        if (r2 != SR_OK)
            return r2;
    }
    if (rb && ncols == 0)
        sr_result_builder_affected(rb, sqlite3_changes64(c->db));
    return SR_OK;
}

static int exec_stmt(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                     sr_result_builder *rb, sr_driver_error *err);

static int sqlite_exec(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                       int64_t deadline_ns, sr_result_builder *rb, sr_driver_error *err)
{
    c->deadline_ns = deadline_ns;
    c->timed_out = 0;
    int in_txn = !sqlite3_get_autocommit(c->db);
    int rc = exec_stmt(c, sql, nparams, params, rb, err);
    if (rc != SR_OK && in_txn && sqlite3_get_autocommit(c->db)) {
        /* SQLite rolled the transaction back on its own (it may on out of
         * memory, a full disk, I/O errors): the caller's next statement would
         * run outside any transaction. Transient, so the core ends the
         * transaction and says so; the message tells why. */
        err->transient = 1;
        size_t len = strlen(err->message);
        snprintf(err->message + len, sizeof err->message - len, " (SQLite rolled the transaction back)");
    }
    return rc;
}

static int exec_stmt(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                     sr_result_builder *rb, sr_driver_error *err)
{
    sqlite3_stmt *st = NULL;
    stmt_entry *cached = NULL;
    const char *tail = NULL;
    int rc = get_stmt(c, sql, &st, &cached, &tail, err);
    if (rc != SR_OK)
        return rc;

    /* Several statements in one string: run them in order, the last one's rows are the result. */
    while (!cached && !only_space(tail)) {
        if (nparams > 0) {
            sqlite3_finalize(st);
            return sr_driver_error_set(err, SR_EQUERY, 0, NULL, 0,
                                       "parameters are not supported with several statements");
        }
        rc = step_all(c, st, NULL, NULL, err);
        sqlite3_finalize(st);
        if (rc != SR_OK)
            return rc;
        const char *next = tail;
        rc = sqlite3_prepare_v3(c->db, next, -1, 0, &st, &tail);
        if (rc != SQLITE_OK)
            return fail_sqlite(c, rc, err);
        if (!st) {
            /* Nothing but what SQLite skips was left (only_space should have said so): the
             * statements before ran, so this is success, never "statement is empty". */
            if (rb)
                sr_result_builder_affected(rb, sqlite3_changes64(c->db));
            return SR_OK;
        }
    }

    rc = bind_params(c, st, nparams, params, err);
    if (rc == SR_OK)
        rc = step_all(c, st, cached, rb, err);
    if (cached) {
        /* The bound strings (SQLITE_STATIC) belong to the caller and may dangle
         * after this call: harmless, every parameter is bound again before the
         * statement next runs (the count is checked), so no clear_bindings. */
        sqlite3_reset(st);
    } else {
        sqlite3_finalize(st);
    }
    return rc;
}

/* ---- a statement in steps (driver ABI 6): no socket, one sqlite3_step per row ---- */

static int sqlite_socket(sr_driver_conn *c)
{
    (void)c;
    return -1;
}

/* Ends the stepped statement: reset when cached (and kept), finalized otherwise. */
static void step_end(sr_driver_conn *c)
{
    if (!c->step)
        return;
    if (c->step_entry) {
        sqlite3_reset(c->step);
        sqlite3_clear_bindings(c->step); /* the bound copies are freed now, not at the next run */
    } else {
        sqlite3_finalize(c->step);
    }
    c->step = NULL;
    c->step_entry = NULL;
    c->step_named = NULL;
}

static int bind_values(sr_driver_conn *c, sqlite3_stmt *st, int nparams, const sr_value *v,
                       sr_driver_error *err)
{
    if (check_param_count(st, nparams, err) != SR_OK)
        return err->status;
    for (int i = 0; i < nparams; i++) {
        int rc;
        /* SQLITE_TRANSIENT: the values are borrowed for send() only, SQLite copies them. */
        switch (v[i].type) {
        case SR_TYPE_NULL: rc = sqlite3_bind_null(st, i + 1); break;
        case SR_TYPE_INT: rc = sqlite3_bind_int64(st, i + 1, v[i].i); break;
        case SR_TYPE_BOOL: rc = sqlite3_bind_int(st, i + 1, v[i].i != 0); break;
        case SR_TYPE_FLOAT: rc = sqlite3_bind_double(st, i + 1, v[i].f); break;
        case SR_TYPE_BYTES:
            /* A non-NULL pointer: a 0-length value is an empty blob, not NULL. */
            rc = sqlite3_bind_blob64(st, i + 1, v[i].p ? v[i].p : "", v[i].len, SQLITE_TRANSIENT);
            break;
        case SR_TYPE_TEXT:
        case SR_TYPE_NUMERIC:
        case SR_TYPE_DATETIME:
            if (v[i].len && memchr(v[i].p, '\0', v[i].len))
                return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                           "parameter %d: text with a NUL byte", i + 1);
            rc = sqlite3_bind_text64(st, i + 1, v[i].p ? v[i].p : "", v[i].len, SQLITE_TRANSIENT,
                                     SQLITE_UTF8);
            break;
        default:
            return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                       "parameter %d: unknown type %d", i + 1, (int)v[i].type);
        }
        if (rc != SQLITE_OK)
            return fail_sqlite(c, rc, err);
    }
    return SR_OK;
}

static int sqlite_send(sr_driver_conn *c, const char *sql, int nparams, const sr_value *params,
                       int64_t deadline_ns, int *want, sr_driver_error *err)
{
    *want = 0;
    step_end(c); /* a statement left running by a caller that did not cancel */
    c->deadline_ns = deadline_ns;
    c->timed_out = 0;
    sqlite3_stmt *st = NULL;
    stmt_entry *cached = NULL;
    const char *tail = NULL;
    int rc = get_stmt(c, sql, &st, &cached, &tail, err);
    if (rc != SR_OK)
        return rc;
    if (!cached && !only_space(tail)) {
        sqlite3_finalize(st);
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                   "several statements in one string cannot run in steps");
    }
    c->step = st;
    c->step_entry = cached;
    c->step_ncols = -1;
    c->step_untyped = 0;
    c->step_named = NULL;
    rc = bind_values(c, st, nparams, params, err);
    if (rc != SR_OK)
        step_end(c);
    return rc;
}

static int sqlite_next_row(sr_driver_conn *c, sr_result_builder *rb, int64_t deadline_ns,
                           int *want, sr_driver_error *err)
{
    *want = 0;
    if (!c->step)
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "next_row without send");
    c->deadline_ns = deadline_ns;
    c->timed_out = 0;
    int in_txn = !sqlite3_get_autocommit(c->db);
    int rc = sqlite3_step(c->step);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        int st = fail_sqlite(c, rc, err);
        step_end(c);
        if (in_txn && sqlite3_get_autocommit(c->db))
            err->transient = 1; /* SQLite rolled the transaction back (see sqlite_exec) */
        return st;
    }
    if (c->step_ncols < 0) {
        c->step_ncols = sqlite3_column_count(c->step);
        c->step_untyped = untyped_columns(c->step, c->step_ncols);
    }
    if (c->step_ncols > 0 && rb != c->step_named) {
        int r = set_columns(c->step, c->step_ncols, c->step_entry, rb, err);
        if (r != SR_OK) {
            step_end(c);
            return r;
        }
        c->step_named = rb;
    }
    if (rc == SQLITE_ROW) {
        int r = add_row(c->step, c->step_ncols, c->step_untyped, rb, err);
        if (r != SR_OK) {
            step_end(c);
            return r;
        }
        return 1;
    }
    if (c->step_ncols == 0)
        sr_result_builder_affected(rb, sqlite3_changes64(c->db));
    step_end(c);
    return 0;
}

static int sqlite_cancel(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    (void)deadline_ns, (void)err;
    step_end(c);
    return SR_OK;
}

static int exec_simple(sr_driver_conn *c, const char *sql, int64_t deadline_ns,
                       sr_driver_error *err)
{
    c->deadline_ns = deadline_ns;
    c->timed_out = 0;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? SR_OK : fail_sqlite(c, rc, err);
}

static int sqlite_begin(sr_driver_conn *c, int read_only, int64_t deadline_ns,
                        sr_driver_error *err)
{
    /* IMMEDIATE takes the write lock up front, so two writers cannot deadlock on upgrade. */
    return exec_simple(c, read_only || c->read_only ? "BEGIN DEFERRED" : "BEGIN IMMEDIATE",
                       deadline_ns, err);
}

static int sqlite_commit(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    return exec_simple(c, "COMMIT", deadline_ns, err);
}

static int sqlite_rollback(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    if (sqlite3_get_autocommit(c->db))
        return SR_OK; /* SQLite already rolled back (e.g. after SQLITE_FULL) */
    return exec_simple(c, "ROLLBACK", deadline_ns, err);
}

static int sqlite_ping(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    return exec_simple(c, "SELECT 1", deadline_ns, err);
}

static int sqlite_server_role(sr_driver_conn *c, int64_t deadline_ns, sr_role *out,
                              sr_driver_error *err)
{
    (void)deadline_ns;
    (void)err;
    *out = sqlite3_db_readonly(c->db, "main") == 1 ? SR_REPLICA : SR_PRIMARY;
    return SR_OK;
}

static const char *const sqlite_schemes[] = {"sqlite", NULL};

const sr_driver sr__driver_sqlite = {
    .abi_version = SR_DRIVER_ABI_VERSION,
    .name = "sqlite",
    .schemes = sqlite_schemes,
    .dialect = SR_SQL_SQLITE,
    .connect = sqlite_connect,
    .close = sqlite_close,
    .exec = sqlite_exec,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .ping = sqlite_ping,
    .server_role = sqlite_server_role,
    /* One file, no replication: positions and lag do not apply. */
    .write_position = NULL,
    .has_replayed = NULL,
    .replica_lag_ms = NULL,
    .flags = SR_DRIVER_URI_PATH, /* sqlite:PATH */
    .socket = sqlite_socket,
    .send = sqlite_send,
    .next_row = sqlite_next_row,
    .cancel = sqlite_cancel,
};
