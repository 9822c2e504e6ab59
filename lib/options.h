/*
 * The global options: one declarative table (name, type, default, range) in
 * options.c, set by name from sr_config_set() and from configuration files.
 */
#ifndef SR_OPTIONS_H
#define SR_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "shardroute.h"

typedef enum sr_dist_kind {
    SR_DIST_KEYRANGE = 0,
    SR_DIST_JUMP,
    SR_DIST_PG_HASH,
    SR_DIST_MODULO,
    SR_DIST_RANGE,
    SR_DIST_CALLBACK
} sr_dist_kind;

typedef enum sr_policy_kind {
    SR_POLICY_ROUND_ROBIN = 0,
    SR_POLICY_RANDOM,
    SR_POLICY_WEIGHTED,
    SR_POLICY_LEAST_OUTSTANDING,
    SR_POLICY_P2C_EWMA,
    SR_POLICY_AFFINITY
} sr_policy_kind;

typedef enum sr_primary_reads {
    SR_PRIMARY_READS_FALLBACK = 0, /* primary serves reads only when no replica is eligible */
    SR_PRIMARY_READS_NEVER,        /* never: reads fail with SR_EUNAVAILABLE instead */
    SR_PRIMARY_READS_ALWAYS        /* the primary is one more candidate for every read */
} sr_primary_reads;

/* Longest value of a string option, with its NUL (a path). */
#define SR_OPTION_STRING_MAX 1024

typedef struct sr_options {
    int distribution;             /* sr_dist_kind */
    int balance_policy;           /* sr_policy_kind */
    int primary_reads;            /* sr_primary_reads */
    int pool_max_size;
    int pool_checkout_timeout_ms;
    int connect_timeout_ms;
    int statement_timeout_ms;
    int stmt_cache_size;
    int stmt_cache_bytes;
    int ewma_decay_ms;
    int health_fail_threshold;
    int health_retry_ms;
    int health_retry_max_ms;
    int health_probe_interval_ms;
    int replica_max_lag_ms;
    int replica_lag_refresh_ms;
    int consistency_mode;
    int consistency_wait_ms; /* -1: see sr__consistency_wait_ms() */
    int metrics_shards;      /* sr_metrics_shards */
    int events_sample;       /* one statement event in this many */
    int failover_discovery;  /* 1: follow a primary the servers report (failover.c); 0: off */
    /* A configuration file the router watches and reloads when it changes (watch.c); "" none. */
    char topology_file[SR_OPTION_STRING_MAX];
    /* The etcd key holding the configuration (etcd.c), http://HOST:PORT/KEY; "" none. Read
     * when the router opens: a reload does not move the watch. */
    char topology_etcd[SR_OPTION_STRING_MAX];
} sr_options;

typedef enum sr_metrics_shards {
    SR_METRICS_PER_SHARD = 0, /* per-shard series carry a shard label */
    SR_METRICS_AGGREGATE      /* ... summed over shards, without it */
} sr_metrics_shards;

/*
 * How long a read waits for a replica to replay what it needs. Waiting is
 * for callers who would rather not read the primary: an explicit
 * consistency.wait_ms; by default (-1) 100 ms when the primary cannot serve
 * the read (primary reads forbidden, or the primary down), since the
 * alternative is a failure. Otherwise a stale replica sends the read
 * straight to the primary, which answers in one round trip.
 */
#define SR_CONSISTENCY_DEFAULT_WAIT_MS 100
static inline int sr__consistency_wait_ms(const sr_options *o, bool primary_up)
{
    if (o->consistency_wait_ms >= 0)
        return o->consistency_wait_ms;
    return o->primary_reads == SR_PRIMARY_READS_NEVER || !primary_up
               ? SR_CONSISTENCY_DEFAULT_WAIT_MS
               : 0;
}

/* Every option at its default. */
void sr__options_init(sr_options *o);

/*
 * Sets option `name` from text. Returns 0, or SR_EINVAL with a message in
 * err naming the option and why (unknown, wrong type, out of range, allowed
 * values). `o` is unchanged on error. The `shards` option is not here: it
 * declares shards and is handled by the config builder.
 */
int sr__options_set(sr_options *o, const char *name, const char *value, char *err, size_t errlen);

/*
 * Strict decimal integer: optional surrounding whitespace, an optional sign
 * and digits, nothing else ("12abc", "1e3", "0x10", "" are refused).
 * *overflow is set (and true returned) when it does not fit in int64.
 */
bool sr__parse_int64(const char *s, long long *out, bool *overflow);

/* The option table, for docs checks and tests. */
typedef enum sr_option_type { SR_OPT_INT, SR_OPT_ENUM, SR_OPT_STRING } sr_option_type;
typedef struct sr_option_def {
    const char *name;
    sr_option_type type;
    size_t offset;          /* into sr_options */
    int def, min, max;      /* SR_OPT_INT; SR_OPT_STRING: max is the buffer's size (default "") */
    const char *const *enum_names; /* SR_OPT_ENUM: NULL-terminated, index = value */
    const char *doc;
} sr_option_def;
const sr_option_def *sr__option_defs(size_t *count);

/* Name of an enum value of an option, for messages; NULL when unknown. */
const char *sr__option_enum_name(const char *option, int value);

#endif
