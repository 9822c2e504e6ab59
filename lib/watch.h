/*
 * The watched configuration file (topology.file, watch.c): checked on each
 * round of health checks, reloaded when it changes.
 */
#ifndef SR_WATCH_H
#define SR_WATCH_H

#include "topology.h"

/* Takes the file's present state as the baseline (sr_router_open): only a change reloads. */
void sr__watch_init(sr_router *r);

/*
 * When the current version names a topology.file whose size, modification
 * time or inode differ from the last check's, reloads the router from it
 * (under the reload lock). A file that cannot be read or does not check out
 * is logged and left alone until it changes again. Bounded by a stat() and,
 * on a change, reading the file (at most 64 MiB, sr_config_load_file).
 */
void sr__watch_poll(sr_router *r);

#endif
