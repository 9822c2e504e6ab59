/*
 * A log callback for the integration suites (test code): keeps every line the
 * router logs with the time it arrived, so that a test can wait for a line
 * ("node ejected ... 127.0.0.1:PORT"), count lines, time them, and print the
 * lines around a failure.
 *
 * Install lw_log as the router's log function with the logwatch as its
 * userdata (sr_config_set_log_fn). The library calls it from any thread; every
 * function here takes the logwatch's lock, so they may be called from any
 * thread too, while the router logs.
 */
#ifndef SR_TEST_SUPPORT_LOGWATCH_H
#define SR_TEST_SUPPORT_LOGWATCH_H

#include <pthread.h>
#include <stddef.h>

#include <shardroute.h>

#define LW_MSG 320     /* longer lines are cut */
#define LW_MAX 20000   /* lines kept; later ones are counted in `dropped` only */

typedef struct lw_line {
    double t; /* tp_now_ms() when it arrived */
    char msg[LW_MSG];
} lw_line;

typedef struct logwatch {
    pthread_mutex_t mu;
    lw_line *lines;
    int n, cap;
    long dropped;
    /* Called (outside the lock) for every line, after it is stored; NULL: none. */
    void (*hook)(void *arg, const char *msg, double t);
    void *hook_arg;
} logwatch;

/* What lw_match() found: how many lines, and the first one's time and index (-1: none). */
typedef struct lw_found {
    int count;
    double t_first;
    int first;
} lw_found;

/* Any port in lw_match(); a negative port -P means any port but P. */
#define LW_ANY_PORT 0

void lw_init(logwatch *w);
/* Frees the lines; the router that logs to w must be closed first. */
void lw_free(logwatch *w);
/* Forgets every line so far. */
void lw_clear(logwatch *w);

/* The log function (sr_log_fn): userdata is the logwatch. */
void lw_log(void *userdata, sr_log_level level, const char *msg);

/* The port of the first node address in a message ("...127.0.0.1:PORT..."), 0 when none. */
int lw_port(const char *msg);

/*
 * The lines that start with `prefix` and name `port` (see LW_ANY_PORT), among
 * the first `upto` lines (-1: all).
 */
lw_found lw_match(logwatch *w, const char *prefix, int port, int upto);

/* Waits at most timeout_ms until lw_match() counts at least n lines; returns what it found last. */
lw_found lw_wait(logwatch *w, const char *prefix, int port, int n, int timeout_ms);

/* 1 when some line contains `needle`. */
int lw_contains(logwatch *w, const char *needle);

/*
 * The lines that arrived between `from` and `to` (from 0: the last 4), one per
 * line with its time relative to `zero`, into buf (cut to fit); returns buf.
 */
const char *lw_lines(logwatch *w, double from, double to, double zero, char *buf, size_t len);

#endif
