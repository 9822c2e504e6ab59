/* Log lines kept with their times, for the integration suites: see logwatch.h. */
#include "logwatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"

void lw_init(logwatch *w)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
}

void lw_free(logwatch *w)
{
    free(w->lines);
    w->lines = NULL;
    w->n = w->cap = 0;
    pthread_mutex_destroy(&w->mu);
}

void lw_clear(logwatch *w)
{
    pthread_mutex_lock(&w->mu);
    w->n = 0;
    w->dropped = 0;
    pthread_mutex_unlock(&w->mu);
}

int lw_port(const char *msg)
{
    const char *p = strstr(msg, "127.0.0.1:");
    return p ? atoi(p + strlen("127.0.0.1:")) : 0;
}

void lw_log(void *userdata, sr_log_level level, const char *msg)
{
    (void)level;
    logwatch *w = userdata;
    double t = tp_now_ms();
    pthread_mutex_lock(&w->mu);
    if (w->n == w->cap && w->cap < LW_MAX) {
        int cap = w->cap ? w->cap * 2 : 256;
        if (cap > LW_MAX)
            cap = LW_MAX;
        lw_line *more = realloc(w->lines, (size_t)cap * sizeof *more);
        if (more) {
            w->lines = more;
            w->cap = cap;
        }
    }
    if (w->n < w->cap) {
        w->lines[w->n].t = t;
        snprintf(w->lines[w->n].msg, LW_MSG, "%s", msg);
        w->n++;
    } else {
        w->dropped++;
    }
    void (*hook)(void *, const char *, double) = w->hook;
    void *arg = w->hook_arg;
    pthread_mutex_unlock(&w->mu);
    if (hook)
        hook(arg, msg, t);
}

static int port_matches(int want, int got)
{
    return want == LW_ANY_PORT || (want > 0 ? got == want : got != -want);
}

lw_found lw_match(logwatch *w, const char *prefix, int port, int upto)
{
    lw_found f = {0, 0.0, -1};
    size_t pl = strlen(prefix);
    pthread_mutex_lock(&w->mu);
    int end = upto < 0 || upto > w->n ? w->n : upto;
    for (int i = 0; i < end; i++) {
        const char *m = w->lines[i].msg;
        if (strncmp(m, prefix, pl) != 0 || !port_matches(port, lw_port(m)))
            continue;
        if (f.count++ == 0) {
            f.t_first = w->lines[i].t;
            f.first = i;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return f;
}

lw_found lw_wait(logwatch *w, const char *prefix, int port, int n, int timeout_ms)
{
    for (double t0 = tp_now_ms();; tp_sleep_ms(5)) {
        lw_found f = lw_match(w, prefix, port, -1);
        if (f.count >= n || tp_now_ms() - t0 >= timeout_ms)
            return f;
    }
}

int lw_contains(logwatch *w, const char *needle)
{
    int found = 0;
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < w->n && !found; i++)
        found = strstr(w->lines[i].msg, needle) != NULL;
    pthread_mutex_unlock(&w->mu);
    return found;
}

const char *lw_lines(logwatch *w, double from, double to, double zero, char *buf, size_t len)
{
    buf[0] = '\0';
    pthread_mutex_lock(&w->mu);
    int first = from == 0 && w->n > 4 ? w->n - 4 : 0;
    for (int i = first; i < w->n; i++) {
        double t = w->lines[i].t;
        if (from != 0 && (t < from || t > to))
            continue;
        size_t used = strlen(buf);
        if (used + 1 >= len)
            break;
        snprintf(buf + used, len - used, "\n    %+6.0f ms log: %s", t - zero, w->lines[i].msg);
    }
    pthread_mutex_unlock(&w->mu);
    return buf;
}
