/*
 * Declarations shared by the files of the MySQL/MariaDB driver (prefix
 * sr__my_). Built on MariaDB Connector/C: its non-blocking API is what lets
 * every wait end at a millisecond deadline.
 */
#ifndef SR_MY_INTERNAL_H
#define SR_MY_INTERNAL_H

#include <mysql.h>

#include <stdlib.h>
#include <string.h>

#include <shardroute/driver.h>

#define SR_MY_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Longest KILL QUERY side connection, so a timed-out caller is released soon
 * even when the server itself stopped answering. */
#define SR_MY_KILL_BUDGET_MS 50

/* The URI's ssl-mode (see set_options in connect.c for what each one asks of
 * Connector/C, docs/drivers.md for what each one verifies). */
typedef enum sr_my_ssl_mode {
    SR_MY_SSL_UNSET = 0, /* no ssl-mode: Connector/C's default */
    SR_MY_SSL_DISABLED,
    SR_MY_SSL_PREFERRED,
    SR_MY_SSL_REQUIRED,
    SR_MY_SSL_VERIFY_CA,
    SR_MY_SSL_VERIFY_IDENTITY
} sr_my_ssl_mode;

/* The options needed to open a connection, copied out of the URI so that a
 * side connection (KILL QUERY) can be opened after connect() returned. */
typedef struct sr_my_params {
    char *host;
    char *user;
    char *password;
    char *database;
    char *unix_socket;
    unsigned port;
    sr_my_ssl_mode ssl_mode;
    char *ssl_ca, *ssl_capath, *ssl_cert, *ssl_key, *ssl_cipher, *ssl_crl, *ssl_crlpath;
    char *tls_version;
    char *charset;
    char *redacted;       /* the URI without its password: the only form shown */
} sr_my_params;

typedef enum sr_my_flavour { SR_MY_MARIADB = 0, SR_MY_MYSQL = 1 } sr_my_flavour;

/* Growable scratch space for one statement's binds, reused across statements. */
typedef struct sr_my_scratch {
    MYSQL_BIND *pbind;      /* parameters */
    unsigned long *plen;
    my_bool *pnull;
    int pcap;
    int64_t *pint;          /* typed parameters (steps): integers and booleans, */
    double *pdbl;           /* floats, */
    char *pbytes;           /* and the bytes of the others, copied */
    int pvcap;              /* entries in pint and pdbl */
    size_t pbytes_cap;
    MYSQL_BIND *rbind;      /* result columns */
    unsigned long *rlen;
    my_bool *rnull;
    my_bool *rerr;
    char **rbuf;
    size_t *rcap;           /* capacity of each rbuf */
    const char **names;
    sr_type *types;
    int rcap_cols;
    unsigned long gen;      /* changes whenever a result buffer moves: binds must be redone */
} sr_my_scratch;

struct sr_driver_conn {
    MYSQL *my;
    sr_my_params params;
    sr_my_flavour flavour;
    unsigned long server_version; /* e.g. 101106, 80036 */
    unsigned long thread_id;
    int broken;                   /* the handle is unusable: close hard, never reuse */
    sr_stmt_cache *cache;         /* keyed by SQL text; values are sr_my_stmt */
    MYSQL_STMT *orphan;           /* an uncached statement left mid-operation by a timeout */
    sr_my_scratch scratch;
    struct sr_my_step *step;      /* the statement in steps (steps.c), NULL until the first */
    char xa_active[SR_GID_MAX + 1]; /* the XA transaction begun and not prepared (xa.c), "" */
};

/* The driver itself (mysql.c); the core's registry refers to it when built
 * with SR_HAVE_MYSQL. */
extern const sr_driver sr__driver_mysql;

/* ---- wait.c: the non-blocking loop ---- */

/*
 * Waits for the events a _start()/_cont() call asked for (MYSQL_WAIT_*), but
 * not past deadline_ns (<= 0: no deadline). Returns the events to pass to
 * _cont(), or -1 when the deadline passed first.
 */
int sr__my_wait(MYSQL *my, int status, int64_t deadline_ns);

/*
 * Drives a started operation to its end: `st` is what _start() returned,
 * CONT the matching _cont function, `ret` and `obj` its first two arguments.
 * Leaves st != 0 when the deadline passed with the operation unfinished; the
 * handle must then be discarded.
 */
#define SR_MY_AWAIT(my, deadline, st, ret, obj, CONT)                \
    while ((st) != 0) {                                              \
        int sr_my_ev_ = sr__my_wait((my), (st), (deadline));         \
        if (sr_my_ev_ < 0)                                           \
            break;                                                   \
        (st) = CONT((ret), (obj), sr_my_ev_);                        \
    }

/* ---- errors.c: classification ---- */

/* 1 for the client errors that mean the connection is gone. */
int sr__my_is_conn_error(unsigned code);

/*
 * Fills err from the handle's last error: connection errors are SR_ECONNECT
 * and transient (and mark the connection broken); the server's own statement
 * limit (1969, 3024) is SR_ETIMEOUT on a connection that stays usable; others
 * are SR_EQUERY. The server's message, number and SQLSTATE are kept. `what`
 * names the step.
 */
int sr__my_fail(sr_driver_conn *c, unsigned code, const char *sqlstate, const char *msg,
                const char *what, sr_driver_error *err);
int sr__my_fail_conn(sr_driver_conn *c, const char *what, sr_driver_error *err);
int sr__my_fail_stmt(sr_driver_conn *c, MYSQL_STMT *stmt, const char *what, sr_driver_error *err);

/* The deadline passed: stops the statement on the server (KILL QUERY over a
 * side connection), marks the connection broken and fills err (SR_ETIMEOUT,
 * transient). `killq` 0 skips the KILL (nothing runs on the server). */
int sr__my_timed_out(sr_driver_conn *c, const char *what, int killq, sr_driver_error *err);

/* ---- connect.c: options, connecting, KILL QUERY, closing ---- */

/* Copies what a connection needs out of the URI; SR_EINVAL for an unknown or
 * bad parameter (message in err), SR_ENOMEM. */
int sr__my_params_from_uri(const sr_uri *uri, sr_my_params *p, sr_driver_error *err);
void sr__my_params_free(sr_my_params *p);

/*
 * Opens a handle with the non-blocking API. Returns SR_OK with *out set,
 * SR_ETIMEOUT at the deadline, SR_ECONNECT when refused (err filled, message
 * with the redacted URI).
 */
int sr__my_open(const sr_my_params *p, int64_t deadline_ns, MYSQL **out, sr_driver_error *err);

/* Closes a handle; `hard` first aborts its socket so nothing can block. */
void sr__my_close_handle(MYSQL *my, int hard);

/* KILL QUERY thread_id through a short-lived side connection, best effort,
 * never past deadline_ns. Returns 1 when the server accepted the KILL. */
int sr__my_kill_query(const sr_my_params *p, unsigned long thread_id, int64_t deadline_ns);

/* ---- exec.c: the statement path ---- */

int sr__my_exec(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                int64_t deadline_ns, sr_result_builder *rb, sr_driver_error *err);
void sr__my_scratch_free(sr_my_scratch *s);

/* What exec and the steps (steps.c) share; `e` is a statement's cache entry
 * (or a local one for an uncached statement). */
struct sr_my_stmt;
/* Grows the parameter scratch arrays (pbind, plen, pnull) to n; -1 out of memory. */
int sr__my_scratch_params(sr_my_scratch *s, int n);
/* Grows the result scratch arrays to n columns; -1 out of memory. */
int sr__my_scratch_cols(sr_my_scratch *s, int n);
/* Gives rb (NULL: nobody) the columns' names and types, remembering them in
 * a cached entry. */
int sr__my_emit_columns(sr_driver_conn *c, struct sr_my_stmt *e, int cached, unsigned ncols,
                        sr_result_builder *rb, sr_driver_error *err);
/* Points the statement's result binds at the scratch buffers (unless they are). */
int sr__my_bind_results(sr_driver_conn *c, struct sr_my_stmt *e, unsigned ncols,
                        sr_driver_error *err);
/* The fetched row's values to rb (NULL: dropped); re-reads truncated ones. */
int sr__my_row_values(sr_driver_conn *c, struct sr_my_stmt *e, unsigned ncols,
                      sr_result_builder *rb, sr_driver_error *err);
/* Reads and drops further result sets (a CALL), bounded by the deadline. */
int sr__my_stmt_drain(sr_driver_conn *c, MYSQL_STMT *stmt, int64_t deadline_ns,
                      sr_driver_error *err);
/* Closes a statement, reading a pending result away within the deadline. */
int sr__my_close_stmt(sr_driver_conn *c, MYSQL_STMT *stmt, int64_t deadline_ns,
                      sr_driver_error *err);
/* A failure half-way through a result: the connection is given up. */
int sr__my_abandon(sr_driver_conn *c, int status, const char *what, sr_driver_error *err);

/* ---- types.c: column types, typed parameters ---- */

/* The portable type of a result column (field type, flags, character set). */
sr_type sr__my_column_type(const MYSQL_FIELD *f);
/*
 * Copies typed parameters into the connection's scratch space and fills
 * scratch.pbind for mysql_stmt_bind_param() (the caller's values may be gone
 * by the time the statement is prepared and sent). SR_EINVAL for a type that
 * is not a parameter type.
 */
int sr__my_stage_values(sr_driver_conn *c, int nparams, const sr_value *params,
                        sr_driver_error *err);

/* ---- steps.c: statements in steps (driver ABI 6) ---- */

int sr__my_socket(sr_driver_conn *c);
int sr__my_send(sr_driver_conn *c, const char *sql, int nparams, const sr_value *params,
                int64_t deadline_ns, int *want, sr_driver_error *err);
int sr__my_next_row(sr_driver_conn *c, sr_result_builder *rb, int64_t deadline_ns, int *want,
                    sr_driver_error *err);
int sr__my_cancel(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err);
/* 1 while a statement in steps has not ended (the core gave up on it). */
int sr__my_step_running(const sr_driver_conn *c);
/* Frees the step state; after the handle was closed. */
void sr__my_step_free(sr_driver_conn *c);

/* ---- mysql.c / xa.c: transactions ---- */

/* Runs a transaction-control statement (text protocol); refuses a broken connection. */
int sr__my_txn_stmt(sr_driver_conn *c, const char *sql, int64_t deadline_ns, sr_driver_error *err);
/* Two-phase commit (driver ABI 7). */
int sr__my_begin_global(sr_driver_conn *c, const char *gid, int64_t deadline_ns,
                        sr_driver_error *err);
int sr__my_prepare(sr_driver_conn *c, const char *gid, int64_t deadline_ns, sr_driver_error *err);
int sr__my_commit_prepared(sr_driver_conn *c, const char *gid, int64_t deadline_ns, int *found,
                           sr_driver_error *err);
int sr__my_rollback_prepared(sr_driver_conn *c, const char *gid, int64_t deadline_ns, int *found,
                             sr_driver_error *err);
int sr__my_list_prepared(sr_driver_conn *c, const char *prefix, int64_t deadline_ns,
                         sr_result_builder *rb, sr_driver_error *err);
/* Ends the connection's begun XA transaction in one phase: XA END, then XA COMMIT ... ONE
 * PHASE (commit) or XA ROLLBACK. */
int sr__my_xa_end_one_phase(sr_driver_conn *c, int commit, int64_t deadline_ns,
                            sr_driver_error *err);

/* ---- query.c: the text protocol, for internal queries and fall-backs ---- */

/*
 * Runs `sql` with the text protocol. With `res` non-NULL the rows are stored
 * there (the caller frees with mysql_free_result; NULL for a statement
 * without rows). Errors as sr__my_fail / sr__my_timed_out.
 */
int sr__my_text_query(sr_driver_conn *c, const char *sql, int64_t deadline_ns, MYSQL_RES **res,
                      sr_driver_error *err);

/* Runs one statement with the text protocol and hands its rows to rb. */
int sr__my_text_exec(sr_driver_conn *c, const char *sql, int64_t deadline_ns, sr_result_builder *rb,
                     sr_driver_error *err);

/* ---- stmt_cache.c: what the statement cache (sr_stmt_cache) keeps ---- */

/*
 * A prepared statement and what the driver remembers about it between
 * executions, so a repeated statement costs no metadata copy and no re-bind.
 * The value of the connection's sr_stmt_cache entries.
 */
typedef struct sr_my_stmt {
    MYSQL_STMT *stmt;
    const char **names;       /* result column names once known (owned), else NULL */
    const sr_type *types;     /* and their types (in the same block as names) */
    unsigned nnames;
    unsigned long bound_gen;  /* scratch generation of the current result binds; 0: none */
    unsigned bound_cols;
} sr_my_stmt;

/*
 * The cache's release callback (ctx unused): mysql_stmt_close()s the
 * statement and frees what was remembered. When the connection closes, close
 * the MYSQL handle before freeing the cache: its statements are then
 * released without network I/O.
 */
void sr__my_stmt_release(void *ctx, void *value);
/* Remembers the result column names and types of a cached statement
 * (copied). Returns 0, or -1 out of memory (nothing remembered). */
int sr__my_stmt_remember_columns(sr_my_stmt *e, unsigned n, const char *const *names,
                                 const sr_type *types);

/* ---- replication.c: the optional hooks ---- */

int sr__my_server_role(sr_driver_conn *c, int64_t deadline_ns, sr_role *out, sr_driver_error *err);
int sr__my_write_position(sr_driver_conn *c, int64_t deadline_ns, char *buf, size_t buflen,
                          sr_driver_error *err);
int sr__my_has_replayed(sr_driver_conn *c, const char *position, int64_t deadline_ns, int *out,
                        sr_driver_error *err);
int sr__my_replica_lag_ms(sr_driver_conn *c, int64_t deadline_ns, int64_t *out_ms,
                          sr_driver_error *err);
int sr__my_replay_position(sr_driver_conn *c, int64_t deadline_ns, char *buf, size_t buflen,
                           sr_driver_error *err);
/* The position this server has applied, as has_replayed reads it (MariaDB
 * @@GLOBAL.gtid_slave_pos, MySQL @@GLOBAL.gtid_executed), without white
 * space; *out is new, the caller frees it. Errors as sr__my_text_query. */
int sr__my_applied_position(sr_driver_conn *c, int64_t deadline_ns, char **out,
                            sr_driver_error *err);
int sr__my_wait_replayed(sr_driver_conn *c, const char *position, int64_t deadline_ns, int *out,
                         sr_driver_error *err);

/* ---- exec_at.c: a statement with its consistency check or write position ---- */

int sr__my_exec_at(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                   const char *need, int64_t deadline_ns, sr_result_builder *rb, char *pos,
                   size_t poslen, int *stale, sr_driver_error *err);

/* ---- gtid.c: positions as text (pure) ---- */

/*
 * 1 when a server at position `have` has applied everything up to `want`,
 * 0 when not, SR_EINVAL when either is malformed (or one is a MariaDB
 * position and the other a MySQL GTID set). "" wants nothing.
 */
int sr__my_position_covers(const char *have, const char *want);
/* The least position covering both a and b (MariaDB: per-domain maximum;
 * MySQL: the union of the sets). SR_EINVAL when malformed or buflen too small. */
int sr__my_position_merge(const char *a, const char *b, char *buf, size_t buflen);

#endif
