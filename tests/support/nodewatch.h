/*
 * One node's view of a router's log (tests/support/logwatch.h), for the
 * fault scenarios: how often the node was ejected, re-admitted, still down
 * and failed a read, when it was first ejected and re-admitted, and its
 * health as the library reported it at that ejection (test code; it links
 * the library for sr_router_node_info).
 *
 * Thread safety as logwatch's: the router logs from any thread while the
 * test reads the counts.
 */
#ifndef SR_TEST_SUPPORT_NODEWATCH_H
#define SR_TEST_SUPPORT_NODEWATCH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <shardroute.h>

#include "logwatch.h"

/* What the log callback saw about the node under test (by port). */
typedef struct lw_node_counts {
    int ejected, readmitted, still_down;
    int failed_attempts;      /* "read ... failed; retrying" naming it */
    int failed_before_eject;  /* of those, logged before its first ejection */
    int other_ejected;        /* ejections of any other node */
    double t_ejected, t_readmitted; /* first of each */
    int healthy_at_eject;
    uint64_t errors_at_eject;
} lw_node_counts;

/*
 * The router's log seen from one node under test (by its port);
 * at its first ejection the hook also takes the node's health as the library
 * reports it then.
 */
typedef struct lw_node {
    logwatch lw;
    int port;                 /* the node under test */
    const sr_router *router;  /* set after open, for node_info at ejection */
    int node;                 /* its index in shard 0 */
    pthread_mutex_t mu;       /* guards the fields below */
    int eject_seen, healthy_at_eject;
    uint64_t errors_at_eject;
} lw_node;

/*
 * Starts watching node `node` of shard 0 (listening on `port`): install lw_log
 * with &w->lw as the router's log function, and set w->router after the
 * router is open, so the ejection hook can read the node's health.
 */
void lw_node_init(lw_node *w, int port, int node);
/* After the router that logs to it is closed. */
void lw_node_free(lw_node *w);
/* The counts, from the lines logged so far. */
lw_node_counts lw_node_get(lw_node *w);
/* Waits at most timeout_ms until the node was ejected / re-admitted (each when asked); the counts. */
lw_node_counts lw_node_wait(lw_node *w, int want_ejected, int want_readmitted, int timeout_ms);
/* The lines logged between `from` and `to` (the latest when from is 0), times relative to `zero`. */
const char *lw_node_lines(lw_node *w, double from, double to, double zero, char *buf,
                          size_t len);
/* The latest lines (lw_lines with from 0). */
const char *lw_node_tail(lw_node *w, char *buf, size_t len);

#endif
