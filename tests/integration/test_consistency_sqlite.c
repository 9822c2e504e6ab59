/*
 * Consistency on SQLite: no replication, so every mode (and every per-read
 * bound) is fully consistent, a token is empty, and a read-only transaction
 * reads what was committed. The replicated backends: test_consistency_pg.c,
 * test_consistency_mysql.c (meson suite "consistency" runs all three).
 * Needs only the sqlite driver and a temporary directory.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shardroute.h>

#include "consistency_common.h"

START_TEST(sqlite_accepts_every_mode_and_is_fully_consistent)
{
    char dir[] = "/tmp/sr_cons_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *uri = xfmt("sqlite:%s/only.db", dir);
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_set(c, "balance.policy", "round_robin"), SR_OK);
    ck_assert_int_eq(sr_config_set(c, "replica.max_lag_ms", "500"), SR_OK);
    ck_assert_int_eq(sr_config_add_shard(c, "only"), SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "only", SR_PRIMARY, uri, 1), SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "only", SR_REPLICA, uri, 1), SR_OK);
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    sr_session *s = session_in(r, NULL);
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE,
                             "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)", 0, NULL, NULL),
                     SR_OK);
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE, "INSERT INTO t VALUES (1, 'x')", 0, NULL,
                             NULL),
                     SR_OK);
    const char *modes[] = {"any", "monotonic", "read_your_writes", "primary"};
    for (int m = 0; m < 4; m++) {
        ck_assert_int_eq(sr_session_set(s, "consistency", modes[m]), SR_OK);
        for (int i = 0; i < 10; i++) {
            char v[32];
            snprintf(v, sizeof v, "%s-%d", modes[m], i);
            write_one(s, 1, "UPDATE t SET v = ? WHERE k = ?", v);
            sr_read_opts o = SR_READ_OPTS_INIT;
            o.max_lag_ms = i % 2 ? 1 : -1;
            sr_result *res = NULL;
            ck_assert_int_eq(sr_exec_opts(s, sr_key_int(1), SR_READ, &o,
                                          "SELECT v FROM t WHERE k = 1", 0, NULL, &res),
                             SR_OK);
            ck_assert_str_eq(sr_result_value(res, 0, 0), v);
            sr_result_free(res);
        }
    }
    ck_assert_int_eq(sr_session_set(s, "consistency", "sometimes"), SR_EINVAL);
    ck_assert_msg(strstr(sr_session_errmsg(s), "sometimes"), "%s", sr_session_errmsg(s));
    /* No positions: nothing to carry, and an empty token is accepted. */
    const char *tok = sr_session_token(s);
    ck_assert_ptr_nonnull(tok);
    ck_assert_str_eq(tok, "");
    ck_assert_int_eq(sr_session_set_token(s, ""), SR_OK);
    ck_assert_int_eq(sr_begin_read_only(s, sr_key_int(1)), SR_OK);
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_READ, "SELECT v FROM t", 0, NULL, &res), SR_OK);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "primary-9");
    sr_result_free(res);
    ck_assert_int_eq(sr_commit(s), SR_OK);
    sr_session_free(s);
    sr_router_close(r);
    char *rm = xfmt("rm -rf '%s'", dir);
    ck_assert_int_eq(system(rm), 0);
    free(rm);
    free(uri);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("consistency_sqlite");
    TCase *t = tcase_create("sqlite");
    tcase_add_test(t, sqlite_accepts_every_mode_and_is_fully_consistent);
    suite_add_tcase(s, t);
    int failed = run_suite(s);
    return failed ? 1 : 0;
}
