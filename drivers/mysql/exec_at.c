/*
 * exec_at (driver ABI 5): one statement together with what the core's
 * consistency needs from it, on the same connection, without the separate
 * write_position or has_replayed exchange.
 *
 * A write on the primary (`need` NULL): MariaDB reports the GTID a statement
 * wrote in the statement's own OK packet when the session tracks the
 * last_gtid variable (session_track_system_variables, which connect sets on
 * a primary, see mysql.c). Connector/C keeps what the last OK packet tracked
 * on the MYSQL handle, for the text protocol and for mysql_stmt_execute
 * alike (both read the answer with ma_read_ok_packet), so the position costs
 * no round trip. MariaDB 10.11 sends the pair ("last_gtid", "0-1-42") only
 * in the OK packet of a statement that wrote a GTID. A server whose global
 * session_track_system_variables is empty tracks nothing for a session that
 * sets its own list (10.11.19, observed): such a server gets "" every time,
 * so the core asks write_position() as before.
 *
 * The tracker is not always this statement's: Connector/C clears it at every
 * OK packet, but a statement answered with rows (INSERT ... RETURNING, a
 * SELECT) ends without one, and a prepare's answer is no OK packet either, so
 * the value of an earlier statement on the connection is still there. Every
 * write gets a new GTID, so only a value that differs from the one held
 * before the statement is taken as this statement's; anything else gives ""
 * and the core asks write_position(). A CALL that commits several
 * transactions reports the last one's GTID, which covers the others only
 * within its replication domain (a procedure that switches gtid_domain_id is
 * not covered: none is expected to).
 *
 * A read on a replica (`need` non-NULL): the replica's applied position is
 * read first on the same connection, as has_replayed reads it, and compared
 * with `need` here; the core caches it, which saves later checks. That is
 * one round trip more than the read alone: Connector/C sends a command only
 * after the previous one was answered, and a prepared statement cannot
 * share a COM_QUERY with the check. MASTER_GTID_WAIT(need, 0) would cost the
 * same round trip but answer only yes or no.
 *
 * MySQL (not MariaDB): connect asks for session_track_gtids = OWN_GTID and the
 * GTIDs come in SESSION_TRACK_GTIDS; the read check uses
 * @@GLOBAL.gtid_executed. Untested: there is no MySQL server in the test
 * environment.
 */
#include "my_internal.h"

#include <string.h>

/*
 * Copies the GTID the connection's session tracker holds now into buf:
 * MariaDB's tracked last_gtid variable (the tracker lists a variable's name,
 * then its value), MySQL's SESSION_TRACK_GTIDS. "" when there is none or it
 * does not fit.
 */
static void tracked_gtid(sr_driver_conn *c, char *buf, size_t buflen)
{
    static const char name[] = "last_gtid";
    const char *d = NULL, *v = NULL;
    size_t n = 0, vn = 0;
    buf[0] = '\0';
    if (c->flavour == SR_MY_MYSQL) {
        if (mysql_session_track_get_first(c->my, SESSION_TRACK_GTIDS, &d, &n) == 0 && d &&
            n < buflen) {
            memcpy(buf, d, n);
            buf[n] = '\0';
        }
        return;
    }
    int more = mysql_session_track_get_first(c->my, SESSION_TRACK_SYSTEM_VARIABLES, &d, &n) == 0;
    while (more) {
        int is_gtid = d && n == sizeof name - 1 && memcmp(d, name, n) == 0;
        if (mysql_session_track_get_next(c->my, SESSION_TRACK_SYSTEM_VARIABLES, &v, &vn) != 0)
            return;
        if (is_gtid) {
            buf[0] = '\0';
            if (v && vn < buflen) {
                memcpy(buf, v, vn);
                buf[vn] = '\0';
            }
        }
        more = mysql_session_track_get_next(c->my, SESSION_TRACK_SYSTEM_VARIABLES, &d, &n) == 0;
    }
}

/* A write: the statement, then the GTID its OK packet tracked, if new. */
static int exec_write(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                      int64_t deadline_ns, sr_result_builder *rb, char *pos, size_t poslen,
                      sr_driver_error *err)
{
    char before[SR_POSITION_MAX], after[SR_POSITION_MAX];
    tracked_gtid(c, before, sizeof before);
    int rc = sr__my_exec(c, sql, nparams, params, deadline_ns, rb, err);
    if (rc != SR_OK)
        return rc;
    tracked_gtid(c, after, sizeof after);
    /* A malformed value (a server sending something else under the name)
     * is not a position: the core asks write_position() instead. */
    size_t n = strlen(after);
    if (n > 0 && n < poslen && strcmp(after, before) != 0 &&
        sr__my_position_covers(after, after) == 1)
        memcpy(pos, after, n + 1);
    return SR_OK;
}

/* A read: the replica's applied position, then the statement if it covers
 * `need`. */
static int exec_read(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                     const char *need, int64_t deadline_ns, sr_result_builder *rb, char *pos,
                     size_t poslen, int *stale, sr_driver_error *err)
{
    char *have = NULL;
    int rc = sr__my_applied_position(c, deadline_ns, &have, err);
    if (rc != SR_OK)
        return rc;
    int covers = sr__my_position_covers(have, need);
    size_t n = strlen(have);
    if (covers >= 0 && n < poslen)
        memcpy(pos, have, n + 1);
    free(have);
    if (covers < 0)
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0,
                                   "not a %s position: '%.200s'",
                                   c->flavour == SR_MY_MARIADB ? "MariaDB GTID" : "MySQL GTID set",
                                   need);
    if (!covers) {
        *stale = 1;
        return SR_OK;
    }
    return sr__my_exec(c, sql, nparams, params, deadline_ns, rb, err);
}

int sr__my_exec_at(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                   const char *need, int64_t deadline_ns, sr_result_builder *rb, char *pos,
                   size_t poslen, int *stale, sr_driver_error *err)
{
    if (stale)
        *stale = 0;
    if (pos && poslen > 0)
        pos[0] = '\0';
    if (!c || !sql || nparams < 0 || (nparams > 0 && !params) || !pos || poslen == 0 || !stale)
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "mysql exec_at: bad arguments");
    if (c->broken)
        return sr_driver_error_set(err, SR_ECONNECT, 1, "", 0,
                                   "mysql connection is no longer usable (an earlier error broke it)");
    if (need)
        return exec_read(c, sql, nparams, params, need, deadline_ns, rb, pos, poslen, stale, err);
    return exec_write(c, sql, nparams, params, deadline_ns, rb, pos, poslen, err);
}
