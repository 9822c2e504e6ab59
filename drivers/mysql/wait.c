/*
 * The one place the driver waits: sr_wait_fd() on the connection's socket for
 * what Connector/C's non-blocking API asked for, never past the caller's
 * deadline.
 * MYSQL_OPT_READ_TIMEOUT and friends count whole seconds; this is how the
 * driver keeps millisecond bounds.
 */
#include "my_internal.h"

#include <poll.h>

int sr__my_wait(MYSQL *my, int status, int64_t deadline_ns)
{
    int pfd_fd = (int)mysql_get_socket(my);
    int pfd_events = ((status & MYSQL_WAIT_READ) ? POLLIN : 0) |
                     ((status & MYSQL_WAIT_WRITE) ? POLLOUT : 0) |
                     ((status & MYSQL_WAIT_EXCEPT) ? POLLPRI : 0);
    /* The library's own timeout (connect_timeout and the like), if it set
     * one, is measured from the first wait, not re-armed after EINTR. */
    int64_t lib_deadline = -1;
    if (status & MYSQL_WAIT_TIMEOUT)
        lib_deadline = sr_clock_ns() + (int64_t)mysql_get_timeout_value_ms(my) * 1000000;

    for (;;) {
        int64_t now = sr_clock_ns();
        if (deadline_ns > 0 && now >= deadline_ns)
            return -1;
        int64_t until = deadline_ns > 0 ? deadline_ns : 0;
        int lib_first = 0;
        if (lib_deadline >= 0 && (until <= 0 || lib_deadline <= until)) {
            until = lib_deadline;
            lib_first = 1;
        }
        int revents = 0;
        int n = sr_wait_fd(pfd_fd, pfd_events, until, &revents);
        if (n < 0) {
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
        if (revents & POLLIN)
            ev |= MYSQL_WAIT_READ;
        if (revents & POLLOUT)
            ev |= MYSQL_WAIT_WRITE;
        if (revents & POLLPRI)
            ev |= MYSQL_WAIT_EXCEPT;
        /* A hang-up or socket error: wake whatever was waited for, so the
         * library's read or write fails and reports it. */
        if (revents & (POLLERR | POLLHUP | POLLNVAL))
            ev |= status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE);
        if (ev == 0)
            continue;
        return ev;
    }
}
