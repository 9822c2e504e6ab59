/*
 * Helpers shared by the PostgreSQL integration suites: direct libpq
 * connections (not through shardroute) to check what the router did; the
 * backend-neutral utilities are in tests/support/testutil.h. Header-only;
 * static inline so a suite may use any subset.
 */
#ifndef SR_TEST_PG_DIRECT_H
#define SR_TEST_PG_DIRECT_H

#include <check.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

static inline void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* A direct libpq connection (not through shardroute) to `base`/`db`. */
static inline PGconn *direct(const char *base, const char *db)
{
    char *uri = xfmt("%s/%s", base, db);
    PGconn *c = PQconnectdb(uri);
    free(uri);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "direct connect: %s", PQerrorMessage(c));
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

static inline void direct_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    ck_assert_msg(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql,
                  PQresultErrorMessage(r));
    PQclear(r);
}

/* The single value of a one-row query, as a new string (NULL for SQL NULL). */
static inline char *direct_value(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", sql,
                  PQresultErrorMessage(r));
    char *v = PQgetisnull(r, 0, 0) ? NULL : strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

#endif
