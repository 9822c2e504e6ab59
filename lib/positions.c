/*
 * A session's replication positions (see positions.h). A node's cached
 * position (node.c) is a lower bound of what it has applied, so "cached
 * covers wanted" proves a replica fresh enough without asking it; here the
 * session side: what a read must see, recorded after writes and reads.
 */
#include "positions.h"

#include <stdlib.h>
#include <string.h>

#include "node.h"

const char sr__position_unknown[] = "(unknown)";

static void free_slots(char **slots, int n)
{
    for (int i = 0; slots && i < n; i++)
        free(slots[i]);
    free(slots);
}

void sr__positions_free(sr_positions *p, int nshards)
{
    free_slots(p->written, nshards);
    free_slots(p->observed, nshards);
    free(p->written_ns);
    free(p->read_on);
    p->read_on = NULL;
    p->written = p->observed = NULL;
    p->written_ns = NULL;
}

/* Merges `pos` into (*slots)[shard] (allocating the slot array on first use). */
static void merge_into(sr_positions *p, const sr_topo *r, char ***slots, int shard,
                       const char *pos)
{
    const sr_driver *d = sr__shard_positions_driver(r, shard);
    if (!*slots) {
        *slots = calloc((size_t)r->nshards, sizeof **slots);
        if (!*slots) {
            /* Forgetting the position would let a read pick a replica behind it. */
            p->lost = 1;
            return;
        }
    }
    char **slot = &(*slots)[shard];
    char merged[SR_POSITION_MAX];
    const char *keep = pos;
    if (d && !sr__position_is_unknown(pos)) {
        /*
         * Even a first position goes through the driver's merge: what is kept is
         * then always the driver's own canonical form (" " from a GTID source is
         * ""), which sr_session_set_token() takes back. A position the driver
         * cannot parse guarantees nothing: the shard's reads go to the primary.
         */
        const char *with = *slot && !sr__position_is_unknown(*slot) ? *slot : pos;
        keep = d->position_merge(with, pos, merged, sizeof merged) == SR_OK ? merged
                                                                              : sr__position_unknown;
    }
    char *copy = sr_strdup(keep);
    if (!copy) {
        p->lost = 1; /* the older position kept would be too weak a bound */
        return;
    }
    free(*slot);
    *slot = copy;
}

const char *sr__positions_required(const sr_positions *p, const sr_topo *r, int shard, int mode,
                                   char *buf, size_t len)
{
    if (!sr__mode_uses_positions(mode))
        return NULL;
    const char *w = p->written ? p->written[shard] : NULL;
    const char *o = mode == SR_CONSISTENCY_MONOTONIC && p->observed ? p->observed[shard] : NULL;
    if (!w && !o && !p->lost)
        return NULL; /* nothing recorded: the common case, decided without the driver */
    const sr_driver *d = sr__shard_positions_driver(r, shard);
    if (!d && !sr__position_is_unknown(w))
        return NULL; /* no positions on this backend: every node is consistent */
    if (p->lost)
        return sr__position_unknown;
    if (sr__position_is_unknown(w) || sr__position_is_unknown(o))
        return sr__position_unknown;
    if (w && o) {
        if (d->position_merge(w, o, buf, len) != SR_OK)
            return sr__position_unknown;
        return buf;
    }
    const char *pos = w ? w : o;
    /* Every read in these modes comes here: a plain copy, not printf. */
    size_t n = strlen(pos);
    if (n >= len)
        return sr__position_unknown;
    memcpy(buf, pos, n + 1);
    return buf;
}

/* Notes when the write was made; without the array the write merely counts as old. */
static void stamp_write(sr_positions *p, const sr_topo *r, int shard)
{
    if (!p->written_ns)
        p->written_ns = calloc((size_t)r->nshards, sizeof *p->written_ns);
    if (p->written_ns)
        p->written_ns[shard] = sr_clock_ns();
}

void sr__positions_record_write(sr_positions *p, sr_topo *r, sr_node *primary,
                                sr_driver_conn *conn, int64_t deadline, const char *known)
{
    const sr_driver *d = sr__shard_positions_driver(r, primary->shard);
    if (!d || (!d->write_position && !(known && known[0])))
        return;
    stamp_write(p, r, primary->shard);
    if (known && known[0]) {
        merge_into(p, r, &p->written, primary->shard, known);
        return;
    }
    char pos[SR_POSITION_MAX];
    sr_driver_error e;
    sr__driver_error_clear(&e);
    if (d->write_position(conn, deadline, pos, sizeof pos, &e) == SR_OK) {
        merge_into(p, r, &p->written, primary->shard, pos);
        return;
    }
    /* The write happened but where it is in the log is unknown: read the primary until the
     * next write gives a position again. */
    sr__log(r, SR_LOG_WARN, "shard '%s': could not read the write position (%s); this "
                            "session reads that shard from its primary",
            r->shards[primary->shard].name, e.message);
    if (!p->written)
        p->written = calloc((size_t)r->nshards, sizeof *p->written);
    if (p->written) {
        free(p->written[primary->shard]);
        p->written[primary->shard] = sr_strdup(sr__position_unknown);
    }
    if (!p->written || !p->written[primary->shard])
        p->lost = 1;
}

void sr__positions_note_read(sr_positions *p, sr_topo *r, sr_node *n, sr_driver_conn *conn,
                             int64_t deadline)
{
    const sr_driver *d = sr__shard_positions_driver(r, n->shard);
    if (!d)
        return;
    /* Without memory to remember the node, its position is asked, as every 8th time. */
    if (!p->read_on)
        p->read_on = calloc((size_t)r->nshards, sizeof *p->read_on);
    if (p->read_on) {
        int *on = &p->read_on[n->shard].node, *count = &p->read_on[n->shard].count;
        if (*on != n->index + 1 || *count < SR_STICKY_READS - 1) {
            *count = *on == n->index + 1 ? *count + 1 : 1;
            *on = n->index + 1;
            return;
        }
        *on = *count = 0;
    }
    /* Asked after the read, so it is at least the state the read saw. */
    char pos[SR_POSITION_MAX];
    sr_driver_error e;
    sr__driver_error_clear(&e);
    int rc = n->role == SR_PRIMARY && d->write_position
                 ? d->write_position(conn, deadline, pos, sizeof pos, &e)
                 : d->replay_position(conn, deadline, pos, sizeof pos, &e);
    if (rc == SR_OK) {
        merge_into(p, r, &p->observed, n->shard, pos);
        if (n->role == SR_REPLICA)
            sr__node_store_position(n, pos);
    } else {
        merge_into(p, r, &p->observed, n->shard, sr__position_unknown);
    }
}

void sr__positions_merge_written(sr_positions *p, const sr_topo *r, int shard, const char *pos)
{
    merge_into(p, r, &p->written, shard, pos);
    /* The position may now be another process's write, of unknown age. */
    if (p->written_ns)
        p->written_ns[shard] = 0;
}

int sr__positions_first_unknown(const sr_positions *p, int nshards)
{
    for (int i = 0; p->written && i < nshards; i++)
        if (sr__position_is_unknown(p->written[i]))
            return i;
    return -1;
}

/* Index of the shard named `name` in `t`, or -1 (a linear scan per shard: remapping happens
 * once per session per reload, and only for a session that has positions). */
static int shard_named(const sr_topo *t, const char *name, int hint)
{
    if (hint >= 0 && hint < t->nshards && strcmp(t->shards[hint].name, name) == 0)
        return hint; /* the usual case: the shard kept its place */
    for (int i = 0; i < t->nshards; i++)
        if (strcmp(t->shards[i].name, name) == 0)
            return i;
    return -1;
}

/* Moves a slot array from `from`'s shard indexes to `to`'s; see sr__positions_remap. */
static int remap_slots(char ***slots, const sr_topo *from, const sr_topo *to)
{
    if (!*slots)
        return SR_OK;
    char **fresh = calloc((size_t)to->nshards, sizeof *fresh);
    if (!fresh) {
        free_slots(*slots, from->nshards);
        *slots = NULL;
        return SR_ENOMEM;
    }
    int rc = SR_OK;
    for (int j = 0; j < from->nshards; j++) {
        char *pos = (*slots)[j];
        if (!pos)
            continue;
        int i = shard_named(to, from->shards[j].name, j);
        if (i < 0)
            continue; /* the shard is gone */
        if (to->shards[i].nodes[0].b == from->shards[j].nodes[0].b) {
            fresh[i] = pos;
            (*slots)[j] = NULL;
        } else {
            /* Another primary: its positions are not comparable with this one. */
            fresh[i] = sr_strdup(sr__position_unknown);
            if (!fresh[i])
                rc = SR_ENOMEM;
        }
    }
    free_slots(*slots, from->nshards);
    *slots = fresh;
    return rc;
}

int sr__positions_remap(sr_positions *p, const sr_topo *from, const sr_topo *to)
{
    /* Both arrays are remapped whatever happens: afterwards every array has to's size. On
     * failure remap_slots frees the array it could not move and leaves NULL. */
    int rc = remap_slots(&p->written, from, to);
    int rc2 = remap_slots(&p->observed, from, to);
    if (rc == SR_OK)
        rc = rc2;
    int64_t *ns = NULL;
    if (rc == SR_OK && p->written_ns) {
        ns = calloc((size_t)to->nshards, sizeof *ns);
        if (!ns)
            rc = SR_ENOMEM;
        for (int j = 0; ns && j < from->nshards; j++) {
            int i = shard_named(to, from->shards[j].name, j);
            if (i >= 0)
                ns[i] = p->written_ns[j];
        }
    }
    free(p->written_ns);
    p->written_ns = ns;
    free(p->read_on); /* node indexes may have changed: the next monotonic read asks */
    p->read_on = NULL;
    if (rc != SR_OK) {
        /* Dropping a position would let a read pick a replica behind it. */
        sr__positions_free(p, to->nshards);
        p->lost = 1;
    }
    return rc;
}
