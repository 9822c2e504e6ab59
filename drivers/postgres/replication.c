/*
 * The PostgreSQL driver's replication hooks: the server's role, the
 * primary's WAL position after a write, whether a replica has replayed a
 * position, and replica lag.
 */
#include "pg_conn.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * The position a session's last commit is covered by. With synchronous
 * commit (the default) COMMIT returns after its record is flushed, so the
 * flush position covers it, and it is also all a replica can ever receive;
 * the insert position would also count records inserted after the commit but
 * not flushed yet, which replicas see only after the WAL writer's next round
 * (up to wal_writer_delay later). With synchronous_commit = off the commit
 * record may not be flushed yet, so only the insert position is safe.
 */
#define SR_PG_WRITE_LSN                                                                         \
    "CASE WHEN current_setting('synchronous_commit') = 'off' THEN pg_current_wal_insert_lsn()" \
    " ELSE pg_current_wal_flush_lsn() END"

/* Sizes of WAL page headers (MAXALIGNed XLogPageHeaderData / XLogLongPageHeaderData). */
#define PG_WAL_SHORT_HEADER 24
#define PG_WAL_LONG_HEADER 40

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Up to 8 hex digits; returns the end, or NULL. */
static const char *parse_hex32(const char *p, uint64_t *out)
{
    uint64_t v = 0;
    int n = 0;
    for (int d; (d = hexval(*p)) >= 0; p++) {
        if (++n > 8)
            return NULL;
        v = v << 4 | (uint64_t)d;
    }
    if (n == 0)
        return NULL;
    *out = v;
    return p;
}

int sr__pg_lsn_parse(const char *text, uint64_t *out)
{
    uint64_t hi, lo;
    const char *p = text ? parse_hex32(text, &hi) : NULL;
    if (!p || *p != '/')
        return SR_EINVAL;
    p = parse_hex32(p + 1, &lo);
    if (!p || *p != '\0')
        return SR_EINVAL;
    *out = hi << 32 | lo;
    return SR_OK;
}

int sr__pg_lsn_format(uint64_t lsn, char *buf, size_t buflen)
{
    int n = snprintf(buf, buflen, "%" PRIX32 "/%" PRIX32, (uint32_t)(lsn >> 32), (uint32_t)lsn);
    return n < 0 || (size_t)n >= buflen ? SR_EINVAL : SR_OK;
}

/* Runs a query that returns exactly one row. */
static int one_row(sr_driver_conn *c, const char *sql, int64_t deadline_ns, PGresult **res,
                   sr_driver_error *err)
{
    int rc = sr__pg_simple(c, sql, sr__pg_deadline(c, deadline_ns), res, err);
    if (rc != SR_OK)
        return rc;
    if (PQresultStatus(*res) != PGRES_TUPLES_OK || PQntuples(*res) != 1) {
        PQclear(*res);
        *res = NULL;
        return sr_driver_error_set(err, SR_EQUERY, 0, NULL, 0, "unexpected reply to \"%s\"", sql);
    }
    return SR_OK;
}

static int is_true(const PGresult *res, int col)
{
    return !PQgetisnull(res, 0, col) && PQgetvalue(res, 0, col)[0] == 't';
}

int sr__pg_server_role(sr_driver_conn *c, int64_t deadline_ns, sr_role *out, sr_driver_error *err)
{
    PGresult *res;
    int rc = one_row(c, "SELECT pg_is_in_recovery()", deadline_ns, &res, err);
    if (rc != SR_OK)
        return rc;
    *out = is_true(res, 0) ? SR_REPLICA : SR_PRIMARY;
    PQclear(res);
    return SR_OK;
}

/*
 * The position is SR_PG_WRITE_LSN (see its comment). When it sits right
 * after a page header (the last record ended on a page boundary) the header
 * is taken off, because a replica reports the end of the last record it
 * replayed, which is the boundary: otherwise an idle primary would leave the
 * position unreachable. The first query on a connection also fetches the WAL
 * block and segment sizes that this needs.
 */
const char *sr__pg_write_position_sql(const sr_driver_conn *c)
{
    return c->wal_block_size == 0
               ? "SELECT " SR_PG_WRITE_LSN ", current_setting('wal_block_size'),"
                 " (SELECT setting::bigint * CASE unit WHEN 'kB' THEN 1024"
                 " WHEN '8kB' THEN 8192 WHEN 'MB' THEN 1048576 ELSE 1 END"
                 " FROM pg_settings WHERE name = 'wal_segment_size')"
               : "SELECT " SR_PG_WRITE_LSN;
}

int sr__pg_write_position_result(sr_driver_conn *c, const PGresult *res, char *buf, size_t buflen,
                                 sr_driver_error *err)
{
    int first = c->wal_block_size == 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
        PQnfields(res) != (first ? 3 : 1))
        return sr_driver_error_set(err, SR_EQUERY, 0, NULL, 0,
                                   "unexpected reply to the WAL position query");
    uint64_t lsn;
    if (sr__pg_lsn_parse(PQgetvalue(res, 0, 0), &lsn) != SR_OK)
        return sr_driver_error_set(err, SR_EQUERY, 0, NULL, 0, "malformed WAL position \"%s\"",
                                   PQgetvalue(res, 0, 0));
    if (first) {
        int64_t blk = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        int64_t seg = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
        if (blk <= 0 || seg <= 0 || seg % blk != 0)
            return sr_driver_error_set(err, SR_EQUERY, 0, NULL, 0,
                                       "unexpected WAL block/segment sizes");
        c->wal_block_size = blk;
        c->wal_segment_size = seg;
    }
    if (lsn % (uint64_t)c->wal_segment_size == PG_WAL_LONG_HEADER)
        lsn -= PG_WAL_LONG_HEADER;
    else if (lsn % (uint64_t)c->wal_block_size == PG_WAL_SHORT_HEADER)
        lsn -= PG_WAL_SHORT_HEADER;
    if (sr__pg_lsn_format(lsn, buf, buflen) != SR_OK)
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                   "buffer of %zu bytes too small for a WAL position", buflen);
    return SR_OK;
}

int sr__pg_write_position(sr_driver_conn *c, int64_t deadline_ns, char *buf, size_t buflen,
                          sr_driver_error *err)
{
    if (!buf || buflen == 0)
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "no buffer for the WAL position");
    PGresult *res;
    int rc = one_row(c, sr__pg_write_position_sql(c), deadline_ns, &res, err);
    if (rc != SR_OK)
        return rc;
    rc = sr__pg_write_position_result(c, res, buf, buflen, err);
    PQclear(res);
    return rc;
}

int sr__pg_has_replayed(sr_driver_conn *c, const char *position, int64_t deadline_ns, int *out,
                        sr_driver_error *err)
{
    uint64_t want;
    if (sr__pg_lsn_parse(position, &want) != SR_OK)
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                   "\"%s\" is not a PostgreSQL WAL position (X/Y)",
                                   position ? position : "(null)");
    PGresult *res;
    int rc = one_row(c, "SELECT pg_last_wal_replay_lsn()", deadline_ns, &res, err);
    if (rc != SR_OK)
        return rc;
    /* NULL: not a replica (or never replayed anything), so it has replayed nothing. */
    uint64_t have = 0;
    if (!PQgetisnull(res, 0, 0) && sr__pg_lsn_parse(PQgetvalue(res, 0, 0), &have) != SR_OK)
        have = 0;
    PQclear(res);
    *out = have >= want;
    return SR_OK;
}

/*
 * Lag is measured on the replica alone: 0 when it has replayed everything it
 * received (so an idle primary does not make a caught-up replica look
 * stale), else the age of the last replayed transaction. Without a running
 * WAL receiver the replica is not following anyone: -1 (not eligible).
 * pg_stat_wal_receiver shows its status only to privileged roles; for others
 * the row's existence is what is known.
 */
int sr__pg_replica_lag_ms(sr_driver_conn *c, int64_t deadline_ns, int64_t *out_ms,
                          sr_driver_error *err)
{
    PGresult *res;
    int rc = one_row(c,
                     "SELECT pg_is_in_recovery(),"
                     " EXISTS (SELECT 1 FROM pg_stat_wal_receiver"
                     "         WHERE status IS NULL OR status = 'streaming'),"
                     " coalesce(pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(), false),"
                     " (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint",
                     deadline_ns, &res, err);
    if (rc != SR_OK)
        return rc;
    if (!is_true(res, 0) || !is_true(res, 1))
        *out_ms = -1;
    else if (is_true(res, 2))
        *out_ms = 0;
    else if (PQgetisnull(res, 0, 3))
        *out_ms = -1;
    else {
        int64_t ms = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
        *out_ms = ms < 0 ? 0 : ms; /* clocks of primary and replica may disagree */
    }
    PQclear(res);
    return SR_OK;
}

/* ---- positions for consistency (driver ABI 2) ---- */

int sr__pg_replay_position(sr_driver_conn *c, int64_t deadline_ns, char *buf, size_t buflen,
                           sr_driver_error *err)
{
    /* A primary has applied everything it wrote; a replica what it replayed. */
    PGresult *res;
    int rc = one_row(c,
                     "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
                     " ELSE pg_current_wal_flush_lsn() END",
                     deadline_ns, &res, err);
    if (rc != SR_OK)
        return rc;
    uint64_t lsn = 0;
    if (!PQgetisnull(res, 0, 0) && sr__pg_lsn_parse(PQgetvalue(res, 0, 0), &lsn) != SR_OK)
        lsn = 0;
    PQclear(res);
    if (sr__pg_lsn_format(lsn, buf, buflen) != SR_OK)
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "buffer too small for a WAL position");
    return SR_OK;
}

int sr__pg_position_covers(const char *have, const char *want)
{
    uint64_t h, w;
    if (sr__pg_lsn_parse(have, &h) != SR_OK || sr__pg_lsn_parse(want, &w) != SR_OK)
        return SR_EINVAL;
    return h >= w;
}

int sr__pg_position_merge(const char *a, const char *b, char *buf, size_t buflen)
{
    uint64_t x, y;
    if (sr__pg_lsn_parse(a, &x) != SR_OK || sr__pg_lsn_parse(b, &y) != SR_OK)
        return SR_EINVAL;
    return sr__pg_lsn_format(x > y ? x : y, buf, buflen);
}

/*
 * PostgreSQL has no server-side "wait for LSN" before version 17's
 * pg_wal_replay_wait, so the replica is polled, with short sleeps that never
 * cross the deadline. The first pause is short (100 us) and doubles up to
 * 4 ms: on a healthy cluster a write is replayed within a millisecond or two
 * of its commit, so a fixed 1 ms first sleep would often cost more than the
 * lag itself, while a replica that is really behind is asked at most about
 * 250 times a second.
 */
#define PG_WAIT_FIRST_PAUSE_NS 100000LL
#define PG_WAIT_MAX_PAUSE_NS 4000000LL

int sr__pg_wait_replayed(sr_driver_conn *c, const char *position, int64_t deadline_ns, int *out,
                         sr_driver_error *err)
{
    *out = 0;
    int64_t slowest = 0; /* the longest poll so far */
    for (int64_t pause_ns = PG_WAIT_FIRST_PAUSE_NS;;
         pause_ns = pause_ns * 2 < PG_WAIT_MAX_PAUSE_NS ? pause_ns * 2 : PG_WAIT_MAX_PAUSE_NS) {
        int64_t sent = sr_clock_ns();
        int rc = sr__pg_has_replayed(c, position, deadline_ns, out, err);
        if (rc != SR_OK || *out)
            return rc;
        /* A poll that runs into the deadline times out and costs the connection:
         * stop once the next pause plus a poll (twice the slowest one so far,
         * which grows on a loaded machine, and 2 ms) would reach it. On a loaded
         * machine the pause is never shorter than a poll either: polling more
         * often than the server answers only adds polls that may run late. */
        int64_t now = sr_clock_ns(), poll_ns = now - sent;
        if (poll_ns > slowest)
            slowest = poll_ns;
        if (pause_ns < slowest)
            pause_ns = slowest;
        int64_t left = deadline_ns - now;
        if (left <= pause_ns + 2 * slowest + 2000000)
            return SR_OK;
        struct timespec ts = {(time_t)(pause_ns / 1000000000), (long)(pause_ns % 1000000000)};
        nanosleep(&ts, NULL);
    }
}

/* ---- the check in front of a replica read (exec_at) ---- */

/*
 * The position this server has applied, as sr__pg_replay_position reads it;
 * the core's `need` ($1) is compared on the client (sr__pg_check_result).
 * The statement queued behind it runs whatever the answer, and a stale
 * replica's rows (or error: a table the write created may not be there yet)
 * are dropped. Making the check fail on purpose would skip the statement
 * instead, but every stale read would then leave an ERROR line in the
 * replica's log and count as a rollback, which trips monitoring; a point
 * read run for nothing costs less than that. ($1 is kept, cast, so that a
 * malformed position is refused by the server too.)
 * The second column says whether the statement behind it takes a snapshot
 * of its own, after this check (see exec_at in postgres.c).
 */
const char sr__pg_check_sql[] =
    "SELECT p::text, current_setting('transaction_isolation') = 'read committed'"
    " FROM (SELECT coalesce(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
    " ELSE pg_current_wal_flush_lsn() END, '0/0') AS p, $1::pg_lsn AS need) AS applied";

int sr__pg_check_result(const PGresult *res, const char *need, char *pos, size_t poslen,
                        int *stale, int *own_snapshot)
{
    *stale = 0;
    *own_snapshot = 0;
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 2 ||
        PQgetisnull(res, 0, 0))
        return SR_EQUERY;
    uint64_t lsn;
    if (sr__pg_lsn_parse(PQgetvalue(res, 0, 0), &lsn) != SR_OK ||
        sr__pg_lsn_format(lsn, pos, poslen) != SR_OK)
        return SR_EQUERY;
    *stale = sr__pg_position_covers(pos, need) != 1;
    *own_snapshot = is_true(res, 1);
    return SR_OK;
}
