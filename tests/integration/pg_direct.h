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

/* The cluster of tests/env/pg_cluster.sh, as its env.sh exports it. */
typedef struct pg_cluster {
    const char *primary, *replica1, *replica2; /* base URIs, no database */
    int port_primary, port_replica1, port_replica2;
    const char *pw_user, *pw_password; /* a user with a password (scram-sha-256) */
} pg_cluster;

/*
 * Fills c from the environment; 1 when all of it is there. Asserts nothing
 * (main calls it, before any test runs).
 */
static inline int pg_cluster_from_env(pg_cluster *c)
{
    c->primary = getenv("SR_PG_PRIMARY");
    c->replica1 = getenv("SR_PG_REPLICA1");
    c->replica2 = getenv("SR_PG_REPLICA2");
    c->port_primary = env_port("SR_PG_PRIMARY_PORT");
    c->port_replica1 = env_port("SR_PG_REPLICA1_PORT");
    c->port_replica2 = env_port("SR_PG_REPLICA2_PORT");
    c->pw_user = getenv("SR_PG_PW_USER");
    c->pw_password = getenv("SR_PG_PW_PASSWORD");
    return c->primary && c->replica1 && c->replica2 && c->port_primary && c->port_replica1 &&
           c->port_replica2 && c->pw_user && c->pw_password;
}

#endif
