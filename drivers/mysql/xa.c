/*
 * Two-phase commit on MariaDB/MySQL (driver ABI 7): XA START, XA END, XA
 * PREPARE, XA COMMIT, XA ROLLBACK and XA RECOVER, with the global id as the
 * gtrid (no bqual, format id 1: what XA START 'gid' makes). Ids are checked
 * by sr_gid_valid(), so they go into the SQL text quoted as they are.
 *
 * MariaDB keeps a prepared XA transaction attached to the session that
 * prepared it until that session commits or rolls it back, or disconnects
 * (since 10.5 it then survives, detached, as it survives a restart): phase
 * two runs on the same connection when the core still has it; recovery
 * finds the detached ones with XA RECOVER from any connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "my_internal.h"

#define ER_XAER_NOTA 1397     /* "Unknown XID": already resolved, or never prepared */
#define ER_XA_RBROLLBACK 1614 /* the branch was rolled back (deadlock, lock wait timeout) */
#define XA_FORMAT_ID 1        /* the format id of XA START 'gtrid' */

static int bad_gid(const char *gid, sr_driver_error *err)
{
    return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                               "mysql: \"%.80s\" is not a global transaction id "
                               "(1 to %d bytes of A-Z a-z 0-9 _ . : -)",
                               gid ? gid : "(null)", SR_GID_MAX);
}

/* Runs "VERB 'gid'[ SUFFIX]". */
static int xa_stmt(sr_driver_conn *c, const char *verb, const char *gid, const char *suffix,
                   int64_t deadline_ns, sr_driver_error *err)
{
    char sql[48 + SR_GID_MAX];
    snprintf(sql, sizeof sql, "%s '%s'%s", verb, gid, suffix);
    return sr__my_txn_stmt(c, sql, deadline_ns, err);
}

int sr__my_begin_global(sr_driver_conn *c, const char *gid, int64_t deadline_ns,
                        sr_driver_error *err)
{
    if (!sr_gid_valid(gid, 0))
        return bad_gid(gid, err);
    int rc = xa_stmt(c, "XA START", gid, "", deadline_ns, err);
    if (rc == SR_OK)
        snprintf(c->xa_active, sizeof c->xa_active, "%s", gid);
    return rc;
}

int sr__my_prepare(sr_driver_conn *c, const char *gid, int64_t deadline_ns, sr_driver_error *err)
{
    if (!sr_gid_valid(gid, 0))
        return bad_gid(gid, err);
    if (strcmp(c->xa_active, gid) != 0)
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                                   "mysql: no global transaction '%s' is open on this connection",
                                   gid);
    c->xa_active[0] = '\0'; /* whatever happens next, the connection is out of ACTIVE */
    int rc = xa_stmt(c, "XA END", gid, "", deadline_ns, err);
    if (rc == SR_OK)
        rc = xa_stmt(c, "XA PREPARE", gid, "", deadline_ns, err);
    if (rc != SR_OK && !err->transient) {
        /* Not prepared: end the branch so that the connection is usable again. */
        int rolled_back = err->native_code == ER_XA_RBROLLBACK;
        sr_driver_error e2;
        memset(&e2, 0, sizeof e2);
        xa_stmt(c, "XA ROLLBACK", gid, "", deadline_ns, &e2);
        if (rolled_back)
            return sr_driver_error_set(err, SR_EQUERY, 0, "XA102", ER_XA_RBROLLBACK,
                                       "the transaction had failed and was rolled back, not "
                                       "prepared");
    }
    return rc;
}

int sr__my_xa_end_one_phase(sr_driver_conn *c, int commit, int64_t deadline_ns,
                            sr_driver_error *err)
{
    char gid[SR_GID_MAX + 1];
    memcpy(gid, c->xa_active, sizeof gid);
    c->xa_active[0] = '\0';
    /* A branch that could not end (already ended, or rolled back by a deadlock) is left to
     * XA ROLLBACK; a commit then fails with the first error. */
    int rc = xa_stmt(c, "XA END", gid, "", deadline_ns, err);
    if (rc == SR_OK && commit)
        rc = xa_stmt(c, "XA COMMIT", gid, " ONE PHASE", deadline_ns, err);
    if (rc == SR_OK && commit)
        return SR_OK;
    if (rc != SR_OK && err->transient)
        return rc; /* the connection is gone, and the server rolls the branch back */
    /* Rolling back, or a commit that failed: the connection must leave the XA transaction
     * to be usable again. */
    sr_driver_error rb;
    memset(&rb, 0, sizeof rb);
    int rrc = xa_stmt(c, "XA ROLLBACK", gid, "", deadline_ns, &rb);
    if (rc != SR_OK && commit)
        return rc;
    if (rrc != SR_OK)
        *err = rb;
    return rrc;
}

static int finish(sr_driver_conn *c, const char *verb, const char *gid, int64_t deadline_ns,
                  int *found, sr_driver_error *err)
{
    if (found)
        *found = 0;
    if (!sr_gid_valid(gid, 0))
        return bad_gid(gid, err);
    int rc = xa_stmt(c, verb, gid, "", deadline_ns, err);
    if (rc != SR_OK && !err->transient && err->native_code == ER_XAER_NOTA) {
        memset(err, 0, sizeof *err); /* resolved already (here, or by another process) */
        return SR_OK;
    }
    if (rc == SR_OK && found)
        *found = 1;
    return rc;
}

int sr__my_commit_prepared(sr_driver_conn *c, const char *gid, int64_t deadline_ns, int *found,
                           sr_driver_error *err)
{
    return finish(c, "XA COMMIT", gid, deadline_ns, found, err);
}

int sr__my_rollback_prepared(sr_driver_conn *c, const char *gid, int64_t deadline_ns, int *found,
                             sr_driver_error *err)
{
    return finish(c, "XA ROLLBACK", gid, deadline_ns, found, err);
}

int sr__my_list_prepared(sr_driver_conn *c, const char *prefix, int64_t deadline_ns,
                         sr_result_builder *rb, sr_driver_error *err)
{
    if (!sr_gid_valid(prefix, 1))
        return bad_gid(prefix, err);
    if (!c)
        return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "mysql: NULL connection");
    MYSQL_RES *res = NULL;
    int rc = sr__my_text_query(c, "XA RECOVER", deadline_ns, &res, err);
    if (rc != SR_OK)
        return rc;
    const char *names[] = {"gid"};
    rc = sr_result_builder_columns(rb, 1, names);
    size_t plen = strlen(prefix);
    MYSQL_ROW row;
    /* formatID, gtrid_length, bqual_length, data (gtrid then bqual). */
    while (rc == SR_OK && res && mysql_num_fields(res) >= 4 && (row = mysql_fetch_row(res))) {
        unsigned long *len = mysql_fetch_lengths(res);
        if (!row[0] || !row[1] || !row[2] || !row[3] || atol(row[0]) != XA_FORMAT_ID ||
            atol(row[2]) != 0)
            continue; /* not one of ours */
        size_t glen = (size_t)atol(row[1]);
        if (glen > len[3] || glen < plen || memcmp(row[3], prefix, plen) != 0)
            continue;
        rc = sr_result_builder_value(rb, row[3], glen);
    }
    mysql_free_result(res);
    if (rc != SR_OK)
        return sr_driver_error_set(err, rc, 0, "", 0,
                                   "mysql: out of memory listing prepared transactions");
    return SR_OK;
}
