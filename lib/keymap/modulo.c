/*
 * modulo: the key's XXH3-64 hash modulo the shard count. Simple and uniform,
 * but changing the count moves almost every key; prefer keyrange or jump when
 * shards will be added.
 */
#include "dist.h"

#include <stdlib.h>

typedef struct modulo_state {
    uint64_t n;
} modulo_state;

int sr__modulo_build(const sr_keymap_spec *spec, void **state, char *err, size_t errlen)
{
    modulo_state *st = malloc(sizeof *st);
    if (!st) {
        sr__fmt(err, errlen, "out of memory");
        return SR_ENOMEM;
    }
    st->n = (uint64_t)spec->nshards;
    *state = st;
    return 0;
}

int sr__modulo_lookup(const void *state, sr_key key, uint64_t hash)
{
    const modulo_state *st = state;
    (void)key;
    return (int)(hash % st->n);
}

void sr__modulo_free(void *state)
{
    free(state);
}
