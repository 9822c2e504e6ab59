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
    if (d && pos != sr__position_unknown && strcmp(pos, sr__position_unknown) != 0) {
        /*
         * Even a first position goes through the driver's merge: what is kept is
         * then always the driver's own canonical form (" " from a GTID source is
         * ""), which sr_session_set_token() takes back. A position the driver
         * cannot parse guarantees nothing: the shard's reads go to the primary.
         */
        const char *with = *slot && strcmp(*slot, sr__position_unknown) != 0 ? *slot : pos;
        keep = d->position_merge(with, pos, merged, sizeof merged) == SR_OK ? merged
                                                                              : sr__position_unknown;
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

static int session_set(sr_session *s, const char *option, const char *value)
{
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

SR_API int sr_session_set(sr_session *s, const char *option, const char *value)
{
    if (!s)
        return SR_EINVAL;
    if (!sr__session_enter(s))
        return SR_EMISUSE;
    int rc = session_set(s, option, value);
    sr__session_leave(s);
    return rc;
}

/* ---- tokens ----
 *
 *   sr1;c=<16 hex digits>;<shard>=<position>;<shard>=<position>...
 *
 * c identifies the topology a position makes sense in: the distribution and
 * the backends of the shards. Shard names and positions are percent-encoded
 * where they hold ';', '=', '%' or anything outside printable ASCII.
 *
 * A token comes from outside (an HTTP header, a cookie), so what parsing one
 * may cost is bounded: its length (sr__token_max_bytes), one entry per shard
 * of this router plus SR_TOKEN_UNKNOWN_MAX for shards it does not have, a
 * binary search per name, one log line.
 */

/* Tokens up to this size are accepted by every router (more when the router can emit more). */
#define SR_TOKEN_MIN_BYTES (64 * 1024)
/* Entries for shards this router does not have that a token may hold (ignored). */
#define SR_TOKEN_UNKNOWN_MAX 64

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

/* What tokens need of the router, computed once: it never changes after open. */
typedef struct sr_token_index {
    uint64_t topology;
    size_t max_bytes;    /* longest token accepted: at least what this router can emit */
    size_t longest_name; /* a longer name is no shard here, without a search */
    int n;
    struct named_shard {
        const char *name; /* the router's own string */
        int shard;
    } by_name[];          /* sorted by name */
} sr_token_index;

static int cmp_named(const void *a, const void *b)
{
    return strcmp(((const struct named_shard *)a)->name, ((const struct named_shard *)b)->name);
}

/*
 * The router's token index, built by the first caller that needs it: racing
 * builders each build one, one wins the exchange, the others free theirs.
 * NULL when out of memory.
 */
static const sr_token_index *token_index(sr_router *r)
{
    sr_token_index *ix = atomic_load_explicit(&r->token_index, memory_order_acquire);
    if (ix)
        return ix;
    ix = malloc(sizeof *ix + (size_t)r->nshards * sizeof ix->by_name[0]);
    if (!ix)
        return NULL;
    ix->topology = topology_id(r);
    ix->n = r->nshards;
    ix->longest_name = 0;
    /* The longest token sr_session_token() can build: every shard, every byte escaped. */
    size_t emit = 32;
    for (int i = 0; i < r->nshards; i++) {
        size_t len = strlen(r->shards[i].name);
        ix->by_name[i] = (struct named_shard){r->shards[i].name, i};
        if (len > ix->longest_name)
            ix->longest_name = len;
        emit += 2 + 3 * len + 3 * (SR_POSITION_MAX - 1);
    }
    ix->max_bytes = emit > SR_TOKEN_MIN_BYTES ? emit : SR_TOKEN_MIN_BYTES;
    qsort(ix->by_name, (size_t)ix->n, sizeof ix->by_name[0], cmp_named);
    sr_token_index *none = NULL;
    if (!atomic_compare_exchange_strong_explicit(&r->token_index, &none, ix, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        free(ix);
        return none;
    }
    return ix;
}

void sr__token_index_free(sr_router *r)
{
    free(atomic_exchange(&r->token_index, NULL));
}

/* The shard named `name` (NUL-terminated, `len` bytes), or -1. */
static int shard_by_name(const sr_token_index *ix, const char *name, size_t len)
{
    if (len == 0 || len > ix->longest_name)
        return -1;
    struct named_shard key = {name, -1};
    const struct named_shard *hit =
        bsearch(&key, ix->by_name, (size_t)ix->n, sizeof key, cmp_named);
    return hit ? hit->shard : -1;
}

size_t sr__token_max_bytes(sr_router *r)
{
    const sr_token_index *ix = token_index(r);
    return ix ? ix->max_bytes : SR_TOKEN_MIN_BYTES;
}

static int needs_escape(unsigned char ch)
{
    return ch == ';' || ch == '=' || ch == '%' || ch <= ' ' || ch >= 0x7f;
}

/* Appends `text` escaped; returns false when out of room. */
static bool put_escaped(char **p, char *end, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *t = (const unsigned char *)text; *t; t++) {
        if (needs_escape(*t)) {
            if (end - *p < 4)
                return false;
            (*p)[0] = '%';
            (*p)[1] = hex[*t >> 4];
            (*p)[2] = hex[*t & 15];
            *p += 3;
        } else {
            if (end - *p < 2)
                return false;
            *(*p)++ = (char)*t;
        }
    }
    **p = '\0';
    return true;
}

size_t sr__token_encode(uint64_t topology, const char *const *names, const char *const *positions,
                        int n, char *buf, size_t cap)
{
    if (cap < 32)
        return 0;
    char *p = buf + snprintf(buf, cap, "sr1;c=%016llx", (unsigned long long)topology);
    char *end = buf + cap;
    int entries = 0;
    for (int i = 0; i < n; i++) {
        if (!positions[i] || strcmp(positions[i], sr__position_unknown) == 0)
            continue; /* nothing another process could wait for */
        if (end - p < 2)
            return 0;
        *p++ = ';';
        if (!put_escaped(&p, end, names[i]) || end - p < 2)
            return 0;
        *p++ = '=';
        if (!put_escaped(&p, end, positions[i]))
            return 0;
        entries++;
    }
    if (entries == 0)
        p = buf;
    *p = '\0';
    return (size_t)(p - buf);
}

static const char *session_token(sr_session *s)
{
    sr__session_clear_error(s);
    sr_router *r = s->router;
    /* A token that left out a write would let the importing session read a
     * replica that has not replayed it: no token at all is the honest answer.
     * This session itself reads those shards from the primary. */
    if (s->positions_lost) {
        sr__session_fail(s, SR_ESTALE, "a write position of this session was lost (out of "
                                       "memory): no token can carry it");
        return NULL;
    }
    for (int i = 0; s->written && i < r->nshards; i++)
        if (s->written[i] && strcmp(s->written[i], sr__position_unknown) == 0) {
            sr__session_fail(s, SR_ESTALE, "the write position on shard '%s' is unknown (it could "
                             "not be read after the write): no token can carry it until the "
                             "next write there records one", r->shards[i].name);
            return NULL;
        }
    const sr_token_index *ix = token_index(r);
    if (!ix) {
        sr__session_fail(s, SR_ENOMEM, "out of memory building the token");
        return NULL;
    }
    size_t cap = 64;
    for (int i = 0; s->written && i < r->nshards; i++)
        if (s->written[i])
            cap += 3 * (strlen(r->shards[i].name) + strlen(s->written[i])) + 2;
    char *buf = malloc(cap);
    const char **names = malloc((size_t)r->nshards * sizeof *names);
    if (!buf || !names) {
        free(buf);
        free(names);
        sr__session_fail(s, SR_ENOMEM, "out of memory building the token");
        return NULL;
    }
    for (int i = 0; i < r->nshards; i++)
        names[i] = r->shards[i].name;
    const char *const none[1] = {NULL};
    /* cap holds every entry escaped, so encoding cannot run out of room. */
    size_t len = sr__token_encode(ix->topology, names,
                                  s->written ? (const char *const *)s->written : none,
                                  s->written ? r->nshards : 0, buf, cap);
    free(names);
    if (len == 0)
        buf[0] = '\0';
    free(s->token);
    s->token = buf;
    return buf;
}

SR_API const char *sr_session_token(sr_session *s)
{
    if (!s || !sr__session_enter(s))
        return NULL;
    const char *t = session_token(s);
    sr__session_leave(s);
    return t;
}

/* Decodes percent-escapes of [p, p+n) into out; the decoded length, or -1 when
 * malformed or longer than outlen - 1. */
static long unescape(const char *p, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '%') {
            if (i + 2 >= n) /* both hex digits must be inside the field */
                return -1;
            int hi = sr__hexval(p[i + 1]), lo = sr__hexval(p[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi * 16 + lo);
            if (ch == '\0') /* would cut the name short: shard0%00junk is not shard0 */
                return -1;
            i += 2;
        } else if ((unsigned char)ch <= ' ' || (unsigned char)ch >= 0x7f) {
            return -1;
        }
        if (o + 1 >= outlen)
            return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    return (long)o;
}

/* Copies up to `max` bytes of untrusted text for a message or a log line: printable
 * ASCII as is, anything else as \xNN, so that it cannot forge lines or escapes. */
static void printable(char *dst, size_t dstlen, const char *src, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; src[i] && i < max && o + 5 < dstlen; i++) {
        unsigned char ch = (unsigned char)src[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
            dst[o++] = (char)ch;
        } else {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[ch >> 4];
            dst[o++] = hex[ch & 15];
        }
    }
    if (src[0] && strnlen(src, max + 1) > max && o + 4 < dstlen) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

int sr__token_parse(sr_router *r, const char *token, sr_token_parsed *out, char *why,
                    size_t whylen)
{
    memset(out, 0, sizeof *out);
    const sr_token_index *ix = token_index(r);
    if (!ix) {
        sr__fmt(why, whylen, "out of memory reading the token");
        return SR_ENOMEM;
    }
    size_t len = strnlen(token, ix->max_bytes + 1);
    if (len > ix->max_bytes) {
        sr__fmt(why, whylen, "consistency token longer than %zu bytes", ix->max_bytes);
        return SR_EINVAL;
    }
    if (len == 0)
        return SR_OK; /* the token of a session that had written nothing */
    int used = 0;
    uint64_t id = 0;
    if (len >= 22 && memcmp(token, "sr1;c=", 6) == 0) {
        for (used = 6; used < 22; used++) {
            int v = sr__hexval(token[used]);
            if (v < 0)
                break;
            id = id * 16 + (uint64_t)v;
        }
    }
    if (used != 22 || (token[22] != ';' && token[22] != '\0')) {
        sr__fmt(why, whylen, "malformed consistency token (expected 'sr1;c=...;shard=position...')");
        return SR_EINVAL;
    }
    if (id != ix->topology) {
        sr__fmt(why, whylen, "this consistency token comes from another topology (other "
                             "distribution or backends)");
        return SR_EINVAL;
    }

    /* Decoded text is never longer than the token: one buffer holds every position. */
    out->pos_of = malloc((size_t)r->nshards * sizeof *out->pos_of);
    out->text = malloc(len + 1);
    if (!out->pos_of || !out->text) {
        sr__token_parsed_free(out);
        sr__fmt(why, whylen, "out of memory reading the token");
        return SR_ENOMEM;
    }
    for (int i = 0; i < r->nshards; i++)
        out->pos_of[i] = -1;
    size_t used_text = 0;
    const char *p = token + 22;
    const char *bad = NULL;
    const char *what = "";
    while (*p == ';') {
        const char *entry = ++p;
        const char *semi = entry, *eq = NULL;
        while (*semi && *semi != ';') {
            if (*semi == '=' && !eq)
                eq = semi;
            semi++;
        }
        char name[256];
        long nlen = eq ? unescape(entry, (size_t)(eq - entry), name, sizeof name) : -1;
        if (nlen <= 0) {
            bad = entry, what = "bad shard name";
            break;
        }
        char *pos = out->text + used_text;
        long plen = unescape(eq + 1, (size_t)(semi - eq - 1), pos, SR_POSITION_MAX);
        if (plen < 0) {
            bad = entry, what = "bad position";
            break;
        }
        p = semi;
        int shard = shard_by_name(ix, name, (size_t)nlen);
        if (shard < 0) {
            if (out->unknown++ == 0)
                printable(out->first_unknown, sizeof out->first_unknown, name, 64);
            if (out->unknown > SR_TOKEN_UNKNOWN_MAX) {
                bad = entry, what = "too many entries for shards this router does not have";
                break;
            }
            continue;
        }
        if (out->pos_of[shard] >= 0) {
            bad = entry, what = "a shard appears twice";
            break;
        }
        /* A position the driver cannot merge is not one (merge parses; covers may
         * short-cut equal strings). */
        const sr_driver *d = positions_driver(r, shard);
        char check[SR_POSITION_MAX];
        if (!d || d->position_merge(pos, pos, check, sizeof check) != SR_OK) {
            bad = entry, what = d ? "the backend does not take this position" :
                                    "this shard's backend has no positions";
            break;
        }
        out->pos_of[shard] = (long)used_text;
        used_text += (size_t)plen + 1;
        out->entries++;
    }
    if (!bad && *p != '\0')
        bad = p, what = "unexpected text";
    if (bad) {
        char near[64 * 4 + 8];
        printable(near, sizeof near, bad, 32);
        sr__fmt(why, whylen, "malformed consistency token: %s near '%s'", what, near);
        sr__token_parsed_free(out);
        return SR_EINVAL;
    }
    return SR_OK;
}

void sr__token_parsed_free(sr_token_parsed *t)
{
    free(t->pos_of);
    free(t->text);
    t->pos_of = NULL;
    t->text = NULL;
}

static int session_set_token(sr_session *s, const char *token)
{
    sr__session_clear_error(s);
    if (!token)
        return sr__session_fail(s, SR_EINVAL, "sr_session_set_token: token is NULL");
    sr_router *r = s->router;
    sr_token_parsed t;
    char why[SR_ERRMSG_LEN];
    /* Every entry is checked before any is merged, so a bad token changes nothing. */
    int rc = sr__token_parse(r, token, &t, why, sizeof why);
    if (rc != SR_OK)
        return sr__session_fail(s, rc, "%s", why);
    if (t.unknown > 0)
        sr__log(r, SR_LOG_INFO, "consistency token: %d entr%s for shards this router does not "
                                "have ignored (first: '%s')",
                t.unknown, t.unknown == 1 ? "y" : "ies", t.first_unknown);
    for (int i = 0; t.pos_of && i < r->nshards; i++)
        if (t.pos_of[i] >= 0)
            merge_into(s, &s->written, i, t.text + t.pos_of[i]);
    sr__token_parsed_free(&t);
    return SR_OK;
}

SR_API int sr_session_set_token(sr_session *s, const char *token)
{
    if (!s)
        return SR_EINVAL;
    if (!sr__session_enter(s))
        return SR_EMISUSE;
    int rc = session_set_token(s, token);
    sr__session_leave(s);
    return rc;
}
