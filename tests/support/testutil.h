/*
 * Small utilities every integration suite uses, whatever its backend
 * (test code, not part of the library). Header-only and static inline, so a
 * suite may use any subset; the Check assertions in them fail the calling
 * test, so call them only from a test's own process and thread.
 */
#ifndef SR_TEST_SUPPORT_TESTUTIL_H
#define SR_TEST_SUPPORT_TESTUTIL_H

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shardroute.h>

static inline void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Monotonic milliseconds: for measuring how long a call took. */
static inline double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A printf-formatted new string (the caller frees it); never NULL. */
static inline char *xfmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    char *s = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(s);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* The value of an environment variable holding a port, or 0 when unset. */
static inline int env_port(const char *name)
{
    const char *v = getenv(name);
    return v ? atoi(v) : 0;
}

/* Runs every test of `s` (which it frees) and returns how many failed. */
static inline int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed;
}

/*
 * Runs `sql` once, as a write, on a router of its own: one shard "only" whose
 * primary is `uri`, with options `opts` (name/value pairs, then NULL; NULL:
 * none). Returns the status; the session's message goes to msg, row 0
 * column 0 to *value (a new string, NULL for none or SQL NULL) when value is
 * not NULL, and how long the statement took to *took_ms when not NULL.
 */
static inline int one_node_exec(const char *uri, const char *const *opts, const char *sql,
                                char **value, double *took_ms, char *msg, size_t msglen)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    for (int i = 0; opts && opts[i]; i += 2)
        ck_assert_msg(sr_config_set(c, opts[i], opts[i + 1]) == SR_OK, "%s", sr_config_errmsg(c));
    ck_assert_int_eq(sr_config_add_shard(c, "only"), SR_OK);
    ck_assert_msg(sr_config_add_node(c, "only", SR_PRIMARY, uri, 1) == SR_OK, "%s",
                  sr_config_errmsg(c));
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    sr_result *res = NULL;
    double t0 = mono_ms();
    int rc = sr_exec(s, sr_key_int(1), SR_WRITE, sql, 0, NULL, &res);
    if (took_ms)
        *took_ms = mono_ms() - t0;
    snprintf(msg, msglen, "%s", sr_session_errmsg(s));
    if (value) {
        const char *v = rc == SR_OK && sr_result_nrows(res) > 0 ? sr_result_value(res, 0, 0) : NULL;
        *value = v ? strdup(v) : NULL;
    }
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(r);
    return rc;
}

#endif
