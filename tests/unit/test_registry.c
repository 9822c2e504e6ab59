/*
 * The driver registry and the driver-author helpers (shardroute/driver.h,
 * ABI 4) through the public API only: a tiny fake driver, registered with
 * sr_driver_register() like a third-party one, no server. Each test uses its
 * own schemes and unregisters what it registered, so the suite also passes
 * with CK_FORK=no (the valgrind setup), where tests share one registry.
 */
#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shardroute.h"
#include "shardroute/driver.h"

/* ---- a fake driver that remembers what connect() was given ---- */

struct sr_driver_conn {
    int unused;
};

typedef struct seen {
    int connects;
    int execs;
    const sr_driver *driver;
    void *app_data;
    int had_log_fn;
    char path[256];
    char host[64];
} seen;

static seen last;

static int fk_connect(const sr_driver_connect_args *a, sr_driver_conn **out, sr_driver_error *err)
{
    (void)err;
    last.connects++;
    last.driver = a->driver;
    last.app_data = a->app_data;
    last.had_log_fn = a->log.fn != NULL;
    snprintf(last.path, sizeof last.path, "%s", a->uri->path ? a->uri->path : "");
    snprintf(last.host, sizeof last.host, "%s", a->uri->host ? a->uri->host : "");
    /* What a driver would do: a log line through the router's sink. */
    sr_driver_log(&a->log, SR_LOG_INFO, "fake connect to %s", a->uri->redacted);
    *out = calloc(1, sizeof **out);
    return *out ? SR_OK : SR_ENOMEM;
}

static void fk_close(sr_driver_conn *c) { free(c); }

static int fk_exec(sr_driver_conn *c, const char *sql, int n, const char *const *p, int64_t dl,
                   sr_result_builder *rb, sr_driver_error *err)
{
    (void)c, (void)sql, (void)n, (void)p, (void)dl, (void)rb, (void)err;
    last.execs++;
    return SR_OK;
}

static int fk_begin(sr_driver_conn *c, int ro, int64_t dl, sr_driver_error *err)
{
    (void)c, (void)ro, (void)dl, (void)err;
    return SR_OK;
}

static int fk_txn(sr_driver_conn *c, int64_t dl, sr_driver_error *err)
{
    (void)c, (void)dl, (void)err;
    return SR_OK;
}

/* A complete ABI-4 driver for `schemes`. */
static sr_driver make_driver(const char *name, const char *const *schemes)
{
    sr_driver d = {
        .abi_version = SR_DRIVER_ABI_VERSION,
        .name = name,
        .schemes = schemes,
        .dialect = SR_SQL_GENERIC,
        .connect = fk_connect,
        .close = fk_close,
        .exec = fk_exec,
        .begin = fk_begin,
        .commit = fk_txn,
        .rollback = fk_txn,
        .ping = fk_txn,
    };
    return d;
}

/* ---- register / find / unregister ---- */

START_TEST(test_register_find_unregister)
{
    static const char *const schemes[] = {"rega", "regb", NULL};
    sr_driver d = make_driver("rega", schemes);
    ck_assert_ptr_null(sr_driver_find("rega"));
    ck_assert_int_eq(sr_driver_register(&d), SR_OK);
    ck_assert_ptr_eq(sr_driver_find("rega"), &d);
    ck_assert_ptr_eq(sr_driver_find("regb"), &d);
    ck_assert_ptr_null(sr_driver_find("regc"));
    ck_assert_ptr_null(sr_driver_find(NULL));

    ck_assert_int_eq(sr_driver_unregister(&d), SR_OK);
    ck_assert_ptr_null(sr_driver_find("rega"));
    ck_assert_ptr_null(sr_driver_find("regb"));
    /* Twice, NULL, never registered: refused. */
    ck_assert_int_eq(sr_driver_unregister(&d), SR_EINVAL);
    ck_assert_int_eq(sr_driver_unregister(NULL), SR_EINVAL);
    sr_driver other = make_driver("other", schemes);
    ck_assert_int_eq(sr_driver_unregister(&other), SR_EINVAL);

    /* The schemes are free again. */
    ck_assert_int_eq(sr_driver_register(&other), SR_OK);
    ck_assert_ptr_eq(sr_driver_find("rega"), &other);
    ck_assert_int_eq(sr_driver_unregister(&other), SR_OK);
}
END_TEST

START_TEST(test_duplicate_scheme_refused)
{
    static const char *const s1[] = {"dupa", NULL};
    static const char *const s2[] = {"dupfree", "dupa", NULL};
    sr_driver d1 = make_driver("d1", s1);
    sr_driver d2 = make_driver("d2", s2);
    ck_assert_int_eq(sr_driver_register(&d1), SR_OK);
    ck_assert_int_eq(sr_driver_register(&d2), SR_EINVAL);
    /* All or nothing: the free scheme of the refused driver was not taken. */
    ck_assert_ptr_null(sr_driver_find("dupfree"));
    ck_assert_ptr_eq(sr_driver_find("dupa"), &d1);
    /* The same struct twice. */
    ck_assert_int_eq(sr_driver_register(&d1), SR_EINVAL);
    ck_assert_int_eq(sr_driver_unregister(&d1), SR_OK);
    ck_assert_int_eq(sr_driver_register(&d2), SR_OK);
    ck_assert_int_eq(sr_driver_unregister(&d2), SR_OK);

    /* A scheme of a built-in driver, and a built-in driver itself. */
    const char *builtin[] = {"sqlite", "postgresql", "mysql"};
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++) {
        const sr_driver *b = sr_driver_find(builtin[i]);
        if (!b)
            continue; /* not in this build */
        const char *const s3[] = {builtin[i], NULL};
        sr_driver d3 = make_driver("shadow", s3);
        ck_assert_int_eq(sr_driver_register(&d3), SR_EINVAL);
        ck_assert_ptr_eq(sr_driver_find(builtin[i]), b);
        ck_assert_int_eq(sr_driver_register(b), SR_EINVAL);
        ck_assert_int_eq(sr_driver_unregister(b), SR_EINVAL); /* in-tree: cannot be removed */
        ck_assert_ptr_eq(sr_driver_find(builtin[i]), b);
    }
}
END_TEST

START_TEST(test_abi_checked)
{
    static const char *const schemes[] = {"abix", NULL};
    sr_driver d = make_driver("abix", schemes);
    d.abi_version = SR_DRIVER_ABI_VERSION + 1;
    ck_assert_int_eq(sr_driver_register(&d), SR_EDRIVER);
    ck_assert_ptr_null(sr_driver_find("abix"));
    d.abi_version = 0;
    ck_assert_int_eq(sr_driver_register(&d), SR_EDRIVER);
    ck_assert_ptr_null(sr_driver_find("abix"));
    /* Older ABIs are still accepted. */
    for (int v = 1; v <= SR_DRIVER_ABI_VERSION; v++) {
        d.abi_version = v;
        ck_assert_int_eq(sr_driver_register(&d), SR_OK);
        ck_assert_int_eq(sr_driver_unregister(&d), SR_OK);
    }
}
END_TEST

START_TEST(test_missing_methods_refused)
{
    static const char *const schemes[] = {"miss", NULL};
    for (int which = 0; which < 10; which++) {
        sr_driver d = make_driver("miss", schemes);
        switch (which) {
        case 0: d.connect = NULL; break;
        case 1: d.close = NULL; break;
        case 2: d.exec = NULL; break;
        case 3: d.begin = NULL; break;
        case 4: d.commit = NULL; break;
        case 5: d.rollback = NULL; break;
        case 6: d.ping = NULL; break;
        case 7: d.name = NULL; break;
        case 8: d.schemes = NULL; break;
        default: {
            static const char *const none[] = {NULL};
            d.schemes = none;
        }
        }
        ck_assert_msg(sr_driver_register(&d) == SR_EINVAL, "case %d accepted", which);
        ck_assert_ptr_null(sr_driver_find("miss"));
    }
    /* A scheme the URI parser can never produce (it lower-cases). */
    static const char *const upper[] = {"Upper", NULL};
    sr_driver u = make_driver("upper", upper);
    ck_assert_int_eq(sr_driver_register(&u), SR_EINVAL);
    ck_assert_int_eq(sr_driver_register(NULL), SR_EINVAL);
}
END_TEST

START_TEST(test_many_drivers)
{
    /* The registry used to stop at 32 with SR_ENOMEM. */
    enum { N = 100 };
    static char names[N][16];
    static const char *schemes[N][2];
    static sr_driver ds[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "many%d", i);
        schemes[i][0] = names[i];
        schemes[i][1] = NULL;
        ds[i] = make_driver(names[i], schemes[i]);
        ck_assert_msg(sr_driver_register(&ds[i]) == SR_OK, "driver %d refused", i);
    }
    for (int i = 0; i < N; i++)
        ck_assert_ptr_eq(sr_driver_find(names[i]), &ds[i]);
    /* Removing from the middle keeps the others. */
    ck_assert_int_eq(sr_driver_unregister(&ds[50]), SR_OK);
    ck_assert_ptr_null(sr_driver_find("many50"));
    ck_assert_ptr_eq(sr_driver_find("many51"), &ds[51]);
    ck_assert_ptr_eq(sr_driver_find("many99"), &ds[99]);
    for (int i = 0; i < N; i++)
        if (i != 50)
            ck_assert_int_eq(sr_driver_unregister(&ds[i]), SR_OK);
    ck_assert_ptr_null(sr_driver_find("many0"));
}
END_TEST

/* ---- what connect() receives ---- */

static int log_lines;
static char log_last[512];

static void capture(void *ud, sr_log_level level, const char *msg)
{
    (void)ud;
    if (level == SR_LOG_INFO && strncmp(msg, "fake connect", 12) == 0) {
        log_lines++;
        snprintf(log_last, sizeof log_last, "%s", msg);
    }
}

/* Opens a one-shard router on `uri`, runs one write, closes it. */
static int run_one(const char *uri, char *errbuf, size_t errlen)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sr_config_set_log_fn(c, capture, NULL), SR_OK);
    ck_assert_int_eq(sr_config_add_shard(c, "s0"), SR_OK);
    int rc = sr_config_add_node(c, "s0", SR_PRIMARY, uri, 1);
    if (rc != SR_OK) {
        snprintf(errbuf, errlen, "%s", sr_config_errmsg(c));
        sr_config_free(c);
        return rc;
    }
    sr_router *r = NULL;
    rc = sr_router_open(c, &r);
    if (rc != SR_OK) {
        snprintf(errbuf, errlen, "%s", sr_config_errmsg(c));
        sr_config_free(c);
        return rc;
    }
    sr_config_free(c);
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    rc = sr_exec(s, sr_key_int(1), SR_WRITE, "INSERT INTO t VALUES (1)", 0, NULL, NULL);
    if (rc != SR_OK)
        snprintf(errbuf, errlen, "%s", sr_session_errmsg(s));
    sr_session_free(s);
    sr_router_close(r);
    return rc;
}

START_TEST(test_connect_gets_driver_and_app_data)
{
    static const char *const schemes[] = {"appd", NULL};
    static int marker;
    sr_driver d = make_driver("appd", schemes);
    d.app_data = &marker;
    ck_assert_int_eq(sr_driver_register(&d), SR_OK);
    memset(&last, 0, sizeof last);
    log_lines = 0;
    char err[512] = "";
    ck_assert_msg(run_one("appd://user:s3cret-pw@127.0.0.1:9/db", err, sizeof err) == SR_OK, "%s",
                  err);
    ck_assert_int_eq(last.connects, 1);
    ck_assert_int_eq(last.execs, 1);
    ck_assert_ptr_eq(last.driver, &d);
    ck_assert_ptr_eq(last.app_data, &marker);
    ck_assert_str_eq(last.host, "127.0.0.1");
    /* The driver's log line reached the router's callback, password-free. */
    ck_assert_int_eq(last.had_log_fn, 1);
    ck_assert_int_eq(log_lines, 1);
    ck_assert_ptr_nonnull(strstr(log_last, "appd://user:***@127.0.0.1:9/db"));
    ck_assert_ptr_null(strstr(log_last, "s3cret-pw"));
    ck_assert_int_eq(sr_driver_unregister(&d), SR_OK);

    /* A driver of an older ABI has no such fields: the core leaves them alone. */
    d.abi_version = 3;
    ck_assert_int_eq(sr_driver_register(&d), SR_OK);
    memset(&last, 0, sizeof last);
    log_lines = 0;
    ck_assert_msg(run_one("appd://127.0.0.1/db", err, sizeof err) == SR_OK, "%s", err);
    ck_assert_int_eq(last.connects, 1);
    ck_assert_ptr_null(last.driver);
    ck_assert_ptr_null(last.app_data);
    ck_assert_int_eq(last.had_log_fn, 0);
    ck_assert_int_eq(log_lines, 0);
    ck_assert_int_eq(sr_driver_unregister(&d), SR_OK);

    /* Unregistered: the scheme is unknown to a new router. */
    ck_assert_int_eq(run_one("appd://127.0.0.1/db", err, sizeof err), SR_EDRIVER);
    ck_assert_ptr_nonnull(strstr(err, "no driver for URI scheme 'appd'"));
}
END_TEST

START_TEST(test_path_form_is_a_driver_flag)
{
    static const char *const pschemes[] = {"pathd", NULL};
    static const char *const aschemes[] = {"authd", NULL};
    sr_driver p = make_driver("pathd", pschemes);
    p.flags = SR_DRIVER_URI_PATH;
    sr_driver a = make_driver("authd", aschemes);
    ck_assert_int_eq(sr_driver_register(&p), SR_OK);
    ck_assert_int_eq(sr_driver_register(&a), SR_OK);
    char err[512] = "";

    memset(&last, 0, sizeof last);
    ck_assert_msg(run_one("pathd:/var/data/x.db", err, sizeof err) == SR_OK, "%s", err);
    ck_assert_str_eq(last.path, "/var/data/x.db");
    memset(&last, 0, sizeof last);
    ck_assert_msg(run_one("PATHD:///abs.db", err, sizeof err) == SR_OK, "%s", err);
    ck_assert_str_eq(last.path, "/abs.db");
    ck_assert_int_eq(run_one("pathd://host/x.db", err, sizeof err), SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "a pathd URI takes no host"));

    /* Without the flag the same text is not a URI of that driver. */
    ck_assert_int_eq(run_one("authd:/var/data/x.db", err, sizeof err), SR_EINVAL);
    memset(&last, 0, sizeof last);
    ck_assert_msg(run_one("authd://127.0.0.1/db", err, sizeof err) == SR_OK, "%s", err);
    ck_assert_str_eq(last.host, "127.0.0.1");

    ck_assert_int_eq(sr_driver_unregister(&p), SR_OK);
    ck_assert_int_eq(sr_driver_unregister(&a), SR_OK);
    /* Gone with its driver: pathd: no longer parses as a path. */
    ck_assert_int_eq(run_one("pathd:/var/data/x.db", err, sizeof err), SR_EINVAL);
}
END_TEST

/* ---- helpers ---- */

START_TEST(test_scrub_secret)
{
    char msg[128];
    snprintf(msg, sizeof msg, "auth failed for hunter22 (hunter22) at hunter2");
    ck_assert_int_eq(sr_scrub_secret(msg, "hunter22"), 2);
    ck_assert_str_eq(msg, "auth failed for *** (***) at hunter2");
    /* Short secrets are left alone; NULLs are no-ops. */
    snprintf(msg, sizeof msg, "abc abc");
    ck_assert_int_eq(sr_scrub_secret(msg, "abc"), 0);
    ck_assert_str_eq(msg, "abc abc");
    ck_assert_int_eq(sr_scrub_secret(msg, NULL), 0);
    ck_assert_int_eq(sr_scrub_secret(NULL, "secret"), 0);
    /* A replacement that joins text into the secret again is scrubbed too:
     * "a" + "***" is the secret "a***" once more. */
    snprintf(msg, sizeof msg, "<aa***>");
    ck_assert_int_eq(sr_scrub_secret(msg, "a***"), 2);
    ck_assert_str_eq(msg, "<***>");
}
END_TEST

START_TEST(test_deadlines)
{
    ck_assert_int_eq(sr_deadline_after_ms(0), 0);
    ck_assert_int_eq(sr_deadline_after_ms(-5), 0);
    int64_t now = sr_clock_ns();
    int64_t d = sr_deadline_after_ms(1000);
    ck_assert(d >= now + 1000 * 1000000LL);
    int left = sr_deadline_remaining_ms(d);
    ck_assert(left > 0 && left <= 1000);
    ck_assert_int_eq(sr_deadline_remaining_ms(now - 1), 0);
    ck_assert_int_eq(sr_deadline_remaining_ms(0), 2147483647);
    /* Rounds up: 1 ns left is 1 ms, not 0 (which would spin). */
    ck_assert_int_eq(sr_deadline_remaining_ms(sr_clock_ns() + 500000) >= 1, 1);
    /* Clamped rather than wrapped. */
    ck_assert_int_eq(sr_deadline_remaining_ms(INT64_MAX), 2147483647);
}
END_TEST

START_TEST(test_wait_fd)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    int rev = -1;
    /* Nothing to read: the wait ends at the deadline, not before. */
    int64_t start = sr_clock_ns();
    ck_assert_int_eq(sr_wait_fd(fds[0], POLLIN, sr_deadline_after_ms(30), &rev), 0);
    ck_assert_int_eq(rev, 0);
    ck_assert(sr_clock_ns() - start >= 30 * 1000000LL);
    /* A deadline already passed returns at once. */
    ck_assert_int_eq(sr_wait_fd(fds[0], POLLIN, sr_clock_ns() - 1, &rev), 0);
    /* Readable. */
    ck_assert_int_eq(write(fds[1], "x", 1), 1);
    ck_assert_int_eq(sr_wait_fd(fds[0], POLLIN, sr_deadline_after_ms(1000), &rev), 1);
    ck_assert(rev & POLLIN);
    ck_assert_int_eq(sr_wait_fd(fds[0], POLLIN, 0, &rev), 1); /* no deadline */
    /* Bad arguments. */
    ck_assert_int_eq(sr_wait_fd(-1, POLLIN, 0, &rev), SR_EINVAL);
    ck_assert_int_eq(sr_wait_fd(fds[0], POLLIN, 0, NULL), SR_EINVAL);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

static int direct_lines;
static sr_log_level direct_level;
static char direct_msg[64];

static void direct(void *ud, sr_log_level level, const char *msg)
{
    ck_assert_ptr_eq(ud, &direct_lines);
    direct_lines++;
    direct_level = level;
    snprintf(direct_msg, sizeof direct_msg, "%s", msg);
}

START_TEST(test_driver_log)
{
    sr_driver_logger lg = {direct, &direct_lines};
    sr_driver_log(&lg, SR_LOG_WARN, "node %s: %d", "x", 7);
    ck_assert_int_eq(direct_lines, 1);
    ck_assert_int_eq(direct_level, SR_LOG_WARN);
    ck_assert_str_eq(direct_msg, "node x: 7");
    sr_driver_logger none = {NULL, NULL};
    sr_driver_log(&none, SR_LOG_WARN, "dropped");
    sr_driver_log(NULL, SR_LOG_WARN, "dropped");
    ck_assert_int_eq(direct_lines, 1);
}
END_TEST

static Suite *registry_suite(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("registry");
    tcase_add_test(tc, test_register_find_unregister);
    tcase_add_test(tc, test_duplicate_scheme_refused);
    tcase_add_test(tc, test_abi_checked);
    tcase_add_test(tc, test_missing_methods_refused);
    tcase_add_test(tc, test_many_drivers);
    tcase_add_test(tc, test_connect_gets_driver_and_app_data);
    tcase_add_test(tc, test_path_form_is_a_driver_flag);
    suite_add_tcase(s, tc);
    TCase *th = tcase_create("helpers");
    tcase_add_test(th, test_scrub_secret);
    tcase_add_test(th, test_deadlines);
    tcase_add_test(th, test_wait_fd);
    tcase_add_test(th, test_driver_log);
    suite_add_tcase(s, th);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(registry_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
