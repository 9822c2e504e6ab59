/*
 * Two-phase commit on PostgreSQL (driver ABI 7): PREPARE TRANSACTION,
 * COMMIT PREPARED, ROLLBACK PREPARED and pg_prepared_xacts. The server needs
 * max_prepared_transactions > 0 (0 by default: PREPARE TRANSACTION then
 * fails with SQLSTATE 55000, passed on as it is). Global ids are checked by
 * sr_gid_valid(), so they go into the SQL text quoted as they are (these
 * statements take no parameters).
 */
#include <stdio.h>
#include <string.h>

#include "pg_conn.h"

/* PostgreSQL's "undefined_object": COMMIT/ROLLBACK PREPARED of a gid the server does not hold. */
#define SQLSTATE_UNDEFINED_OBJECT "42704"

static int bad_gid(const char *gid, sr_driver_error *err)
{
    return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0,
                               "postgres: \"%.80s\" is not a global transaction id "
                               "(1 to %d bytes of A-Z a-z 0-9 _ . : -)",
                               gid ? gid : "(null)", SR_GID_MAX);
}

int sr__pg_begin_global(sr_driver_conn *c, const char *gid, int64_t deadline_ns,
                        sr_driver_error *err)
{
    if (!sr_gid_valid(gid, 0))
        return bad_gid(gid, err);
    /* PostgreSQL names the transaction only when it prepares it. */
    return sr__pg_simple(c, "BEGIN", sr__pg_deadline(c, deadline_ns), NULL, err);
}

int sr__pg_prepare(sr_driver_conn *c, const char *gid, int64_t deadline_ns, sr_driver_error *err)
{
    if (!sr_gid_valid(gid, 0))
        return bad_gid(gid, err);
    char sql[32 + SR_GID_MAX];
    snprintf(sql, sizeof sql, "PREPARE TRANSACTION '%s'", gid);
    return sr__pg_end_transaction(c, sql, "prepared", sr__pg_deadline(c, deadline_ns), err);
}

static int finish(sr_driver_conn *c, const char *verb, const char *gid, int64_t deadline_ns,
                  int *found, sr_driver_error *err)
{
    if (found)
        *found = 0;
    if (!sr_gid_valid(gid, 0))
        return bad_gid(gid, err);
    char sql[32 + SR_GID_MAX];
    snprintf(sql, sizeof sql, "%s PREPARED '%s'", verb, gid);
    int rc = sr__pg_simple(c, sql, sr__pg_deadline(c, deadline_ns), NULL, err);
    if (rc != SR_OK && !err->transient && strcmp(err->sqlstate, SQLSTATE_UNDEFINED_OBJECT) == 0) {
        /* Already resolved (by us before a lost answer, or by another process): done. */
        memset(err, 0, sizeof *err);
        return SR_OK;
    }
    if (rc == SR_OK && found)
        *found = 1;
    return rc;
}

int sr__pg_commit_prepared(sr_driver_conn *c, const char *gid, int64_t deadline_ns, int *found,
                           sr_driver_error *err)
{
    return finish(c, "COMMIT", gid, deadline_ns, found, err);
}

int sr__pg_rollback_prepared(sr_driver_conn *c, const char *gid, int64_t deadline_ns, int *found,
                             sr_driver_error *err)
{
    return finish(c, "ROLLBACK", gid, deadline_ns, found, err);
}

int sr__pg_list_prepared(sr_driver_conn *c, const char *prefix, int64_t deadline_ns,
                         sr_result_builder *rb, sr_driver_error *err)
{
    if (!sr_gid_valid(prefix, 1))
        return bad_gid(prefix, err);
    char sql[160 + SR_GID_MAX];
    snprintf(sql, sizeof sql,
             "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() "
             "AND left(gid, %zu) = '%s'",
             strlen(prefix), prefix);
    PGresult *res = NULL;
    int rc = sr__pg_simple(c, sql, sr__pg_deadline(c, deadline_ns), &res, err);
    if (rc != SR_OK)
        return rc;
    const char *names[] = {"gid"};
    rc = sr_result_builder_columns(rb, 1, names);
    for (int i = 0; rc == SR_OK && i < PQntuples(res); i++)
        rc = sr_result_builder_value(rb, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0));
    PQclear(res);
    if (rc != SR_OK)
        return sr_driver_error_set(err, rc, 0, NULL, 0, "postgres: out of memory listing "
                                                        "prepared transactions");
    return SR_OK;
}
