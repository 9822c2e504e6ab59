/* One node's view of a router's log: see nodewatch.h. */
#include "nodewatch.h"

#include <string.h>

#include "proc.h"

static void lw_node_on_line(void *arg, const char *msg, double t)
{
    (void)t;
    lw_node *w = arg;
    if (strncmp(msg, "node ejected", strlen("node ejected")) != 0 || lw_port(msg) != w->port)
        return;
    pthread_mutex_lock(&w->mu);
    sr_node_info ni = SR_NODE_INFO_INIT;
    if (!w->eject_seen++ && w->router && sr_router_node_info(w->router, 0, w->node, &ni) == SR_OK) {
        w->healthy_at_eject = ni.healthy;
        w->errors_at_eject = ni.errors;
    }
    pthread_mutex_unlock(&w->mu);
}

void lw_node_init(lw_node *w, int port, int node)
{
    memset(w, 0, sizeof *w);
    lw_init(&w->lw);
    pthread_mutex_init(&w->mu, NULL);
    w->lw.hook = lw_node_on_line;
    w->lw.hook_arg = w;
    w->port = port;
    w->node = node;
}

/* After the router that logs to it is closed. */
void lw_node_free(lw_node *w)
{
    lw_free(&w->lw);
    pthread_mutex_destroy(&w->mu);
}

/* The counters, from the lines logged so far. */
lw_node_counts lw_node_get(lw_node *w)
{
    lw_node_counts c;
    memset(&c, 0, sizeof c);
    lw_found ej = lw_match(&w->lw, "node ejected", w->port, -1);
    lw_found re = lw_match(&w->lw, "node re-admitted", w->port, -1);
    c.ejected = ej.count;
    c.t_ejected = ej.t_first;
    c.readmitted = re.count;
    c.t_readmitted = re.t_first;
    c.still_down = lw_match(&w->lw, "node still down", w->port, -1).count;
    c.failed_attempts = lw_match(&w->lw, "read on shard", w->port, -1).count;
    c.failed_before_eject = ej.count ? lw_match(&w->lw, "read on shard", w->port, ej.first).count
                                     : c.failed_attempts;
    c.other_ejected = lw_match(&w->lw, "node ejected", -w->port, -1).count;
    pthread_mutex_lock(&w->mu);
    c.healthy_at_eject = w->healthy_at_eject;
    c.errors_at_eject = w->errors_at_eject;
    pthread_mutex_unlock(&w->mu);
    return c;
}

/* The lines logged between `from` and `to` (the latest when from is 0), times relative to `zero`. */
const char *lw_node_lines(lw_node *w, double from, double to, double zero, char *buf,
                          size_t len)
{
    return lw_lines(&w->lw, from, to, zero, buf, len);
}

const char *lw_node_tail(lw_node *w, char *buf, size_t len)
{
    return lw_node_lines(w, 0, 0, 0, buf, len);
}

/* Waits (bounded) for the counts to show an ejection / a re-admission; returns them. */
lw_node_counts lw_node_wait(lw_node *w, int want_ejected, int want_readmitted, int timeout_ms)
{
    lw_node_counts c = lw_node_get(w);
    for (double t0 = tp_now_ms(); tp_now_ms() - t0 < timeout_ms; tp_sleep_ms(5)) {
        c = lw_node_get(w);
        if ((!want_ejected || c.ejected) && (!want_readmitted || c.readmitted))
            break;
    }
    return c;
}
