/*
 * pg_hash: the shard PostgreSQL's own PARTITION BY HASH (PostgreSQL 11+) picks
 * for a bigint or text partition key when the table has `nshards` partitions
 * of modulus nshards and shard i holds remainder i. That lets an application
 * route to shards that are, or will become, partitions of one table.
 *
 * PostgreSQL hashes each column with its type's "extended" hash function and
 * the fixed HASH_PARTITION_SEED, folds the column hashes with hash_combine64
 * and takes the result modulo the modulus. Both extended hash functions are
 * Bob Jenkins' lookup3 (public domain) with PostgreSQL's 64-bit seeding; this
 * is an independent implementation checked against vectors produced by a
 * PostgreSQL 15 server (tests/unit/pg_hash_vectors.sql).
 *
 * PostgreSQL reads 32-bit words in host order, so its hashes differ between
 * little- and big-endian servers; we reproduce the little-endian result (every
 * mainstream server) on any host by assembling words from bytes.
 */
#include "dist.h"

#include <stdlib.h>

#define HASH_PARTITION_SEED UINT64_C(0x7A5B22367996DCFD)

static inline uint32_t rot32(uint32_t x, int k)
{
    return (x << k) | (x >> (32 - k));
}

/* lookup3's reversible mixing of three words. */
#define MIX(a, b, c)                                                                                    \
    do {                                                                                               \
        a -= c; a ^= rot32(c, 4); c += b;                                                              \
        b -= a; b ^= rot32(a, 6); a += c;                                                              \
        c -= b; c ^= rot32(b, 8); b += a;                                                              \
        a -= c; a ^= rot32(c, 16); c += b;                                                             \
        b -= a; b ^= rot32(a, 19); a += c;                                                             \
        c -= b; c ^= rot32(b, 4); b += a;                                                              \
    } while (0)

/* lookup3's final avalanche of the three words into c (and b). */
#define FINAL(a, b, c)                                                                                  \
    do {                                                                                               \
        c ^= b; c -= rot32(b, 14);                                                                     \
        a ^= c; a -= rot32(c, 11);                                                                     \
        b ^= a; b -= rot32(a, 25);                                                                     \
        c ^= b; c -= rot32(b, 16);                                                                     \
        a ^= c; a -= rot32(c, 4);                                                                      \
        b ^= a; b -= rot32(a, 14);                                                                     \
        c ^= b; c -= rot32(b, 24);                                                                     \
    } while (0)

static inline uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The seeded start state: the seed is hashed as if it were a first 12-byte block. */
static inline void seed_state(uint32_t len, uint64_t seed, uint32_t *a, uint32_t *b, uint32_t *c)
{
    *a = *b = *c = 0x9e3779b9u + len + 3923095u;
    if (seed != 0) {
        *a += (uint32_t)(seed >> 32);
        *b += (uint32_t)seed;
        MIX(*a, *b, *c);
    }
}

/* hash_any_extended() */
static uint64_t hash_bytes_ext(const unsigned char *k, size_t keylen, uint64_t seed)
{
    uint32_t a, b, c;
    /* PostgreSQL takes the length as an int; a text value is at most 1 GB. */
    uint32_t len = (uint32_t)keylen;
    seed_state(len, seed, &a, &b, &c);
    while (len >= 12) {
        a += le32(k);
        b += le32(k + 4);
        c += le32(k + 8);
        MIX(a, b, c);
        k += 12;
        len -= 12;
    }
    /* The tail, high bytes first; c's lowest byte stays clear as lookup3 does. */
    switch (len) {
    case 11: c += (uint32_t)k[10] << 24; /* fall through */
    case 10: c += (uint32_t)k[9] << 16;  /* fall through */
    case 9:  c += (uint32_t)k[8] << 8;   /* fall through */
    case 8:  b += (uint32_t)k[7] << 24;  /* fall through */
    case 7:  b += (uint32_t)k[6] << 16;  /* fall through */
    case 6:  b += (uint32_t)k[5] << 8;   /* fall through */
    case 5:  b += k[4];                  /* fall through */
    case 4:  a += (uint32_t)k[3] << 24;  /* fall through */
    case 3:  a += (uint32_t)k[2] << 16;  /* fall through */
    case 2:  a += (uint32_t)k[1] << 8;   /* fall through */
    case 1:  a += k[0];                  /* fall through */
    default: break;
    }
    FINAL(a, b, c);
    return (uint64_t)b << 32 | c;
}

/* hash_uint32_extended(): one word, hashed as a 4-byte key would be. */
static uint64_t hash_u32_ext(uint32_t k, uint64_t seed)
{
    uint32_t a, b, c;
    seed_state(4, seed, &a, &b, &c);
    a += k;
    FINAL(a, b, c);
    return (uint64_t)b << 32 | c;
}

uint64_t sr__pg_hash_int8(int64_t v)
{
    /* hashint8extended folds the high half in so that an int8 equal to an
     * int4 hashes like that int4 (cross-type hash opfamily). */
    uint32_t lo = (uint32_t)(uint64_t)v, hi = (uint32_t)((uint64_t)v >> 32);
    lo ^= v >= 0 ? hi : ~hi;
    return hash_u32_ext(lo, HASH_PARTITION_SEED);
}

uint64_t sr__pg_hash_text(const void *p, size_t len)
{
    return hash_bytes_ext(len ? p : (const void *)"", len, HASH_PARTITION_SEED);
}

uint64_t sr__pg_partition_hash(uint64_t h)
{
    /* hash_combine64(0, h): PostgreSQL folds each partition column into a
     * running value that starts at 0; with one column this is all of it.
     * The constant ends in ...a8e3 (checked against the server's routing;
     * ...a8e1 is a tempting misquote that misplaces most keys). */
    uint64_t a = 0;
    a ^= h + UINT64_C(0x49a0f4dd15e5a8e3) + (a << 54) + (a >> 7);
    return a;
}

typedef struct pg_hash_state {
    uint64_t modulus;
} pg_hash_state;

int sr__pg_hash_build(const sr_keymap_spec *spec, void **state, char *err, size_t errlen)
{
    pg_hash_state *st = malloc(sizeof *st);
    if (!st) {
        sr__fmt(err, errlen, "out of memory");
        return SR_ENOMEM;
    }
    st->modulus = (uint64_t)spec->nshards;
    *state = st;
    return 0;
}

int sr__pg_hash_lookup(const void *state, sr_key key, uint64_t hash)
{
    (void)hash; /* PostgreSQL hashes the key its own way */
    const pg_hash_state *st = state;
    uint64_t h = key.kind == SR_KEY_INT ? sr__pg_hash_int8(key.i) : sr__pg_hash_text(key.ptr, key.len);
    return (int)(sr__pg_partition_hash(h) % st->modulus);
}

void sr__pg_hash_free(void *state)
{
    free(state);
}
