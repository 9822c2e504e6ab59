/*
 * Consistency: the session's replication positions per shard (what it wrote,
 * what it read at), the nodes' cached replay positions and lag, and the
 * printable tokens that carry positions between sessions and processes.
 *
 * Positions are opaque text owned by the backend's driver (a PostgreSQL WAL
 * LSN, a MariaDB/MySQL GTID set); only the driver compares and merges them.
 * A node's cached position is a lower bound of what it has applied, so
 * "cached covers wanted" proves a replica fresh enough without asking it.
 */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

const char sr__position_unknown[] = "(unknown)";

static const char *const mode_names[] = {"any", "monotonic", "read_your_writes", "primary"};

/* The driver that owns the positions of a shard: its primary's. */
static const sr_driver *positions_driver(const sr_router *r, int shard)
{
    const sr_driver *d = r->shards[shard].nodes[0].driver;
    return sr__driver_has_positions(d) ? d : NULL;
}

void sr__consistency_init(sr_session *s)
{
    s->mode = s->router->opts.consistency_mode;
    s->max_lag_ms = -1;
}

static void free_positions(char **slots, int n)
{
    for (int i = 0; slots && i < n; i++)
        free(slots[i]);
    free(slots);
}

void sr__consistency_free(sr_session *s)
{
    free_positions(s->written, s->router->nshards);
    free_positions(s->observed, s->router->nshards);
    free(s->token);
    s->written = s->observed = NULL;
    s->token = NULL;
}

/* Merges `pos` into *slot (allocating the slot array on first use). */
static void merge_into(sr_session *s, char ***slots, int shard, const char *pos)
{
    const sr_driver *d = positions_driver(s->router, shard);
    if (!*slots) {
        *slots = calloc((size_t)s->router->nshards, sizeof **slots);
        if (!*slots) {
            /* Forgetting the position would let a read pick a replica behind it. */
            s->positions_lost = 1;
            return;
        }
    }
    char **slot = &(*slots)[shard];
    char merged[SR_POSITION_MAX];
    const char *keep = pos;
    if (*slot && pos != sr__position_unknown && strcmp(*slot, sr__position_unknown) != 0) {
        if (d && d->position_merge(*slot, pos, merged, sizeof merged) == SR_OK)
            keep = merged;
    }
    char *copy = sr__strdup(keep);
    if (!copy) {
        s->positions_lost = 1; /* the older position kept would be too weak a bound */
        return;
    }
    free(*slot);
    *slot = copy;
}

const char *sr__required_position(sr_session *s, int shard, int mode, char *buf, size_t len)
{
    if (mode != SR_CONSISTENCY_READ_YOUR_WRITES && mode != SR_CONSISTENCY_MONOTONIC)
        return NULL;
    const sr_driver *d = positions_driver(s->router, shard);
    const char *w = s->written ? s->written[shard] : NULL;
    const char *o = mode == SR_CONSISTENCY_MONOTONIC && s->observed ? s->observed[shard] : NULL;
    if (!d && !(w && strcmp(w, sr__position_unknown) == 0))
        return NULL; /* no positions on this backend: every node is consistent */
    if (s->positions_lost)
        return sr__position_unknown;
    if ((w && strcmp(w, sr__position_unknown) == 0) || (o && strcmp(o, sr__position_unknown) == 0))
        return sr__position_unknown;
    if (w && o) {
        if (d->position_merge(w, o, buf, len) != SR_OK)
            return sr__position_unknown;
        return buf;
    }
    const char *p = w ? w : o;
    if (!p)
        return NULL;
    /* Every read in these modes comes here: a plain copy, not printf. */
    size_t n = strlen(p);
    if (n >= len)
        return sr__position_unknown;
    memcpy(buf, p, n + 1);
    return buf;
}

void sr__record_write(sr_session *s, sr_node *primary, sr_driver_conn *conn, int64_t deadline)
{
    if (s->mode != SR_CONSISTENCY_READ_YOUR_WRITES && s->mode != SR_CONSISTENCY_MONOTONIC)
        return;
    const sr_driver *d = positions_driver(s->router, primary->shard);
    if (!d || !d->write_position)
        return;
    char pos[SR_POSITION_MAX];
    sr_driver_error e = {0};
    if (d->write_position(conn, deadline, pos, sizeof pos, &e) == SR_OK) {
        merge_into(s, &s->written, primary->shard, pos);
        return;
    }
    /* The write happened but where it is in the log is unknown: read the primary until the
     * next write gives a position again. */
    sr__log(s->router, SR_LOG_WARN, "shard '%s': could not read the write position (%s); this "
                                    "session reads that shard from its primary",
            s->router->shards[primary->shard].name, e.message);
    if (!s->written)
        s->written = calloc((size_t)s->router->nshards, sizeof *s->written);
    if (s->written) {
        free(s->written[primary->shard]);
        s->written[primary->shard] = sr__strdup(sr__position_unknown);
    }
    if (!s->written || !s->written[primary->shard])
        s->positions_lost = 1;
}

void sr__record_observed(sr_session *s, sr_node *n, sr_driver_conn *conn, int64_t deadline)
{
    const sr_driver *d = positions_driver(s->router, n->shard);
    if (!d)
        return;
    /* Asked after the read, so it is at least the state the read saw. */
    char pos[SR_POSITION_MAX];
    sr_driver_error e = {0};
    int rc = n->role == SR_PRIMARY && d->write_position
                 ? d->write_position(conn, deadline, pos, sizeof pos, &e)
                 : d->replay_position(conn, deadline, pos, sizeof pos, &e);
    if (rc == SR_OK) {
        merge_into(s, &s->observed, n->shard, pos);
        if (n->role == SR_REPLICA)
            sr__node_store_position(n, pos);
    } else {
        merge_into(s, &s->observed, n->shard, sr__position_unknown);
    }
}

/* ---- nodes: cached positions and lag ---- */

void sr__node_store_position(sr_node *n, const char *pos)
{
    const sr_driver *d = n->driver;
    if (!sr__driver_has_positions(d) || strlen(pos) >= sizeof n->replay_pos)
        return;
    pthread_mutex_lock(&n->pos_lock);
    /* Positions only move forward: keep the cache monotonic even when answers race. */
    if (!n->replay_pos[0] || d->position_covers(pos, n->replay_pos) == 1)
        memcpy(n->replay_pos, pos, strlen(pos) + 1);
    pthread_mutex_unlock(&n->pos_lock);
}

int sr__node_has_applied(sr_node *n, sr_driver_conn *conn, const char *want, int64_t deadline,
                         bool *applied, sr_driver_error *e)
{
    const sr_driver *d = n->driver;
    *applied = false;
    if (!sr__driver_has_positions(d)) {
        *applied = true;
        return SR_OK;
    }
    pthread_mutex_lock(&n->pos_lock);
    int cached = n->replay_pos[0] && d->position_covers(n->replay_pos, want) == 1;
    pthread_mutex_unlock(&n->pos_lock);
    if (cached) {
        *applied = true;
        return SR_OK;
    }
    char pos[SR_POSITION_MAX];
    int rc = d->replay_position(conn, deadline, pos, sizeof pos, e);
    if (rc != SR_OK)
        return rc;
    sr__node_store_position(n, pos);
    *applied = d->position_covers(pos, want) == 1;
    return SR_OK;
}

void sr__node_store_lag(sr_node *n, int64_t lag_ms)
{
    atomic_store(&n->lag_ms, lag_ms);
    atomic_store(&n->lag_stamp_ns, sr_clock_ns());
}

/* Measures a replica's lag now, on a pooled connection (the first stale reader does it). */
static void refresh_lag(sr_session *s, sr_node *n)
{
    sr_router *r = s->router;
    int64_t deadline = sr__statement_deadline(r);
    sr_driver_error e = {0};
    sr_driver_conn *conn = NULL;
    if (sr__node_checkout(s, n, false, deadline, &conn, &e) != SR_OK)
        return;
    int64_t lag = -2;
    int rc = n->driver->replica_lag_ms(conn, deadline, &lag, &e);
    sr__node_release(s, n, conn, rc, &e, false);
    if (rc == SR_OK) {
        int64_t before = atomic_exchange(&n->lag_ms, lag);
        if ((before == -1) != (lag == -1))
            sr__log(r, lag == -1 ? SR_LOG_WARN : SR_LOG_INFO,
                    "shard '%s' replica %s: replication %s", r->shards[n->shard].name,
                    n->uri->redacted, lag == -1 ? "is broken (not eligible for reads)" : "runs again");
    }
}

bool sr__node_lag_ok(sr_session *s, sr_node *n, int max_lag_ms)
{
    if (!n->driver->replica_lag_ms)
        return true; /* no replication, no lag (SQLite) */
    if (max_lag_ms > 0) {
        int64_t now = sr_clock_ns();
        int64_t stamp = atomic_load(&n->lag_stamp_ns);
        int64_t every = (int64_t)s->router->opts.replica_lag_refresh_ms * 1000000;
        /* One reader wins the stamp and measures; the others use the last figure. */
        if (now - stamp >= every && atomic_compare_exchange_strong(&n->lag_stamp_ns, &stamp, now))
            refresh_lag(s, n);
        int64_t lag = atomic_load(&n->lag_ms);
        return lag >= 0 && lag <= max_lag_ms;
    }
    /* No bound: only a replica known to be broken is skipped. */
    return atomic_load(&n->lag_ms) != -1;
}

/* ---- session options ---- */

SR_API int sr_session_set(sr_session *s, const char *option, const char *value)
{
    if (!s)
        return SR_EINVAL;
    sr__session_clear_error(s);
    if (!option || !value)
        return sr__session_fail(s, SR_EINVAL, "sr_session_set: option and value must not be NULL");
    if (strcmp(option, "consistency") == 0) {
        for (int i = 0; i < (int)SR_ARRAY_LEN(mode_names); i++) {
            if (strcmp(value, mode_names[i]) == 0) {
                s->mode = i;
                return SR_OK;
            }
        }
        return sr__session_fail(s, SR_EINVAL, "consistency: '%.64s' is not one of any, monotonic, "
                                              "read_your_writes, primary", value);
    }
    if (strcmp(option, "max_lag_ms") == 0) {
        if (strcmp(value, "default") == 0) {
            s->max_lag_ms = -1;
            return SR_OK;
        }
        long long v;
        bool overflow;
        if (!sr__parse_int64(value, &v, &overflow) || overflow || v < 0 || v > 86400000)
            return sr__session_fail(s, SR_EINVAL, "max_lag_ms: '%.64s' is not 0..86400000 or "
                                                  "'default'", value);
        s->max_lag_ms = (int)v;
        return SR_OK;
    }
    return sr__session_fail(s, SR_EINVAL, "unknown session option '%.64s' (consistency, max_lag_ms)",
                            option);
}

/* ---- tokens ----
 *
 *   sr1;c=<16 hex digits>;<shard>=<position>;<shard>=<position>...
 *
 * c identifies the topology a position makes sense in: the distribution and
 * the backends of the shards. Shard names and positions are percent-encoded
 * where they hold ';', '=', '%' or anything outside printable ASCII.
 */

static uint64_t topology_id(const sr_router *r)
{
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, "shardroute-topology", 19);
    const char *dist = sr__option_enum_name("shard.distribution", r->opts.distribution);
    XXH3_64bits_update(&st, dist, strlen(dist));
    /* The set of backends, not the shard list: resharding keeps tokens valid. */
    const char *seen[8];
    int nseen = 0;
    for (int i = 0; i < r->nshards; i++) {
        const char *name = r->shards[i].nodes[0].driver->name;
        int dup = 0;
        for (int j = 0; j < nseen; j++)
            dup |= strcmp(seen[j], name) == 0;
        if (!dup && nseen < 8)
            seen[nseen++] = name;
    }
    /* Order-independent: sort the few names. */
    for (int i = 1; i < nseen; i++)
        for (int j = i; j > 0 && strcmp(seen[j - 1], seen[j]) > 0; j--) {
            const char *t = seen[j];
            seen[j] = seen[j - 1];
            seen[j - 1] = t;
        }
    for (int i = 0; i < nseen; i++) {
        XXH3_64bits_update(&st, "|", 1);
        XXH3_64bits_update(&st, seen[i], strlen(seen[i]));
    }
    return XXH3_64bits_digest(&st);
}

static int needs_escape(unsigned char ch)
{
    return ch == ';' || ch == '=' || ch == '%' || ch <= ' ' || ch >= 0x7f;
}

/* Appends `text` escaped; returns false when out of room. */
static bool put_escaped(char **p, char *end, const char *text)
{
    for (const unsigned char *t = (const unsigned char *)text; *t; t++) {
        if (needs_escape(*t)) {
            if (end - *p < 4)
                return false;
            *p += sprintf(*p, "%%%02X", *t);
        } else {
            if (end - *p < 2)
                return false;
            *(*p)++ = (char)*t;
        }
    }
    **p = '\0';
    return true;
}

SR_API const char *sr_session_token(sr_session *s)
{
    if (!s)
        return NULL;
    sr__session_clear_error(s);
    sr_router *r = s->router;
    size_t cap = 64;
    for (int i = 0; s->written && i < r->nshards; i++)
        if (s->written[i])
            cap += 3 * (strlen(r->shards[i].name) + strlen(s->written[i])) + 2;
    char *buf = malloc(cap);
    if (!buf) {
        sr__session_fail(s, SR_ENOMEM, "out of memory building the token");
        return NULL;
    }
    buf[0] = '\0';
    int entries = 0;
    char *p = buf + sprintf(buf, "sr1;c=%016llx", (unsigned long long)topology_id(r));
    char *end = buf + cap;
    for (int i = 0; s->written && i < r->nshards; i++) {
        const char *pos = s->written[i];
        if (!pos || strcmp(pos, sr__position_unknown) == 0)
            continue; /* nothing another process could wait for */
        *p++ = ';';
        if (!put_escaped(&p, end, r->shards[i].name) || end - p < 2)
            break;
        *p++ = '=';
        if (!put_escaped(&p, end, pos))
            break;
        entries++;
    }
    if (entries == 0)
        buf[0] = '\0';
    free(s->token);
    s->token = buf;
    return buf;
}

/* Decodes percent-escapes of [p, p+n) into out; false when malformed or too long. */
static bool unescape(const char *p, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '%') {
            if (i + 2 >= n) /* both hex digits must be inside the entry */
                return false;
            int hi = sr__hexval(p[i + 1]), lo = sr__hexval(p[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if ((unsigned char)ch <= ' ' || (unsigned char)ch >= 0x7f) {
            return false;
        }
        if (o + 1 >= outlen)
            return false;
        out[o++] = ch;
    }
    out[o] = '\0';
    return true;
}

SR_API int sr_session_set_token(sr_session *s, const char *token)
{
    if (!s)
        return SR_EINVAL;
    sr__session_clear_error(s);
    if (!token)
        return sr__session_fail(s, SR_EINVAL, "sr_session_set_token: token is NULL");
    if (!*token)
        return SR_OK; /* the token of a session that had written nothing */
    sr_router *r = s->router;
    unsigned long long id;
    int used = 0;
    if (sscanf(token, "sr1;c=%16llx%n", &id, &used) != 1 || used != 22 ||
        (token[used] != ';' && token[used] != '\0'))
        return sr__session_fail(s, SR_EINVAL, "malformed consistency token (expected "
                                              "'sr1;c=...;shard=position...')");
    if (id != topology_id(r))
        return sr__session_fail(s, SR_EINVAL, "this consistency token comes from another topology "
                                              "(other distribution or backends)");

    /* Parse every entry before merging any, so a bad token changes nothing. */
    enum { MAX_ENTRIES = 4096 };
    int nentries = 0;
    struct entry {
        int shard;
        char pos[SR_POSITION_MAX];
    } *entries = NULL;
    const char *p = token + used;
    int rc = SR_OK;
    while (*p == ';' && rc == SR_OK) {
        p++;
        const char *eq = strchr(p, '=');
        const char *semi = strchr(p, ';');
        if (!semi)
            semi = p + strlen(p);
        char name[256];
        if (!eq || eq > semi || !unescape(p, (size_t)(eq - p), name, sizeof name) || !name[0]) {
            rc = SR_EINVAL;
            break;
        }
        struct entry e;
        if (!unescape(eq + 1, (size_t)(semi - eq - 1), e.pos, sizeof e.pos) || !e.pos[0]) {
            rc = SR_EINVAL;
            break;
        }
        e.shard = -1;
        for (int i = 0; i < r->nshards; i++)
            if (strcmp(r->shards[i].name, name) == 0)
                e.shard = i;
        p = semi;
        if (e.shard < 0) {
            sr__log(r, SR_LOG_INFO, "consistency token: shard '%s' does not exist here; ignored",
                    name);
            continue;
        }
        /* A position the driver cannot merge is not one (merge parses; covers may
         * short-cut equal strings). */
        const sr_driver *d = positions_driver(r, e.shard);
        char check[SR_POSITION_MAX];
        if (!d || d->position_merge(e.pos, e.pos, check, sizeof check) != SR_OK) {
            rc = SR_EINVAL;
            break;
        }
        if (nentries == MAX_ENTRIES) {
            rc = SR_EINVAL;
            break;
        }
        struct entry *grown = realloc(entries, (size_t)(nentries + 1) * sizeof *entries);
        if (!grown) {
            free(entries);
            return sr__session_fail(s, SR_ENOMEM, "out of memory reading the token");
        }
        entries = grown;
        entries[nentries++] = e;
    }
    if (rc != SR_OK || *p != '\0') {
        free(entries);
        return sr__session_fail(s, SR_EINVAL, "malformed consistency token near '%.32s'", p);
    }
    for (int i = 0; i < nentries; i++)
        merge_into(s, &s->written, entries[i].shard, entries[i].pos);
    free(entries);
    return SR_OK;
}
