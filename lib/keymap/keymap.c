/*
 * The key map: validates the key, answers pinned keys from an immutable
 * directory, and otherwise hands the key to the distribution chosen at build
 * time through one table (kind -> build, lookup, free), as twemproxy's hashkit
 * links its distributions.
 */
#include "dist.h"

#include <stdlib.h>
#include <string.h>

/* ---- callback: the application's own function ---- */

typedef struct callback_state {
    sr_keymap_fn fn;
    void *ud;
    int n;
} callback_state;

static int callback_build(const sr_keymap_spec *spec, void **state, char *err, size_t errlen)
{
    if (!spec->fn) {
        sr__fmt(err, errlen, "distribution callback needs a keymap function (sr_config_set_keymap_fn)");
        return SR_EINVAL;
    }
    callback_state *st = malloc(sizeof *st);
    if (!st) {
        sr__fmt(err, errlen, "out of memory");
        return SR_ENOMEM;
    }
    st->fn = spec->fn;
    st->ud = spec->fn_ud;
    st->n = spec->nshards;
    *state = st;
    return 0;
}

static int callback_lookup(const void *state, sr_key key, uint64_t hash)
{
    (void)hash;
    const callback_state *st = state;
    int r = st->fn(st->ud, key, st->n);
    /* A negative result is the application's own status; anything else must be an index. */
    if (r >= st->n)
        return SR_ENOSHARD;
    return r;
}

static void callback_free(void *state)
{
    free(state);
}

/* ---- the distribution table ---- */

static const struct dist {
    sr_dist_kind kind;
    const char *name;
    bool hashed; /* looks up by sr__hash_key(key) */
    sr_dist_build_fn build;
    sr_dist_lookup_fn lookup;
    sr_dist_free_fn free;
} dists[] = {
    {SR_DIST_KEYRANGE, "keyrange", true, sr__keyrange_build, sr__keyrange_lookup, sr__keyrange_free},
    {SR_DIST_JUMP, "jump", true, sr__jump_build, sr__jump_lookup, sr__jump_free},
    {SR_DIST_PG_HASH, "pg_hash", false, sr__pg_hash_build, sr__pg_hash_lookup, sr__pg_hash_free},
    {SR_DIST_MODULO, "modulo", true, sr__modulo_build, sr__modulo_lookup, sr__modulo_free},
    {SR_DIST_RANGE, "range", false, sr__range_build, sr__range_lookup, sr__range_free},
    {SR_DIST_CALLBACK, "callback", false, callback_build, callback_lookup, callback_free},
};

/* ---- pinned keys: open addressing, linear probing, built once ---- */

/* The probed slots stay small (16 bytes) so a miss, the common case, touches little memory. */
typedef struct pin_slot {
    uint64_t hash;
    uint32_t entry; /* 1 + index into pin_entries; 0: empty */
    int32_t shard;
} pin_slot;

typedef struct pin_entry {
    const unsigned char *bytes; /* into the keymap's arena */
    size_t len;
    int64_t i;
    sr_key_kind kind;
} pin_entry;

struct sr_keymap {
    bool hash; /* compute sr__hash_key once: the distribution or the pins need it */
    sr_dist_lookup_fn lookup;
    sr_dist_free_fn free;
    void *state;
    pin_slot *pins; /* NULL when nothing is pinned, so unpinned maps pay one test */
    size_t pin_mask;
    /* One bit per 16th of a pin, set at the pinned keys' hashes: most unpinned
     * keys are turned away by one well-predicted test instead of a probe whose
     * outcome (empty slot or not) would be a coin flip. */
    uint64_t *pin_filter;
    uint64_t filter_mask;
    pin_entry *pin_entries;
    unsigned char *arena;
};

static bool same_key(const pin_entry *e, sr_key key)
{
    if (e->kind != key.kind)
        return false;
    if (key.kind == SR_KEY_INT)
        return e->i == key.i;
    return e->len == key.len && (key.len == 0 || memcmp(e->bytes, key.ptr, key.len) == 0);
}

/* The filter uses the hash's high half; the slots use its low bits. */
static inline uint64_t filter_bit(const sr_keymap *m, uint64_t h)
{
    return (h >> 32) & m->filter_mask;
}

static const pin_slot *pin_find(const sr_keymap *m, uint64_t h, sr_key key)
{
    uint64_t bit = filter_bit(m, h);
    if (!(m->pin_filter[bit / 64] >> (bit % 64) & 1))
        return NULL;
    for (size_t at = (size_t)h & m->pin_mask;; at = (at + 1) & m->pin_mask) {
        const pin_slot *s = &m->pins[at];
        if (s->entry == 0)
            return NULL;
        if (s->hash == h && same_key(&m->pin_entries[s->entry - 1], key))
            return s;
    }
}

/* For messages: the integer, or the bytes quoted with non-printables escaped, cut at 40. */
static void describe_key(sr_key key, char *buf, size_t len)
{
    if (key.kind == SR_KEY_INT) {
        sr__fmt(buf, len, "%lld", (long long)key.i);
        return;
    }
    char tmp[40 * 4 + 8];
    size_t o = 0;
    const unsigned char *p = key.ptr;
    tmp[o++] = '"';
    for (size_t i = 0; i < key.len && i < 40; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\') {
            tmp[o++] = (char)p[i];
        } else {
            static const char hex[] = "0123456789abcdef";
            tmp[o++] = '\\';
            tmp[o++] = 'x';
            tmp[o++] = hex[p[i] >> 4];
            tmp[o++] = hex[p[i] & 15];
        }
    }
    tmp[o++] = '"';
    tmp[o] = '\0';
    sr__fmt(buf, len, "%s%s", tmp, key.len > 40 ? "..." : "");
}

static int build_pins(sr_keymap *m, const sr_keymap_spec *spec, char *err, size_t errlen)
{
    size_t cap = 8, arena_len = 0;
    while (cap < (size_t)spec->npins * 2)
        cap *= 2;
    for (int i = 0; i < spec->npins; i++) {
        sr_key k = spec->pins[i].key;
        char kb[200];
        if (!sr__key_valid(k)) {
            sr__fmt(err, errlen, "pinned key %d is not a valid key", i);
            return SR_EINVAL;
        }
        if (spec->pins[i].shard < 0 || spec->pins[i].shard >= spec->nshards) {
            describe_key(k, kb, sizeof kb);
            sr__fmt(err, errlen, "pinned key %s names shard index %d; there are %d shards", kb,
                    spec->pins[i].shard, spec->nshards);
            return SR_EINVAL;
        }
        if (k.kind == SR_KEY_BYTES)
            arena_len += k.len;
    }
    size_t fbits = 64;
    while (fbits < (size_t)spec->npins * 16)
        fbits *= 2;
    m->filter_mask = fbits - 1;
    m->pin_filter = calloc(fbits / 64, sizeof *m->pin_filter);
    m->pins = calloc(cap, sizeof *m->pins);
    m->pin_entries = calloc((size_t)spec->npins, sizeof *m->pin_entries);
    m->arena = malloc(arena_len ? arena_len : 1);
    if (!m->pin_filter || !m->pins || !m->pin_entries || !m->arena) {
        sr__fmt(err, errlen, "out of memory");
        return SR_ENOMEM;
    }
    m->pin_mask = cap - 1;
    size_t used = 0;
    for (int i = 0; i < spec->npins; i++) {
        sr_key k = spec->pins[i].key;
        uint64_t h = sr__hash_key(k);
        if (pin_find(m, h, k)) {
            char kb[200];
            describe_key(k, kb, sizeof kb);
            sr__fmt(err, errlen, "key %s is pinned twice", kb);
            return SR_EINVAL;
        }
        pin_entry *e = &m->pin_entries[i];
        e->kind = k.kind;
        if (k.kind == SR_KEY_INT) {
            e->i = k.i;
        } else {
            if (k.len)
                memcpy(m->arena + used, k.ptr, k.len);
            e->bytes = m->arena + used;
            e->len = k.len;
            used += k.len;
        }
        size_t at = (size_t)h & m->pin_mask;
        while (m->pins[at].entry != 0)
            at = (at + 1) & m->pin_mask;
        m->pins[at].hash = h;
        m->pins[at].entry = (uint32_t)i + 1;
        m->pins[at].shard = spec->pins[i].shard;
        uint64_t bit = filter_bit(m, h);
        m->pin_filter[bit / 64] |= UINT64_C(1) << (bit % 64);
    }
    return 0;
}

int sr__keymap_build(const sr_keymap_spec *spec, sr_keymap **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!spec || !out) {
        sr__fmt(err, errlen, "no keymap spec");
        return SR_EINVAL;
    }
    *out = NULL;
    if (spec->nshards <= 0) {
        sr__fmt(err, errlen, "no shards declared");
        return SR_EINVAL;
    }
    if (spec->npins < 0 || (spec->npins > 0 && !spec->pins)) {
        sr__fmt(err, errlen, "bad pinned-key list");
        return SR_EINVAL;
    }
    const struct dist *d = NULL;
    for (size_t i = 0; i < SR_ARRAY_LEN(dists); i++)
        if (dists[i].kind == spec->kind)
            d = &dists[i];
    if (!d) {
        sr__fmt(err, errlen, "unknown distribution %d", (int)spec->kind);
        return SR_EINVAL;
    }
    sr_keymap *m = calloc(1, sizeof *m);
    if (!m) {
        sr__fmt(err, errlen, "out of memory");
        return SR_ENOMEM;
    }
    m->hash = d->hashed || spec->npins > 0;
    m->lookup = d->lookup;
    m->free = d->free;
    int rc = d->build(spec, &m->state, err, errlen);
    if (rc == 0 && spec->npins > 0)
        rc = build_pins(m, spec, err, errlen);
    if (rc != 0) {
        sr__keymap_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int sr__keymap_lookup(const sr_keymap *m, sr_key key)
{
    if (!m || !sr__key_valid(key))
        return SR_EINVAL;
    uint64_t h = m->hash ? sr__hash_key(key) : 0;
    if (m->pins) {
        const pin_slot *s = pin_find(m, h, key);
        if (s)
            return s->shard;
    }
    return m->lookup(m->state, key, h);
}

void sr__keymap_free(sr_keymap *m)
{
    if (!m)
        return;
    if (m->state)
        m->free(m->state);
    free(m->pin_filter);
    free(m->pins);
    free(m->pin_entries);
    free(m->arena);
    free(m);
}
