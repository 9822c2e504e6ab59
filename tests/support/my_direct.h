/*
 * Helpers shared by the MariaDB integration suites: direct libmariadb
 * connections (not through shardroute) to check what the router did, from
 * the cluster script's URIs (tests/env/mariadb_cluster.sh). Header-only;
 * static inline so a suite may use any subset. They fail the calling test
 * through Check, except my_replication_running, which returns a status.
 */
#ifndef SR_TEST_SUPPORT_MY_DIRECT_H
#define SR_TEST_SUPPORT_MY_DIRECT_H

#include <check.h>
#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct my_addr {
    char user[64];
    char password[64];
    char host[64];
    int port;
} my_addr;

static inline const char *my_env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v && *v, "%s is not set (run under tests/env/mariadb_cluster.sh run)", name);
    return v;
}

/* Splits "mysql://user:password@host:port" (the script's form). */
static inline void my_parse_addr(const char *uri, my_addr *a)
{
    memset(a, 0, sizeof *a);
    const char *p = strstr(uri, "://");
    ck_assert_ptr_nonnull(p);
    p += 3;
    const char *colon = strchr(p, ':');
    const char *at = strrchr(p, '@');
    ck_assert(colon && at && colon < at);
    snprintf(a->user, sizeof a->user, "%.*s", (int)(colon - p), p);
    snprintf(a->password, sizeof a->password, "%.*s", (int)(at - colon - 1), colon + 1);
    const char *hp = at + 1;
    const char *pc = strchr(hp, ':');
    ck_assert_ptr_nonnull(pc);
    snprintf(a->host, sizeof a->host, "%.*s", (int)(pc - hp), hp);
    a->port = atoi(pc + 1);
}

/* A blocking libmariadb connection, independent of the library under test. */
static inline MYSQL *my_direct(const char *env_name, const char *db)
{
    my_addr a;
    my_parse_addr(my_env(env_name), &a);
    MYSQL *m = mysql_init(NULL);
    ck_assert_ptr_nonnull(m);
    ck_assert_msg(mysql_real_connect(m, a.host, a.user, a.password, db, (unsigned)a.port, NULL, 0),
                  "direct connect to %s: %s", env_name, mysql_error(m));
    return m;
}

static inline void my_direct_exec(MYSQL *m, const char *sql)
{
    ck_assert_msg(mysql_query(m, sql) == 0, "%s: %s", sql, mysql_error(m));
    MYSQL_RES *r = mysql_store_result(m);
    mysql_free_result(r);
}

/* The first value of the first row (a new string; NULL for SQL NULL or no row). */
static inline char *my_direct_value(MYSQL *m, const char *sql)
{
    ck_assert_msg(mysql_query(m, sql) == 0, "%s: %s", sql, mysql_error(m));
    MYSQL_RES *r = mysql_store_result(m);
    ck_assert_ptr_nonnull(r);
    MYSQL_ROW row = mysql_fetch_row(r);
    char *v = row && row[0] ? strdup(row[0]) : NULL;
    mysql_free_result(r);
    return v;
}

static inline long my_direct_long(MYSQL *m, const char *sql)
{
    char *v = my_direct_value(m, sql);
    ck_assert_msg(v != NULL, "%s returned no value", sql);
    long n = atol(v);
    free(v);
    return n;
}

/* 1 once both replication threads of the replica run (bounded wait): a
 * replica whose IO thread is still connecting reports no lag and is rightly
 * not eligible for reads, which would send the next test's reads elsewhere. */
static inline int my_replication_running(MYSQL *m)
{
    for (int i = 0; i < 500; i++) {
        if (mysql_query(m, "SHOW SLAVE STATUS") == 0) {
            MYSQL_RES *r = mysql_store_result(m);
            MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
            int io = -1, sqlt = -1, sbm = -1;
            MYSQL_FIELD *f = r ? mysql_fetch_fields(r) : NULL;
            for (unsigned j = 0; row && j < mysql_num_fields(r); j++) {
                if (strcmp(f[j].name, "Slave_IO_Running") == 0)
                    io = row[j] && strcmp(row[j], "Yes") == 0;
                else if (strcmp(f[j].name, "Slave_SQL_Running") == 0)
                    sqlt = row[j] && strcmp(row[j], "Yes") == 0;
                else if (strcmp(f[j].name, "Seconds_Behind_Master") == 0)
                    sbm = row[j] != NULL;
            }
            mysql_free_result(r);
            if (io == 1 && sqlt == 1 && sbm == 1)
                return 1;
        }
        usleep(20000);
    }
    return 0;
}

#endif
