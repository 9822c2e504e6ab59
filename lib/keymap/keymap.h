/*
 * Key maps: key -> shard index. Each distribution lives in its own file as a
 * build step (topology -> immutable table) and a lookup (key -> index), tied
 * together by one table in keymap.c (as twemproxy's hashkit does). A built
 * keymap is immutable: lookups take no lock and allocate nothing.
 */
#ifndef SR_KEYMAP_H
#define SR_KEYMAP_H

#include "../internal.h"
#include "../options.h"

/* What a distribution is built from: one entry per shard, in declaration order. */
typedef struct sr_keymap_shard_spec {
    const char *name;
    const char *keyrange; /* keyrange: "40-80", or NULL (derived from the name or split evenly) */
    const char *range;    /* range: "LO..HI", or NULL */
} sr_keymap_shard_spec;

typedef struct sr_keymap_pin_spec {
    sr_key key; /* borrowed during build only */
    int shard;
} sr_keymap_pin_spec;

typedef struct sr_keymap_spec {
    sr_dist_kind kind;
    const sr_keymap_shard_spec *shards;
    int nshards;
    const sr_keymap_pin_spec *pins;
    int npins;
    sr_keymap_fn fn; /* SR_DIST_CALLBACK */
    void *fn_ud;
} sr_keymap_spec;

typedef struct sr_keymap sr_keymap;

/*
 * Builds the map. SR_EINVAL with a message in err for bad ranges (gaps,
 * overlaps, malformed), SR_ENOMEM. Lookups return declaration indexes for every
 * distribution (keyrange maps its sorted ranges back to them).
 */
int sr__keymap_build(const sr_keymap_spec *spec, sr_keymap **out, char *err, size_t errlen);

/* Shard index for a key, or SR_EINVAL (invalid key) / SR_ENOSHARD. */
int sr__keymap_lookup(const sr_keymap *m, sr_key key);

void sr__keymap_free(sr_keymap *m);

/* ---- pieces each distribution file provides (and tests use directly) ---- */

/* keyrange.c: Vitess-style hex bounds. "40" -> 0x4000000000000000. "" -> 0 (start) or end-of-space. */
int sr__keyrange_parse(const char *text, uint64_t *start, uint64_t *end, int *end_is_max);
/* Formats the even-split range i of n the way Vitess names shards ("-40", "40-80", "c0-"). */
void sr__keyrange_name(int i, int n, char *buf, size_t len);

/* range.c: "LO..HI" half-open integer range (empty bound = unbounded) to an
 * inclusive [lo, hi]. 0, or SR_EINVAL when malformed or empty. */
int sr__range_parse(const char *text, int64_t *lo, int64_t *hi);

/* jump.c: jump consistent hash (Lamping & Veach). */
int32_t sr__jump_hash(uint64_t key, int32_t nbuckets);

/* pg_hash.c: PostgreSQL PARTITION BY HASH placement for bigint and text keys. */
uint64_t sr__pg_hash_int8(int64_t v);                   /* hashint8extended(v, seed) */
uint64_t sr__pg_hash_text(const void *p, size_t len);   /* hashtextextended, deterministic collation */
uint64_t sr__pg_partition_hash(uint64_t column_hash);   /* hash_combine64(0, h) */

#endif
