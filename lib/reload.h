/*
 * Applying a configuration to a live router (reload.c), for sr_router_reload
 * (router.c) and the watched configuration file (watch.c).
 */
#ifndef SR_RELOAD_H
#define SR_RELOAD_H

#include "topology.h"

/*
 * Builds the version `c` describes on top of the current one and makes it
 * current; counts and logs the outcome ("router WHAT: topology version N").
 * The caller holds r->reload_lock. On error nothing changes and err says why.
 */
int sr__reload_locked(sr_router *r, const sr_config *c, const char *what, char *err,
                      size_t errlen);

/*
 * A reload from a source the library reads itself (topology.file, topology.etcd): `c`, parsed
 * from it, gets the application's log and event callbacks of the current version `cur`
 * (a text holds options and topology, never callbacks) and is applied under the reload lock.
 */
int sr__reload_from_source(sr_router *r, sr_topo *cur, sr_config *c, const char *what,
                           char *err, size_t errlen);

/* Logs a version's summary: "router WHAT: topology version N, ...". */
void sr__log_version(sr_topo *t, const char *what);

#endif
