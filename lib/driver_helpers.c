/*
 * Helpers for driver authors (shardroute/driver.h, ABI 4): what every
 * in-tree driver used to write for itself — deadline arithmetic, a bounded
 * wait on a socket, scrubbing a password out of a server's message, and a
 * log line to the router's callback. They need no router, so a driver built
 * outside this tree gets exactly what the in-tree ones use.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "shardroute/driver.h"

SR_API int64_t sr_deadline_after_ms(int ms)
{
    if (ms <= 0)
        return 0;
    return sr_clock_ns() + (int64_t)ms * 1000000;
}

SR_API int sr_deadline_remaining_ms(int64_t deadline_ns)
{
    if (deadline_ns <= 0)
        return INT_MAX;
    int64_t left = deadline_ns - sr_clock_ns();
    if (left <= 0)
        return 0;
    /* Round up: waking a little early would only spin. */
    int64_t ms = (left + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

SR_API int sr_wait_fd(int fd, int events, int64_t deadline_ns, int *revents)
{
    if (fd < 0 || !revents)
        return SR_EINVAL;
    *revents = 0;
    struct pollfd p = {.fd = fd, .events = (short)events, .revents = 0};
    for (;;) {
        int ms = -1;
        if (deadline_ns > 0) {
            ms = sr_deadline_remaining_ms(deadline_ns);
            if (ms == 0)
                return 0;
        }
        int n = poll(&p, 1, ms);
        if (n > 0) {
            *revents = p.revents;
            return 1;
        }
        /* n == 0: poll's millisecond timer may end a little before the
         * nanosecond deadline; the loop head decides whether it passed. */
        if (n < 0 && errno != EINTR)
            return SR_EDRIVER;
    }
}

SR_API int sr_scrub_secret(char *msg, const char *secret)
{
    size_t plen = secret ? strlen(secret) : 0;
    if (!msg || plen < 4)
        return 0;
    int n = 0;
    char *from = msg;
    char *hit;
    /* The replacement is shorter than the secret, so it fits in place and
     * every round shortens the text: the loop ends. The search starts over
     * from the beginning, so text that a replacement joins into the secret
     * again is scrubbed too. */
    while ((hit = strstr(from, secret)) != NULL) {
        memcpy(hit, "***", 3);
        memmove(hit + 3, hit + plen, strlen(hit + plen) + 1);
        if (n < INT_MAX)
            n++;
    }
    return n;
}

SR_API void sr_driver_log(const sr_driver_logger *log, sr_log_level level, const char *fmt, ...)
{
    if (!log || !log->fn || !fmt)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        snprintf(line, sizeof line, "(unprintable driver log line)");
    log->fn(log->userdata, level, line);
}
