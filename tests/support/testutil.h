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
#include <time.h>

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

#endif
