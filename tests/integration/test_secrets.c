/*
 * Passwords from outside the URI (password_file=, password_env=) against the
 * real servers of tests/env/: the password user of the PostgreSQL cluster
 * (SR_PG_PW_USER, scram-sha-256 on 127.0.0.1 while every other user is
 * trusted, so a connection only succeeds with the right password) and the
 * MariaDB application user (SR_MY_PRIMARY's user, mysql_native_password).
 *
 * Each backend: the password from a file and from a variable authenticates
 * (the session's user is the password user); a wrong one fails on connect
 * with the backend's "access denied" and no password (right or wrong) in the
 * message; an unsafe file fails sr_router_open before any connection.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shardroute.h"
#include "uri.h"

static const char *pg_port, *pg_user, *pg_password;
static const char *my_uri; /* mysql://USER:PASSWORD@127.0.0.1:PORT */
static char tmpdir[64];

static void write_file(const char *path, const char *content, mode_t mode)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(content, f);
    fclose(f);
    ck_assert_int_eq(chmod(path, mode), 0);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sr_secrets_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/pw", tmpdir);
    unlink(path);
    rmdir(tmpdir);
}

/* Opens a one-shard router on `uri`; SR_OK or the open status with its message in msg. */
static int open_one(const char *uri, sr_router **r, char *msg, size_t len)
{
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_add_shard(c, "s0"), SR_OK);
    ck_assert_msg(sr_config_add_node(c, "s0", SR_PRIMARY, uri, 0) == SR_OK, "%s", sr_config_errmsg(c));
    ck_assert_int_eq(sr_config_set(c, "connect_timeout_ms", "10000"), SR_OK);
    int rc = sr_router_open(c, r);
    snprintf(msg, len, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    return rc;
}

/* Runs `sql` on shard 0's primary; returns the status, the first value or the message in out. */
static int run(sr_router *r, const char *sql, char *out, size_t len)
{
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    sr_result *res = NULL;
    int rc = sr_exec_shard(s, 0, SR_WRITE, sql, 0, NULL, &res);
    if (rc == SR_OK) {
        snprintf(out, len, "%s", sr_result_value(res, 0, 0) ? sr_result_value(res, 0, 0) : "(null)");
        sr_result_free(res);
    } else {
        snprintf(out, len, "%s", sr_session_errmsg(s));
    }
    sr_session_free(s);
    return rc;
}

static void assert_no_password(const char *msg, const char *right, const char *wrong)
{
    ck_assert_msg(!strstr(msg, right), "the password shows: %s", msg);
    if (wrong)
        ck_assert_msg(!strstr(msg, wrong), "the wrong password shows: %s", msg);
}

/*
 * The three cases for one backend: `base` is the URI without a password and
 * without a query, `user` and `password` the account, `user_sql` a query
 * whose first value starts with the user name, `denied` a fragment of the
 * backend's authentication error.
 */
static void check_backend(const char *base, const char *user, const char *password, const char *user_sql,
                          const char *denied)
{
    char path[128], uri[512], msg[1200], out[1200];
    sr_router *r;
    snprintf(path, sizeof path, "%s/pw", tmpdir);

    /* From a file (with the newline an editor leaves). */
    char content[256];
    snprintf(content, sizeof content, "%s\n", password);
    write_file(path, content, 0600);
    snprintf(uri, sizeof uri, "%s?password_file=%s", base, path);
    ck_assert_msg(open_one(uri, &r, msg, sizeof msg) == SR_OK, "%s", msg);
    ck_assert_msg(run(r, user_sql, out, sizeof out) == SR_OK, "%s", out);
    ck_assert_msg(strncmp(out, user, strlen(user)) == 0, "connected as '%s', not '%s'", out, user);
    sr_node_info info = SR_NODE_INFO_INIT;
    ck_assert_int_eq(sr_router_node_info(r, 0, 0, &info), SR_OK);
    ck_assert_msg(strstr(info.uri, path) && !strstr(info.uri, password), "%s", info.uri);
    sr_router_close(r);

    /* From the environment. */
    setenv("SR_TEST_DB_PASSWORD", password, 1);
    snprintf(uri, sizeof uri, "%s?password_env=SR_TEST_DB_PASSWORD", base);
    ck_assert_msg(open_one(uri, &r, msg, sizeof msg) == SR_OK, "%s", msg);
    ck_assert_msg(run(r, user_sql, out, sizeof out) == SR_OK, "%s", out);
    ck_assert_msg(strncmp(out, user, strlen(user)) == 0, "connected as '%s', not '%s'", out, user);
    sr_router_close(r);

    /* A wrong password: refused by the server, said clearly, shown nowhere. */
    static const char wrong[] = "wr0ng-Pw-8812";
    setenv("SR_TEST_DB_PASSWORD", wrong, 1);
    ck_assert_msg(open_one(uri, &r, msg, sizeof msg) == SR_OK, "%s", msg);
    int rc = run(r, user_sql, out, sizeof out);
    ck_assert_int_eq(rc, SR_ECONNECT);
    ck_assert_msg(strstr(out, denied), "expected '%s' in: %s", denied, out);
    ck_assert_msg(strstr(out, "password_env=SR_TEST_DB_PASSWORD"), "the node is not named: %s", out);
    assert_no_password(out, password, wrong);
    sr_router_close(r);
    unsetenv("SR_TEST_DB_PASSWORD");

    /* An unset variable and an unsafe file fail the open, before any connection. */
    rc = open_one(uri, &r, msg, sizeof msg);
    ck_assert_int_eq(rc, SR_EINVAL);
    ck_assert_msg(strstr(msg, "SR_TEST_DB_PASSWORD is not set"), "%s", msg);
    write_file(path, content, 0644);
    snprintf(uri, sizeof uri, "%s?password_file=%s", base, path);
    rc = open_one(uri, &r, msg, sizeof msg);
    ck_assert_int_eq(rc, SR_EINVAL);
    ck_assert_msg(strstr(msg, path) && strstr(msg, "group or others"), "%s", msg);
    assert_no_password(msg, password, NULL);
}

START_TEST(test_postgres_password_sources)
{
    char base[256];
    snprintf(base, sizeof base, "postgresql://%s@127.0.0.1:%s/shard0", pg_user, pg_port);
    check_backend(base, pg_user, pg_password, "SELECT current_user", "password authentication failed");
}
END_TEST

START_TEST(test_mysql_password_sources)
{
    /* SR_MY_PRIMARY carries the password: take it out, and feed it back through a source. */
    sr_uri *u = NULL;
    char err[512];
    ck_assert_msg(sr__uri_parse(my_uri, &u, err, sizeof err) == SR_OK, "%s", err);
    ck_assert_ptr_nonnull(u->user);
    ck_assert_ptr_nonnull(u->password);
    char base[256];
    snprintf(base, sizeof base, "mysql://%s@%s:%d", u->user, u->host, u->port);
    check_backend(base, u->user, u->password, "SELECT CURRENT_USER()", "Access denied");
    sr__uri_free(u);
}
END_TEST

int main(void)
{
    pg_port = getenv("SR_PG_PRIMARY_PORT");
    pg_user = getenv("SR_PG_PW_USER");
    pg_password = getenv("SR_PG_PW_PASSWORD");
    my_uri = getenv("SR_MY_PRIMARY");
    Suite *s = suite_create("secrets");
    TCase *tc = tcase_create("sources");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    int cases = 0;
#if SR_HAVE_POSTGRES
    if (pg_port && pg_user && pg_password) {
        tcase_add_test(tc, test_postgres_password_sources);
        cases++;
    }
#endif
#if SR_HAVE_MYSQL
    if (my_uri) {
        tcase_add_test(tc, test_mysql_password_sources);
        cases++;
    }
#endif
    suite_add_tcase(s, tc);
    if (cases == 0) {
        fprintf(stderr, "test_secrets: no cluster in the environment; run it through "
                        "tests/env/with_servers.sh\n");
        return getenv("CI") ? 1 : 77;
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
