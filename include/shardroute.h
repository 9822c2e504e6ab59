/*
 * shardroute — an embeddable SQL router.
 *
 * This header is the specification of the public API: every function is
 * documented where it is declared (what it does, who owns what it returns,
 * which thread may call it, which statuses it returns). See docs/ for guides.
 *
 * Conventions
 *  - Every function that can fail returns int: SR_OK (0) or a negative
 *    sr_status. Out-parameters come last and are written only on success.
 *  - Every public type is opaque and comes in a create/free pair; freeing NULL
 *    does nothing.
 *  - Strings returned as `const char *` are borrowed; each declaration says
 *    how long they stay valid.
 *  - Threading: an sr_config is used by one thread at a time; every call on an
 *    sr_router is thread-safe; an sr_session is used by one thread at a time
 *    (like a libpq PGconn); an sr_result is immutable and readable from any
 *    thread.
 *  - Passwords given in URIs never appear in any message, log or metric: URIs
 *    are shown with the password replaced by "***".
 */
#ifndef SHARDROUTE_H
#define SHARDROUTE_H

#include <stddef.h>
#include <stdint.h>

/* SR_VERSION_MAJOR, _MINOR, _PATCH, _STRING, generated from meson.build. */
#include <shardroute/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SR_BUILDING_LIBRARY) && defined(__GNUC__)
#define SR_API __attribute__((visibility("default")))
#else
#define SR_API
#endif

/* ------------------------------------------------------------------------ */
/* Status codes                                                             */
/* ------------------------------------------------------------------------ */

/**
 * Status codes. SR_OK is zero; every error is negative so that functions can
 * return either a count/index or an error in one int.
 */
typedef enum sr_status {
    SR_OK = 0,
    SR_EINVAL = -1,       /* bad argument: NULL handle, bad option, malformed URI or key */
    SR_ENOMEM = -2,       /* an allocation failed; the object is unchanged */
    SR_ENOSHARD = -3,     /* no shard owns that key / the shard index is out of range */
    SR_EUNAVAILABLE = -4, /* no eligible node for the statement (all down or excluded) */
    SR_ETIMEOUT = -5,     /* a bounded wait expired (connect, statement) */
    SR_ECONNECT = -6,     /* could not connect to, or lost the connection to, a node */
    SR_EQUERY = -7,       /* the database rejected the statement (see the SQLSTATE) */
    SR_ESTALE = -8,       /* no node fresh enough for the session's consistency mode */
    SR_EDRIVER = -9,      /* no driver for that URI scheme (not built, or unknown) */
    SR_ETXN = -10,        /* transaction misuse: cross-shard statement, nested begin, no txn */
    SR_EBUSY = -11,       /* the node's pool had no free connection before the checkout timeout */
    SR_EPARTIAL = -12,    /* a scatter statement failed on some shards (see the message) */
    /*
     * A session was entered by a second thread while a call on it was
     * running (a session is for one thread at a time). The second call did
     * nothing: it left the session, its message and SQLSTATE untouched (they
     * belong to the running call), so use sr_strerror() for the text. The
     * check costs one uncontended atomic exchange per call; it catches
     * overlapping calls, not every misuse (e.g. a call after sr_session_free).
     */
    SR_EMISUSE = -13
} sr_status;

/** Version of the library as "MAJOR.MINOR.PATCH". Static storage. */
SR_API const char *sr_version(void);

/**
 * Static English text for a status code (never NULL; unknown codes give
 * "unknown status"). Thread-safe.
 */
SR_API const char *sr_strerror(int status);

/* ------------------------------------------------------------------------ */
/* Shard keys                                                               */
/* ------------------------------------------------------------------------ */

typedef enum sr_key_kind { SR_KEY_INT = 1, SR_KEY_BYTES = 2 } sr_key_kind;

/**
 * A shard key: a 64-bit integer or a byte string. Passed by value. A bytes key
 * borrows the caller's memory, which must stay valid for the duration of the
 * call it is passed to. Build keys with the constructors below; a zeroed
 * sr_key is invalid (SR_EINVAL).
 *
 * An integer key and a text key with the same digits are different keys: the
 * integer 42 hashes its 8-byte value, the text "42" hashes its 2 bytes.
 */
typedef struct sr_key {
    sr_key_kind kind;
    int64_t i;       /* SR_KEY_INT */
    const void *ptr; /* SR_KEY_BYTES */
    size_t len;      /* SR_KEY_BYTES */
} sr_key;

/** An integer key. */
SR_API sr_key sr_key_int(int64_t v);
/** A text key: the bytes of the NUL-terminated string `s` (borrowed). NULL gives an invalid key. */
SR_API sr_key sr_key_text(const char *s);
/** A byte-string key of `n` bytes at `p` (borrowed). NULL `p` with n > 0 gives an invalid key. */
SR_API sr_key sr_key_bytes(const void *p, size_t n);

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

typedef struct sr_config sr_config;
typedef struct sr_router sr_router;
typedef struct sr_session sr_session;
typedef struct sr_result sr_result;

/** Node roles. */
typedef enum sr_role { SR_PRIMARY = 0, SR_REPLICA = 1 } sr_role;

/** What a statement does: SR_AUTO lets the SQL lexer decide (read only when certain). */
typedef enum sr_intent { SR_AUTO = 0, SR_READ = 1, SR_WRITE = 2 } sr_intent;

/**
 * A new, empty configuration with every option at its default.
 * Returns NULL only when out of memory. The caller frees it with
 * sr_config_free(). One thread at a time.
 */
SR_API sr_config *sr_config_new(void);

/** Frees a configuration. NULL is a no-op. */
SR_API void sr_config_free(sr_config *c);

/**
 * Sets a global option by name, e.g. ("pool.max_size", "16"). Every option,
 * its type, default and range is listed in docs/options.md.
 *
 * Errors: SR_EINVAL for a NULL argument, an unknown option or a value of the
 * wrong type or out of range; sr_config_errmsg() names the option and says why.
 * The configuration is unchanged on error.
 */
SR_API int sr_config_set(sr_config *c, const char *option, const char *value);

/**
 * Declares a shard. Shards keep the order of declaration, which is their index
 * (sr_router_shard_for(), sr_exec_shard()) for every distribution.
 *
 * With the `keyrange` distribution a shard whose name is a Vitess-style hex
 * range ("-40", "40-80", "80-c0", "c0-") owns that range; otherwise set its
 * range with sr_config_shard_set(c, name, "keyrange", "40-80"). Shards with no
 * range at all are given an even split in declaration order.
 *
 * Errors: SR_EINVAL for a NULL or empty name, a name with spaces or '=', or a
 * duplicate; SR_ENOMEM.
 */
SR_API int sr_config_add_shard(sr_config *c, const char *shard);

/**
 * Sets a per-shard attribute:
 *   "keyrange"  hex range of the 64-bit keyspace, "40-80", "-40", "c0-" (keyrange)
 *   "range"     integer key range, half-open "LO..HI"; an empty bound is
 *               unbounded: "..1000", "1000..2000", "2000.." (range)
 * The shard must have been declared. Ranges are checked for gaps and overlaps
 * when the router opens. Errors: SR_EINVAL (unknown shard or attribute,
 * malformed value).
 */
SR_API int sr_config_shard_set(sr_config *c, const char *shard, const char *attr,
                               const char *value);

/**
 * Adds a node to a declared shard: its role, a URI naming the driver and the
 * database, and a weight (used by the `weighted` policy; 1..1000, 0 means 1).
 *
 * URIs: "sqlite:/path/to/file.db" (or sqlite:///abs/path, sqlite:relative.db),
 * "postgresql://user:pass@host:port/db?param=value", "mysql://user:pass@host:port/db".
 * The URI is checked for syntax here; whether its driver was built is checked
 * when the router opens (SR_EDRIVER). Each shard needs exactly one primary.
 *
 * The password may come from outside the URI instead, with one of the query
 * parameters "password_file=/path" (the file's content, one trailing line end
 * removed; the file must be a regular file with no group or other permission
 * bits, at most 1024 bytes) or "password_env=NAME" (that environment
 * variable's value). The core reads it once, when the router opens, and
 * hands the driver the URI with that password and without the parameter; an
 * unreadable or unsafe file or an unset variable makes sr_router_open() fail
 * with SR_EINVAL and a message naming the file or variable (never the
 * password). Either one together with a password in the URI is refused here.
 * docs/options.md has the details.
 *
 * Errors: SR_EINVAL (unknown shard, malformed URI, bad role or weight, second
 * primary); the message shows a valid URI with its password redacted, and a
 * malformed one by its scheme only (e.g. "postgresql://" then "***").
 */
SR_API int sr_config_add_node(sr_config *c, const char *shard, sr_role role, const char *uri,
                              int weight);

/**
 * Pins a key to a shard, overriding the distribution (a hot tenant moved to a
 * shard of its own). The key's bytes are copied. Errors: SR_EINVAL (invalid
 * key, unknown shard, key pinned twice), SR_ENOMEM.
 */
SR_API int sr_config_pin_key(sr_config *c, sr_key key, const char *shard);

/**
 * A user-supplied distribution: returns the shard index (0 .. nshards-1, in
 * declaration order) for a key, or a negative status. It must be a pure,
 * thread-safe function. Selecting it sets shard.distribution to "callback".
 */
typedef int (*sr_keymap_fn)(void *userdata, sr_key key, int nshards);
SR_API int sr_config_set_keymap_fn(sr_config *c, sr_keymap_fn fn, void *userdata);

/** Log levels for the optional log callback. */
typedef enum sr_log_level { SR_LOG_ERROR = 0, SR_LOG_WARN = 1, SR_LOG_INFO = 2, SR_LOG_DEBUG = 3 } sr_log_level;

/**
 * A log sink. Called from whichever thread hit the event, so it must be
 * thread-safe. `msg` is borrowed for the call and never holds a password.
 */
typedef void (*sr_log_fn)(void *userdata, sr_log_level level, const char *msg);
/** Sets the log callback (NULL: no logging, the default). Never fails for a non-NULL config. */
SR_API int sr_config_set_log_fn(sr_config *c, sr_log_fn fn, void *userdata);

/**
 * Parses configuration text in the file syntax:
 *
 *     # comment
 *     pool.max_size = 16            # any option of sr_config_set
 *     [shard s0]                    # declares a shard
 *     primary = sqlite:/data/s0.db
 *     replica = sqlite:/data/s0.db weight=2
 *     keyrange = -80                # per-shard attributes of sr_config_shard_set
 *     pin_int = 42                  # pins integer key 42 to this shard
 *     pin_text = acme               # pins text key "acme" to this shard
 *
 * Errors: SR_EINVAL with the line number and the reason in sr_config_errmsg().
 * Lines before the bad one have been applied.
 */
SR_API int sr_config_parse(sr_config *c, const char *text);

/**
 * Reads a file and parses it with sr_config_parse(). SR_EINVAL if it cannot be
 * read, is larger than 64 MiB or holds a NUL byte; SR_ENOMEM.
 */
SR_API int sr_config_load_file(sr_config *c, const char *path);

/**
 * The message of the last failed call on this configuration, "" if none.
 * Borrowed: valid until the next call on `c`. Never NULL (a NULL config gives
 * a static message).
 */
SR_API const char *sr_config_errmsg(const sr_config *c);

/* ------------------------------------------------------------------------ */
/* Router                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * Builds a router from a configuration: checks the topology (every shard has
 * one primary, ranges cover the keyspace without gaps or overlaps, every URI's
 * driver exists), builds the key map and a connection pool per node. No
 * connection is opened yet: pools connect lazily, so an unreachable node shows
 * up on the first statement that needs it, not here.
 *
 * The configuration is copied: it may be freed or changed right after. It is
 * not const because the call writes its outcome into the configuration's
 * message (sr_config_errmsg(): the reason of a failure, "" on success); so,
 * like every sr_config call, it needs the configuration to itself: one thread
 * at a time. The caller frees the router with sr_router_close().
 *
 * Errors: SR_EINVAL (no shards, a shard without primary, bad ranges, NULL),
 * SR_EDRIVER (a URI scheme whose driver was not built), SR_ENOMEM. The reason
 * is in sr_config_errmsg(c).
 */
SR_API int sr_router_open(sr_config *c, sr_router **out);

/**
 * Closes a router: every pooled connection is closed. All sessions created on
 * it must be freed before; results stay valid. NULL is a no-op.
 */
SR_API void sr_router_close(sr_router *r);

/**
 * Replaces the router's topology with the one `c` describes (shards, nodes,
 * pins, options, callbacks), without closing the router. The new
 * configuration is checked completely first, as sr_router_open() checks
 * one: when anything is wrong nothing changes, the call returns its status
 * and sr_config_errmsg(c) says why. Then it is swapped in atomically:
 *  - A call that started on the old topology finishes on it; every call that
 *    starts afterwards sees the new one (a session moves at the start of its
 *    next call); no call sees a mix.
 *  - A node whose URI, role and connection options (connect_timeout_ms,
 *    statement_timeout_ms, stmt_cache.*, pool.max_size) are unchanged keeps
 *    its pool, health and statistics; the others are new. The old topology's
 *    nodes that the new one lacks are closed when the last call or cursor
 *    that uses the old topology has finished.
 *  - Open transactions and cursors finish on the topology they began on;
 *    their session moves once they have ended.
 *  - A session's replication positions stay with the shards of the same name
 *    whose primary is unchanged (read-your-writes holds across the reload);
 *    for a shard whose primary changed, the session's next read there goes
 *    to the primary until it writes again (and sr_session_token() returns
 *    NULL until then: the position there is unknown). Tokens stay valid
 *    while the distribution and the kinds of backends stay the same.
 *  - Shard indexes (sr_exec_shard, sr_router_shard_for, sr_result_shard)
 *    always refer to the topology current when the call starts.
 *  - Strings documented as valid until the router closes (shard names, node
 *    URIs) stay valid after any number of reloads.
 * Each reload adds one to the topology version (sr_router_version()). The
 * configuration is copied; like sr_router_open() the call writes its
 * outcome into the configuration's message, so it needs `c` to itself.
 * Callbacks (log, events, key map) are the new configuration's from then
 * on; the log callback is called during the reload and must not reload.
 * Thread-safe: concurrent reloads are applied one after the other.
 * Errors: as sr_router_open() (SR_EINVAL, SR_EDRIVER, SR_ENOMEM).
 */
SR_API int sr_router_reload(sr_router *r, sr_config *c);

/**
 * The version of the router's current topology: 1 after sr_router_open(),
 * one more after each successful sr_router_reload(). SR_EINVAL for NULL.
 * Thread-safe.
 */
SR_API int64_t sr_router_version(const sr_router *r);

/**
 * The shard index that owns `key` (0 .. nshards-1), or a negative status
 * (SR_EINVAL for a NULL router or invalid key, SR_ENOSHARD when no range owns
 * it, or what a user callback returned). A pure function of the key and the
 * topology: no I/O, no allocation, no lock. Thread-safe.
 */
SR_API int sr_router_shard_for(const sr_router *r, sr_key key);

/** Number of shards, or SR_EINVAL for NULL. Thread-safe. */
SR_API int sr_router_nshards(const sr_router *r);

/** The name of shard `shard`; NULL when out of range. Valid until the router closes. */
SR_API const char *sr_router_shard_name(const sr_router *r, int shard);

/** Number of nodes of a shard (primary first, then replicas in configuration order). */
SR_API int sr_router_nnodes(const sr_router *r, int shard);

/** The layout of sr_node_info this header describes (see sr_node_info.version). */
#define SR_NODE_INFO_VERSION 2

/**
 * A snapshot of one node's state and counters, filled by sr_router_node_info().
 * Caller-allocated: initialise it with SR_NODE_INFO_INIT, which sets
 * `version` to the layout this header describes. Later versions of the
 * library only add fields at the end and fill only those the caller's
 * version has, so a program built against this header keeps working.
 */
typedef struct sr_node_info {
    int version;           /* SR_NODE_INFO_VERSION (set by SR_NODE_INFO_INIT) */
    sr_role role;
    const char *uri;       /* redacted (no password); valid until the router closes */
    int healthy;           /* 1 unless health checks have ejected the node */
    uint64_t statements;   /* statements completed on the node (success or SQL error) */
    uint64_t errors;       /* statements that failed, and connects that failed */
    uint64_t in_flight;    /* statements running now */
    uint64_t connections;  /* open connections (idle + in use) */
    double ewma_latency_ms;/* the p2c_ewma policy's current latency estimate */
    int role_mismatch;     /* 1 when the server reported another role than configured */
    uint64_t ejections;    /* times the node was ejected by health checks */
    int64_t lag_ms;        /* replica's last measured lag: -1 replication broken, -2 not measured */
    /* ---- version 2 ---- */
    uint64_t position_checks; /* reads that asked this replica whether it had applied their
                                 position (in the read's own exchange or alone) */
    uint64_t stale_checks;    /* ... and found it behind: the read went elsewhere */
    int64_t replay_delay_us;  /* how long this replica is estimated to take to replay a write;
                                 a read of a younger write goes to the primary unasked */
} sr_node_info;
#define SR_NODE_INFO_INIT {SR_NODE_INFO_VERSION, SR_PRIMARY, NULL, 0, 0, 0, 0, 0, 0.0, 0, 0, 0, 0, 0, 0}

/**
 * Fills `out` (initialised with SR_NODE_INFO_INIT) with node `node` of shard
 * `shard` (see sr_router_nnodes()). Errors: SR_EINVAL (NULL, or
 * out->version not 1..SR_NODE_INFO_VERSION: `out` is left untouched; a
 * version 1 struct gets no version 2 field),
 * SR_ENOSHARD (index out of range). Thread-safe.
 */
SR_API int sr_router_node_info(const sr_router *r, int shard, int node, sr_node_info *out);

/**
 * One round of active health checks, for programs that want no library
 * thread: every node is pinged (an ejected node only once its back-off has
 * passed, as its probe), its role is checked against the configuration where
 * the backend can tell (PostgreSQL recovery, MySQL read_only), and outcomes
 * feed the same health state as statements do. Each node's check is bounded
 * by connect_timeout_ms and statement_timeout_ms; nodes are checked one after
 * another on the calling thread.
 *
 * With health.probe_interval_ms > 0 the router runs these rounds on a
 * background thread of its own (started by sr_router_open, joined by
 * sr_router_close); this function may still be called. Thread-safe.
 * Errors: SR_EINVAL (NULL router).
 */
SR_API int sr_router_maintain(sr_router *r);

/* ------------------------------------------------------------------------ */
/* Observability: metrics and routing events (docs/observability.md)        */
/* ------------------------------------------------------------------------ */

/**
 * A sink for text the library produces in pieces (sr_router_metrics()).
 * `data` holds `len` bytes (no NUL) borrowed for the call. Return 0 to go
 * on, anything else to stop: the producer then returns SR_EINVAL at once.
 */
typedef int (*sr_write_fn)(void *userdata, const char *data, size_t len);

/**
 * Renders the router's metrics in the Prometheus text exposition format
 * (version 0.0.4) through `write`, in pieces: statements by shard, node,
 * role, intent and outcome; sampled statement latency per node; pool
 * connections, checkout waits and exhaustion; node health, ejections and
 * probes; replica lag; reads sent to the primary and why; consistency checks
 * and waits; scatter fan-out and failures. docs/observability.md lists every
 * metric. Node labels are redacted URIs (never a password). With
 * metrics.shards = aggregate, per-shard series are summed into one series
 * without a shard label (bounded label sets with thousands of shards).
 *
 * Reads counters with relaxed atomics (and each pool's lock briefly): the
 * figures of one rendering are not one instant's. Thread-safe; may run
 * while statements run. Errors: SR_EINVAL (NULL argument, or `write`
 * returned non-zero), SR_ENOMEM.
 */
SR_API int sr_router_metrics(const sr_router *r, sr_write_fn write, void *userdata);

/**
 * sr_router_metrics() into a caller buffer, like snprintf: returns the
 * length of the whole text (without its NUL), and when that is less than
 * `cap` the buffer holds all of it, NUL-terminated; otherwise it holds as
 * much as fits, NUL-terminated (nothing when cap is 0; `buf` may then be
 * NULL). Call again with a larger buffer (the text can grow in between).
 * Errors (negative): SR_EINVAL (NULL router, NULL buf with cap > 0),
 * SR_ENOMEM (also when the text would be longer than INT_MAX).
 */
SR_API int sr_router_metrics_text(const sr_router *r, char *buf, size_t cap);

/** Kinds of routing events. */
typedef enum sr_event_kind {
    SR_EVENT_STATEMENT = 1, /* a statement finished (successfully or not) on a shard */
    SR_EVENT_HEALTH = 2     /* a node changed health state (ejected, re-admitted, probe failed) */
} sr_event_kind;

/** The layout of sr_event this header describes (see sr_event.version). */
#define SR_EVENT_VERSION 1

/**
 * One routing event, passed to the event callback. Filled by the library:
 * `version` says which fields it has (a callback built against a later
 * header reads only fields of versions <= ev->version). Every pointer is
 * borrowed for the duration of the callback and never NULL (text fields are
 * "" when they do not apply); no field holds a password.
 */
typedef struct sr_event {
    int version;            /* SR_EVENT_VERSION of the library that filled it */
    sr_event_kind kind;
    int shard;              /* shard index, -1 when the statement never reached one */
    const char *shard_name; /* "" when shard is -1 */
    int node;               /* node index within the shard (0: primary), -1 when none was used */
    const char *node_uri;   /* redacted URI of that node, "" when none */
    sr_role role;           /* the node's configured role (SR_PRIMARY when node is -1) */
    /* ---- SR_EVENT_STATEMENT ---- */
    sr_intent intent;       /* SR_READ or SR_WRITE, as routed */
    const char *reason;     /* why this node: "write", "replica", "replica (position checked)",
                               "primary: consistency = primary", "primary: replicas behind the
                               session's position", "primary: no replica within the lag bound",
                               "primary: no healthy replica", "transaction", ... (static text) */
    const char *skipped;    /* why each other node of the shard was not used, "; "-separated:
                               "replica URI: ejected", "... lag 340 ms over 100 ms", "...
                               behind the session's position", "... pool busy", "... failed:
                               MESSAGE", "... role mismatch"; "" when none was skipped */
    int retries;            /* times the statement moved to another node after a failure */
    int64_t wait_us;        /* time spent waiting for a replica to catch up (consistency.wait_ms) */
    int64_t duration_us;    /* from the call's start to the event */
    int status;             /* the statement's status (SR_OK or negative) */
    const char *sqlstate;   /* the database's SQLSTATE on failure, else "" */
    const char *sql;        /* the statement's text as sent: the caller's SQL, with the session's
                               trace comment (sr_session_set_trace) and, for a scatter part, as
                               rewritten for the shard (LIMIT pushdown); never the parameters */
    /* ---- SR_EVENT_HEALTH ---- */
    const char *health;     /* "ejected", "readmitted", "probe_failed" */
    const char *detail;     /* the error that caused it, "" for a readmission */
} sr_event;

/**
 * An event sink. Called synchronously on the thread that ran the statement
 * (or the prober's thread, or the thread in sr_router_maintain()), so it may
 * be called from several threads at once and must be thread-safe. The
 * statement's caller waits while it runs: a slow callback slows the
 * application (queue the event and return). It must not call back into the
 * session that ran the statement; other calls on the router are allowed.
 */
typedef void (*sr_event_fn)(void *userdata, const sr_event *ev);

/**
 * Sets the event callback (NULL: none, the default). Without a callback the
 * statement path does no event work at all. The option events.sample = N
 * delivers one statement event in N (health events are never sampled).
 * Never fails for a non-NULL config (SR_EINVAL for NULL).
 */
SR_API int sr_config_set_event_fn(sr_config *c, sr_event_fn fn, void *userdata);

/* ------------------------------------------------------------------------ */
/* Sessions and statements                                                  */
/* ------------------------------------------------------------------------ */

/**
 * A new session on a router: the handle for statements, transactions and the
 * last error. Cheap (no connection is held outside a transaction). The caller
 * frees it with sr_session_free() before closing the router.
 * Threads: one thread at a time (it may move between threads between calls).
 * A call that starts while another thread is inside a call on the same session
 * returns SR_EMISUSE (sr_session_token(): NULL) and does nothing; every
 * function that takes a non-const sr_session checks this.
 * Errors: SR_EINVAL, SR_ENOMEM.
 */
SR_API int sr_session_new(sr_router *r, sr_session **out);

/**
 * Frees a session; an open transaction is rolled back. NULL is a no-op. A
 * session another thread is inside a call on is not freed (misuse: it is
 * leaked, and an SR_LOG_ERROR line says so) rather than freed under that call.
 */
SR_API void sr_session_free(sr_session *s);

/**
 * Sets the key the `affinity` balance policy uses to pick this session's
 * replica (by default each session gets its own). The bytes are hashed at once
 * and not kept. Errors: SR_EINVAL, SR_EMISUSE.
 */
SR_API int sr_session_set_affinity(sr_session *s, sr_key key);

/**
 * Sets the session's trace context, or clears it (traceparent NULL or "";
 * `tags` are then not read).
 * While set, every statement the session sends to a server (sr_exec*,
 * transactions, scatter, cursors; not BEGIN/COMMIT/ROLLBACK) carries it as
 * an sqlcommenter comment appended on a line of its own, so it shows in
 * pg_stat_activity, the MariaDB process list and the servers' logs:
 *
 *     SELECT ...
 *     /\*key1='value1',traceparent='00-...-01'*\/
 *
 * `traceparent` is a W3C trace-context header value, checked strictly:
 * "00-" 32 lowercase hex digits (not all zero) "-" 16 lowercase hex digits
 * (not all zero) "-" 2 lowercase hex digits. `tags` holds `ntags` key/value
 * pairs (2 * ntags strings: key, value, key, value...; NULL when ntags is
 * 0): keys of 1..64 characters from [A-Za-z0-9_.-], unique, not
 * "traceparent"; values (not NULL) of at most 256 bytes, any bytes but NUL,
 * written percent-encoded (everything but [A-Za-z0-9_.~-]), so nothing in a
 * value can end the comment; at most 16 tags. Keys, "traceparent" among
 * them, are written sorted by their bytes, as sqlcommenter does. Everything
 * is copied.
 *
 * Cost: a statement with a trace context is a new text for each traceparent,
 * so the drivers' prepared-statement caches never keep it
 * (sr_stmt_cache_admits_text): it runs unprepared where the backend allows
 * (PostgreSQL's unnamed statement: no extra round trip), else prepared and
 * closed (MariaDB, SQLite), and evicts nothing that untraced statements
 * reuse; docs/observability.md has the figures. Statements of sessions
 * without one are untouched.
 * The classification of SR_AUTO statements reads the caller's SQL, not the
 * comment.
 *
 * Errors: SR_EINVAL (NULL session, malformed traceparent, a bad tag; the
 * message says which, and the session keeps its previous context),
 * SR_ENOMEM, SR_EMISUSE.
 */
SR_API int sr_session_set_trace(sr_session *s, const char *traceparent, int ntags,
                                const char *const *tags);

/* ------------------------------------------------------------------------ */
/* Consistency                                                              */
/* ------------------------------------------------------------------------ */

/**
 * Read consistency of a session (docs/consistency.md has the details):
 *  - SR_CONSISTENCY_ANY: any replica within the lag bound (replica.max_lag_ms).
 *  - SR_CONSISTENCY_MONOTONIC: never a replica behind anything this session
 *    already read or wrote (positions are checked on the replica).
 *  - SR_CONSISTENCY_READ_YOUR_WRITES (the default): a read on a shard goes to
 *    a replica that has replayed this session's last write there; until the
 *    session writes it is like ANY.
 *  - SR_CONSISTENCY_PRIMARY: every read on the primary.
 * When no replica qualifies, the read waits up to consistency.wait_ms for one,
 * then goes to the primary; with balance.primary_reads = never it fails with
 * SR_ESTALE instead. Backends without replication positions (SQLite) are
 * fully consistent in every mode.
 */
typedef enum sr_consistency {
    SR_CONSISTENCY_ANY = 0,
    SR_CONSISTENCY_MONOTONIC = 1,
    SR_CONSISTENCY_READ_YOUR_WRITES = 2,
    SR_CONSISTENCY_PRIMARY = 3
} sr_consistency;

/**
 * Sets a session option:
 *   "consistency"  any | monotonic | read_your_writes | primary
 *   "max_lag_ms"   the lag bound for this session's reads; "0" means no bound,
 *                  "default" goes back to replica.max_lag_ms
 * Errors: SR_EINVAL (unknown option or value; the message says which),
 * SR_EMISUSE.
 */
SR_API int sr_session_set(sr_session *s, const char *option, const char *value);

/**
 * The session's replication positions as a printable token, to hand to
 * another session or process (sr_session_set_token()). Versioned; names the
 * shards; holds no secret. "" when the session has no position yet.
 * Every token this returns is accepted by sr_session_set_token() on a router
 * of the same topology. Borrowed: valid until the next call on the session.
 * NULL on error: a NULL session, out of memory (SR_ENOMEM in the message), a
 * write of this session whose position is unknown (it could not be read after
 * the write, or recording it ran out of memory: a token without it would let
 * the importer read a stale replica; the message names the shard, and the
 * next write there that records a position clears it), or another thread
 * inside a call on the session (SR_EMISUSE; message untouched).
 */
SR_API const char *sr_session_token(sr_session *s);

/**
 * Merges a token from sr_session_token() into the session's positions, so
 * its reads see what the token's session wrote. A malformed token, or one
 * from a router with another topology (other distribution or backends), is
 * SR_EINVAL with a message and leaves the session unchanged; entries for
 * shards this router does not have are ignored (one log line with their
 * count). Tokens come from outside, so their cost is bounded: longer than
 * 64 KiB (or than the longest token this router can emit, when more), a shard
 * named twice, or more than 64 entries for shards this router does not have
 * is SR_EINVAL. Errors: SR_EINVAL, SR_ENOMEM (the session is unchanged),
 * SR_EMISUSE.
 */
SR_API int sr_session_set_token(sr_session *s, const char *token);

/** The layout of sr_read_opts this header describes (see sr_read_opts.version). */
#define SR_READ_OPTS_VERSION 1

/**
 * Per-statement read options; -1 in a field means "the session's setting".
 * Caller-allocated: initialise with SR_READ_OPTS_INIT (every field "the
 * session's", `version` set), then change the fields wanted. Fields are only
 * ever added at the end, under a new version; the library reads only the
 * fields of the caller's version.
 */
typedef struct sr_read_opts {
    int version;     /* SR_READ_OPTS_VERSION (set by SR_READ_OPTS_INIT) */
    int max_lag_ms;  /* 0: no bound for this read; > 0: replicas lagging more are skipped */
    int consistency; /* an sr_consistency, or -1 */
} sr_read_opts;
#define SR_READ_OPTS_INIT {SR_READ_OPTS_VERSION, -1, -1}

/**
 * sr_exec() with per-statement read options that override the session's
 * for this statement only (e.g. a staleness bound on one read). `opts` NULL is
 * sr_exec(). Same errors as sr_exec(), plus SR_ESTALE and SR_EINVAL for a bad
 * option value or an opts->version this library does not know.
 */
SR_API int sr_exec_opts(sr_session *s, sr_key key, sr_intent intent, const sr_read_opts *opts,
                        const char *sql, int nparams, const char *const *params, sr_result **out);

/**
 * Runs one statement on the shard that owns `key`.
 *
 * `intent` chooses the node: SR_WRITE goes to the primary; SR_READ to a
 * replica picked by balance.policy (or the primary when no replica is
 * eligible and balance.primary_reads allows it); SR_AUTO asks the SQL lexer,
 * which says "read" only when the statement certainly reads. Inside a
 * transaction every statement goes to the transaction's connection.
 *
 * Parameters are text: `params[i]` is the i-th value, NULL for SQL NULL; the
 * portable placeholder is `?` (rewritten for the backend, never inside string
 * literals, quoted identifiers, comments or dollar quotes). The shard key is
 * never spliced into the SQL.
 *
 * On success `*out` receives a result the caller frees with sr_result_free();
 * `out` may be NULL to discard it. On error `*out` is untouched and
 * sr_session_errmsg() says what failed, where (shard, node with the URI
 * redacted) and why (the backend's message), sr_session_sqlstate() gives the
 * SQLSTATE when the backend sent one.
 *
 * Reads follow the session's consistency mode (see sr_session_set()); a
 * read that fails because its node became unreachable is retried once on
 * another node within the same deadline; a write is never retried once sent.
 *
 * Errors: SR_EINVAL (NULL session or SQL, empty SQL, nparams < 0 or params NULL
 * with nparams > 0, invalid key, nparams not the statement's number of
 * placeholders: checked by every driver before sending, except PostgreSQL
 * for a statement already prepared on the connection, where it is the
 * server's SR_EQUERY 08P01), SR_ENOSHARD, SR_ETXN (key of another shard
 * inside a transaction), SR_EBUSY, SR_ECONNECT, SR_ETIMEOUT (the statement
 * exceeded statement_timeout_ms), SR_EQUERY, SR_EUNAVAILABLE (no eligible
 * node: the message says why each was skipped), SR_ESTALE (no node fresh
 * enough and primary reads forbidden), SR_EDRIVER, SR_ENOMEM (in the library or the
 * backend's client library; inside a transaction that the backend then rolled back,
 * the session leaves the transaction and the message says it was aborted),
 * SR_EMISUSE (another thread is inside a call on this session; nothing was done).
 * After any error the session stays usable.
 */
SR_API int sr_exec(sr_session *s, sr_key key, sr_intent intent, const char *sql, int nparams,
                   const char *const *params, sr_result **out);

/**
 * Like sr_exec() on a shard given by index (0 .. nshards-1) instead of a key:
 * for maintenance, DDL and per-shard batches. SR_ENOSHARD when out of range.
 */
SR_API int sr_exec_shard(sr_session *s, int shard, sr_intent intent, const char *sql, int nparams,
                         const char *const *params, sr_result **out);

/**
 * Scatter-gather: runs the statement on every shard at once and merges the
 * rows as the SQL's top level says: ORDER BY (a k-way merge), LIMIT /
 * OFFSET, COUNT / SUM / MIN / MAX / AVG, GROUP BY on plain columns and
 * DISTINCT are combined so that the result equals what one database holding
 * every shard's rows would return (docs/scatter.md); other statements' rows
 * come in shard order. sr_result_shard() tells each row's shard (-1 for a
 * row combined from several); sr_result_affected() is the sum. Every
 * shard's result must have the same columns. It is sr_exec_all_values()
 * with text parameters and default options.
 *
 * Errors: as sr_exec(); SR_ETXN inside a transaction; SR_EINVAL for a
 * statement whose rows cannot be merged correctly (COUNT(DISTINCT ...),
 * HAVING, window functions, ORDER BY an expression not in the select list,
 * ...: nothing is sent, the message says why and what to do instead);
 * SR_EPARTIAL when some shards failed and others succeeded (no result is
 * returned; the message names every failed shard and why;
 * sr_exec_all_values() can return the rows of the others). Writes that
 * succeeded on some shards are not undone.
 */
SR_API int sr_exec_all(sr_session *s, sr_intent intent, const char *sql, int nparams,
                       const char *const *params, sr_result **out);

/* ------------------------------------------------------------------------ */
/* Typed values                                                             */
/* ------------------------------------------------------------------------ */

/**
 * Portable value types, one per result column (sr_result_coltype) and one
 * per typed parameter (sr_value.type). A column's type comes from the
 * driver's metadata: PostgreSQL type OIDs, MySQL field types, SQLite's
 * declared type (else the storage class of the column's first non-NULL
 * value). Values of every type stay readable as text (sr_result_value);
 * the typed accessors convert. What maps to what is in docs/scatter.md.
 */
typedef enum sr_type {
    SR_TYPE_UNKNOWN = 0,  /* no metadata (e.g. an SQLite expression of NULLs only) */
    SR_TYPE_NULL = 1,     /* parameters only: SQL NULL */
    SR_TYPE_INT = 2,      /* integers that fit int64 (decimal text) */
    SR_TYPE_FLOAT = 3,    /* binary floating point (text as the server prints it) */
    SR_TYPE_NUMERIC = 4,  /* exact decimal, as text ("12.50") */
    SR_TYPE_TEXT = 5,
    SR_TYPE_BYTES = 6,    /* raw bytes (PostgreSQL bytea decoded; may hold NUL bytes) */
    SR_TYPE_BOOL = 7,     /* text "1" / "0" in results; i = 0/1 in parameters */
    SR_TYPE_DATETIME = 8  /* date, time, timestamp, interval: the server's text */
} sr_type;

/**
 * A typed parameter. Build one with the constructors below (or set the
 * fields: `i` for SR_TYPE_INT and SR_TYPE_BOOL, `f` for SR_TYPE_FLOAT,
 * `p`/`len` for TEXT, NUMERIC, DATETIME and BYTES, nothing for NULL). The
 * bytes at `p` are borrowed for the duration of the call they are passed to;
 * they need no NUL terminator and BYTES may contain NUL bytes. TEXT,
 * NUMERIC and DATETIME are sent as text the server converts (like sr_exec's
 * parameters); INT, FLOAT and BYTES are sent in binary where the backend
 * allows, so they need no formatting and bytes round-trip exactly.
 */
typedef struct sr_value {
    sr_type type;
    int64_t i;
    double f;
    const void *p;
    size_t len;
} sr_value;

/** An SQL NULL parameter. */
static inline sr_value sr_value_null(void) { sr_value v = {SR_TYPE_NULL, 0, 0, 0, 0}; return v; }
/** An integer parameter. */
static inline sr_value sr_value_int(int64_t i) { sr_value v = {SR_TYPE_INT, i, 0, 0, 0}; return v; }
/** A floating-point parameter. */
static inline sr_value sr_value_float(double f) { sr_value v = {SR_TYPE_FLOAT, 0, f, 0, 0}; return v; }
/** A boolean parameter (any non-zero is true). */
static inline sr_value sr_value_bool(int b) { sr_value v = {SR_TYPE_BOOL, b != 0, 0, 0, 0}; return v; }
/** A text parameter: the NUL-terminated `s` (borrowed); NULL gives an SQL NULL. */
static inline sr_value sr_value_text(const char *s)
{
    sr_value v = {s ? SR_TYPE_TEXT : SR_TYPE_NULL, 0, 0, s, 0};
    if (s) { const char *e = s; while (*e) e++; v.len = (size_t)(e - s); }
    return v;
}
/** A bytes parameter: `n` bytes at `p` (borrowed; may hold NUL bytes). */
static inline sr_value sr_value_bytes(const void *p, size_t n)
{
    sr_value v = {SR_TYPE_BYTES, 0, 0, p, n};
    return v;
}

/**
 * sr_exec_opts() with typed parameters. `params` has `nparams` values
 * (NULL when 0). Everything else (routing, consistency, errors) is as
 * sr_exec_opts(); in addition SR_EINVAL for a value of an unknown type,
 * SR_TYPE_UNKNOWN, `p` NULL with len > 0, or text with NUL bytes, and
 * SR_EDRIVER when the shard's driver takes no typed parameters (driver ABI
 * older than 6).
 */
SR_API int sr_exec_values(sr_session *s, sr_key key, sr_intent intent, const sr_read_opts *opts,
                          const char *sql, int nparams, const sr_value *params, sr_result **out);

/* ------------------------------------------------------------------------ */
/* Cross-shard statements: scatter, merge, cursors                          */
/* ------------------------------------------------------------------------ */

/** How a merged column combines the shards' values (sr_merge_spec.aggs). */
typedef enum sr_agg {
    SR_AGG_NONE = 0,  /* a group key, or a column with no aggregate */
    SR_AGG_COUNT = 1, /* the shards' counts are added */
    SR_AGG_SUM = 2,   /* added (NULL when every shard's is NULL) */
    SR_AGG_MIN = 3,
    SR_AGG_MAX = 4
} sr_agg;

/** Where NULLs sort in an order key. DEFAULT: as the shard's backend sorts them. */
typedef enum sr_nulls { SR_NULLS_DEFAULT = 0, SR_NULLS_FIRST = 1, SR_NULLS_LAST = 2 } sr_nulls;

/** One ORDER BY key of a merge: a result column (0-based), its direction and NULLs. */
typedef struct sr_order_key {
    int col;
    int desc;  /* 1: descending */
    int nulls; /* an sr_nulls */
} sr_order_key;

/** The layout of sr_merge_spec this header describes. */
#define SR_MERGE_SPEC_VERSION 1

/**
 * How the rows of the shards become one result, given explicitly instead of
 * derived from the SQL. The SQL is then sent to every shard unchanged: it
 * must return what the spec combines (each shard's partial counts, sums,
 * minima, maxima and group keys; for an average, a sum column and a count
 * column). Caller-allocated: initialise with SR_MERGE_SPEC_INIT. Order:
 * groups and aggregates are combined first, then DISTINCT, then ORDER BY,
 * then OFFSET and LIMIT. Comparison follows each column's type (numbers as
 * numbers; text and bytes byte by byte: see docs/scatter.md on collations).
 */
typedef struct sr_merge_spec {
    int version;                /* SR_MERGE_SPEC_VERSION */
    int norder;
    const sr_order_key *order;  /* norder keys, borrowed for the call */
    int64_t limit;              /* -1: none */
    int64_t offset;             /* rows skipped before the limit, >= 0 */
    int ngroup;
    const int *group;           /* group key columns (with aggs) */
    int naggs;                  /* 0, or the number of result columns */
    const sr_agg *aggs;         /* per column: how it combines (SR_AGG_NONE for group keys) */
    int distinct;               /* 1: equal rows (after grouping) are kept once */
} sr_merge_spec;
#define SR_MERGE_SPEC_INIT {SR_MERGE_SPEC_VERSION, 0, NULL, -1, 0, 0, NULL, 0, NULL, 0}

/** How sr_exec_all_values() and sr_cursor_open_all() combine the shards' rows. */
typedef enum sr_merge_mode {
    SR_MERGE_AUTO = 0,   /* derived from the SQL's top level (see docs/scatter.md) */
    SR_MERGE_CONCAT = 1, /* the shards' rows in shard order, as they came */
    SR_MERGE_SPEC = 2    /* sr_scatter_opts.spec */
} sr_merge_mode;

/** The layout of sr_scatter_opts this header describes. */
#define SR_SCATTER_OPTS_VERSION 1

/**
 * Options of one scatter statement. Caller-allocated: initialise with
 * SR_SCATTER_OPTS_INIT, then change the fields wanted; fields are only ever
 * added at the end under a new version.
 */
typedef struct sr_scatter_opts {
    int version;                /* SR_SCATTER_OPTS_VERSION */
    int merge;                  /* an sr_merge_mode */
    const sr_merge_spec *spec;  /* SR_MERGE_SPEC: borrowed for the call */
    int partial;                /* 1: when some shards fail, SR_EPARTIAL comes with the rows of
                                   the shards that answered (sr_result_failed_shard lists the
                                   others); 0: no result */
    const sr_read_opts *read;   /* per-statement read options, or NULL */
} sr_scatter_opts;
#define SR_SCATTER_OPTS_INIT {SR_SCATTER_OPTS_VERSION, SR_MERGE_AUTO, NULL, 0, NULL}

/**
 * Scatter-gather with typed parameters and options: runs the statement on
 * every shard at once (the caller's thread drives every shard's connection;
 * shards whose driver cannot run a statement without blocking, such as
 * SQLite, run one after another) and merges the rows as `opts` says (NULL:
 * SR_SCATTER_OPTS_INIT, a merge derived from the SQL). Memory: the result
 * holds the merged rows; aggregates hold one row per group.
 * The whole call is bounded by statement_timeout_ms: a shard that has not
 * answered by then fails with SR_ETIMEOUT and is named in the message.
 * Errors: as sr_exec_all(); SR_EINVAL (with a message saying why and what to
 * do instead) for a statement whose rows cannot be merged correctly, an
 * invalid spec, or opts of an unknown version.
 */
SR_API int sr_exec_all_values(sr_session *s, sr_intent intent, const sr_scatter_opts *opts,
                              const char *sql, int nparams, const sr_value *params,
                              sr_result **out);

/**
 * Describes, without running anything, what sr_exec_all_values() would do:
 * the shards, the SQL each would get (after any rewrite: AVG split into SUM
 * and COUNT, LIMIT n OFFSET m sent as LIMIT n+m) and the merge plan. Writes
 * at most `buflen` bytes (NUL-terminated) and returns the length of the
 * whole description (as snprintf: larger than buflen - 1 means it was cut),
 * or a negative status with the session's message set: SR_EINVAL for a
 * statement that cannot be merged (the message says why), SR_EMISUSE.
 */
SR_API int sr_explain_all(sr_session *s, sr_intent intent, const sr_scatter_opts *opts,
                          const char *sql, char *buf, size_t buflen);

/**
 * A cursor delivers a statement's rows as they arrive instead of buffering
 * the whole result: memory stays bounded by a small batch per shard. A
 * cursor belongs to its session: close every cursor before freeing the
 * session; calls on the cursor count as calls on the session (one thread at
 * a time, SR_EMISUSE otherwise), and its errors are the session's message.
 * While a cursor is open, the session may run other statements (they use
 * other connections), but not begin a transaction on the same connection.
 */
typedef struct sr_cursor sr_cursor;

/**
 * Opens a cursor over one statement on the shard that owns `key`, routed as
 * sr_exec_values() routes it. The statement is sent before this returns;
 * rows come with sr_cursor_next(). A shard whose driver cannot stream
 * (driver ABI older than 6) runs the statement whole at open and hands out
 * its buffered rows. Errors: as sr_exec_values(); SR_ETXN inside a
 * transaction (cursors run outside transactions); SR_EINVAL when `out` is
 * NULL. On error *out is untouched.
 */
SR_API int sr_cursor_open(sr_session *s, sr_key key, sr_intent intent, const sr_read_opts *opts,
                          const char *sql, int nparams, const sr_value *params,
                          sr_cursor **out);

/**
 * Opens a cursor over a scatter statement: every shard's rows stream in
 * parallel; an ORDER BY merges them k ways as they come, so memory is bounded
 * by the shards times a small batch. Groups, aggregates and DISTINCT hold
 * one row per group until the last shard ends. Errors: as
 * sr_exec_all_values(); outside a transaction only (SR_ETXN).
 */
SR_API int sr_cursor_open_all(sr_session *s, sr_intent intent, const sr_scatter_opts *opts,
                              const char *sql, int nparams, const sr_value *params,
                              sr_cursor **out);

/**
 * Advances to the next row: 1 when there is one (read it with
 * sr_cursor_row()), 0 at the end, or a negative status with the session's
 * message set. Each call waits for rows at most statement_timeout_ms (and,
 * for a scatter cursor, every shard that has not ended must have sent
 * something within that time). After 0 or an error the cursor has released
 * its connections; further calls return the same. SR_EMISUSE as for the
 * session.
 */
SR_API int sr_cursor_next(sr_cursor *c);

/**
 * The current row: a result holding it, read with the sr_result_*
 * accessors at row index *row (sr_result_shard() tells the shard it came
 * from; -1 for a row computed from several shards). Borrowed: valid until
 * the next sr_cursor_next() or sr_cursor_close(). NULL before the first
 * row, after the end, or for NULL arguments. The result's columns are
 * those of the statement (also readable before the first row, with
 * *row = -1, once sr_cursor_next() has been called).
 */
SR_API const sr_result *sr_cursor_row(const sr_cursor *c, int *row);

/**
 * Closes the cursor: a statement still running is cancelled (or its
 * connection closed) within statement_timeout_ms, and its connections go
 * back to their pools. NULL is a no-op.
 */
SR_API void sr_cursor_close(sr_cursor *c);

/**
 * Begins a transaction on the primary of the shard that owns `key` and pins
 * the session to it until sr_commit() or sr_rollback(). Statements whose key
 * maps to another shard fail with SR_ETXN and leave the transaction open.
 * Errors: SR_EINVAL, SR_ENOSHARD, SR_ETXN (already in a transaction), SR_EMISUSE,
 * and the connection errors of sr_exec().
 */
SR_API int sr_begin(sr_session *s, sr_key key);

/** Like sr_begin() on a shard given by index. */
SR_API int sr_begin_shard(sr_session *s, int shard);

/**
 * Begins a read-only transaction on one eligible replica of the shard that
 * owns `key` (chosen as a read would be, honouring the session's consistency;
 * the primary when no replica qualifies and primary reads are allowed) under
 * REPEATABLE READ, so every statement in it sees one snapshot. Writes in it
 * fail on the server. Ends with sr_commit() or sr_rollback(). Errors: as
 * sr_begin(), plus SR_ESTALE and SR_EUNAVAILABLE.
 */
SR_API int sr_begin_read_only(sr_session *s, sr_key key);

/**
 * Commits the session's transaction and unpins it. On failure the transaction
 * is rolled back and the session unpinned all the same. Errors: SR_ETXN (no
 * transaction), SR_EQUERY, SR_ECONNECT, SR_ETIMEOUT, SR_ENOMEM, SR_EMISUSE (nothing
 * was done: the transaction is still open).
 */
SR_API int sr_commit(sr_session *s);

/** Rolls back the session's transaction and unpins it. SR_ETXN when none is open, SR_EMISUSE. */
SR_API int sr_rollback(sr_session *s);

/**
 * 1 when the session has an open transaction, 0 when not or for NULL.
 * This and the two getters below take no busy check: called while another
 * thread is inside a call on the session they race with it (a data race, not
 * SR_EMISUSE). Call them from the thread that made the call.
 */
SR_API int sr_in_transaction(const sr_session *s);

/**
 * The message of the session's last failed call: what failed, where (shard
 * and node, URI redacted) and why. "" after a successful call. Borrowed:
 * valid until the next call on the session. Never NULL.
 */
SR_API const char *sr_session_errmsg(const sr_session *s);

/**
 * The five-character SQLSTATE of the session's last failed statement, or ""
 * when the failure did not come from the database. Borrowed like errmsg.
 */
SR_API const char *sr_session_sqlstate(const sr_session *s);

/**
 * Where the failure that sr_session_errmsg() describes happened, for
 * programs (and bindings) that want it without parsing the message:
 * *shard is the shard's index (-1 when the failure was not on one shard:
 * bad arguments, a scatter's SR_EPARTIAL, or no failure) and *node the
 * node's index in that shard as sr_router_node_info() counts them (-1 when
 * no node was reached: no eligible node, a deadline passed while choosing).
 * Both count in the topology version the failed call ran on: the current
 * one, unless a reload came during the call or while a transaction or
 * cursor kept the session on an older one (sr_router_reload); the shard's
 * name (sr_router_shard_name) is the stable way to tell.
 * Either pointer may be NULL. Kept, like the message, until the next call.
 * Returns SR_OK, or SR_EINVAL for a NULL session. Not a call on the session
 * (no SR_EMISUSE check): read it from the thread that made the failed call.
 */
SR_API int sr_session_error_location(const sr_session *s, int *shard, int *node);

/* ------------------------------------------------------------------------ */
/* Results                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * A result is immutable: it may be read from any thread. Values are text as
 * the server sent them; NULL means SQL NULL. Out-of-range or NULL arguments
 * give 0 / NULL / -1 as documented, never a crash.
 */

/** Number of rows (0 for a statement that returns none); 0 for NULL. */
SR_API int sr_result_nrows(const sr_result *res);
/** Number of columns; 0 for NULL. */
SR_API int sr_result_ncols(const sr_result *res);
/** Name of column `col`; NULL when out of range. Valid until sr_result_free(). */
SR_API const char *sr_result_colname(const sr_result *res, int col);
/**
 * Value at (row, col) as a NUL-terminated string (binary values may contain
 * NUL bytes: use sr_result_length()). NULL for SQL NULL or out of range.
 * Valid until sr_result_free().
 */
SR_API const char *sr_result_value(const sr_result *res, int row, int col);
/** Length in bytes of the value at (row, col); 0 for SQL NULL or out of range. */
SR_API size_t sr_result_length(const sr_result *res, int row, int col);
/** 1 if the value at (row, col) is SQL NULL (or out of range), else 0. */
SR_API int sr_result_is_null(const sr_result *res, int row, int col);
/** Rows changed by a write (summed over shards for scatter); 0 for reads, -1 for NULL. */
SR_API int64_t sr_result_affected(const sr_result *res);
/** The shard index the row came from; SR_EINVAL when out of range. */
SR_API int sr_result_shard(const sr_result *res, int row);
/** The column's portable type; SR_TYPE_UNKNOWN when out of range or NULL. */
SR_API sr_type sr_result_coltype(const sr_result *res, int col);
/**
 * The value at (row, col) as an int64: an integer in range, or a boolean
 * (1 / 0; PostgreSQL's t / f). SR_EINVAL when out of range, SQL NULL (test
 * sr_result_is_null first), or not an integer that fits (a float or a
 * numeric with a fraction is not converted: use sr_result_double).
 */
SR_API int sr_result_int64(const sr_result *res, int row, int col, int64_t *out);
/**
 * The value at (row, col) as a double: any INT, FLOAT, NUMERIC or BOOL
 * value, or text that is a number (rounded to the nearest double;
 * "Infinity", "NaN" as the backends print them). SR_EINVAL when out of
 * range, SQL NULL, or not a number.
 */
SR_API int sr_result_double(const sr_result *res, int row, int col, double *out);
/**
 * The value's bytes and their length: raw bytes for SR_TYPE_BYTES (a
 * PostgreSQL bytea decoded), the text for any other type. NULL with *len =
 * 0 for SQL NULL or out of range; a 0-length value is a non-NULL pointer.
 * Valid until sr_result_free(). `len` may be NULL.
 */
SR_API const void *sr_result_bytes(const sr_result *res, int row, int col, size_t *len);
/**
 * The shards a partial scatter result (sr_scatter_opts.partial, status
 * SR_EPARTIAL) is missing: the i-th failed shard's index (i from 0), or -1
 * past the last one, for a complete result, or for NULL. Each failure's
 * reason is in the session's message of the call. A failed shard gives no
 * rows, not even those it sent before failing.
 */
SR_API int sr_result_failed_shard(const sr_result *res, int i);
/** Frees a result. NULL is a no-op. */
SR_API void sr_result_free(sr_result *res);

#ifdef __cplusplus
}
#endif

#endif /* SHARDROUTE_H */
