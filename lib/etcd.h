/*
 * A topology shared through etcd (topology.etcd, etcd.c): loaded at open,
 * then read again on each round of health checks without blocking, and
 * reloaded when the key's revision changes.
 */
#ifndef SR_ETCD_H
#define SR_ETCD_H

#include "topology.h"

/*
 * When the version being opened names topology.etcd: checks the URL, sets up
 * the watch, and reads the key once, bounded by connect_timeout_ms. A
 * configuration found there is applied at once (the router's version 2);
 * a missing key, an unreachable etcd or a bad value keep the code's
 * configuration (logged, counted) and the rounds try again. SR_EINVAL with
 * the reason in err for a bad URL, or for a library built without etcd.
 */
int sr__etcd_open(sr_router *r, char *err, size_t errlen);

/*
 * One step of the watch, never blocking on etcd: finishes a read that has
 * come back (a new revision is reloaded, under the reload lock) and starts
 * the next one; waits at most SR_ETCD_POLL_WAIT_MS for the answer in the
 * same call. Does nothing without topology.etcd; one caller at a time
 * (a trylock: the prober and an application's sr_router_maintain may meet).
 */
void sr__etcd_poll(sr_router *r);

/* Frees the watch (sr_router_close, after the prober stopped). */
void sr__etcd_close(sr_router *r);

/* How long one poll may wait for etcd's answer: short, so a hung etcd costs a round little. */
#define SR_ETCD_POLL_WAIT_MS 20

#endif
