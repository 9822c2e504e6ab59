/* Process control with identity for the integration suites: see proc.h. */
#define _GNU_SOURCE
#include "proc.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double tp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void tp_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Reads at most len - 1 bytes of a small /proc file; its length, -1 when it cannot be read. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    for (ssize_t k; n < len - 1 && (k = read(fd, buf + n, len - 1 - n)) != 0;) {
        if (k < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        n += (size_t)k;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}

char tp_stat(pid_t pid, pid_t *ppid, unsigned long long *start)
{
    char path[64], buf[1024];
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    if (read_small(path, buf, sizeof buf) <= 0)
        return 0;
    /* The command name is in parentheses and may contain anything: skip past the last ')'. */
    char *p = strrchr(buf, ')');
    char state = 0;
    long parent = 0;
    unsigned long long st = 0;
    /* Fields 3 (state), 4 (ppid), then 18 fields up to 22 (starttime). */
    if (!p || sscanf(p + 1, " %c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
                            "%*d %*d %llu",
                     &state, &parent, &st) != 3)
        return 0;
    if (ppid)
        *ppid = (pid_t)parent;
    if (start)
        *start = st;
    return state;
}

/* 1 when pid leads its thread group: /proc/TID of a mere thread answers too. */
static int is_process(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    if (read_small(path, buf, sizeof buf) <= 0)
        return 0;
    const char *t = strstr(buf, "\nTgid:");
    return t && atol(t + strlen("\nTgid:")) == (long)pid;
}

/* 1 when one argument of pid's command line is marker or ends in "=marker". */
static int names(pid_t pid, const char *marker)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
    size_t cap = 65536;
    char *buf = malloc(cap);
    if (!buf)
        return 0;
    ssize_t n = read_small(path, buf, cap);
    size_t ml = strlen(marker);
    int found = 0;
    for (ssize_t i = 0; n > 0 && i < n && !found; i += (ssize_t)strlen(buf + i) + 1) {
        const char *arg = buf + i;
        size_t al = strlen(arg);
        found = strcmp(arg, marker) == 0 ||
                (al > ml && arg[al - ml - 1] == '=' && strcmp(arg + al - ml, marker) == 0);
    }
    free(buf);
    return found;
}

tp_proc tp_identify(pid_t pid, const char *marker)
{
    tp_proc none = {0, 0};
    unsigned long long start = 0, again = 0;
    char st = tp_stat(pid, NULL, &start);
    if (st == 0 || st == 'Z' || st == 'X' || !is_process(pid))
        return none;
    if (marker && !names(pid, marker))
        return none;
    /* The same process from the first read to the last (not replaced meanwhile). */
    st = tp_stat(pid, NULL, &again);
    if (st == 0 || st == 'Z' || st == 'X' || again != start)
        return none;
    tp_proc p = {pid, start};
    return p;
}

tp_proc tp_from_pidfile(const char *pidfile, const char *marker)
{
    tp_proc none = {0, 0};
    char buf[64];
    int fd = open(pidfile, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return none;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return none;
    buf[n] = '\0';
    long pid = strtol(buf, NULL, 10);
    return pid > 0 ? tp_identify((pid_t)pid, marker) : none;
}

char tp_state(tp_proc p)
{
    unsigned long long start = 0;
    char st = p.pid > 0 ? tp_stat(p.pid, NULL, &start) : 0;
    if (st == 0 || st == 'Z' || st == 'X' || start != p.start)
        return 0;
    return st;
}

int tp_alive(tp_proc p) { return tp_state(p) != 0; }

int tp_signal(tp_proc p, int sig)
{
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_send_signal)
    /*
     * The pidfd is taken first and the identity checked after: if the PID
     * still has p's start time then, the descriptor refers to p, and a
     * signal through it reaches p or nobody.
     */
    int fd = (int)syscall(SYS_pidfd_open, p.pid, 0);
    if (fd >= 0) {
        int rc = -1;
        if (tp_alive(p))
            rc = syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) == 0 ? 0 : -1;
        close(fd);
        return rc;
    }
    if (errno != ENOSYS)
        return -1; /* ESRCH: no such process */
#endif
    return tp_alive(p) && kill(p.pid, sig) == 0 ? 0 : -1;
}

int tp_children(tp_proc p, tp_proc *out, int max)
{
    int n = 0;
    if (!tp_alive(p))
        return 0;
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < max) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        pid_t pid = (pid_t)atol(de->d_name), parent = 0;
        unsigned long long start = 0;
        char st = tp_stat(pid, &parent, &start);
        if (st && st != 'Z' && st != 'X' && parent == p.pid) {
            out[n].pid = pid;
            out[n].start = start;
            n++;
        }
    }
    closedir(d);
    /* A child listed from a PID that p no longer had by the end would be no child of p. */
    return tp_alive(p) ? n : 0;
}

int tp_wait_stopped(const tp_proc *procs, int n, int timeout_ms)
{
    for (double t0 = tp_now_ms();; tp_sleep_ms(5)) {
        int all = 1;
        for (int i = 0; i < n; i++) {
            char st = tp_state(procs[i]);
            if (st != 0 && st != 'T' && st != 't')
                all = 0;
        }
        if (all)
            return 1;
        if (tp_now_ms() - t0 >= timeout_ms)
            return 0;
    }
}

int tp_wait_gone(const tp_proc *procs, int n, int timeout_ms)
{
    for (double t0 = tp_now_ms();; tp_sleep_ms(10)) {
        int any = 0;
        for (int i = 0; i < n && !any; i++)
            any = tp_alive(procs[i]);
        if (!any)
            return 1;
        if (tp_now_ms() - t0 >= timeout_ms)
            return 0;
    }
}

/* Waits for a child of ours at most timeout_ms; 1 with its status, 0 when it is still running. */
static int wait_child(pid_t child, int timeout_ms, int *status)
{
    for (double t0 = tp_now_ms();; tp_sleep_ms(10)) {
        pid_t w = waitpid(child, status, WNOHANG);
        if (w == child)
            return 1;
        if (w < 0 && errno != EINTR)
            return -1;
        if (tp_now_ms() - t0 >= timeout_ms)
            return 0;
    }
}

static int exit_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int tp_run_command(const char *cmd, int timeout_ms, char *why, size_t whylen)
{
    pid_t child = fork();
    if (child < 0) {
        snprintf(why, whylen, "fork: %s", strerror(errno));
        return -1;
    }
    if (child == 0) {
        /* Only async-signal-safe calls here: other threads may hold locks. */
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
            close((int)fd);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int status = 0, w = wait_child(child, timeout_ms, &status);
    if (w == 1) {
        int rc = exit_code(status);
        if (rc != 0)
            snprintf(why, whylen, "'%s' exited with %d", cmd, rc);
        return rc;
    }
    if (w < 0) {
        snprintf(why, whylen, "waitpid: %s", strerror(errno));
        return -1;
    }
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    snprintf(why, whylen, "'%s' did not finish in %d ms", cmd, timeout_ms);
    return -1;
}

char *tp_run_child(void (*fn)(int fd, void *arg), void *arg, int timeout_ms, int *status)
{
    *status = -1;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return NULL;
    }
    if (pid == 0) {
        close(fds[0]);
        fn(fds[1], arg);
        _exit(1); /* fn must not return */
    }
    close(fds[1]);
    /* Allocated after the fork: the child, which leaves by _exit(), holds nothing of it. */
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fds[0]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return NULL;
    }
    /* Read until the child closes its end or the time is up. */
    double t0 = tp_now_ms();
    int timed_out = 0;
    for (;;) {
        int left = timeout_ms - (int)(tp_now_ms() - t0);
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd pfd = {fds[0], POLLIN, 0};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            timed_out = r == 0;
            break;
        }
        if (len + 1 >= cap) {
            char *more = realloc(buf, cap * 2);
            if (!more)
                break;
            buf = more;
            cap *= 2;
        }
        ssize_t n = read(fds[0], buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(fds[0]);
    int st = 0;
    int left = timeout_ms - (int)(tp_now_ms() - t0);
    if (timed_out || wait_child(pid, left > 0 ? left : 0, &st) != 1) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        return buf;
    }
    *status = exit_code(st);
    return buf;
}

tp_proc tp_start_server(const char *start_cmd, const char *pidfile, const char *marker,
                        int timeout_ms, char *why, size_t whylen)
{
    tp_proc none = {0, 0};
    if (tp_run_command(start_cmd, timeout_ms, why, whylen) != 0)
        return none;
    tp_proc p = tp_from_pidfile(pidfile, marker);
    if (p.pid == 0)
        snprintf(why, whylen, "'%s' succeeded, but %s names no live process with %s on its "
                 "command line", start_cmd, pidfile, marker);
    return p;
}
