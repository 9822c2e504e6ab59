/*
 * A session's replication positions per shard (positions.c): after its last
 * write there, and what it has read at (monotonic reads). Positions are
 * opaque text owned by the shard's driver (a PostgreSQL WAL LSN, a
 * MariaDB/MySQL GTID set); only the driver compares and merges them.
 */
#ifndef SR_POSITIONS_H
#define SR_POSITIONS_H

#include <string.h>

#include "topology.h"

/* Allocated on first use: a session that never writes under read_your_writes has none. */
typedef struct sr_positions {
    char **written;  /* [nshards]: position after the last write, or NULL */
    char **observed; /* [nshards]: position read at (monotonic), or NULL */
    /* [nshards]: the node a monotonic read last ran on without asking its position (index
     * + 1, 0: none) and the reads in a row there: the next read sticks to that node, which
     * never goes back, or asks; see sr__positions_note_read() */
    struct sr_read_on {
        int node;
        int count;
    } *read_on;
    int64_t *written_ns; /* [nshards]: sr_clock_ns() of the last write recorded here, 0 when
                            none (or the position came from a token: its age is unknown) */
    int lost;        /* recording one ran out of memory: reads that need a position go to the
                        primary for the rest of the session */
} sr_positions;

/* The marker for "written here but the position is unknown": read the primary. */
extern const char sr__position_unknown[];

static inline bool sr__position_is_unknown(const char *pos)
{
    return pos && (pos == sr__position_unknown || strcmp(pos, sr__position_unknown) == 0);
}

/* Whether a consistency mode tracks positions at all. */
static inline bool sr__mode_uses_positions(int mode)
{
    return mode == SR_CONSISTENCY_READ_YOUR_WRITES || mode == SR_CONSISTENCY_MONOTONIC;
}

void sr__positions_free(sr_positions *p, int nshards);

/*
 * Moves a session's positions from topology version `from` to `to` (a
 * reload): each stays with the shard of the same name when its primary is
 * the same backend; for a shard whose primary changed it becomes "unknown"
 * (its next read goes to the primary); a shard that is gone loses it.
 * SR_ENOMEM: every position is dropped and p->lost set (reads that need one
 * go to the primary).
 */
int sr__positions_remap(sr_positions *p, const sr_topo *from, const sr_topo *to);

/*
 * The position a read on `shard` must see under `mode`, copied to buf; NULL
 * when there is none (mode any/primary, nothing recorded, or a backend
 * without positions). May return sr__position_unknown: only the primary will do.
 */
const char *sr__positions_required(const sr_positions *p, const sr_topo *r, int shard, int mode,
                                   char *buf, size_t len);

/*
 * After a write or commit on the primary: records `known` (the position the
 * write's own exchange returned, sr__node_exec_at) or, when that is NULL or
 * "", reads the write position on the same connection (unknown when it
 * cannot be read: the shard's reads go to the primary). Stamps the write's
 * time for the replay-delay estimate.
 */
void sr__positions_record_write(sr_positions *p, sr_topo *r, sr_node *primary,
                                sr_driver_conn *conn, int64_t deadline, const char *known);

/* When this session last wrote on `shard` (sr_clock_ns()), 0 when unknown. */
static inline int64_t sr__positions_written_ns(const sr_positions *p, int shard)
{
    return p->written_ns ? p->written_ns[shard] : 0;
}

/*
 * After a monotonic read on `n`. A server's state only moves forward, so
 * the next read may go to the same node without knowing where this one
 * read: only the node is remembered (no round trip), and the next read of
 * the shard sticks to it (sr__positions_sticky_node); that holds for the
 * primary too (a read that fell back to it). Every SR_STICKY_READS-th read
 * in a row on one node records what the node has applied instead, fetched
 * on `conn` (a round trip), from which reads may go on to any replica that
 * has applied it: a session does not stay on one node (perhaps a replica
 * that lags, or the primary) for good, and the policy's spread comes back.
 */
#define SR_STICKY_READS 8
void sr__positions_note_read(sr_positions *p, sr_topo *r, sr_node *n, sr_driver_conn *conn,
                             int64_t deadline);

/* The node index the shard's next monotonic read sticks to, or -1. */
static inline int sr__positions_sticky_node(const sr_positions *p, int shard)
{
    return p->read_on && p->read_on[shard].node ? p->read_on[shard].node - 1 : -1;
}

/* Merges an imported position (a token's) into what this session wrote on `shard`. */
void sr__positions_merge_written(sr_positions *p, const sr_topo *r, int shard, const char *pos);

/* The first shard whose write position is unknown, or -1. */
int sr__positions_first_unknown(const sr_positions *p, int nshards);

#endif
