/*
 * The replication hooks: the server's role, a primary's write position, the
 * position a server has applied, whether (or, waiting, once) a replica has
 * applied a position, and replica lag. The position algebra is gtid.c.
 *
 * MariaDB (tested): positions are GTID lists "domain-server-seq,...", from
 * @@gtid_binlog_pos on the primary, compared per domain with the replica's
 * @@gtid_slave_pos; waiting is MASTER_GTID_WAIT(). MySQL 8 (kept small, not
 * tested here): positions are GTID sets from @@GLOBAL.gtid_executed, checked
 * with GTID_SUBSET() and waited for with WAIT_FOR_EXECUTED_GTID_SET().
 */
#include "my_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runs a query expected to return one value in the first row; *out is a
 * new string ("" for NULL or no row), the caller frees it. */
static int query_value(sr_driver_conn *c, const char *sql, int64_t deadline_ns, char **out,
                       int *is_null, sr_driver_error *err)
{
    if (c->broken)
        return sr_driver_error_set(err, SR_ECONNECT, 1, "", 0,
                                   "mysql connection is no longer usable");
    MYSQL_RES *r = NULL;
    int rc = sr__my_text_query(c, sql, deadline_ns, &r, err);
    if (rc != SR_OK)
        return rc;
    MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
    const char *v = row && mysql_num_fields(r) > 0 ? row[0] : NULL;
    if (is_null)
        *is_null = v == NULL;
    *out = sr_strdup(v ? v : "");
    mysql_free_result(r);
    if (!*out)
        return sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory");
    return SR_OK;
}

int sr__my_server_role(sr_driver_conn *c, int64_t deadline_ns, sr_role *out, sr_driver_error *err)
{
    char *v = NULL;
    int rc = query_value(c, "SELECT @@read_only", deadline_ns, &v, NULL, err);
    if (rc != SR_OK)
        return rc;
    *out = strcmp(v, "0") != 0 && *v ? SR_REPLICA : SR_PRIMARY;
    free(v);
    return SR_OK;
}

/*
 * Runs a query returning one GTID set, without the whitespace MySQL uses to
 * break long sets over lines, into *out (malloc'd; the caller frees it).
 */
static int query_gtid_set(sr_driver_conn *c, const char *sql, int64_t deadline_ns, char **out,
                          sr_driver_error *err)
{
    char *v = NULL;
    int rc = query_value(c, sql, deadline_ns, &v, NULL, err);
    if (rc != SR_OK)
        return rc;
    size_t n = 0;
    for (const char *p = v; *p; p++)
        if (*p != '\n' && *p != '\r' && *p != ' ')
            v[n++] = *p;
    v[n] = '\0';
    *out = v;
    return SR_OK;
}

/* query_gtid_set() copied to buf. */
static int query_position(sr_driver_conn *c, const char *sql, int64_t deadline_ns, char *buf,
                          size_t buflen, const char *what, sr_driver_error *err)
{
    char *v = NULL;
    int rc = query_gtid_set(c, sql, deadline_ns, &v, err);
    if (rc != SR_OK)
        return rc;
    size_t n = strlen(v);
    if (!buf || n + 1 > buflen) {
        free(v);
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "%s (%zu bytes) does not fit the buffer",
                                   what, n);
    }
    memcpy(buf, v, n + 1);
    free(v);
    return SR_OK;
}

int sr__my_applied_position(sr_driver_conn *c, int64_t deadline_ns, char **out,
                            sr_driver_error *err)
{
    /* As has_replayed compares: the replica's replayed position, or (MySQL)
     * everything executed. */
    const char *sql = c->flavour == SR_MY_MARIADB ? "SELECT @@GLOBAL.gtid_slave_pos"
                                                  : "SELECT @@GLOBAL.gtid_executed";
    return query_gtid_set(c, sql, deadline_ns, out, err);
}

int sr__my_write_position(sr_driver_conn *c, int64_t deadline_ns, char *buf, size_t buflen,
                          sr_driver_error *err)
{
    /* The whole binlog position, not the session's @@last_gtid: a superset
     * that is never older than this connection's last write, and also right
     * when the write produced no GTID of its own. */
    const char *sql = c->flavour == SR_MY_MARIADB ? "SELECT @@GLOBAL.gtid_binlog_pos"
                                                  : "SELECT @@GLOBAL.gtid_executed";
    return query_position(c, sql, deadline_ns, buf, buflen, "write position", err);
}

int sr__my_has_replayed(sr_driver_conn *c, const char *position, int64_t deadline_ns, int *out,
                        sr_driver_error *err)
{
    if (!position)
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "NULL position");
    char *v = NULL;
    int rc;
    if (c->flavour == SR_MY_MARIADB) {
        rc = sr__my_applied_position(c, deadline_ns, &v, err);
        if (rc != SR_OK)
            return rc;
        int covers = sr__my_position_covers(v, position);
        free(v);
        if (covers < 0)
            return sr_driver_error_set(err, SR_EINVAL, 0, "", 0,
                                       "not a MariaDB GTID position: '%.200s'", position);
        *out = covers;
        return SR_OK;
    }
    size_t n = strlen(position);
    char *esc = malloc(2 * n + 1);
    char *sql = malloc(2 * n + 64);
    if (!esc || !sql) {
        free(esc);
        free(sql);
        return sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory");
    }
    mysql_real_escape_string(c->my, esc, position, (unsigned long)n);
    snprintf(sql, 2 * n + 64, "SELECT GTID_SUBSET('%s', @@GLOBAL.gtid_executed)", esc);
    free(esc);
    rc = query_value(c, sql, deadline_ns, &v, NULL, err);
    free(sql);
    if (rc != SR_OK)
        return rc;
    *out = strcmp(v, "1") == 0;
    free(v);
    return SR_OK;
}

/* The value of column `a` (or its newer name `b`) in a SHOW ... STATUS row. */
static const char *status_col(MYSQL_RES *r, MYSQL_ROW row, const char *a, const char *b,
                              int *present)
{
    unsigned nf = mysql_num_fields(r);
    MYSQL_FIELD *f = mysql_fetch_fields(r);
    for (unsigned i = 0; i < nf; i++) {
        if (strcmp(f[i].name, a) == 0 || strcmp(f[i].name, b) == 0) {
            *present = 1;
            return row[i];
        }
    }
    *present = 0;
    return NULL;
}

int sr__my_replica_lag_ms(sr_driver_conn *c, int64_t deadline_ns, int64_t *out_ms,
                          sr_driver_error *err)
{
    if (c->broken)
        return sr_driver_error_set(err, SR_ECONNECT, 1, "", 0,
                                   "mysql connection is no longer usable");
    /* MySQL renamed the statement in 8.0.22 (the old one is deprecated);
     * MariaDB's SHOW SLAVE STATUS still uses the Slave_* column names. */
    const char *sql = c->flavour == SR_MY_MYSQL && c->server_version >= 80022
                          ? "SHOW REPLICA STATUS"
                          : "SHOW SLAVE STATUS";
    MYSQL_RES *r = NULL;
    int rc = sr__my_text_query(c, sql, deadline_ns, &r, err);
    if (rc != SR_OK)
        return rc;
    MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
    int64_t lag = -1; /* no replication configured: not an eligible replica */
    if (row) {
        int p1, p2, p3;
        const char *io = status_col(r, row, "Slave_IO_Running", "Replica_IO_Running", &p1);
        const char *sqlt = status_col(r, row, "Slave_SQL_Running", "Replica_SQL_Running", &p2);
        const char *sbm =
            status_col(r, row, "Seconds_Behind_Master", "Seconds_Behind_Source", &p3);
        /* A NULL Seconds_Behind_Master means a replication thread stopped:
         * broken replication, never "no lag". */
        if (p1 && p2 && p3 && io && sqlt && sbm && strcmp(io, "Yes") == 0 &&
            strcmp(sqlt, "Yes") == 0) {
            char *end;
            long long s = strtoll(sbm, &end, 10);
            if (end != sbm && *end == '\0' && s >= 0)
                lag = (int64_t)s * 1000;
        }
    }
    mysql_free_result(r);
    *out_ms = lag;
    return SR_OK;
}

int sr__my_replay_position(sr_driver_conn *c, int64_t deadline_ns, char *buf, size_t buflen,
                           sr_driver_error *err)
{
    /* A replica has applied what its SQL thread replayed; a primary what it
     * wrote (read_only tells them apart, as in server_role). */
    const char *sql = c->flavour == SR_MY_MARIADB
                          ? "SELECT IF(@@read_only, @@GLOBAL.gtid_slave_pos, @@GLOBAL.gtid_binlog_pos)"
                          : "SELECT @@GLOBAL.gtid_executed";
    return query_position(c, sql, deadline_ns, buf, buflen, "replication position", err);
}

int sr__my_wait_replayed(sr_driver_conn *c, const char *position, int64_t deadline_ns, int *out,
                         sr_driver_error *err)
{
    if (!position)
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "NULL position");
    *out = 0;
    /* The server waits (MASTER_GTID_WAIT / WAIT_FOR_EXECUTED_GTID_SET) but
     * gives up a little before the caller's deadline, so its answer arrives
     * in time and the connection need not be killed. */
    int64_t left_ms = deadline_ns > 0 ? (deadline_ns - sr_clock_ns()) / 1000000 : 60000;
    int64_t margin_ms = left_ms / 10 > 10 ? left_ms / 10 : 10;
    int64_t wait_ms = left_ms - margin_ms;
    if (wait_ms <= 0)
        return sr__my_has_replayed(c, position, deadline_ns, out, err);
    if (c->flavour == SR_MY_MARIADB && sr__my_position_covers("", position) < 0)
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0,
                                   "not a MariaDB GTID position: '%.200s'", position);
    size_t n = strlen(position);
    char *esc = malloc(2 * n + 1);
    size_t sqllen = 2 * n + 96;
    char *sql = malloc(sqllen);
    if (!esc || !sql) {
        free(esc);
        free(sql);
        return sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory");
    }
    mysql_real_escape_string(c->my, esc, position, (unsigned long)n);
    snprintf(sql, sqllen, "SELECT %s('%s', %" PRId64 ".%03d)",
            c->flavour == SR_MY_MARIADB ? "MASTER_GTID_WAIT" : "WAIT_FOR_EXECUTED_GTID_SET", esc,
            wait_ms / 1000, (int)(wait_ms % 1000));
    free(esc);
    char *v = NULL;
    int is_null = 0;
    int rc = query_value(c, sql, deadline_ns, &v, &is_null, err);
    free(sql);
    if (rc == SR_ETIMEOUT && !c->broken) {
        /* The server's own statement limit (max_statement_time) ended the
         * wait first: not applied yet, and the connection is fine. */
        *out = 0;
        return SR_OK;
    }
    if (rc != SR_OK)
        return rc;
    /* MASTER_GTID_WAIT: 0 reached, -1 timed out; WAIT_FOR_EXECUTED_GTID_SET:
     * 0 reached, 1 timed out. */
    *out = !is_null && strcmp(v, "0") == 0;
    free(v);
    return SR_OK;
}
