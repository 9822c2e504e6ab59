/*
 * The one place the driver waits: poll() on the connection's socket for what
 * Connector/C's non-blocking API asked for, never past the caller's deadline.
 * MYSQL_OPT_READ_TIMEOUT and friends count whole seconds; this is how the
 * driver keeps millisecond bounds.
 */
#include "my_internal.h"

#include <errno.h>
#include <poll.h>

int sr__my_wait(MYSQL *my, int status, int64_t deadline_ns)
{
    struct pollfd pfd;
    pfd.fd = (int)mysql_get_socket(my);
    pfd.events = (short)(((status & MYSQL_WAIT_READ) ? POLLIN : 0) |
                         ((status & MYSQL_WAIT_WRITE) ? POLLOUT : 0) |
                         ((status & MYSQL_WAIT_EXCEPT) ? POLLPRI : 0));
    /* The library's own timeout (connect_timeout and the like), if it set
     * one, is measured from the first wait, not re-armed after EINTR. */
    int64_t lib_deadline = -1;
    if (status & MYSQL_WAIT_TIMEOUT)
        lib_deadline = sr_clock_ns() + (int64_t)mysql_get_timeout_value_ms(my) * 1000000;

    for (;;) {
        int64_t now = sr_clock_ns();
        if (deadline_ns > 0 && now >= deadline_ns)
            return -1;
        int64_t until = deadline_ns > 0 ? deadline_ns : -1;
        int lib_first = 0;
        if (lib_deadline >= 0 && (until < 0 || lib_deadline <= until)) {
            until = lib_deadline;
            lib_first = 1;
        }
        int timeout_ms = -1;
        if (until >= 0) {
            int64_t rem = until - now;
            if (rem < 0)
                rem = 0;
            /* Round up: waking a little early would only spin. */
            rem = (rem + 999999) / 1000000;
            timeout_ms = rem > 1000000000 ? 1000000000 : (int)rem;
        }
        int n = poll(&pfd, 1, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* poll itself failed (EBADF, ENOMEM): let the library see an
             * event, its I/O call will report the error. */
            return status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE);
        }
        if (n == 0) {
            if (lib_first && sr_clock_ns() >= lib_deadline)
                return MYSQL_WAIT_TIMEOUT;
            continue; /* the loop head decides whether our deadline passed */
        }
        int ev = 0;
        if (pfd.revents & POLLIN)
            ev |= MYSQL_WAIT_READ;
        if (pfd.revents & POLLOUT)
            ev |= MYSQL_WAIT_WRITE;
        if (pfd.revents & POLLPRI)
            ev |= MYSQL_WAIT_EXCEPT;
        /* A hang-up or socket error: wake whatever was waited for, so the
         * library's read or write fails and reports it. */
        if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))
            ev |= status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE);
        if (ev == 0)
            continue;
        return ev;
    }
}
