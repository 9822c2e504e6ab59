/*
 * jump: Lamping & Veach's jump consistent hash ("A Fast, Minimal Memory,
 * Consistent Hash Algorithm", 2014) over the key's XXH3-64 hash. No table:
 * growing from n to n+1 shards moves only the keys that land on the new shard.
 */
#include "dist.h"

#include <stdlib.h>

typedef struct jump_state {
    int32_t n;
} jump_state;

int32_t sr__jump_hash(uint64_t key, int32_t nbuckets)
{
    if (nbuckets <= 0)
        return SR_EINVAL;
    int64_t b = -1, j = 0;
    while (j < nbuckets) {
        b = j;
        key = key * 2862933555777941757ULL + 1;
        /* The paper's step: the next bucket where this key would jump. */
        j = (int64_t)((double)(b + 1) * ((double)(1LL << 31) / (double)((key >> 33) + 1)));
    }
    return (int32_t)b;
}

int sr__jump_build(const sr_keymap_spec *spec, void **state, char *err, size_t errlen)
{
    jump_state *st = malloc(sizeof *st);
    if (!st) {
        sr__fmt(err, errlen, "out of memory");
        return SR_ENOMEM;
    }
    st->n = spec->nshards;
    *state = st;
    return 0;
}

int sr__jump_lookup(const void *state, sr_key key, uint64_t hash)
{
    const jump_state *st = state;
    (void)key;
    return sr__jump_hash(hash, st->n);
}

void sr__jump_free(void *state)
{
    free(state);
}
