/*
 * The contract between keymap.c and the distribution files (private to
 * lib/keymap/). Each distribution is a build step that turns the spec into an
 * immutable state and a lookup that maps an already-validated key to a
 * declaration index; keymap.c links them to sr_dist_kind in one table.
 */
#ifndef SR_KEYMAP_DIST_H
#define SR_KEYMAP_DIST_H

#include "keymap.h"

/* build: 0, or SR_EINVAL with a message in err, or SR_ENOMEM. *state may stay NULL. */
typedef int (*sr_dist_build_fn)(const sr_keymap_spec *spec, void **state, char *err, size_t errlen);
/*
 * lookup: the key is valid; returns a declaration index or a negative status.
 * `hash` is sr__hash_key(key) for the distributions whose table entry in
 * keymap.c says they hash (computed once, shared with the pin probe), else 0.
 */
typedef int (*sr_dist_lookup_fn)(const void *state, sr_key key, uint64_t hash);
typedef void (*sr_dist_free_fn)(void *state);

int sr__keyrange_build(const sr_keymap_spec *spec, void **state, char *err, size_t errlen);
int sr__keyrange_lookup(const void *state, sr_key key, uint64_t hash);
void sr__keyrange_free(void *state);

int sr__jump_build(const sr_keymap_spec *spec, void **state, char *err, size_t errlen);
int sr__jump_lookup(const void *state, sr_key key, uint64_t hash);
void sr__jump_free(void *state);

int sr__pg_hash_build(const sr_keymap_spec *spec, void **state, char *err, size_t errlen);
int sr__pg_hash_lookup(const void *state, sr_key key, uint64_t hash);
void sr__pg_hash_free(void *state);

int sr__modulo_build(const sr_keymap_spec *spec, void **state, char *err, size_t errlen);
int sr__modulo_lookup(const void *state, sr_key key, uint64_t hash);
void sr__modulo_free(void *state);

int sr__range_build(const sr_keymap_spec *spec, void **state, char *err, size_t errlen);
int sr__range_lookup(const void *state, sr_key key, uint64_t hash);
void sr__range_free(void *state);

#endif
