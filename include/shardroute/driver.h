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
 * as absent (ABI 1 ends at replica_lag_ms; ABI 2 adds the position methods).
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

#define SR_DRIVER_ABI_VERSION 2

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
 * missing parts are NULL (port 0). For "sqlite:PATH" only `path` is set.
 * `redacted` is the URI with the password replaced by "***" (and any
 * "password" query parameter too): the only form a driver may put in a
 * message.
 */
typedef struct sr_uri {
    const char *scheme;   /* lower-case: "sqlite", "postgresql", "postgres", "mysql", "mariadb" */
    const char *user;
    const char *password;
    const char *host;     /* without brackets for IPv6 literals */
    int port;             /* 0 when absent */
    const char *database; /* path component without the leading '/' */
    const char *path;     /* sqlite: the file path (may be ":memory:") */
    const sr_uri_param *params;
    int nparams;
    const char *redacted;
} sr_uri;

/** What the core passes to connect(). Borrowed for the duration of the call only. */
typedef struct sr_driver_connect_args {
    const sr_uri *uri;
    sr_role role;             /* the role the configuration gives the node */
    int connect_timeout_ms;   /* > 0: bound on the whole connect */
    int statement_timeout_ms; /* > 0: default bound for statements (deadlines are passed per call) */
    int stmt_cache_size;      /* prepared statements kept per connection (LRU), >= 0 */
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
} sr_driver;

/* Longest position text the core keeps (a GTID set of many domains fits). */
#define SR_POSITION_MAX 512

/**
 * Registers a third-party driver for its schemes (in-tree drivers are
 * registered by the library itself). The struct must outlive every router
 * using it. A scheme already taken is SR_EINVAL. Thread-safe.
 */
SR_API int sr_driver_register(const sr_driver *driver);

/** The driver for a URI scheme, or NULL. Thread-safe. */
SR_API const sr_driver *sr_driver_find(const char *scheme);

/** Monotonic clock in nanoseconds: the time base of every deadline. */
SR_API int64_t sr_clock_ns(void);

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
SR_API void sr_result_builder_affected(sr_result_builder *rb, int64_t affected);

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
