/*
 * Consistency tokens: the printable form in which a session's write
 * positions travel to another session or process (an HTTP header, a cookie).
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
#include "token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "positions.h"

/* Tokens up to this size are accepted by every router (more when the router can emit more). */
#define SR_TOKEN_MIN_BYTES (64 * 1024)
/* Entries for shards this router does not have that a token may hold (ignored). */
#define SR_TOKEN_UNKNOWN_MAX 64

static uint64_t topology_id(const sr_topo *r)
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
        const char *name = r->shards[i].nodes[0].b->driver->name;
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
static const sr_token_index *token_index(sr_topo *r)
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

void sr__token_index_free(sr_topo *r)
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

size_t sr__token_max_bytes(sr_topo *r)
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
        if (!positions[i] || sr__position_is_unknown(positions[i]))
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

int sr__token_build(sr_topo *r, const char *const *written, char **out)
{
    const sr_token_index *ix = token_index(r);
    if (!ix)
        return SR_ENOMEM;
    size_t cap = 64;
    for (int i = 0; written && i < r->nshards; i++)
        if (written[i])
            cap += 3 * (strlen(r->shards[i].name) + strlen(written[i])) + 2;
    char *buf = malloc(cap);
    const char **names = malloc((size_t)r->nshards * sizeof *names);
    if (!buf || !names) {
        free(buf);
        free(names);
        return SR_ENOMEM;
    }
    for (int i = 0; i < r->nshards; i++)
        names[i] = r->shards[i].name;
    const char *const none[1] = {NULL};
    /* cap holds every entry escaped, so encoding cannot run out of room. */
    size_t len = sr__token_encode(ix->topology, names, written ? written : none,
                                  written ? r->nshards : 0, buf, cap);
    free(names);
    if (len == 0)
        buf[0] = '\0';
    *out = buf;
    return SR_OK;
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

int sr__token_parse(sr_topo *r, const char *token, sr_token_parsed *out, char *why,
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
        const sr_driver *d = sr__shard_positions_driver(r, shard);
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

