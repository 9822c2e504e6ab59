/*
 * Turning Connector/C errors into driver errors: which ones cost the
 * connection (transient, SR_ECONNECT) and which are the statement's fault
 * (SR_EQUERY, the connection stays usable). The server's number, SQLSTATE and
 * message are kept; a URI appears only in its redacted form.
 */
#include "my_internal.h"

#include <errmsg.h>
#include <mysqld_error.h>
#include <string.h>

int sr__my_is_conn_error(unsigned code)
{
    switch (code) {
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_UNKNOWN_HOST:
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_SERVER_LOST_EXTENDED:
    case CR_SERVER_HANDSHAKE_ERR:
    case CR_COMMANDS_OUT_OF_SYNC: /* the protocol state is lost: only a new connection helps */
    case CR_MALFORMED_PACKET:
    case CR_SSL_CONNECTION_ERROR:
    case CR_ERR_NET_READ:
    case CR_ERR_NET_WRITE:
    case ER_SERVER_SHUTDOWN:
    case ER_CONNECTION_KILLED:
    case 4031: /* MySQL 8: ER_CLIENT_INTERACTION_TIMEOUT, the server closed an idle session */
        return 1;
    default:
        return 0;
    }
}

int sr__my_fail(sr_driver_conn *c, unsigned code, const char *sqlstate, const char *msg,
                const char *what, sr_driver_error *err)
{
    if (!msg || !*msg)
        msg = "unknown error";
    const char *state = sqlstate && strlen(sqlstate) == 5 ? sqlstate : "";
    if (sr__my_is_conn_error(code)) {
        if (c)
            c->broken = 1;
        return sr_driver_error_set(err, SR_ECONNECT, 1, state, (int)code,
                                   "%s: lost connection: ERROR %u (%s): %s", what, code,
                                   *state ? state : "HY000", msg);
    }
    /* The server's own statement limit (MariaDB max_statement_time, MySQL
     * max_execution_time) stopped it: a timeout, and the connection is fine. */
    int status = code == ER_STATEMENT_TIMEOUT || code == 3024 ? SR_ETIMEOUT : SR_EQUERY;
    return sr_driver_error_set(err, status, 0, state, (int)code, "%s: ERROR %u (%s): %s", what,
                               code, *state ? state : "HY000", msg);
}

int sr__my_fail_conn(sr_driver_conn *c, const char *what, sr_driver_error *err)
{
    return sr__my_fail(c, mysql_errno(c->my), mysql_sqlstate(c->my), mysql_error(c->my), what, err);
}

int sr__my_fail_stmt(sr_driver_conn *c, MYSQL_STMT *stmt, const char *what, sr_driver_error *err)
{
    return sr__my_fail(c, mysql_stmt_errno(stmt), mysql_stmt_sqlstate(stmt), mysql_stmt_error(stmt),
                       what, err);
}

int sr__my_timed_out(sr_driver_conn *c, const char *what, int killq, sr_driver_error *err)
{
    c->broken = 1;
    int killed = 0;
    if (killq && c->thread_id)
        killed = sr__my_kill_query(&c->params, c->thread_id,
                                   sr_deadline_after_ms(SR_MY_KILL_BUDGET_MS));
    return sr_driver_error_set(err, SR_ETIMEOUT, 1, "", 0,
                               "%s: timed out (connection discarded%s)", what,
                               !killq ? "" : killed ? ", statement killed on the server"
                                                    : ", KILL QUERY could not be sent");
}
