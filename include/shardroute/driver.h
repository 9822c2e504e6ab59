/*
 * shardroute driver interface — for in-tree and third-party backend drivers.
 *
 * A driver is a `const struct sr_driver` of function pointers, like an SQLite
 * VFS: it has an ABI version and a name, it is registered once and found by
 * URI scheme, and new methods are only ever added at the end. The core never
 * includes a backend's header; a driver never sees the router.
 *
 * Stability: weaker than shardroute.h. Drivers built against an older
 * SR_DRIVER_ABI_VERSION keep working; methods past their version are treated
 * as absent (ABI 1 ends at replica_lag_ms; ABI 2 adds the position methods;
 * ABI 3 adds sr_driver_connect_args.stmt_cache_bytes and the statement
 * cache helpers, sr_stmt_cache_*; ABI 4 adds sr_driver.app_data and
 * sr_driver.flags (SR_DRIVER_URI_PATH), the connect arguments `driver`,
 * `app_data` and `log` (filled only for drivers of ABI 4 or later), the
 * driver-author helpers sr_deadline_*, sr_wait_fd, sr_scrub_secret,
 * sr_strdup and sr_driver_log, and sr_driver_unregister; ABI 5 adds
 * sr_driver.exec_at, a statement with its consistency check or write
 * position in one exchange; ABI 6 adds typed parameters and non-blocking,
 * row-by-row statements: sr_driver.socket, send, next_row and cancel, and
 * the builder's column types, sr_result_builder_types and
 * sr_colset_new_typed; ABI 7 adds two-phase commit: begin_global, prepare,
 * commit_prepared, rollback_prepared, list_prepared, with SR_GID_MAX,
 * sr_gid_valid and sr_driver_has_two_phase). Structs the core passes to a
 * driver only grow at their end, so a driver built against an older header
 * reads the fields it knows.
 *
 * Everything a driver needs is in this header and shardroute.h: the in-tree
 * drivers are compiled with nothing else on their include path.
 *
 * Threading: the core uses one sr_driver_conn from one thread at a time, but
 * different connections of the same driver from many threads at once, so a
 * driver's functions must not share unsynchronised state between connections.
 */
#ifndef SHARDROUTE_DRIVER_H
#define SHARDROUTE_DRIVER_H

#include <shardroute.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SR_DRIVER_ABI_VERSION 7

/** A driver's connection; each driver defines the struct. */
typedef struct sr_driver_conn sr_driver_conn;

/** Collects the rows of one statement into an sr_result; see sr_result_builder_*. */
typedef struct sr_result_builder sr_result_builder;

/** SQL dialects the lexer knows (comments, quoting and placeholder forms differ). */
typedef enum sr_sql_dialect {
    SR_SQL_GENERIC = 0,  /* server unknown: a read only if it is one in every dialect below */
    SR_SQL_POSTGRES = 1, /* + nested comments, $tag$ dollar quotes, E'..' escapes */
    SR_SQL_MYSQL = 2,    /* + backslash escapes in strings, `..` identifiers, # comments */
    SR_SQL_SQLITE = 3    /* + `..` and [..] identifiers */
} sr_sql_dialect;

/** One query parameter of a URI ("?sslmode=disable&application_name=x"). */
typedef struct sr_uri_param {
    const char *key;
    const char *value;
} sr_uri_param;

/**
 * A parsed node URI. Every string is NUL-terminated and percent-decoded;
 * missing parts are NULL (port 0). For the path form of a driver with
 * SR_DRIVER_URI_PATH ("sqlite:PATH") only `path` is set.
 * `redacted` is the URI with the password replaced by "***" (and any
 * "password" query parameter too): the only form a driver may put in a
 * message.
 */
typedef struct sr_uri {
    const char *scheme;   /* lower-case, as registered: "sqlite", "postgresql", "mysql", ... */
    const char *user;
    const char *password;
    const char *host;     /* without brackets for IPv6 literals */
    int port;             /* 0 when absent */
    const char *database; /* path component without the leading '/' */
    const char *path;     /* path form (SR_DRIVER_URI_PATH): the path (may be ":memory:") */
    const sr_uri_param *params;
    int nparams;
    const char *redacted;
} sr_uri;

struct sr_driver;

/**
 * Where a driver's log lines go: the router's log callback
 * (sr_config_set_log_fn) and its userdata; `fn` NULL means no logging. A
 * driver copies the struct (by value) out of its connect arguments into its
 * connection to log later. Write lines with sr_driver_log().
 */
typedef struct sr_driver_logger {
    sr_log_fn fn;
    void *userdata;
} sr_driver_logger;

/**
 * What the core passes to connect(). Borrowed for the duration of the call
 * only. New fields are only ever added at the end (see the ABI note above).
 * The two statement-cache bounds hold together: pass both to
 * sr_stmt_cache_new(); 0 in either disables the cache.
 */
typedef struct sr_driver_connect_args {
    const sr_uri *uri;
    sr_role role;             /* the role the configuration gives the node */
    int connect_timeout_ms;   /* > 0: bound on the whole connect */
    int statement_timeout_ms; /* > 0: default bound for statements (deadlines are passed per call) */
    int stmt_cache_size;      /* prepared statements kept per connection (LRU), >= 0 */
    /* ABI 3: bytes of prepared statements kept per connection (option
     * stmt_cache.max_bytes; SQL text + the driver's estimate of each handle). */
    size_t stmt_cache_bytes;
    /* ABI 4 (filled only when the driver's abi_version >= 4; a driver of an
     * older ABI never reads them): the driver being asked to connect (the
     * registered struct, as SQLite's xOpen gets its sqlite3_vfs), its
     * app_data, and the router's log sink. */
    const struct sr_driver *driver;
    void *app_data;
    sr_driver_logger log;
} sr_driver_connect_args;

/**
 * An error reported by a driver. `status` is an sr_status (SR_ECONNECT,
 * SR_ETIMEOUT, SR_EQUERY, ...). `transient` is 1 when the connection is no
 * longer usable (the core discards it, and health counts the failure); 0 for
 * a permanent SQL error after which the connection is fine.
 * `message` never contains a password.
 */
typedef struct sr_driver_error {
    int status;
    int transient;
    int native_code;  /* MySQL errno, SQLite extended result code, 0 when none */
    char sqlstate[6]; /* "" when none */
    char message[512];
} sr_driver_error;

/**
 * The driver vtable. Every method returns SR_OK or a negative status and then
 * fills `err`. Deadlines are absolute times of sr_clock_ns(); a method must
 * return SR_ETIMEOUT (with `transient` set if the connection is unusable)
 * rather than block past one.
 */
typedef struct sr_driver {
    int abi_version;            /* SR_DRIVER_ABI_VERSION */
    const char *name;           /* "sqlite", "postgres", "mysql" */
    const char *const *schemes; /* NULL-terminated URI schemes handled, lower-case */
    sr_sql_dialect dialect;

    /* Opens a connection. Must honour connect_timeout_ms. */
    int (*connect)(const sr_driver_connect_args *args, sr_driver_conn **out, sr_driver_error *err);
    /* Closes a connection; NULL is a no-op. Must not block indefinitely. */
    void (*close)(sr_driver_conn *conn);
    /*
     * Runs one statement with text parameters (NULL element = SQL NULL) in the
     * portable '?' form (the driver rewrites it with
     * sr_sql_rewrite_placeholders() when it needs another form). Rows go to
     * `rb` (columns first, then values in row-major order).
     */
    int (*exec)(sr_driver_conn *conn, const char *sql, int nparams, const char *const *params,
                int64_t deadline_ns, sr_result_builder *rb, sr_driver_error *err);
    int (*begin)(sr_driver_conn *conn, int read_only, int64_t deadline_ns, sr_driver_error *err);
    int (*commit)(sr_driver_conn *conn, int64_t deadline_ns, sr_driver_error *err);
    int (*rollback)(sr_driver_conn *conn, int64_t deadline_ns, sr_driver_error *err);
    /* Cheap liveness check. */
    int (*ping)(sr_driver_conn *conn, int64_t deadline_ns, sr_driver_error *err);

    /* Optional (NULL when the backend has no such notion). */
    /* The server's actual role (PostgreSQL pg_is_in_recovery(), MySQL read_only). */
    int (*server_role)(sr_driver_conn *conn, int64_t deadline_ns, sr_role *out, sr_driver_error *err);
    /* The primary's current write position as printable text (WAL LSN, GTID set). */
    int (*write_position)(sr_driver_conn *conn, int64_t deadline_ns, char *buf, size_t buflen,
                          sr_driver_error *err);
    /* *out = 1 when this replica has replayed `position` (from write_position). */
    int (*has_replayed)(sr_driver_conn *conn, const char *position, int64_t deadline_ns, int *out,
                        sr_driver_error *err);
    /* Replication lag in ms; *out_ms = -1 when replication is broken (not eligible, never "0"). */
    int (*replica_lag_ms)(sr_driver_conn *conn, int64_t deadline_ns, int64_t *out_ms,
                          sr_driver_error *err);

    /* ---- ABI 2: replication positions for consistency (all optional) ---- */
    /* The position this server has applied up to (replica: replayed; primary: written). */
    int (*replay_position)(sr_driver_conn *conn, int64_t deadline_ns, char *buf, size_t buflen,
                           sr_driver_error *err);
    /* Pure: 1 when a server at `have` has applied everything up to `want`, 0 when not,
     * negative (SR_EINVAL) when either is malformed. */
    int (*position_covers)(const char *have, const char *want);
    /* Pure: the least position that covers both `a` and `b` (PostgreSQL: the later LSN;
     * GTID: per-domain maximum). SR_EINVAL when malformed or buflen too small. */
    int (*position_merge)(const char *a, const char *b, char *buf, size_t buflen);
    /* Waits until this replica has applied `position` or the deadline passes (*out = 0). */
    int (*wait_replayed)(sr_driver_conn *conn, const char *position, int64_t deadline_ns, int *out,
                         sr_driver_error *err);

    /* ---- ABI 4 ---- */
    /* The registrant's pointer, handed back in sr_driver_connect_args.app_data
     * (as sqlite3_vfs.pAppData): lets one set of functions serve several
     * registrations. The core never dereferences it. */
    void *app_data;
    /* SR_DRIVER_* flags. */
    unsigned flags;

    /* ---- ABI 5: consistency in the statement's own exchange (optional) ---- */
    /*
     * Runs one statement as exec() does and, in the same exchange with the
     * server (one round trip where the client library allows it):
     *  - `need` non-NULL (a read on a replica): checks that this server has
     *    applied `need` (position_covers) before the statement runs. When it
     *    has not, *stale = 1, nothing is added to `rb`, and SR_OK is
     *    returned: the core reads elsewhere. The statement may have run
     *    (a driver may pipeline it behind the check) but its rows, or its
     *    error, are dropped. When the check passes, the rows come from a
     *    snapshot that includes `need`. `pos` receives the position the
     *    check saw ("" when unknown), which the core caches for the node.
     *    A malformed `need` is SR_EINVAL (nothing sent).
     *  - `need` NULL (a write on the primary): `pos` receives a position
     *    that covers the statement once it committed: the server's write
     *    position, or (MariaDB) only the write's own GTID, which need not
     *    cover other sessions' writes nor other replication domains ("" when
     *    the driver could not learn it in the exchange: the core then calls
     *    write_position()). A statement inside an explicit transaction is
     *    not committed yet; the core does not ask for its position.
     * `pos` is never NULL; it is NUL-terminated, at most `poslen` bytes (SR_POSITION_MAX).
     * *stale is always set (0 unless the check failed). On an error the
     * statement's rows, *stale and `pos` mean nothing. SR_OK with
     * err->transient = 1: the statement succeeded but the connection was
     * lost after it (a write committed, its position did not come back;
     * `pos` is ""): the core keeps the result and closes the connection.
     * PostgreSQL: libpq pipeline mode (check / statement / sync, or
     * statement / sync / position / sync); on a stale replica the
     * statement runs and its rows or error are dropped (failing the check
     * on purpose would skip it, but log an ERROR on the replica for every
     * stale read). Several statements in one string cannot be pipelined: a
     * read's check then takes a round trip of its own and a write's `pos`
     * is "". Inside an explicit transaction a write runs as exec() with
     * `pos` "" and a read with `need` is SR_EINVAL.
     * MariaDB: the GTID of a write comes in the OK packet
     * (session_track_system_variables = last_gtid), so `pos` is that one
     * GTID ("0-1-42"); it is "" for a write answered with rows (INSERT ...
     * RETURNING: no OK packet), a statement that wrote nothing, or a server
     * whose global session_track_system_variables is empty. A read's check
     * reads @@GLOBAL.gtid_slave_pos on the same connection before the
     * statement, which also fills `pos`; behind, the statement is not run
     * (one extra round trip: Connector/C cannot send a prepared statement
     * behind another statement).
     */
    int (*exec_at)(sr_driver_conn *conn, const char *sql, int nparams, const char *const *params,
                   const char *need, int64_t deadline_ns, sr_result_builder *rb, char *pos,
                   size_t poslen, int *stale, sr_driver_error *err);

    /* ---- ABI 6: typed parameters, non-blocking statements, rows one by one ---- */
    /*
     * A statement in steps, so that one thread can drive many connections at
     * once (scatter) and take rows as they arrive (cursors). All four are
     * set together or not at all. Protocol, on one connection:
     *   send() once, then next_row() until it returns 0 with *want == 0 (the
     *   statement is done) or an error; whenever a call returns with *want
     *   != 0 the core waits (sr_wait_fd on socket(), bounded by its
     *   deadline) for those poll() events and calls next_row() again.
     *   Between send() and the end nothing but next_row(), socket(),
     *   cancel() and close() is called on the connection.
     * Neither send() nor next_row() may block waiting for the server: what
     * the socket cannot take or give now is left for the next call.
     * Drivers without a socket (SQLite) return -1 from socket(), never set
     * *want, and do their work inside the calls (bounded by the deadline as
     * exec() is).
     */
    /* The descriptor to wait on after *want != 0, or -1 (the driver never waits). */
    int (*socket)(sr_driver_conn *conn);
    /*
     * Starts one statement (one statement only: no ';'-separated lists)
     * with typed parameters in the portable '?' form. `params` and the
     * bytes they point to are borrowed for this call only. Returns SR_OK
     * with *want = 0, or POLLOUT when the request is not yet fully handed to
     * the socket (the core waits and calls next_row(), which goes on
     * flushing). A parameter of a type the driver cannot send is SR_EINVAL
     * (nothing sent). `deadline_ns` bounds this call only (as in next_row()).
     */
    int (*send)(sr_driver_conn *conn, const char *sql, int nparams, const sr_value *params,
                int64_t deadline_ns, int *want, sr_driver_error *err);
    /*
     * Advances the statement without blocking. Returns 1 when it added one
     * row to `rb` (the columns, with their types, are given to the first
     * builder before its first row, and to any builder before the statement
     * ends, also when there are no rows); 0 with *want = 0 when the
     * statement is done (sr_result_builder_affected() given for a write;
     * the connection is idle again); 0 with *want = POLLIN / POLLOUT when it
     * needs the socket; a negative status when the statement failed (SQL
     * errors with transient = 0 leave the connection idle and usable). Past
     * the deadline: SR_ETIMEOUT, transient unless the driver made the
     * connection idle again. `deadline_ns` bounds the work done inside this
     * call (an SQLite step; flushing); the core bounds its own waits on the
     * socket, so a statement as a whole is bounded by the core: each wait
     * for a row by the caller's deadline. The core may pass a different builder from one
     * call to the next (batches of a cursor): a builder that was not given
     * the columns gets them from the core.
     */
    int (*next_row)(sr_driver_conn *conn, sr_result_builder *rb, int64_t deadline_ns, int *want,
                    sr_driver_error *err);
    /*
     * Abandons the running statement (a cursor closed early, a scatter
     * whose other shards failed) and makes the connection idle again within
     * `deadline_ns` (PostgreSQL: a cancel request and draining; MariaDB:
     * fetching the rest). SR_OK: the connection is idle and reusable; any
     * error: the core closes the connection. May be NULL: the core then
     * closes the connection.
     */
    int (*cancel)(sr_driver_conn *conn, int64_t deadline_ns, sr_driver_error *err);

    /* ---- ABI 7: two-phase commit, for transactions that span shards (optional) ---- */
    /*
     * All five are set together or not at all (sr_driver_has_two_phase()). A
     * global id ("gid") is 1 to SR_GID_MAX bytes of [A-Za-z0-9_.:-]
     * (sr_gid_valid(); anything else is SR_EINVAL, nothing sent), chosen by
     * the core, so a driver may put it in SQL text as a quoted literal.
     *
     * begin_global() starts a transaction that may later be prepared under
     * `gid` (PostgreSQL: BEGIN, the gid is named at prepare; MariaDB/MySQL:
     * XA START). Until prepare(), the connection's commit() and rollback()
     * end it in one phase (MariaDB: XA END then XA COMMIT ... ONE PHASE / XA
     * ROLLBACK), as the core does when only one shard took part.
     */
    int (*begin_global)(sr_driver_conn *conn, const char *gid, int64_t deadline_ns,
                        sr_driver_error *err);
    /*
     * Prepares the transaction begun with begin_global(): PREPARE
     * TRANSACTION / XA END + XA PREPARE. On SR_OK it survives this
     * connection and a restart of the server, and the connection is no
     * longer in it (free for other statements). A transaction that had
     * failed is not prepared: SR_EQUERY (it is rolled back). A transient
     * error leaves the outcome unknown: list_prepared() tells.
     */
    int (*prepare)(sr_driver_conn *conn, const char *gid, int64_t deadline_ns,
                   sr_driver_error *err);
    /*
     * COMMIT PREPARED / XA COMMIT, and ROLLBACK PREPARED / XA ROLLBACK, of a
     * prepared transaction, from any idle connection to the server that
     * prepared it (PostgreSQL: to the same database). Idempotent: an
     * unknown gid (already resolved, or never prepared) is SR_OK with
     * *found = 0, so the core may retry after a transient error and
     * recovery may race another process. *found = 1 when this call ended it.
     */
    int (*commit_prepared)(sr_driver_conn *conn, const char *gid, int64_t deadline_ns,
                           int *found, sr_driver_error *err);
    int (*rollback_prepared)(sr_driver_conn *conn, const char *gid, int64_t deadline_ns,
                             int *found, sr_driver_error *err);
    /*
     * The prepared transactions whose gid starts with `prefix` (a valid gid
     * prefix, or "" for all), one row each with one text column "gid", in
     * no particular order: what recovery resolves after a coordinator died.
     * PostgreSQL: pg_prepared_xacts of the connection's database; MariaDB:
     * XA RECOVER (all databases: XA ids are server-wide).
     */
    int (*list_prepared)(sr_driver_conn *conn, const char *prefix, int64_t deadline_ns,
                         sr_result_builder *rb, sr_driver_error *err);
} sr_driver;

/* Longest global id of a two-phase transaction: MariaDB/MySQL's XA gtrid limit. */
#define SR_GID_MAX 64

/* 1 when `gid` is a well-formed global id (or, with allow_empty, ""): 1..SR_GID_MAX bytes of
 * [A-Za-z0-9_.:-], safe to quote in SQL text as it is. */
static inline int sr_gid_valid(const char *gid, int allow_empty)
{
    if (!gid)
        return 0;
    int n = 0;
    for (; gid[n]; n++) {
        char ch = gid[n];
        if (n >= SR_GID_MAX ||
            !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == ':' || ch == '-'))
            return 0;
    }
    return n > 0 || allow_empty;
}

/* The five ABI 7 methods are present. */
static inline int sr_driver_has_two_phase(const sr_driver *d)
{
    return d->abi_version >= 7 && d->begin_global && d->prepare && d->commit_prepared &&
           d->rollback_prepared && d->list_prepared;
}

/* The four ABI 6 methods are present (a driver of ABI 6 may leave them all NULL). */
static inline int sr_driver_has_steps(const sr_driver *d)
{
    return d->abi_version >= 6 && d->socket && d->send && d->next_row;
}

/*
 * sr_driver.flags: the driver's schemes take the path form "SCHEME:PATH"
 * (relative, /absolute or ":memory:"; "SCHEME:///abs" is "SCHEME:/abs"; a
 * host is refused) instead of SCHEME://[user[:password]@]host[:port][/db].
 * The parsed URI then has only `path` (and `params`) set.
 */
#define SR_DRIVER_URI_PATH 0x1u

/* Longest position text the core keeps (a GTID set of many domains fits). */
#define SR_POSITION_MAX 512

/**
 * Registers a third-party driver for its schemes (in-tree drivers are
 * registered by the library itself). The registry keeps the pointer, not a
 * copy: the struct must stay valid and unchanged until it is unregistered
 * and every router that uses it is closed. There is no limit on the number
 * of drivers but memory. Thread-safe. Register a driver before adding nodes
 * with its scheme to a configuration: sr_config_add_node() parses the URI,
 * and the driver's SR_DRIVER_URI_PATH flag decides its form.
 * Errors (there is no message channel: the status is the reason):
 *  - SR_EINVAL: `driver` NULL, no name, no scheme, a scheme that is not
 *    lower-case scheme characters, a required method missing (connect,
 *    close, exec, begin, commit, rollback, ping), or one of its schemes (or
 *    the same struct) already registered;
 *  - SR_EDRIVER: abi_version < 1, or newer than this library's
 *    SR_DRIVER_ABI_VERSION (the driver was built against a newer header and
 *    may rely on what this library does not do; rebuild one or the other);
 *  - SR_ENOMEM.
 */
SR_API int sr_driver_register(const sr_driver *driver);

/**
 * Undoes sr_driver_register(): the driver's schemes are free again and
 * sr_driver_find() no longer returns it. Routers opened before keep their
 * pointer to the driver and go on calling it: the caller must close every
 * router that uses the driver (sr_router_close) before freeing or changing
 * the struct, and should do so before unregistering. Thread-safe.
 * Errors: SR_EINVAL when `driver` is NULL, was not registered with
 * sr_driver_register() (in-tree drivers cannot be unregistered), or was
 * unregistered already.
 */
SR_API int sr_driver_unregister(const sr_driver *driver);

/** The driver for a URI scheme, or NULL. Thread-safe. */
SR_API const sr_driver *sr_driver_find(const char *scheme);

/** Monotonic clock in nanoseconds: the time base of every deadline. */
SR_API int64_t sr_clock_ns(void);

/* ---- Helpers for driver authors (ABI 4) ---------------------------------- */

/**
 * The deadline `ms` milliseconds from now (an sr_clock_ns() time), or 0 (no
 * deadline) when ms <= 0, the convention of every deadline the core passes.
 * Pure apart from reading the clock; thread-safe; cannot fail.
 */
SR_API int64_t sr_deadline_after_ms(int ms);

/**
 * Milliseconds left until `deadline_ns`, rounded up (waking a little early
 * would only spin) and clamped to 0..INT_MAX: 0 once it passed, INT_MAX for
 * deadline_ns <= 0 (none). Suitable for poll() and for a library's own
 * millisecond timeout. Thread-safe; cannot fail.
 */
SR_API int sr_deadline_remaining_ms(int64_t deadline_ns);

/**
 * Waits until `fd` reports one of `events` (POLLIN, POLLOUT, POLLPRI as in
 * poll()) or `deadline_ns` passes (<= 0: no deadline). Signals (EINTR) do
 * not end the wait early, nor stretch it past the deadline.
 * Returns 1 with *revents set to poll()'s revents (which may be POLLERR,
 * POLLHUP or POLLNVAL rather than what was asked: the caller's next I/O
 * reports the error); 0 with *revents = 0 when the deadline passed first;
 * SR_EINVAL when fd < 0 or revents is NULL; SR_EDRIVER when poll() itself
 * failed (errno is kept). Blocks only the calling thread; thread-safe.
 */
SR_API int sr_wait_fd(int fd, int events, int64_t deadline_ns, int *revents);

/**
 * Replaces, in place, every occurrence of `secret` in the NUL-terminated
 * `msg` with "***", for a server's or client library's message that might
 * echo a password. Scrub before cutting a message to size, so that no
 * prefix of the secret survives at the cut. A secret shorter than 4 bytes
 * (or NULL) is left alone: scrubbing it would garble every message while
 * hiding nothing of value. Returns the number of replacements (0 also when
 * msg is NULL). Thread-safe for distinct buffers; cannot fail.
 */
SR_API int sr_scrub_secret(char *msg, const char *secret);

/**
 * strdup() (not in C11) that takes NULL: a copy of `s` the caller frees
 * with free(), or NULL when `s` is NULL or memory ran out. Thread-safe.
 */
SR_API char *sr_strdup(const char *s);

/**
 * Formats a line (printf-style, cut at 1023 bytes) and hands it to the
 * logger's callback with `level`; does nothing when `log` or its `fn` is
 * NULL. The line must never hold a password (scrub server text with
 * sr_scrub_secret, name nodes by sr_uri.redacted). Runs the callback on the
 * calling thread, which the application's callback allows (it is called
 * from whichever thread hit the event). Allocates nothing; cannot fail.
 */
SR_API void sr_driver_log(const sr_driver_logger *log, sr_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/** Fills `err` (printf-style message, truncated to fit) and returns `status`. */
SR_API int sr_driver_error_set(sr_driver_error *err, int status, int transient,
                               const char *sqlstate, int native_code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

/**
 * Result building, called by a driver's exec(): first the columns (names are
 * copied), then each value in row-major order (copied; `value` NULL means SQL
 * NULL), and for writes the affected-row count. Returns SR_OK or SR_ENOMEM
 * (SR_EINVAL when called out of order).
 */
SR_API int sr_result_builder_columns(sr_result_builder *rb, int ncols, const char *const *names);

/**
 * An immutable, reference-counted set of column names that results can
 * share: a driver keeps one per cached prepared statement and hands it to
 * every result of that statement instead of copying the names each time.
 * sr_colset_new() copies the names (NULL when out of memory); the creator
 * holds one reference and drops it with sr_colset_release() (NULL is a
 * no-op; thread-safe: results on other threads may still hold theirs).
 * sr_result_builder_colset() is sr_result_builder_columns() with a shared
 * set: the result takes its own reference.
 */
typedef struct sr_colset sr_colset;
SR_API sr_colset *sr_colset_new(int ncols, const char *const *names);
SR_API void sr_colset_release(sr_colset *cs);
SR_API int sr_result_builder_colset(sr_result_builder *rb, sr_colset *cs);
SR_API int sr_result_builder_value(sr_result_builder *rb, const char *value, size_t len);

/*
 * Column types (ABI 6), given after the columns and before the first value:
 * `types` has one sr_type per column (copied). A result whose driver never
 * gives them has every column SR_TYPE_UNKNOWN. Values are still given as
 * bytes with sr_result_builder_value(), in the form the type promises
 * (docs/drivers.md): INT as decimal text, BOOL as "1"/"0", BYTES raw (a
 * PostgreSQL bytea decoded), the rest as the server's text.
 * sr_result_builder_refine_type() sets one column's type while it is still
 * SR_TYPE_UNKNOWN, at any time before the builder finishes (SQLite: the
 * storage class of a column's first non-NULL value when there was no
 * declared type). sr_colset_new_typed() is sr_colset_new() with the types,
 * which sr_result_builder_colset() then gives the result too. Errors:
 * SR_EINVAL (out of order, col out of range, type not a column type),
 * SR_ENOMEM.
 */
SR_API int sr_result_builder_types(sr_result_builder *rb, const sr_type *types);
SR_API int sr_result_builder_refine_type(sr_result_builder *rb, int col, sr_type type);
SR_API sr_colset *sr_colset_new_typed(int ncols, const char *const *names, const sr_type *types);
SR_API void sr_result_builder_affected(sr_result_builder *rb, int64_t affected);

/* ---- Prepared-statement cache (ABI 3) ------------------------------------ */

/**
 * A bounded LRU map from SQL text to a driver's prepared statement, one per
 * connection, for drivers to keep their prepared statements in. It is bounded
 * by a number of entries AND by bytes: each entry is charged the length of its
 * SQL text plus the `handle_bytes` the driver reports for it (e.g. SQLite's
 * SQLITE_STMTSTATUS_MEMUSED; 0 when unknown), and the least recently used
 * entries are dropped until both bounds hold. A statement whose charge alone
 * exceeds the byte bound is never cached: the driver runs it unprepared, or
 * prepares it, runs it and frees it.
 *
 * Each entry holds a fixed-size value the driver chose at creation (a handle
 * and whatever it remembers about the statement); the cache copies it in and
 * hands out pointers to its copy. An entry that leaves the cache because of
 * eviction, sr_stmt_cache_clear() or sr_stmt_cache_free() is passed to the
 * driver's `release` callback exactly once (DEALLOCATE, mysql_stmt_close,
 * sqlite3_finalize); one removed with sr_stmt_cache_take() is not (the caller
 * owns it again).
 *
 * Lookup is O(1) (a hash of the SQL text; the most recent entry is compared
 * first), and a hit allocates nothing. Misses allocate one block per entry.
 *
 * Threads: no locking. One cache belongs to one connection and is used by one
 * thread at a time, as the core uses a connection; different caches may be
 * used from different threads at once.
 */
typedef struct sr_stmt_cache sr_stmt_cache;

/**
 * Releases the prepared statement held in `value` (a pointer to the cache's
 * copy, valid only during the call). `ctx` is the pointer given to
 * sr_stmt_cache_new(). It must not call back into the same cache. It cannot
 * fail from the cache's point of view: a driver that needs I/O to release
 * (DEALLOCATE) records a failure in its own connection state.
 */
typedef void (*sr_stmt_cache_release_fn)(void *ctx, void *value);

/**
 * Creates an empty cache holding at most `max_entries` entries and
 * `max_bytes` bytes (0 in either: a disabled cache, on which get finds
 * nothing and put takes nothing). Each entry holds `value_size` bytes of the
 * driver's (at most 4096; suitably aligned for any type). `release` may be
 * NULL when values need no releasing; it runs on the caller's thread inside
 * sr_stmt_cache_put() (eviction), _clear() and _free(), so it may do bounded
 * I/O on the connection. `ctx` is borrowed: it must outlive the cache.
 * Threads: a cache belongs to one connection and is used by one thread at a
 * time. The caller frees the cache with
 * sr_stmt_cache_free(). Errors: SR_EINVAL (out NULL, max_entries < 0,
 * value_size too large), SR_ENOMEM. *out is written only on success.
 */
SR_API int sr_stmt_cache_new(int max_entries, size_t max_bytes, size_t value_size,
                             sr_stmt_cache_release_fn release, void *ctx, sr_stmt_cache **out);

/** Releases every entry (the callback once each), then frees the cache. NULL is a no-op. */
SR_API void sr_stmt_cache_free(sr_stmt_cache *cache);

/** Releases every entry (the callback once each); the cache stays usable. NULL is a no-op. */
SR_API void sr_stmt_cache_clear(sr_stmt_cache *cache);

/**
 * The cached value for the `len` bytes at `sql` (compared byte for byte), now
 * the most recently used entry; NULL when absent (or cache / sql NULL).
 * Borrowed: valid until that entry leaves the cache (a later put may evict
 * it; take, clear and free remove it). Allocates nothing.
 */
SR_API void *sr_stmt_cache_get(sr_stmt_cache *cache, const char *sql, size_t len);

/**
 * 1 when an entry of `len` SQL bytes and `handle_bytes` would be cached (the
 * cache is enabled and the charge fits the byte bound), else 0. Lets a driver
 * skip naming or persisting a statement the cache would refuse anyway.
 */
SR_API int sr_stmt_cache_admits(const sr_stmt_cache *cache, size_t len, size_t handle_bytes);

/**
 * sr_stmt_cache_admits() for the text itself: also 0 for a text that will
 * not be run again, which a cache would hold only to evict statements that
 * will: one that ends in the trace comment the core appends to the
 * statements of a session with a trace context ("\n/\*...traceparent='...'*\/",
 * see sr_session_set_trace: a new text for every traced request).
 * sr_stmt_cache_put() refuses those texts too. A driver runs such a text
 * unprepared where it can (PostgreSQL's unnamed statement). Since
 * shardroute 0.3.0: a driver that calls it needs a library at least that
 * recent.
 */
SR_API int sr_stmt_cache_admits_text(const sr_stmt_cache *cache, const char *sql, size_t len,
                                     size_t handle_bytes);

/**
 * Caches `value` (value_size bytes, copied) for the `len` bytes at `sql`
 * (copied), as the most recently used entry, then releases least recently
 * used entries (never the new one) until both bounds hold. Returns the
 * cache's copy of the value (borrowed, as for sr_stmt_cache_get), or NULL
 * when the cache did not take it: disabled, the charge exceeds the byte
 * bound, `sql` is already cached, bad arguments, or out of memory. On NULL
 * the caller still owns what `value` holds and releases it itself; the
 * release callback is never called for it.
 */
SR_API void *sr_stmt_cache_put(sr_stmt_cache *cache, const char *sql, size_t len,
                               const void *value, size_t handle_bytes);

/**
 * Removes the entry for `sql` without calling the release callback: its value
 * is copied to `value_out` (value_size bytes; may be NULL) and the caller
 * owns it. For a statement the driver must drop or release differently (its
 * plan went stale, the connection broke). Returns 1 when the entry was
 * there, 0 when not (value_out untouched).
 */
SR_API int sr_stmt_cache_take(sr_stmt_cache *cache, const char *sql, size_t len, void *value_out);

/** Entries cached now (0 for NULL). */
SR_API int sr_stmt_cache_count(const sr_stmt_cache *cache);

/** Bytes charged now, never above the byte bound (0 for NULL). */
SR_API size_t sr_stmt_cache_bytes(const sr_stmt_cache *cache);

/**
 * Rewrites the portable '?' placeholders of `sql` to PostgreSQL's $1, $2, ...
 * form, leaving string literals, quoted identifiers, comments and
 * dollar-quoted bodies untouched. A '?' that is part of a jsonb operator
 * (`?|`, `?&`, `@?`) is left alone. Statements that already use $n are
 * returned unchanged (the way to use jsonb's plain `?` operator). On success
 * *out is a new string the caller frees with free(), and *nplaceholders (may
 * be NULL) the number of parameters the statement takes: the '?' count, or
 * the highest native $n (saturated at INT_MAX; '$' must be followed by
 * digits only, so SQLite's $name is not counted).
 * Errors: SR_EINVAL (NULL), SR_ENOMEM.
 */
SR_API int sr_sql_rewrite_placeholders(const char *sql, sr_sql_dialect dialect, char **out,
                                       int *nplaceholders);

#ifdef __cplusplus
}
#endif

#endif /* SHARDROUTE_DRIVER_H */
