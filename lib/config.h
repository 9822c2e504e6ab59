/*
 * The configuration builder's data (sr_config). The router copies what it
 * needs at sr_router_open(), so nothing here is shared with a live router.
 */
#ifndef SR_CONFIG_H
#define SR_CONFIG_H

#include "internal.h"
#include "options.h"

typedef struct sr_config_node {
    sr_role role;
    char *uri; /* as given; never printed (use the redacted form) */
    int weight;
} sr_config_node;

typedef struct sr_config_shard {
    char *name;
    char *keyrange; /* "40-80" or NULL */
    char *range;    /* "LO..HI" or NULL */
    sr_config_node *nodes;
    int nnodes, cap;
} sr_config_shard;

typedef struct sr_config_pin {
    sr_key_kind kind;
    int64_t i;
    unsigned char *bytes; /* owned copy for SR_KEY_BYTES */
    size_t len;
    int shard; /* index into shards */
} sr_config_pin;

struct sr_config {
    sr_options opts;
    sr_config_shard *shards;
    int nshards, shards_cap;
    /* Shard names hashed (open addressing, linear probing): slot = 1 + index,
     * 0 empty; at most half full. Lookups by name are O(1), so building a
     * config of N shards is O(N), not O(N^2). */
    int32_t *name_slots;
    size_t name_mask;
    sr_config_pin *pins;
    int npins, pins_cap;
    sr_keymap_fn keymap_fn;
    void *keymap_ud;
    sr_log_fn log_fn;
    void *log_ud;
    sr_event_fn event_fn;
    void *event_ud;
    char errmsg[SR_ERRMSG_LEN];
};

/* A deep copy of a configuration (callbacks shared, message empty), or NULL when memory
 * runs out. The router keeps one of the configuration it runs (reload.c). */
sr_config *sr__config_clone(const sr_config *c);

/* Index of a declared shard by name, or -1. */
int sr__config_find_shard(const sr_config *c, const char *name);

/* Sets the config's message (printf-style) and returns status. */
int sr__config_fail(sr_config *c, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
