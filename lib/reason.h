/*
 * Why a statement could not run, as a value. The layers below the entry
 * points (read.c, node.c) return a status and fill an sr_reason; only the
 * entry points turn it into the session's message (session.c), so a lower
 * layer never writes text the caller will see, and every message about a
 * node is worded in one place.
 */
#ifndef SR_REASON_H
#define SR_REASON_H

#include "internal.h"

struct sr_node;

typedef enum sr_reason_kind {
    SR_REASON_DRIVER = 0,   /* `node` failed with `err` (pool or driver; keeps the SQLSTATE) */
    SR_REASON_NO_NODE,      /* no node of `shard` may take the statement: each node says why */
    SR_REASON_PRIMARY_DOWN, /* the primary of `shard` is ejected and not due for a probe */
    SR_REASON_NOT_WRITABLE, /* the primary of `shard` reports read-only / in recovery */
    SR_REASON_SPLIT_BRAIN,  /* two nodes of `shard` report themselves primary (failover.c) */
    SR_REASON_STALE,        /* no replica has the needed position; `detail` says why,
                               err.message holds the position ("" when unknown) */
    SR_REASON_LATE          /* the deadline passed while looking for a node; `detail` says why */
} sr_reason_kind;

typedef struct sr_reason {
    sr_reason_kind kind;
    int shard;
    const struct sr_node *node; /* SR_REASON_DRIVER */
    const char *detail;         /* static text, or NULL */
    const char *note;           /* static text appended to what the caller was doing, or NULL */
    sr_driver_error err;        /* SR_REASON_DRIVER (and the position of SR_REASON_STALE) */
} sr_reason;

/* A driver or pool error on `node`: the reason, and its status. */
static inline int sr__reason_driver(sr_reason *why, const struct sr_node *node, int shard,
                                    const sr_driver_error *e, const char *note)
{
    why->kind = SR_REASON_DRIVER;
    why->shard = shard;
    why->node = node;
    why->detail = NULL;
    why->note = note;
    if (e != &why->err)
        why->err = *e;
    return e->status;
}

/* A reason about a whole shard; returns `status`. */
static inline int sr__reason_shard(sr_reason *why, int status, sr_reason_kind kind, int shard,
                                   const char *detail)
{
    why->kind = kind;
    why->shard = shard;
    why->node = NULL;
    why->detail = detail;
    why->note = NULL;
    why->err.status = status;
    why->err.sqlstate[0] = '\0';
    why->err.message[0] = '\0';
    return status;
}

#endif
