/*
 * Process control for the integration suites that kill, freeze and restart
 * the servers of tests/env/ (test code, not part of the library).
 *
 * A PID alone does not name a process for long: pid_max is 32768 on the test
 * machines, one CI run goes through the whole range, and a killed server that
 * was an orphan is reaped by PID 1 whenever it gets to it, after which the
 * kernel may hand its PID to anything (a backend of another server, a thread
 * of MariaDB: /proc/TID exists for threads too). So every "is it still
 * running" here asks about a tp_proc, a PID plus the start time the kernel
 * gave it (/proc/PID/stat field 22), and a zombie counts as gone: kill(pid, 0)
 * succeeds on a zombie, and nothing may wait for its parent to reap it.
 *
 * Thread safety: every function may be called from any thread; none keeps
 * state. None asserts: they return a status, so that they also serve
 * teardowns, which run outside the test.
 */
#ifndef SR_TEST_SUPPORT_PROC_H
#define SR_TEST_SUPPORT_PROC_H

#include <stddef.h>
#include <sys/types.h>

/* One process: {0, 0} is none. */
typedef struct tp_proc {
    pid_t pid;
    unsigned long long start; /* clock ticks after boot */
} tp_proc;

/* Monotonic milliseconds, and a sleep that resumes after signals. */
double tp_now_ms(void);
void tp_sleep_ms(int ms);

/*
 * Reads /proc/PID/stat: returns the state letter ('R', 'S', 'T', 'Z', ...),
 * 0 when there is no such PID; the parent and start time go to *ppid and
 * *start when they are not NULL.
 */
char tp_stat(pid_t pid, pid_t *ppid, unsigned long long *start);

/*
 * The process `pid` as it is now, if it is a live process (not a zombie, not
 * a thread of another process) whose command line names `marker`: one
 * argument equal to it or ending in "=marker" (a server's data directory:
 * "-D DIR" for PostgreSQL, "--datadir=DIR" for MariaDB). NULL marker: any
 * live process. {0, 0} otherwise.
 */
tp_proc tp_identify(pid_t pid, const char *marker);

/* tp_identify() of the first number in `pidfile`; {0, 0} when it has none. */
tp_proc tp_from_pidfile(const char *pidfile, const char *marker);

/* The state letter of p while p is still that process and not a zombie; else 0. */
char tp_state(tp_proc p);

/* 1 while p is still that process and not a zombie. */
int tp_alive(tp_proc p);

/*
 * Sends sig to p if it is still that process (through a pidfd, so that the
 * check and the signal cannot fall apart); 0 when sent, -1 otherwise.
 */
int tp_signal(tp_proc p, int sig);

/* The live children of p (not zombies) into out; their number (at most max). */
int tp_children(tp_proc p, tp_proc *out, int max);

/* Waits until every process is stopped ('T', 't') or gone; 1 when all are. */
int tp_wait_stopped(const tp_proc *procs, int n, int timeout_ms);

/* Waits until none of the processes is alive (tp_alive()); 1 when none is. */
int tp_wait_gone(const tp_proc *procs, int n, int timeout_ms);

/*
 * Runs `cmd` with /bin/sh -c and waits for it at most timeout_ms (then kills
 * it). The child gets /dev/null as stdin and stdout, keeps stderr (the
 * scripts' reasons go to the test log) and no other descriptor: a server it
 * starts must not inherit, say, the test runner's output pipe, which would
 * keep the runner waiting. Fork-safe in a threaded process (only
 * async-signal-safe calls in the child). Returns the exit status (128 + the
 * signal when it was killed), -1 when it could not run or did not finish,
 * with the reason in why.
 */
int tp_run_command(const char *cmd, int timeout_ms, char *why, size_t whylen);

/*
 * Runs fn(fd, arg) in a forked child, fn writing to fd, and collects what it
 * wrote until it exits; fn must end with _exit(). At most timeout_ms: then
 * the child is killed. Returns the text (the caller frees it), NULL when out
 * of memory or fork failed; *status is the child's exit status, -1 when it
 * was killed for its time or could not run.
 */
char *tp_run_child(void (*fn)(int fd, void *arg), void *arg, int timeout_ms, int *status);

/*
 * Starts a server again through its cluster script's start command (which
 * waits until the server accepts connections; tp_run_command, at most
 * timeout_ms) and returns the new server, read from `pidfile` and identified
 * by `marker` (see tp_identify). {0, 0} with the reason in why when the
 * command failed or its pid file names no such process.
 */
tp_proc tp_start_server(const char *start_cmd, const char *pidfile, const char *marker,
                        int timeout_ms, char *why, size_t whylen);

#endif
