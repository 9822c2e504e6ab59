/*
 * Bad input to every public function: NULL handles, NULL or empty SQL, bad
 * shard indexes, unknown options, bad values, invalid URIs and keys, an
 * unreachable file. Each gives its documented status and a message, and the
 * router keeps serving the next valid call (checked after every case).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shardroute.h>
#include <shardroute/driver.h>

static char dir[256];
static sr_router *router;
static sr_session *session;

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/sr-test-badinput-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    sr_config *c = sr_config_new();
    char uri[512];
    for (int i = 0; i < 2; i++) {
        char name[8];
        snprintf(name, sizeof name, "s%d", i);
        snprintf(uri, sizeof uri, "sqlite:%s/%s.db", dir, name);
        ck_assert_int_eq(sr_config_add_shard(c, name), SR_OK);
        ck_assert_int_eq(sr_config_add_node(c, name, SR_PRIMARY, uri, 1), SR_OK);
        ck_assert_int_eq(sr_config_add_node(c, name, SR_REPLICA, uri, 1), SR_OK);
    }
    ck_assert_int_eq(sr_router_open(c, &router), SR_OK);
    sr_config_free(c);
    ck_assert_int_eq(sr_session_new(router, &session), SR_OK);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(sr_exec_shard(session, i, SR_WRITE, "CREATE TABLE t (k INTEGER, v TEXT)",
                                       0, NULL, NULL),
                         SR_OK);
}

static void teardown(void)
{
    sr_session_free(session);
    sr_router_close(router);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* The router still serves a valid write and read, and the session's error is cleared. */
static void still_usable(void)
{
    static int64_t next = 1;
    int64_t k = next++;
    char ks[24];
    snprintf(ks, sizeof ks, "%lld", (long long)k);
    const char *p[] = {ks, "ok"};
    ck_assert_msg(sr_exec(session, sr_key_int(k), SR_WRITE, "INSERT INTO t VALUES (?, ?)", 2, p,
                          NULL) == SR_OK,
                  "%s", sr_session_errmsg(session));
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(session, sr_key_int(k), SR_READ, "SELECT v FROM t WHERE k = ?", 1, p,
                             &res),
                     SR_OK);
    ck_assert_int_eq(sr_result_nrows(res), 1);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "ok");
    ck_assert_str_eq(sr_session_errmsg(session), "");
    sr_result_free(res);
}

/* An error left a non-empty message in the session. */
static void has_message(void) { ck_assert_int_gt((int)strlen(sr_session_errmsg(session)), 0); }

START_TEST(status_text)
{
    int codes[] = {SR_OK, SR_EINVAL, SR_ENOMEM, SR_ENOSHARD, SR_EUNAVAILABLE, SR_ETIMEOUT,
                   SR_ECONNECT, SR_EQUERY, SR_ESTALE, SR_EDRIVER, SR_ETXN, SR_EBUSY, SR_EPARTIAL};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        ck_assert_ptr_nonnull(sr_strerror(codes[i]));
        ck_assert_str_ne(sr_strerror(codes[i]), "unknown status");
    }
    ck_assert_str_eq(sr_strerror(12345), "unknown status");
    ck_assert_str_eq(sr_strerror(-999), "unknown status");
    ck_assert_str_eq(sr_version(), SR_VERSION_STRING);
}
END_TEST

START_TEST(null_handles)
{
    /* Config functions. */
    sr_config_free(NULL);
    ck_assert_int_eq(sr_config_set(NULL, "pool.max_size", "1"), SR_EINVAL);
    ck_assert_int_eq(sr_config_add_shard(NULL, "x"), SR_EINVAL);
    ck_assert_int_eq(sr_config_shard_set(NULL, "x", "range", "..1"), SR_EINVAL);
    ck_assert_int_eq(sr_config_add_node(NULL, "x", SR_PRIMARY, "sqlite:x", 1), SR_EINVAL);
    ck_assert_int_eq(sr_config_pin_key(NULL, sr_key_int(1), "x"), SR_EINVAL);
    ck_assert_int_eq(sr_config_set_keymap_fn(NULL, NULL, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_config_set_log_fn(NULL, NULL, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_config_parse(NULL, "a = b"), SR_EINVAL);
    ck_assert_int_eq(sr_config_load_file(NULL, "/dev/null"), SR_EINVAL);
    ck_assert_ptr_nonnull(sr_config_errmsg(NULL));
    /* Router functions. */
    sr_router *r = (sr_router *)1;
    ck_assert_int_eq(sr_router_open(NULL, &r), SR_EINVAL);
    ck_assert_ptr_eq(r, (sr_router *)1); /* untouched on error */
    sr_router_close(NULL);
    ck_assert_int_eq(sr_router_shard_for(NULL, sr_key_int(1)), SR_EINVAL);
    ck_assert_int_eq(sr_router_nshards(NULL), SR_EINVAL);
    ck_assert_ptr_null(sr_router_shard_name(NULL, 0));
    ck_assert_int_eq(sr_router_nnodes(NULL, 0), SR_EINVAL);
    sr_node_info info = SR_NODE_INFO_INIT;
    ck_assert_int_eq(sr_router_node_info(NULL, 0, 0, &info), SR_EINVAL);
    ck_assert_int_eq(sr_router_node_info(router, 0, 0, NULL), SR_EINVAL);
    /* Session functions. */
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(NULL, &s), SR_EINVAL);
    ck_assert_int_eq(sr_session_new(router, NULL), SR_EINVAL);
    sr_session_free(NULL);
    ck_assert_int_eq(sr_session_set_affinity(NULL, sr_key_int(1)), SR_EINVAL);
    ck_assert_int_eq(sr_session_set_trace(NULL, NULL, 0, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_exec(NULL, sr_key_int(1), SR_READ, "SELECT 1", 0, NULL, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_exec_shard(NULL, 0, SR_READ, "SELECT 1", 0, NULL, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_exec_all(NULL, SR_READ, "SELECT 1", 0, NULL, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_begin(NULL, sr_key_int(1)), SR_EINVAL);
    ck_assert_int_eq(sr_begin_shard(NULL, 0), SR_EINVAL);
    ck_assert_int_eq(sr_commit(NULL), SR_EINVAL);
    ck_assert_int_eq(sr_rollback(NULL), SR_EINVAL);
    ck_assert_int_eq(sr_in_transaction(NULL), 0);
    ck_assert_ptr_nonnull(sr_session_errmsg(NULL));
    ck_assert_str_eq(sr_session_sqlstate(NULL), "");
    ck_assert_int_eq(sr_session_error_location(NULL, NULL, NULL), SR_EINVAL);
    /* Result accessors. */
    ck_assert_int_eq(sr_result_nrows(NULL), 0);
    ck_assert_int_eq(sr_result_ncols(NULL), 0);
    ck_assert_ptr_null(sr_result_colname(NULL, 0));
    ck_assert_ptr_null(sr_result_value(NULL, 0, 0));
    ck_assert_uint_eq(sr_result_length(NULL, 0, 0), 0);
    ck_assert_int_eq(sr_result_is_null(NULL, 0, 0), 1);
    ck_assert_int_eq(sr_result_affected(NULL), -1);
    ck_assert_int_eq(sr_result_shard(NULL, 0), SR_EINVAL);
    sr_result_free(NULL);
    /* Driver API. */
    ck_assert_int_eq(sr_driver_register(NULL), SR_EINVAL);
    ck_assert_ptr_null(sr_driver_find(NULL));
    ck_assert_int_eq(sr_sql_rewrite_placeholders(NULL, SR_SQL_POSTGRES, NULL, NULL), SR_EINVAL);
    still_usable();
}
END_TEST

START_TEST(bad_sql_arguments)
{
    const char *p[] = {"1"};
    ck_assert_int_eq(sr_exec(session, sr_key_int(1), SR_READ, NULL, 0, NULL, NULL), SR_EINVAL);
    has_message();
    ck_assert_int_eq(sr_exec(session, sr_key_int(1), SR_READ, "", 0, NULL, NULL), SR_EINVAL);
    has_message();
    ck_assert_int_eq(sr_exec(session, sr_key_int(1), SR_READ, "  \n\t ", 0, NULL, NULL), SR_EINVAL);
    /* White space of any backend's class (\f and \v too) is empty SQL, not a statement. */
    ck_assert_int_eq(sr_exec(session, sr_key_int(1), SR_WRITE, "\f", 0, NULL, NULL), SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(session), "SQL is empty"));
    ck_assert_int_eq(sr_exec_shard(session, 0, SR_WRITE, " \v\r\f\n", 0, NULL, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_exec_all(session, SR_WRITE, "\v", 0, NULL, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_exec(session, sr_key_int(1), SR_READ, "SELECT ?", -1, p, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_exec(session, sr_key_int(1), SR_READ, "SELECT ?", 1, NULL, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_exec(session, sr_key_int(1), (sr_intent)42, "SELECT 1", 0, NULL, NULL),
                     SR_EINVAL);
    ck_assert_int_eq(sr_exec_all(session, SR_READ, NULL, 0, NULL, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_exec_all(session, SR_READ, "", 0, NULL, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_exec_shard(session, 0, SR_READ, NULL, 0, NULL, NULL), SR_EINVAL);
    /* SQL errors from the database itself. */
    ck_assert_int_eq(sr_exec(session, sr_key_int(1), SR_WRITE, "NOT SQL AT ALL", 0, NULL, NULL),
                     SR_EQUERY);
    has_message();
    still_usable();
}
END_TEST

START_TEST(bad_shard_indexes_and_keys)
{
    ck_assert_int_eq(sr_exec_shard(session, -1, SR_READ, "SELECT 1", 0, NULL, NULL), SR_ENOSHARD);
    has_message();
    ck_assert_int_eq(sr_exec_shard(session, 2, SR_READ, "SELECT 1", 0, NULL, NULL), SR_ENOSHARD);
    ck_assert_int_eq(sr_exec_shard(session, 1 << 30, SR_READ, "SELECT 1", 0, NULL, NULL),
                     SR_ENOSHARD);
    ck_assert_int_eq(sr_begin_shard(session, 99), SR_ENOSHARD);
    ck_assert_int_eq(sr_in_transaction(session), 0);
    ck_assert_ptr_null(sr_router_shard_name(router, -1));
    ck_assert_ptr_null(sr_router_shard_name(router, 2));
    ck_assert_int_eq(sr_router_nnodes(router, 5), SR_ENOSHARD);
    sr_node_info info = SR_NODE_INFO_INIT;
    ck_assert_int_eq(sr_router_node_info(router, 0, 9, &info), SR_ENOSHARD);
    ck_assert_int_eq(sr_router_node_info(router, 7, 0, &info), SR_ENOSHARD);

    sr_key bad = {0};
    ck_assert_int_eq(sr_router_shard_for(router, bad), SR_EINVAL);
    ck_assert_int_eq(sr_router_shard_for(router, sr_key_text(NULL)), SR_EINVAL);
    ck_assert_int_eq(sr_router_shard_for(router, sr_key_bytes(NULL, 5)), SR_EINVAL);
    ck_assert_int_eq(sr_exec(session, bad, SR_READ, "SELECT 1", 0, NULL, NULL), SR_EINVAL);
    has_message();
    ck_assert_int_eq(sr_begin(session, bad), SR_EINVAL);
    ck_assert_int_eq(sr_session_set_affinity(session, bad), SR_EINVAL);
    ck_assert_int_eq(sr_session_set_trace(session, "00-", 0, NULL), SR_EINVAL);
    has_message();
    /* An empty byte string is a valid key. */
    ck_assert_int_ge(sr_router_shard_for(router, sr_key_bytes(NULL, 0)), 0);
    ck_assert_int_ge(sr_router_shard_for(router, sr_key_text("")), 0);
    still_usable();
}
END_TEST

START_TEST(bad_results_access)
{
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(session, sr_key_int(1), SR_READ, "SELECT 1 AS one", 0, NULL, &res),
                     SR_OK);
    ck_assert_ptr_null(sr_result_value(res, 1, 0));
    ck_assert_ptr_null(sr_result_value(res, 0, 1));
    ck_assert_ptr_null(sr_result_value(res, -1, 0));
    ck_assert_ptr_null(sr_result_colname(res, 1));
    ck_assert_ptr_null(sr_result_colname(res, -1));
    ck_assert_uint_eq(sr_result_length(res, 5, 5), 0);
    ck_assert_int_eq(sr_result_shard(res, 1), SR_EINVAL);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "1");
    sr_result_free(res);
    still_usable();
}
END_TEST

START_TEST(bad_config_calls)
{
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_set(c, "no.such.option", "1"), SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(sr_config_errmsg(c), "no.such.option"));
    ck_assert_int_eq(sr_config_set(c, "pool.max_size", "lots"), SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(sr_config_errmsg(c), "pool.max_size"));
    ck_assert_int_eq(sr_config_set(c, "pool.max_size", NULL), SR_EINVAL);
    ck_assert_int_eq(sr_config_set(c, NULL, "1"), SR_EINVAL);
    ck_assert_int_eq(sr_config_set(c, "balance.policy", "fastest"), SR_EINVAL);
    ck_assert_int_eq(sr_config_add_shard(c, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_config_add_shard(c, ""), SR_EINVAL);
    ck_assert_int_eq(sr_config_add_shard(c, "a"), SR_OK);
    ck_assert_int_eq(sr_config_add_shard(c, "a"), SR_EINVAL);
    ck_assert_int_eq(sr_config_add_node(c, "nope", SR_PRIMARY, "sqlite:x.db", 1), SR_EINVAL);
    ck_assert_int_eq(sr_config_add_node(c, "a", SR_PRIMARY, NULL, 1), SR_EINVAL);
    ck_assert_int_eq(sr_config_add_node(c, "a", SR_PRIMARY, "not a uri", 1), SR_EINVAL);
    ck_assert_int_eq(sr_config_add_node(c, "a", (sr_role)7, "sqlite:x.db", 1), SR_EINVAL);
    ck_assert_int_eq(sr_config_add_node(c, "a", SR_PRIMARY, "sqlite:x.db", -3), SR_EINVAL);
    ck_assert_int_eq(
        sr_config_add_node(c, "a", SR_PRIMARY, "postgresql://bob:hunter2@127.0.0.1:99999/db", 1),
        SR_EINVAL);
    ck_assert_ptr_null(strstr(sr_config_errmsg(c), "hunter2"));
    ck_assert_int_eq(sr_config_shard_set(c, "a", "keyrange", "zz-yy"), SR_EINVAL);
    ck_assert_int_eq(sr_config_shard_set(c, "a", "colour", "red"), SR_EINVAL);
    ck_assert_int_eq(sr_config_pin_key(c, sr_key_int(1), "nope"), SR_EINVAL);
    ck_assert_int_eq(sr_config_parse(c, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_config_parse(c, "this is not a setting\n"), SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(sr_config_errmsg(c), "line 1"));
    ck_assert_int_eq(sr_config_load_file(c, "/nonexistent/shardroute.conf"), SR_EINVAL);
    ck_assert_int_eq(sr_config_load_file(c, NULL), SR_EINVAL);
    /* A shard without primary cannot open; a router is not created. */
    sr_router *r = NULL;
    ck_assert_int_eq(sr_router_open(c, &r), SR_EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(sr_config_errmsg(c), "primary"));
    ck_assert_int_eq(sr_router_open(c, NULL), SR_EINVAL);
    sr_config_free(c);
    /* No shards at all. */
    c = sr_config_new();
    ck_assert_int_eq(sr_router_open(c, &r), SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(sr_config_errmsg(c), "no shards"));
    sr_config_free(c);
    still_usable();
}
END_TEST

START_TEST(unreachable_file_leaves_router_usable)
{
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_add_shard(c, "x"), SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "x", SR_PRIMARY, "sqlite:/proc/no/such/file.db", 1),
                     SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "x", SR_REPLICA, "sqlite:/proc/no/such/file.db", 1),
                     SR_OK);
    sr_router *r = NULL;
    ck_assert_int_eq(sr_router_open(c, &r), SR_OK);
    sr_config_free(c);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE, "CREATE TABLE t (x)", 0, NULL, NULL),
                     SR_ECONNECT);
    ck_assert_int_eq(sr_begin(s, sr_key_int(1)), SR_ECONNECT);
    ck_assert_int_eq(sr_in_transaction(s), 0);
    /* The replica read fails, is retried on the primary, which fails too. */
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_READ, "SELECT 1", 0, NULL, NULL), SR_ECONNECT);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(s), "/proc/no/such/file.db"));
    sr_session_free(s);
    sr_router_close(r);
    still_usable();
}
END_TEST

START_TEST(bad_driver_registration)
{
    static const char *const schemes[] = {"sqlite", NULL};
    sr_driver incomplete = {0};
    incomplete.abi_version = SR_DRIVER_ABI_VERSION;
    incomplete.name = "broken";
    incomplete.schemes = schemes;
    ck_assert_int_eq(sr_driver_register(&incomplete), SR_EINVAL); /* no methods */
    ck_assert_ptr_nonnull(sr_driver_find("sqlite"));
    ck_assert_ptr_null(sr_driver_find("nosuchscheme"));
    still_usable();
}
END_TEST

START_TEST(drivers_left_out_of_the_build_are_named)
{
    /* CI also builds with -Dpostgres=disabled -Dmysql=disabled, so both branches run. */
    static const struct {
        const char *uri, *driver;
    } cases[] = {
        {"postgresql://u:pw-never-shown@127.0.0.1:1/db", "postgres"},
        {"mysql://u:pw-never-shown@127.0.0.1:1/db", "mysql"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sr_config *c = sr_config_new();
        ck_assert_int_eq(sr_config_add_shard(c, "x"), SR_OK);
        ck_assert_int_eq(sr_config_add_node(c, "x", SR_PRIMARY, cases[i].uri, 1), SR_OK);
        sr_router *r = NULL;
        int rc = sr_router_open(c, &r);
        const char *scheme = i == 0 ? "postgresql" : "mysql";
        if (sr_driver_find(scheme)) {
            ck_assert_int_eq(rc, SR_OK); /* built in: opens (and connects lazily) */
            sr_router_close(r);
        } else {
            ck_assert_int_eq(rc, SR_EDRIVER);
            ck_assert_ptr_nonnull(strstr(sr_config_errmsg(c), cases[i].driver));
            ck_assert_ptr_nonnull(strstr(sr_config_errmsg(c), "not part of this build"));
            ck_assert_ptr_null(strstr(sr_config_errmsg(c), "pw-never-shown"));
        }
        sr_config_free(c);
    }
    still_usable();
}
END_TEST

START_TEST(bad_consistency_calls)
{
    ck_assert_int_eq(sr_session_set(NULL, "consistency", "any"), SR_EINVAL);
    ck_assert_ptr_null(sr_session_token(NULL));
    ck_assert_int_eq(sr_session_set_token(NULL, ""), SR_EINVAL);
    ck_assert_int_eq(sr_begin_read_only(NULL, sr_key_int(1)), SR_EINVAL);
    ck_assert_int_eq(sr_exec_opts(NULL, sr_key_int(1), SR_READ, NULL, "SELECT 1", 0, NULL, NULL),
                     SR_EINVAL);

    ck_assert_int_eq(sr_session_set(session, NULL, "any"), SR_EINVAL);
    ck_assert_int_eq(sr_session_set(session, "consistency", NULL), SR_EINVAL);
    ck_assert_int_eq(sr_session_set(session, "consistency", "strong"), SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(session), "strong"));
    ck_assert_int_eq(sr_session_set(session, "max_lag_ms", "-5"), SR_EINVAL);
    ck_assert_int_eq(sr_session_set(session, "max_lag_ms", "soon"), SR_EINVAL);
    ck_assert_int_eq(sr_session_set(session, "colour", "red"), SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(session), "colour"));
    ck_assert_int_eq(sr_session_set(session, "max_lag_ms", "250"), SR_OK);
    ck_assert_int_eq(sr_session_set(session, "max_lag_ms", "default"), SR_OK);

    ck_assert_int_eq(sr_session_set_token(session, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_session_set_token(session, "not a token"), SR_EINVAL);
    ck_assert_int_eq(sr_session_set_token(session, "sr1;c=zz"), SR_EINVAL);
    ck_assert_int_eq(sr_session_set_token(session, "sr9;c=0000000000000000;s0=1"), SR_EINVAL);
    ck_assert_int_eq(sr_session_set_token(session, "sr1;c=0000000000000000;s0=0/1"), SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(session), "topology"));
    ck_assert_int_eq(sr_session_set_token(session, ""), SR_OK); /* a session that wrote nothing */
    /* Untrusted bytes never reach the message raw. */
    ck_assert_int_eq(sr_session_set_token(session, "sr1;c=\n\x1b[2J"), SR_EINVAL);
    ck_assert_ptr_null(strchr(sr_session_errmsg(session), '\n'));
    ck_assert_ptr_null(strchr(sr_session_errmsg(session), 0x1b));
    /* A token far beyond any router's size is refused on its length. */
    size_t big = 20u * 1024 * 1024;
    char *huge = malloc(big + 1);
    ck_assert_ptr_nonnull(huge);
    memset(huge, 'x', big);
    memcpy(huge, "sr1;c=0000000000000000;", 23);
    huge[big] = '\0';
    ck_assert_int_eq(sr_session_set_token(session, huge), SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(session), "longer than"));
    free(huge);
    ck_assert_str_eq(sr_strerror(SR_EMISUSE), "session used by two threads at once");

    sr_read_opts bad = {SR_READ_OPTS_VERSION, -7, -1};
    ck_assert_int_eq(
        sr_exec_opts(session, sr_key_int(1), SR_READ, &bad, "SELECT 1", 0, NULL, NULL), SR_EINVAL);
    sr_read_opts bad2 = {SR_READ_OPTS_VERSION, -1, 42};
    ck_assert_int_eq(
        sr_exec_opts(session, sr_key_int(1), SR_READ, &bad2, "SELECT 1", 0, NULL, NULL), SR_EINVAL);
    /* A caller-allocated struct without its version (not from SR_READ_OPTS_INIT), or from
     * a newer header than this library, is refused and said so. */
    sr_read_opts unversioned = {0, -1, -1};
    ck_assert_int_eq(sr_exec_opts(session, sr_key_int(1), SR_READ, &unversioned, "SELECT 1", 0,
                                  NULL, NULL), SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(sr_session_errmsg(session), "SR_READ_OPTS_INIT"));
    sr_read_opts newer = SR_READ_OPTS_INIT;
    newer.version = SR_READ_OPTS_VERSION + 1;
    ck_assert_int_eq(sr_exec_opts(session, sr_key_int(1), SR_READ, &newer, "SELECT 1", 0, NULL,
                                  NULL), SR_EINVAL);
    sr_node_info old_info = SR_NODE_INFO_INIT;
    old_info.version = 0;
    ck_assert_int_eq(sr_router_node_info(router, 0, 0, &old_info), SR_EINVAL);
    old_info.version = SR_NODE_INFO_VERSION + 1;
    ck_assert_int_eq(sr_router_node_info(router, 0, 0, &old_info), SR_EINVAL);
    ck_assert_int_eq(sr_begin_read_only(session, (sr_key){0}), SR_EINVAL);
    still_usable();
}
END_TEST

int main(void)
{
    Suite *su = suite_create("badinput");
    TCase *tc = tcase_create("badinput");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, status_text);
    tcase_add_test(tc, null_handles);
    tcase_add_test(tc, bad_sql_arguments);
    tcase_add_test(tc, bad_shard_indexes_and_keys);
    tcase_add_test(tc, bad_results_access);
    tcase_add_test(tc, bad_config_calls);
    tcase_add_test(tc, unreachable_file_leaves_router_usable);
    tcase_add_test(tc, bad_driver_registration);
    tcase_add_test(tc, drivers_left_out_of_the_build_are_named);
    tcase_add_test(tc, bad_consistency_calls);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
