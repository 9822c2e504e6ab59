/*
 * The global options as one declarative table (PgBouncer style): a name, a
 * type, where the value lives in sr_options, its default and its bounds.
 * Setting by name, defaults, messages and the docs check all read this table,
 * so adding an option is one line here and one row in docs/options.md.
 */
#include "options.h"

#include "internal.h"
#include "uri.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const dist_names[] = {"keyrange", "jump", "pg_hash", "modulo", "range", "callback",
                                         NULL};
static const char *const policy_names[] = {"round_robin",       "random",   "weighted",
                                           "least_outstanding", "p2c_ewma", "affinity",
                                           NULL};
static const char *const primary_reads_names[] = {"fallback", "never", "always", NULL};
static const char *const metrics_shards_names[] = {"per_shard", "aggregate", NULL};
static const char *const off_on_names[] = {"off", "on", NULL};
/* Indexes are sr_consistency values. */
static const char *const consistency_names[] = {"any", "monotonic", "read_your_writes", "primary",
                                                NULL};

#define INT_OPT(name, field, def, min, max, doc) \
    {name, SR_OPT_INT, offsetof(sr_options, field), def, min, max, NULL, doc}
#define STRING_OPT(name, field, doc) \
    {name, SR_OPT_STRING, offsetof(sr_options, field), 0, 0, SR_OPTION_STRING_MAX, NULL, doc}
#define ENUM_OPT(name, field, def, names, doc) \
    {name, SR_OPT_ENUM, offsetof(sr_options, field), def, 0, (int)SR_ARRAY_LEN(names) - 2, names, doc}

static const sr_option_def option_defs[] = {
    ENUM_OPT("shard.distribution", distribution, SR_DIST_KEYRANGE, dist_names,
             "how a key is mapped to a shard"),
    ENUM_OPT("balance.policy", balance_policy, SR_POLICY_P2C_EWMA, policy_names,
             "how a read picks one of a shard's replicas"),
    ENUM_OPT("balance.primary_reads", primary_reads, SR_PRIMARY_READS_FALLBACK, primary_reads_names,
             "whether the primary serves reads"),
    INT_OPT("balance.ewma_decay_ms", ewma_decay_ms, 10000, 1, 3600000,
            "time constant of the p2c_ewma latency average"),
    INT_OPT("pool.max_size", pool_max_size, 16, 1, 10000, "connections per node at most"),
    INT_OPT("pool.checkout_timeout_ms", pool_checkout_timeout_ms, 1000, 1, 3600000,
            "wait for a free pooled connection at most this long"),
    INT_OPT("connect_timeout_ms", connect_timeout_ms, 5000, 1, 3600000, "bound on opening a connection"),
    INT_OPT("statement_timeout_ms", statement_timeout_ms, 30000, 1, 86400000,
            "default bound on one statement"),
    INT_OPT("stmt_cache.max_size", stmt_cache_size, 64, 0, 100000,
            "prepared statements kept per connection (0 disables)"),
    INT_OPT("stmt_cache.max_bytes", stmt_cache_bytes, 8 * 1024 * 1024, 0, 1024 * 1024 * 1024,
            "bytes of prepared statements kept per connection (0 disables)"),
    INT_OPT("health.fail_threshold", health_fail_threshold, 3, 1, 1000,
            "consecutive connection-level failures that eject a node"),
    INT_OPT("health.retry_ms", health_retry_ms, 1000, 1, 3600000,
            "first back-off before an ejected node is probed again"),
    INT_OPT("health.retry_max_ms", health_retry_max_ms, 30000, 1, 86400000,
            "the back-off doubles after each failed probe, up to this"),
    INT_OPT("health.probe_interval_ms", health_probe_interval_ms, 0, 0, 3600000,
            "> 0 starts a background thread that checks every node this often"),
    INT_OPT("replica.max_lag_ms", replica_max_lag_ms, 0, 0, 86400000,
            "replicas lagging more than this are skipped by reads (0: no bound)"),
    INT_OPT("replica.lag_refresh_ms", replica_lag_refresh_ms, 1000, 1, 3600000,
            "how often a replica's lag is measured when no prober runs"),
    ENUM_OPT("consistency.mode", consistency_mode, SR_CONSISTENCY_READ_YOUR_WRITES, consistency_names,
             "the read consistency a new session starts with"),
    INT_OPT("consistency.wait_ms", consistency_wait_ms, -1, -1, 60000,
            "how long a read waits for a replica to catch up before going to the primary "
            "(-1: 100 ms when balance.primary_reads is never, else no wait)"),
    ENUM_OPT("metrics.shards", metrics_shards, SR_METRICS_PER_SHARD, metrics_shards_names,
             "per-shard metric series with a shard label, or summed over shards (aggregate)"),
    INT_OPT("events.sample", events_sample, 1, 1, 1000000,
            "the event callback gets one statement event in this many"),
    ENUM_OPT("failover.discovery", failover_discovery, 1, off_on_names,
             "follow a failover: writes go to the one node of a shard that reports itself primary "
             "when the configured primary is down or reports itself a replica"),
    STRING_OPT("topology.file", topology_file,
               "a configuration file the router watches and reloads when it changes"),
    STRING_OPT("topology.etcd", topology_etcd,
               "an etcd key (HOST:PORT/KEY over http) holding the configuration, read when "
               "the router opens and reloaded when it changes"),
};

const sr_option_def *sr__option_defs(size_t *count)
{
    if (count)
        *count = SR_ARRAY_LEN(option_defs);
    return option_defs;
}

static int *field_of(sr_options *o, const sr_option_def *d)
{
    return (int *)(void *)((char *)o + d->offset);
}

void sr__options_init(sr_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o); /* string options start empty */
    for (size_t i = 0; i < SR_ARRAY_LEN(option_defs); i++)
        if (option_defs[i].type != SR_OPT_STRING)
            *field_of(o, &option_defs[i]) = option_defs[i].def;
}

static const sr_option_def *find_def(const char *name)
{
    for (size_t i = 0; i < SR_ARRAY_LEN(option_defs); i++)
        if (strcmp(option_defs[i].name, name) == 0)
            return &option_defs[i];
    return NULL;
}

const char *sr__option_enum_name(const char *option, int value)
{
    const sr_option_def *d = option ? find_def(option) : NULL;
    if (!d || d->type != SR_OPT_ENUM || value < 0 || value > d->max)
        return NULL;
    return d->enum_names[value];
}

/* Edit distance, capped: names are short and only "close enough" matters. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 64;
    size_t prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            size_t m = sub < del ? sub : del;
            cur[j] = m < ins ? m : ins;
        }
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}

/* The option a mistyped name most likely meant, or NULL. */
static const char *closest_name(const char *name)
{
    const char *best = NULL;
    size_t best_d = 3; /* more than two edits away is a different word */
    for (size_t i = 0; i < SR_ARRAY_LEN(option_defs); i++) {
        const char *cand = option_defs[i].name;
        size_t d = edit_distance(name, cand);
        /* "max_size" for "pool.max_size": a missing section prefix. */
        const char *dot = strchr(cand, '.');
        if (dot && strcmp(name, dot + 1) == 0)
            d = 1;
        if (d < best_d) {
            best_d = d;
            best = cand;
        }
    }
    return best;
}

/*
 * Strict integer: optional surrounding whitespace, an optional sign and
 * decimal digits, nothing else ("12abc", "1e3", "0x10" and "" are not
 * integers); *overflow is set when it does not fit in int64.
 */
bool sr__parse_int64(const char *s, long long *out, bool *overflow)
{
    *overflow = false;
    while (isspace((unsigned char)*s))
        s++;
    if (!*s)
        return false;
    const char *d = s + (*s == '+' || *s == '-');
    if (!isdigit((unsigned char)*d))
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    while (isspace((unsigned char)*end))
        end++;
    if (*end)
        return false;
    if (errno == ERANGE)
        *overflow = true;
    *out = v;
    return true;
}

/*
 * Names and values are echoed in messages as a bounded excerpt, redacted as
 * if they were URIs: a node URI typed on the wrong line must not put its
 * password in a message.
 */
static const char *shown(const char *v, char *buf, size_t len)
{
    char red[256];
    sr__uri_redact(v, red, sizeof red);
    sr__fmt(buf, len, "%.64s%s", red, strlen(red) > 64 ? "..." : "");
    return buf;
}

static int set_int(sr_options *o, const sr_option_def *d, const char *value, char *err, size_t errlen)
{
    long long v;
    bool overflow;
    char buf[80];
    if (!sr__parse_int64(value, &v, &overflow)) {
        sr__fmt(err, errlen, "%s: '%s' is not an integer (%d..%d)", d->name, shown(value, buf, sizeof buf),
                d->min, d->max);
        return SR_EINVAL;
    }
    if (overflow || v < d->min || v > d->max) {
        sr__fmt(err, errlen, "%s: '%s' is out of range (%d..%d)", d->name, shown(value, buf, sizeof buf),
                d->min, d->max);
        return SR_EINVAL;
    }
    *field_of(o, d) = (int)v;
    return SR_OK;
}

/* A string option: any text without control characters that fits its buffer ("" unsets). */
static int set_string(sr_options *o, const sr_option_def *d, const char *value, char *err,
                      size_t errlen)
{
    size_t len = strlen(value);
    for (const char *p = value; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            sr__fmt(err, errlen, "%s: control characters are not allowed", d->name);
            return SR_EINVAL;
        }
    if (len >= (size_t)d->max) {
        sr__fmt(err, errlen, "%s: longer than %d bytes", d->name, d->max - 1);
        return SR_EINVAL;
    }
    memcpy((char *)o + d->offset, value, len + 1);
    return SR_OK;
}

static int set_enum(sr_options *o, const sr_option_def *d, const char *value, char *err, size_t errlen)
{
    for (int i = 0; d->enum_names[i]; i++) {
        if (strcmp(d->enum_names[i], value) != 0)
            continue;
        if (d->enum_names == dist_names && i == SR_DIST_CALLBACK) {
            sr__fmt(err, errlen, "%s: 'callback' cannot be set by name; use sr_config_set_keymap_fn()",
                    d->name);
            return SR_EINVAL;
        }
        *field_of(o, d) = i;
        return SR_OK;
    }
    char allowed[256] = "";
    size_t used = 0;
    for (int i = 0; d->enum_names[i]; i++) {
        if (d->enum_names == dist_names && i == SR_DIST_CALLBACK)
            continue; /* not settable by name, so not offered */
        sr__fmt(allowed + used, sizeof allowed - used, "%s%s", used ? ", " : "", d->enum_names[i]);
        used = strlen(allowed);
    }
    char buf[80];
    sr__fmt(err, errlen, "%s: '%s' is not one of %s (case-sensitive)", d->name, shown(value, buf, sizeof buf),
            allowed);
    return SR_EINVAL;
}

int sr__options_set(sr_options *o, const char *name, const char *value, char *err, size_t errlen)
{
    if (!o || !name || !value) {
        sr__fmt(err, errlen, "option name and value must not be NULL");
        return SR_EINVAL;
    }
    const sr_option_def *d = find_def(name);
    if (!d) {
        const char *hint = closest_name(name);
        char buf[80];
        if (hint)
            sr__fmt(err, errlen, "unknown option '%s' (did you mean '%s'?)", shown(name, buf, sizeof buf), hint);
        else
            sr__fmt(err, errlen, "unknown option '%s'", shown(name, buf, sizeof buf));
        return SR_EINVAL;
    }
    if (d->type == SR_OPT_STRING)
        return set_string(o, d, value, err, errlen);
    return d->type == SR_OPT_INT ? set_int(o, d, value, err, errlen) : set_enum(o, d, value, err, errlen);
}
