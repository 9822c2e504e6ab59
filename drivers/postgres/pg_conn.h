/*
 * Internal to the PostgreSQL driver: the connection struct and the bounded,
 * non-blocking I/O helpers that every method is built on (pg_io.c).
 */
#ifndef SR_PG_CONN_H
#define SR_PG_CONN_H

#include <libpq-fe.h>

#include <shardroute/driver.h>

/* What the statement cache (sr_stmt_cache) keeps per prepared statement. */
typedef struct sr_pg_stmt {
    char name[24]; /* the server-side name, "sr_<n>" */
} sr_pg_stmt;

struct sr_driver_conn {
    PGconn *pg;                /* NULL once discarded: every call then fails as transient */
    char *redacted;            /* the node's URI without its password, for messages */
    char *password;            /* only to scrub it out of server and libpq messages */
    int statement_timeout_ms;  /* default bound when a call passes no deadline */
    sr_stmt_cache *cache;      /* keyed by the original SQL text; values are sr_pg_stmt */
    uint64_t next_stmt_id;     /* statement names are never reused on a connection */
    /* An eviction DEALLOCATEs on the server from inside sr_stmt_cache_put():
     * the deadline it runs under, and the first failure, for the caller. */
    int64_t evict_deadline;
    int evict_rc;
    sr_driver_error evict_err;
    int64_t wal_block_size;    /* fetched on the first write_position(), 0 before */
    int64_t wal_segment_size;
    char *scratch;             /* decoded bytea values, reused */
    size_t scratch_cap;
    /* A statement in steps (ABI 6): */
    int stepping;              /* between send() and the statement's end */
    /* A statement in steps asked libpq for single-row mode, and no statement has been sent
     * outside pipeline mode since: libpq resets that mode only when it sends outside
     * pipeline mode (or moves to the next query of a pipeline), so a pipeline sent now
     * would have its first query's rows come one by one. exec_at then sends outside
     * pipeline mode, once. */
    int single_row_armed;
    int step_flushing;         /* the request is not all on the socket yet */
    sr_result_builder *step_named; /* the builder that was given the columns */
    PGresult *step_error;      /* the statement's error, reported once it ended */
};

/* The deadline a call runs under: the caller's, else the connection's default, else 0 (none). */
int64_t sr__pg_deadline(const sr_driver_conn *c, int64_t deadline_ns);

/*
 * After a PQsend* call: flushes the request and waits for every result of it.
 * *out is the first error result if there was one, else the last result (NULL
 * for none); the caller PQclear()s it. Returns SR_OK even for an SQL error
 * (look at the result); a negative status means the connection failed, timed
 * out or is in a state we cannot leave (COPY): then it has been discarded and
 * err says why (transient).
 */
int sr__pg_finish_request(sr_driver_conn *c, int64_t deadline, PGresult **out, sr_driver_error *err);

/*
 * Pipeline mode (exec_at): the connection was put into pipeline mode and
 * `nplan` operations were queued, plan[i] saying what each one is: 'q' a
 * query (PQsendQueryParams, PQsendPrepare, PQsendQueryPrepared) or 's' a
 * PQpipelineSync. Flushes them, waits (bounded) for every result, and
 * leaves pipeline mode. out[i] receives, for each 'q', its first error
 * result if there was one (PGRES_PIPELINE_ABORTED when an earlier error
 * skipped it), else its last result (NULL for none and for each 's'); the
 * caller PQclear()s them. A negative status means the connection failed,
 * timed out or is in a state we cannot leave: it has been discarded and err
 * says why (transient); out[] is all NULL, except, when `synced` is not
 * NULL, the results before the last Sync that was answered: *synced is the
 * plan index after that Sync (0: none), and those statements' transactions
 * ended as their results say (a write before it committed).
 */
int sr__pg_pipeline_finish(sr_driver_conn *c, int64_t deadline, const char *plan, int nplan,
                           PGresult **out, int *synced, sr_driver_error *err);

/*
 * Runs one statement with the simple protocol (no parameters, not cached)
 * under a deadline. SR_OK with *out holding a successful result (the caller
 * clears it; `out` may be NULL), or the classified error.
 */
int sr__pg_simple(sr_driver_conn *c, const char *sql, int64_t deadline, PGresult **out,
                  sr_driver_error *err);

/*
 * Classifies a failed result (or NULL: a failed send) into err and returns
 * its status: lost connection and SQLSTATE class 08 are SR_ECONNECT and
 * transient (the connection is discarded), 57014 is SR_ETIMEOUT, anything else
 * SR_EQUERY with the server's primary message.
 */
int sr__pg_result_error(sr_driver_conn *c, const PGresult *res, sr_driver_error *err);

/* A libpq-level failure (PQerrorMessage) as a transient SR_ECONNECT; discards the connection. */
int sr__pg_conn_error(sr_driver_conn *c, const char *what, sr_driver_error *err);

/*
 * Waits until `fd` has one of `events` (POLLIN/POLLOUT) or the deadline (0:
 * none) passes. Returns the revents, 0 on expiry, -1 on a poll error.
 */
int sr__pg_wait_fd(int fd, short events, int64_t deadline);

/* Closes the server connection now; the struct stays until close(). */
void sr__pg_discard(sr_driver_conn *c);

/*
 * Copies a libpq/server message into dst: runs of white space (line breaks,
 * indentation) folded into single spaces, trailing space trimmed, and the
 * password (if any, 4 characters or more) replaced by "***".
 */
void sr__pg_clean_message(char *dst, size_t dstlen, const char *src, const char *password);

/* The status of the connection when it was discarded/never opened. */
int sr__pg_gone(const sr_driver_conn *c, sr_driver_error *err);

/* The replication hooks of the vtable (replication.c). */
int sr__pg_server_role(sr_driver_conn *c, int64_t deadline_ns, sr_role *out, sr_driver_error *err);
int sr__pg_write_position(sr_driver_conn *c, int64_t deadline_ns, char *buf, size_t buflen,
                          sr_driver_error *err);
int sr__pg_has_replayed(sr_driver_conn *c, const char *position, int64_t deadline_ns, int *out,
                        sr_driver_error *err);
int sr__pg_replica_lag_ms(sr_driver_conn *c, int64_t deadline_ns, int64_t *out_ms,
                          sr_driver_error *err);

/* "X/Y" (hex, as PostgreSQL prints an LSN) to a 64-bit position; SR_EINVAL when malformed. */
int sr__pg_lsn_parse(const char *text, uint64_t *out);
/* A position as PostgreSQL prints it ("X/Y", upper-case hex); SR_EINVAL when buf is too small. */
int sr__pg_lsn_format(uint64_t lsn, char *buf, size_t buflen);

/*
 * The write position query (SR_PG_WRITE_LSN; on a connection's first use
 * also the WAL block and segment sizes) and the reading of its reply into
 * the position write_position() reports, page header taken off. Shared by
 * write_position() and exec_at's pipeline.
 */
const char *sr__pg_write_position_sql(const sr_driver_conn *c);
int sr__pg_write_position_result(sr_driver_conn *c, const PGresult *res, char *buf, size_t buflen,
                                 sr_driver_error *err);

/*
 * The check exec_at queues in front of a replica read: $1 is the position
 * the read needs (valid "X/Y"). sr__pg_check_result reads its reply: SR_OK
 * with `pos` (the position the server had applied, "" if the reply did not
 * say), *stale (1: it does not cover `need`) and *own_snapshot (1: the
 * statement queued behind it takes its snapshot after the check, i.e. READ
 * COMMITTED); SR_EQUERY when the reply is an error other than the check's
 * own "stale" one, or malformed (the caller classifies it).
 */
extern const char sr__pg_check_sql[];
int sr__pg_check_result(const PGresult *res, const char *need, char *pos, size_t poslen,
                        int *stale, int *own_snapshot);
int sr__pg_replay_position(sr_driver_conn *c, int64_t deadline_ns, char *buf, size_t buflen,
                           sr_driver_error *err);
int sr__pg_position_covers(const char *have, const char *want);
int sr__pg_position_merge(const char *a, const char *b, char *buf, size_t buflen);
int sr__pg_wait_replayed(sr_driver_conn *c, const char *position, int64_t deadline_ns, int *out,
                         sr_driver_error *err);

/* Runs COMMIT or PREPARE TRANSACTION (pg_io.c): SR_EQUERY (25P02, "... rolled back, not
 * WHAT") when the server rolled the transaction back instead, because it had failed. */
int sr__pg_end_transaction(sr_driver_conn *c, const char *sql, const char *what, int64_t deadline,
                           sr_driver_error *err);

/* Two-phase commit (twophase.c, driver ABI 7). */
int sr__pg_begin_global(sr_driver_conn *c, const char *gid, int64_t deadline_ns,
                        sr_driver_error *err);
int sr__pg_prepare(sr_driver_conn *c, const char *gid, int64_t deadline_ns, sr_driver_error *err);
int sr__pg_commit_prepared(sr_driver_conn *c, const char *gid, int64_t deadline_ns, int *found,
                           sr_driver_error *err);
int sr__pg_rollback_prepared(sr_driver_conn *c, const char *gid, int64_t deadline_ns, int *found,
                             sr_driver_error *err);
int sr__pg_list_prepared(sr_driver_conn *c, const char *prefix, int64_t deadline_ns,
                         sr_result_builder *rb, sr_driver_error *err);

/* Typed results (steps.c): a result's columns with their types, and one row's values (bytea
 * decoded, bool as "1"/"0"). */
int sr__pg_columns(const PGresult *res, sr_result_builder *rb, sr_driver_error *err);
int sr__pg_row(sr_driver_conn *c, const PGresult *res, int row, sr_result_builder *rb,
               sr_driver_error *err);

/* 1 when `sql` holds several statements (they go as one simple query; steps refuse them). */
int sr__pg_is_multi_statement(const char *sql);

/* The steps of driver ABI 6 (steps.c). */
int sr__pg_socket(sr_driver_conn *c);
int sr__pg_send(sr_driver_conn *c, const char *sql, int nparams, const sr_value *params,
                int64_t deadline_ns, int *want, sr_driver_error *err);
int sr__pg_next_row(sr_driver_conn *c, sr_result_builder *rb, int64_t deadline_ns, int *want,
                    sr_driver_error *err);
int sr__pg_cancel(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err);

/* The vtable, registered by the core when built with SR_HAVE_POSTGRES. */
extern const sr_driver sr__driver_postgres;

#endif
