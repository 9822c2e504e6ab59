/*
 * The option table (lib/options.c), the configuration builder and its file
 * syntax (lib/config.c): values accepted and refused, messages, defaults,
 * `shards = N`, NULL handling, and that a failed call changes nothing.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "keymap/keymap.h"
#include "options.h"

/* ---------------------------------------------------------------- helpers */

static int opt_value(const sr_options *o, const sr_option_def *d)
{
    return *(const int *)(const void *)((const char *)o + d->offset);
}

static const sr_option_def *def_named(const char *name)
{
    size_t n;
    const sr_option_def *defs = sr__option_defs(&n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(defs[i].name, name) == 0)
            return &defs[i];
    return NULL;
}

/*
 * Everything observable in a config, as text: comparing two snapshots shows
 * whether a call changed anything.
 */
static char *snapshot(const sr_config *c)
{
    char *s = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);
    ck_assert_ptr_nonnull(f);
    fprintf(f, "opts:");
    const unsigned char *o = (const unsigned char *)&c->opts;
    for (size_t i = 0; i < sizeof c->opts; i++)
        fprintf(f, "%02x", o[i]);
    fprintf(f, "\nfn:%p %p %p %p\n", (void *)(uintptr_t)c->keymap_fn, c->keymap_ud, (void *)(uintptr_t)c->log_fn,
            c->log_ud);
    for (int i = 0; i < c->nshards; i++) {
        const sr_config_shard *sh = &c->shards[i];
        fprintf(f, "shard %s kr=%s r=%s\n", sh->name, sh->keyrange ? sh->keyrange : "-",
                sh->range ? sh->range : "-");
        for (int j = 0; j < sh->nnodes; j++)
            fprintf(f, "  node %d %s %d\n", (int)sh->nodes[j].role, sh->nodes[j].uri, sh->nodes[j].weight);
    }
    for (int i = 0; i < c->npins; i++) {
        const sr_config_pin *p = &c->pins[i];
        fprintf(f, "pin %d %lld %zu %d:", (int)p->kind, (long long)p->i, p->len, p->shard);
        for (size_t k = 0; k < p->len; k++)
            fprintf(f, "%02x", p->bytes[k]);
        fprintf(f, "\n");
    }
    ck_assert_int_eq(fclose(f), 0);
    return s;
}

/* Runs `call` expecting `status`, and checks that it left the config as it was. */
#define EXPECT_FAIL_UNCHANGED(c, status, call)                                                      \
    do {                                                                                            \
        char *before_ = snapshot(c);                                                                \
        int rc_ = (call);                                                                           \
        ck_assert_msg(rc_ == (status), "%s: expected %d, got %d (%s)", #call, (status), rc_,        \
                      sr_config_errmsg(c));                                                         \
        ck_assert_msg(sr_config_errmsg(c)[0] != '\0', "%s: no message", #call);                    \
        char *after_ = snapshot(c);                                                                 \
        ck_assert_msg(strcmp(before_, after_) == 0, "%s changed the config:\n%s\n---\n%s", #call,  \
                      before_, after_);                                                             \
        free(before_);                                                                              \
        free(after_);                                                                               \
    } while (0)

#define ck_assert_msg_has(c, text)                                                                    \
    ck_assert_msg(strstr(sr_config_errmsg(c), (text)) != NULL, "message '%s' should contain '%s'", \
                  sr_config_errmsg(c), (text))

/* A config with one failed call behind it, so that success must clear the message. */
static sr_config *dirty_config(void)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sr_config_set(c, "no.such.option", "1"), SR_EINVAL);
    ck_assert_str_ne(sr_config_errmsg(c), "");
    return c;
}

static int dummy_keymap(void *ud, sr_key key, int nshards)
{
    (void)ud;
    (void)key;
    (void)nshards;
    return 0;
}

static void dummy_log(void *ud, sr_log_level level, const char *msg)
{
    (void)ud;
    (void)level;
    (void)msg;
}

/* ------------------------------------------------------------- the table */

START_TEST(test_table_sane)
{
    size_t n = 0;
    const sr_option_def *defs = sr__option_defs(&n);
    ck_assert_ptr_nonnull(defs);
    ck_assert_uint_eq(n, 23);
    ck_assert_ptr_eq(sr__option_defs(NULL), defs);
    for (size_t i = 0; i < n; i++) {
        const sr_option_def *d = &defs[i];
        ck_assert_msg(d->doc && *d->doc, "%s has no doc", d->name);
        ck_assert_msg(d->min <= d->def && d->def <= d->max, "%s: default outside its range", d->name);
        ck_assert_uint_le(d->offset + sizeof(int), sizeof(sr_options));
        if (d->type == SR_OPT_ENUM) {
            ck_assert_ptr_nonnull(d->enum_names);
            int count = 0;
            while (d->enum_names[count])
                count++;
            ck_assert_int_eq(d->max, count - 1);
        } else {
            ck_assert_ptr_null(d->enum_names);
        }
        for (size_t j = 0; j < i; j++) {
            ck_assert_str_ne(defs[j].name, d->name);
            ck_assert_uint_ne(defs[j].offset, d->offset);
        }
    }
}
END_TEST

START_TEST(test_defaults)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    /* The documented defaults, field by field. */
    ck_assert_int_eq(c->opts.distribution, SR_DIST_KEYRANGE);
    ck_assert_int_eq(c->opts.balance_policy, SR_POLICY_P2C_EWMA);
    ck_assert_int_eq(c->opts.primary_reads, SR_PRIMARY_READS_FALLBACK);
    ck_assert_int_eq(c->opts.failover_discovery, 1);
    ck_assert_int_eq(c->opts.ewma_decay_ms, 10000);
    ck_assert_int_eq(c->opts.pool_max_size, 16);
    ck_assert_int_eq(c->opts.pool_checkout_timeout_ms, 1000);
    ck_assert_int_eq(c->opts.connect_timeout_ms, 5000);
    ck_assert_int_eq(c->opts.statement_timeout_ms, 30000);
    ck_assert_int_eq(c->opts.stmt_cache_size, 64);
    ck_assert_int_eq(c->opts.stmt_cache_bytes, 8 * 1024 * 1024);
    ck_assert_int_eq(c->opts.health_fail_threshold, 3);
    ck_assert_int_eq(c->opts.health_retry_ms, 1000);
    ck_assert_int_eq(c->opts.health_retry_max_ms, 30000);
    ck_assert_int_eq(c->opts.health_probe_interval_ms, 0);
    ck_assert_int_eq(c->opts.replica_max_lag_ms, 0);
    ck_assert_int_eq(c->opts.replica_lag_refresh_ms, 1000);
    ck_assert_int_eq(c->opts.consistency_mode, SR_CONSISTENCY_READ_YOUR_WRITES);
    ck_assert_int_eq(c->opts.consistency_wait_ms, -1);
    /* And the table agrees with the initialised struct. */
    size_t n;
    const sr_option_def *defs = sr__option_defs(&n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(opt_value(&c->opts, &defs[i]) == defs[i].def, "%s", defs[i].name);
    ck_assert_int_eq(c->nshards, 0);
    ck_assert_int_eq(c->npins, 0);
    ck_assert_ptr_null(c->keymap_fn);
    ck_assert_ptr_null(c->log_fn);
    ck_assert_str_eq(sr_config_errmsg(c), "");
    sr_config_free(c);

    sr_options o;
    memset(&o, 0x5a, sizeof o);
    sr__options_init(&o);
    ck_assert_int_eq(o.pool_max_size, 16);
    sr__options_init(NULL); /* no crash */
}
END_TEST

START_TEST(test_expected_ranges)
{
    static const struct {
        const char *name;
        int min, max;
    } want[] = {
        {"balance.ewma_decay_ms", 1, 3600000},    {"pool.max_size", 1, 10000},
        {"pool.checkout_timeout_ms", 1, 3600000}, {"connect_timeout_ms", 1, 3600000},
        {"statement_timeout_ms", 1, 86400000},    {"stmt_cache.max_size", 0, 100000},
        {"health.fail_threshold", 1, 1000},       {"health.retry_ms", 1, 3600000},
        {"health.retry_max_ms", 1, 86400000},     {"health.probe_interval_ms", 0, 3600000},
        {"replica.max_lag_ms", 0, 86400000},      {"replica.lag_refresh_ms", 1, 3600000},
        {"consistency.wait_ms", -1, 60000},        {"stmt_cache.max_bytes", 0, 1073741824},
    };
    for (size_t i = 0; i < SR_ARRAY_LEN(want); i++) {
        const sr_option_def *d = def_named(want[i].name);
        ck_assert_msg(d != NULL, "%s missing", want[i].name);
        ck_assert_int_eq(d->type, SR_OPT_INT);
        ck_assert_int_eq(d->min, want[i].min);
        ck_assert_int_eq(d->max, want[i].max);
    }
    ck_assert_int_eq(def_named("shard.distribution")->type, SR_OPT_ENUM);
    ck_assert_int_eq(def_named("balance.policy")->type, SR_OPT_ENUM);
    ck_assert_int_eq(def_named("balance.primary_reads")->type, SR_OPT_ENUM);
    ck_assert_int_eq(def_named("consistency.mode")->type, SR_OPT_ENUM);
}
END_TEST

/* ----------------------------------------------------------- int options */

static const sr_option_def *nth_def(int i)
{
    size_t n;
    const sr_option_def *defs = sr__option_defs(&n);
    ck_assert_int_lt(i, (int)n);
    return &defs[i];
}

START_TEST(test_int_bounds)
{
    const sr_option_def *d = nth_def(_i);
    sr_config *c = dirty_config();
    char v[64];
    if (d->type == SR_OPT_STRING) {
        /* Any text that fits, without control characters; "" unsets. */
        ck_assert_int_eq(sr_config_set(c, d->name, "/etc/app/shards.conf"), SR_OK);
        ck_assert_str_eq((const char *)&c->opts + d->offset, "/etc/app/shards.conf");
        EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, d->name, "a\nb"));
        char *big = malloc((size_t)d->max + 1);
        memset(big, 'x', (size_t)d->max);
        big[d->max] = '\0';
        EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, d->name, big));
        big[d->max - 1] = '\0';
        ck_assert_int_eq(sr_config_set(c, d->name, big), SR_OK);
        free(big);
        ck_assert_int_eq(sr_config_set(c, d->name, ""), SR_OK);
        ck_assert_str_eq((const char *)&c->opts + d->offset, "");
        sr_config_free(c);
        return;
    }
    if (d->type == SR_OPT_ENUM) {
        /* Enums take names, never numbers (test_enum_values covers every name). */
        snprintf(v, sizeof v, "%d", d->def);
        EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, d->name, v));
        ck_assert_int_eq(sr_config_set(c, d->name, d->enum_names[d->def]), SR_OK);
        ck_assert_str_eq(sr_config_errmsg(c), "");
        sr_config_free(c);
        return;
    }

    int accepted[] = {d->min, d->max, d->def, d->min + (d->max - d->min) / 2};
    for (size_t k = 0; k < SR_ARRAY_LEN(accepted); k++) {
        snprintf(v, sizeof v, "%d", accepted[k]);
        ck_assert_msg(sr_config_set(c, d->name, v) == SR_OK, "%s = %s: %s", d->name, v, sr_config_errmsg(c));
        ck_assert_int_eq(opt_value(&c->opts, d), accepted[k]);
        ck_assert_str_eq(sr_config_errmsg(c), "");
    }
    /* Surrounding whitespace and an explicit sign are fine. */
    snprintf(v, sizeof v, "  %d\t", d->max);
    ck_assert_int_eq(sr_config_set(c, d->name, v), SR_OK);
    ck_assert_int_eq(opt_value(&c->opts, d), d->max);
    int plus = d->min >= 0 ? d->min : d->max; /* "+-1" is no number */
    snprintf(v, sizeof v, "+%d", plus);
    ck_assert_int_eq(sr_config_set(c, d->name, v), SR_OK);
    ck_assert_int_eq(opt_value(&c->opts, d), plus);

    /* Just outside the range: the message names the option, the value and the range. */
    char range[64];
    snprintf(range, sizeof range, "(%d..%d)", d->min, d->max);
    long long outside[] = {(long long)d->min - 1, (long long)d->max + 1, -1, 9223372036854775807LL,
                           (long long)INT_MAX + 1, (long long)INT_MIN - 1};
    for (size_t k = 0; k < SR_ARRAY_LEN(outside); k++) {
        if (outside[k] >= d->min && outside[k] <= d->max)
            continue;
        snprintf(v, sizeof v, "%lld", outside[k]);
        EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, d->name, v));
        char want[192];
        snprintf(want, sizeof want, "%s: '%s' is out of range %s", d->name, v, range);
        ck_assert_str_eq(sr_config_errmsg(c), want);
    }

    /* Not integers at all. */
    static const char *const junk[] = {"12abc", "",     " ",   "1e3",  "0x10", "1.0",  "abc",  "- 1", "+",
                                       "-",     "1 2",  "١٢",  "++1",  "1_000", "99999999999999999999999",
                                       "-99999999999999999999999", "\t\n"};
    for (size_t k = 0; k < SR_ARRAY_LEN(junk); k++) {
        EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, d->name, junk[k]));
        ck_assert_msg_has(c, d->name);
        ck_assert_msg_has(c, range);
    }
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, d->name, "12abc"));
    char want[192];
    snprintf(want, sizeof want, "%s: '12abc' is not an integer %s", d->name, range);
    ck_assert_str_eq(sr_config_errmsg(c), want);
    /* Overflow is "out of range", not a silent wrap. */
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, d->name, "99999999999999999999999"));
    ck_assert_msg_has(c, "out of range");
    sr_config_free(c);
}
END_TEST

START_TEST(test_pool_max_size_message)
{
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_set(c, "pool.max_size", "0"), SR_EINVAL);
    ck_assert_str_eq(sr_config_errmsg(c), "pool.max_size: '0' is out of range (1..10000)");
    ck_assert_int_eq(sr_config_set(c, "stmt_cache.max_size", "0"), SR_OK); /* 0 disables the cache */
    ck_assert_int_eq(c->opts.stmt_cache_size, 0);
    sr_config_free(c);
}
END_TEST

START_TEST(test_long_value_message_bounded)
{
    sr_config *c = sr_config_new();
    size_t n = 100000;
    char *v = malloc(n + 1);
    memset(v, '7', n);
    v[n] = '\0';
    ck_assert_int_eq(sr_config_set(c, "pool.max_size", v), SR_EINVAL);
    ck_assert_uint_lt(strlen(sr_config_errmsg(c)), 200);
    ck_assert_msg_has(c, "pool.max_size");
    v[n - 1] = 'x';
    ck_assert_int_eq(sr_config_set(c, "balance.policy", v), SR_EINVAL);
    ck_assert_uint_lt(strlen(sr_config_errmsg(c)), SR_ERRMSG_LEN);
    ck_assert_int_eq(sr_config_set(c, v, "1"), SR_EINVAL);
    ck_assert_msg_has(c, "unknown option");
    free(v);
    sr_config_free(c);
}
END_TEST

/* ---------------------------------------------------------- enum options */

START_TEST(test_enum_values)
{
    static const struct {
        const char *option;
        const char *names[8];
        int callback_index; /* not settable by name; -1 when none */
    } enums[] = {
        {"shard.distribution", {"keyrange", "jump", "pg_hash", "modulo", "range", "callback"}, SR_DIST_CALLBACK},
        {"balance.policy", {"round_robin", "random", "weighted", "least_outstanding", "p2c_ewma", "affinity"}, -1},
        {"balance.primary_reads", {"fallback", "never", "always"}, -1},
        {"failover.discovery", {"off", "on"}, -1},
    };
    for (size_t e = 0; e < SR_ARRAY_LEN(enums); e++) {
        const sr_option_def *d = def_named(enums[e].option);
        ck_assert_ptr_nonnull(d);
        sr_config *c = dirty_config();
        int count = 0;
        for (int i = 0; enums[e].names[i]; i++, count++) {
            const char *name = enums[e].names[i];
            ck_assert_str_eq(d->enum_names[i], name);
            ck_assert_str_eq(sr__option_enum_name(d->name, i), name);
            if (i == enums[e].callback_index)
                continue;
            ck_assert_msg(sr_config_set(c, d->name, name) == SR_OK, "%s = %s", d->name, name);
            ck_assert_int_eq(opt_value(&c->opts, d), i);
            ck_assert_str_eq(sr_config_errmsg(c), "");
        }
        ck_assert_ptr_null(d->enum_names[count]);
        ck_assert_ptr_null(sr__option_enum_name(d->name, count));
        ck_assert_ptr_null(sr__option_enum_name(d->name, -1));

        /* Case-sensitive, no surrounding space, no prefixes, no numbers. */
        char upper[64];
        snprintf(upper, sizeof upper, "%s", enums[e].names[1]);
        upper[0] = (char)(upper[0] - 'a' + 'A');
        const char *bad[] = {upper, "", " ", "x", "0", "1", "nope"};
        for (size_t k = 0; k < SR_ARRAY_LEN(bad); k++) {
            EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, d->name, bad[k]));
            ck_assert_msg_has(c, d->name);
            ck_assert_msg_has(c, "is not one of");
            ck_assert_msg_has(c, enums[e].names[0]);
            ck_assert_msg_has(c, enums[e].names[1]);
        }
        char padded[64];
        snprintf(padded, sizeof padded, " %s", enums[e].names[0]);
        EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, d->name, padded));
        sr_config_free(c);
    }
    ck_assert_ptr_null(sr__option_enum_name("pool.max_size", 0));
    ck_assert_ptr_null(sr__option_enum_name("nope", 0));
    ck_assert_ptr_null(sr__option_enum_name(NULL, 0));
}
END_TEST

START_TEST(test_enum_message)
{
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_set(c, "balance.policy", "P2C_EWMA"), SR_EINVAL);
    ck_assert_str_eq(sr_config_errmsg(c), "balance.policy: 'P2C_EWMA' is not one of round_robin, random, "
                                          "weighted, least_outstanding, p2c_ewma, affinity (case-sensitive)");
    sr_config_free(c);
}
END_TEST

START_TEST(test_callback_by_name)
{
    sr_config *c = sr_config_new();
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, "shard.distribution", "callback"));
    ck_assert_msg_has(c, "sr_config_set_keymap_fn");
    ck_assert_int_eq(c->opts.distribution, SR_DIST_KEYRANGE);

    ck_assert_int_eq(sr_config_set_keymap_fn(c, dummy_keymap, c), SR_OK);
    ck_assert_int_eq(c->opts.distribution, SR_DIST_CALLBACK);
    ck_assert_ptr_eq((void *)(uintptr_t)c->keymap_fn, (void *)(uintptr_t)dummy_keymap);
    ck_assert_ptr_eq(c->keymap_ud, c);
    /* Another distribution by name still works afterwards. */
    ck_assert_int_eq(sr_config_set(c, "shard.distribution", "jump"), SR_OK);
    ck_assert_int_eq(c->opts.distribution, SR_DIST_JUMP);

    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set_keymap_fn(c, NULL, NULL));
    ck_assert_int_eq(c->opts.distribution, SR_DIST_JUMP);
    sr_config_free(c);
}
END_TEST

/* -------------------------------------------------------- unknown names */

START_TEST(test_unknown_option)
{
    sr_config *c = sr_config_new();
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, "pool.maxsize", "4"));
    ck_assert_str_eq(sr_config_errmsg(c), "unknown option 'pool.maxsize' (did you mean 'pool.max_size'?)");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, "max_size", "4"));
    ck_assert_msg_has(c, "did you mean 'pool.max_size'");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, "balance.polcy", "random"));
    ck_assert_msg_has(c, "did you mean 'balance.policy'");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, "zzz", "1"));
    ck_assert_str_eq(sr_config_errmsg(c), "unknown option 'zzz'");
    /* Names are exact: case and surrounding space matter. */
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, "POOL.MAX_SIZE", "4"));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, " pool.max_size", "4"));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, "", "4"));
    ck_assert_msg_has(c, "unknown option ''");

    char err[256];
    sr_options o;
    sr__options_init(&o);
    ck_assert_int_eq(sr__options_set(&o, "shards", "4", err, sizeof err), SR_EINVAL); /* config's job */
    ck_assert_int_eq(sr__options_set(NULL, "pool.max_size", "4", err, sizeof err), SR_EINVAL);
    ck_assert_int_eq(sr__options_set(&o, NULL, "4", err, sizeof err), SR_EINVAL);
    ck_assert_int_eq(sr__options_set(&o, "pool.max_size", NULL, err, sizeof err), SR_EINVAL);
    ck_assert_int_eq(sr__options_set(&o, "pool.max_size", "4", NULL, 0), SR_OK);
    ck_assert_int_eq(o.pool_max_size, 4);
    ck_assert_int_eq(sr__options_set(&o, "pool.max_size", "x", NULL, 0), SR_EINVAL);
    ck_assert_int_eq(o.pool_max_size, 4);
    sr_config_free(c);
}
END_TEST

/* ---------------------------------------------------------- shards = N */

START_TEST(test_shards_keyrange_names)
{
    sr_config *c = dirty_config();
    ck_assert_int_eq(sr_config_set(c, "shards", "4"), SR_OK);
    ck_assert_str_eq(sr_config_errmsg(c), "");
    ck_assert_int_eq(c->nshards, 4);
    const char *want[] = {"-40", "40-80", "80-c0", "c0-"};
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(c->shards[i].name, want[i]);
        ck_assert_int_eq(sr__config_find_shard(c, want[i]), i);
        ck_assert_ptr_null(c->shards[i].keyrange);
        ck_assert_int_eq(c->shards[i].nnodes, 0);
    }
    /* Nodes can be added to the declared shards by name. */
    ck_assert_int_eq(sr_config_add_node(c, "80-c0", SR_PRIMARY, "sqlite::memory:", 0), SR_OK);
    ck_assert_int_eq(c->shards[2].nnodes, 1);
    /* Declaring again, or after add_shard, is an error. */
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, "shards", "4"));
    ck_assert_msg_has(c, "already declared");
    sr_config_free(c);

    c = sr_config_new();
    ck_assert_int_eq(sr_config_set(c, "shards", "3"), SR_OK);
    for (int i = 0; i < 3; i++) {
        char name[64];
        sr__keyrange_name(i, 3, name, sizeof name);
        ck_assert_str_eq(c->shards[i].name, name);
    }
    sr_config_free(c);

    c = sr_config_new();
    ck_assert_int_eq(sr_config_set(c, "shards", "1"), SR_OK);
    ck_assert_int_eq(c->nshards, 1);
    ck_assert_str_eq(c->shards[0].name, "-"); /* the whole keyspace */
    sr_config_free(c);

    c = sr_config_new();
    ck_assert_int_eq(sr_config_add_shard(c, "x"), SR_OK);
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, "shards", "2"));
    sr_config_free(c);
}
END_TEST

START_TEST(test_shards_numbered_names)
{
    static const char *const dists[] = {"jump", "pg_hash", "modulo", "range"};
    for (size_t d = 0; d < SR_ARRAY_LEN(dists); d++) {
        sr_config *c = sr_config_new();
        ck_assert_int_eq(sr_config_set(c, "shard.distribution", dists[d]), SR_OK);
        ck_assert_int_eq(sr_config_set(c, "shards", " 12 "), SR_OK);
        ck_assert_int_eq(c->nshards, 12);
        for (int i = 0; i < 12; i++) {
            char name[16];
            snprintf(name, sizeof name, "%d", i);
            ck_assert_str_eq(c->shards[i].name, name);
        }
        /* More shards can still be added by name after `shards = N`. */
        ck_assert_int_eq(sr_config_add_shard(c, "12"), SR_OK);
        EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_shard(c, "3"));
        sr_config_free(c);
    }
}
END_TEST

START_TEST(test_shards_bounds)
{
    sr_config *c = sr_config_new();
    static const char *const bad[] = {"0", "-1", "65537", "", "abc", "4x", "1e2", "99999999999999999999"};
    for (size_t i = 0; i < SR_ARRAY_LEN(bad); i++) {
        EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, "shards", bad[i]));
        ck_assert_msg_has(c, "shards");
        ck_assert_msg_has(c, "1..65536");
    }
    ck_assert_int_eq(c->nshards, 0);
    ck_assert_int_eq(sr_config_set(c, "shard.distribution", "modulo"), SR_OK);
    ck_assert_int_eq(sr_config_set(c, "shards", "65536"), SR_OK);
    ck_assert_int_eq(c->nshards, 65536);
    ck_assert_str_eq(c->shards[65535].name, "65535");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_shard(c, "one-too-many"));
    ck_assert_msg_has(c, "too many shards");
    sr_config_free(c);
}
END_TEST

/* ---------------------------------------------------------------- shards */

START_TEST(test_add_shard)
{
    sr_config *c = dirty_config();
    ck_assert_int_eq(sr_config_add_shard(c, "s0"), SR_OK);
    ck_assert_str_eq(sr_config_errmsg(c), "");
    ck_assert_int_eq(sr_config_add_shard(c, "-80"), SR_OK);
    ck_assert_int_eq(sr_config_add_shard(c, "tenant.eu-1_b"), SR_OK);
    char name65[66], name64[65];
    memset(name65, 'n', 65);
    name65[65] = '\0';
    memset(name64, 'n', 64);
    name64[64] = '\0';
    ck_assert_int_eq(sr_config_add_shard(c, name64), SR_OK);
    ck_assert_int_eq(c->nshards, 4);
    ck_assert_str_eq(c->shards[0].name, "s0");
    ck_assert_int_eq(sr__config_find_shard(c, "-80"), 1);
    ck_assert_int_eq(sr__config_find_shard(c, "nope"), -1);
    ck_assert_int_eq(sr__config_find_shard(c, NULL), -1);
    ck_assert_int_eq(sr__config_find_shard(NULL, "s0"), -1);

    static const char *const bad[] = {"", "a b", "a\tb", " a", "a ", "a=b", "a[b", "a]b", "a#b", "a\nb", "a\x01"};
    for (size_t i = 0; i < SR_ARRAY_LEN(bad); i++)
        EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_shard(c, bad[i]));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_shard(c, name65));
    ck_assert_msg_has(c, "64");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_shard(c, "s0"));
    ck_assert_str_eq(sr_config_errmsg(c), "shard 's0' is already declared");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_shard(c, NULL));
    ck_assert_int_eq(c->nshards, 4);

    /* Many shards: the array grows and keeps declaration order. */
    for (int i = 0; i < 200; i++) {
        char name[16];
        snprintf(name, sizeof name, "g%d", i);
        ck_assert_int_eq(sr_config_add_shard(c, name), SR_OK);
    }
    ck_assert_int_eq(sr__config_find_shard(c, "g199"), 203);
    sr_config_free(c);
}
END_TEST

/* The name index at the limit: every one of 65,536 shards is found, by the API and by the file syntax. */
START_TEST(test_many_shards)
{
    enum { N = 65536 };
    sr_config *c = sr_config_new();
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "s%d", i);
        ck_assert_int_eq(sr_config_add_shard(c, name), SR_OK);
        ck_assert_int_eq(sr_config_add_node(c, name, SR_PRIMARY, "sqlite::memory:", 0), SR_OK);
    }
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "s%d", i);
        ck_assert_int_eq(sr__config_find_shard(c, name), i);
        ck_assert_int_eq(c->shards[i].nnodes, 1);
    }
    ck_assert_int_eq(sr__config_find_shard(c, "s65536"), -1);
    ck_assert_int_eq(sr__config_find_shard(c, "s"), -1);
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_shard(c, "s777"));
    ck_assert_msg_has(c, "already declared");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_shard(c, "extra"));
    ck_assert_msg_has(c, "too many shards");
    sr_config_free(c);

    /* The same through sr_config_parse, sections after `shards = N` re-opening declared shards. */
    size_t cap = (size_t)N * 48 + 64, len = 0;
    char *text = malloc(cap);
    ck_assert_ptr_nonnull(text);
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(text + len, cap - len, "[shard t%d]\nprimary = sqlite::memory:\n", i);
    c = sr_config_new();
    ck_assert_int_eq(sr_config_parse(c, text), SR_OK);
    ck_assert_int_eq(c->nshards, N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "t%d", i);
        ck_assert_int_eq(sr__config_find_shard(c, name), i);
    }
    sr_config_free(c);

    c = sr_config_new();
    ck_assert_int_eq(sr_config_set(c, "shards", "65536"), SR_OK);
    len = 0;
    for (int i = 0; i < N; i += 97) {
        char kr[48];
        sr__keyrange_name(i, N, kr, sizeof kr);
        len += (size_t)snprintf(text + len, cap - len, "[shard %s]\nprimary = sqlite::memory:\n", kr);
    }
    ck_assert_int_eq(sr_config_parse(c, text), SR_OK);
    ck_assert_int_eq(c->nshards, N); /* sections opened the declared shards, added none */
    for (int i = 0; i < N; i++) {
        char kr[48];
        sr__keyrange_name(i, N, kr, sizeof kr);
        ck_assert_int_eq(sr__config_find_shard(c, kr), i);
        ck_assert_int_eq(c->shards[i].nnodes, i % 97 == 0);
    }
    sr_config_free(c);
    free(text);
}
END_TEST

START_TEST(test_shard_set)
{
    sr_config *c = dirty_config();
    ck_assert_int_eq(sr_config_add_shard(c, "a"), SR_OK);
    ck_assert_int_eq(sr_config_set(c, "no.such", "1"), SR_EINVAL);

    static const char *const good_keyranges[] = {"-40", "40-80", "c0-", "-", "4000-8000", "-0123456789abcdef",
                                                 "40-4001", "AB-CD"};
    for (size_t i = 0; i < SR_ARRAY_LEN(good_keyranges); i++) {
        ck_assert_msg(sr_config_shard_set(c, "a", "keyrange", good_keyranges[i]) == SR_OK, "%s: %s",
                      good_keyranges[i], sr_config_errmsg(c));
        ck_assert_str_eq(c->shards[0].keyrange, good_keyranges[i]);
        ck_assert_str_eq(sr_config_errmsg(c), "");
    }
    static const char *const bad_keyranges[] = {"", "40", "80-40", "40-40", "4-8", "xx-", "-40-80", "40 -80",
                                                "0123456789abcdef01-", " -40"};
    for (size_t i = 0; i < SR_ARRAY_LEN(bad_keyranges); i++) {
        EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_shard_set(c, "a", "keyrange", bad_keyranges[i]));
        ck_assert_msg_has(c, "keyrange");
        ck_assert_msg_has(c, "shard 'a'");
    }

    static const char *const good_ranges[] = {"..1000", "1000..2000", "2000..", "..", "-5..5", "-10..-5",
                                              "-9223372036854775808..9223372036854775807", "0..1"};
    for (size_t i = 0; i < SR_ARRAY_LEN(good_ranges); i++) {
        ck_assert_msg(sr_config_shard_set(c, "a", "range", good_ranges[i]) == SR_OK, "%s: %s", good_ranges[i],
                      sr_config_errmsg(c));
        ck_assert_str_eq(c->shards[0].range, good_ranges[i]);
    }
    static const char *const bad_ranges[] = {"",        "5",      "5..5",   "5..1",    "a..b",   "1...2",
                                             "1..2..3", " 1..2",  "1..2 ",  "+1..2",   "1. .2",  "1-2",
                                             "..-9223372036854775808", "9223372036854775808..", "1..0x10",
                                             "1.5..2"};
    for (size_t i = 0; i < SR_ARRAY_LEN(bad_ranges); i++) {
        EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_shard_set(c, "a", "range", bad_ranges[i]));
        ck_assert_msg_has(c, "range");
    }

    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_shard_set(c, "a", "weight", "1"));
    ck_assert_msg_has(c, "unknown attribute 'weight'");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_shard_set(c, "b", "keyrange", "-40"));
    ck_assert_msg_has(c, "unknown shard 'b'");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_shard_set(c, NULL, "keyrange", "-40"));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_shard_set(c, "a", NULL, "-40"));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_shard_set(c, "a", "keyrange", NULL));
    sr_config_free(c);
}
END_TEST

/* ----------------------------------------------------------------- nodes */

START_TEST(test_add_node)
{
    sr_config *c = dirty_config();
    ck_assert_int_eq(sr_config_add_shard(c, "s0"), SR_OK);
    ck_assert_int_eq(sr_config_add_shard(c, "s1"), SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "s0", SR_REPLICA, "postgresql://r1/db", 0), SR_OK);
    ck_assert_str_eq(sr_config_errmsg(c), "");
    ck_assert_int_eq(sr_config_add_node(c, "s0", SR_PRIMARY, "postgresql://u:pw@p/db", 1), SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "s0", SR_REPLICA, "postgresql://r2/db", 1000), SR_OK);
    ck_assert_int_eq(sr_config_add_node(c, "s1", SR_PRIMARY, "sqlite:/tmp/x.db", 7), SR_OK);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(sr_config_add_node(c, "s1", SR_REPLICA, "sqlite:/tmp/x.db", 2), SR_OK);

    const sr_config_shard *s0 = &c->shards[0];
    ck_assert_int_eq(s0->nnodes, 3);
    ck_assert_int_eq(s0->nodes[0].role, SR_REPLICA);
    ck_assert_int_eq(s0->nodes[0].weight, 1); /* 0 means 1 */
    ck_assert_int_eq(s0->nodes[1].role, SR_PRIMARY);
    ck_assert_str_eq(s0->nodes[1].uri, "postgresql://u:pw@p/db");
    ck_assert_int_eq(s0->nodes[2].weight, 1000);
    ck_assert_int_eq(c->shards[1].nnodes, 21);
    ck_assert_int_eq(c->shards[1].nodes[0].weight, 7);

    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_node(c, "s0", SR_PRIMARY, "postgresql://other/db", 1));
    ck_assert_msg_has(c, "already has a primary");
    ck_assert_msg_has(c, "postgresql://other/db");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_node(c, "s0", SR_REPLICA, "postgresql://r/db", -1));
    ck_assert_str_eq(sr_config_errmsg(c), "shard 's0': weight -1 is out of range (1..1000; 0 means 1)");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_node(c, "s0", SR_REPLICA, "postgresql://r/db", 1001));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_node(c, "s0", SR_REPLICA, "postgresql://r/db", INT_MIN));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_node(c, "s0", (sr_role)7, "postgresql://r/db", 1));
    ck_assert_msg_has(c, "invalid role 7");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_node(c, "s0", (sr_role)-1, "postgresql://r/db", 1));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_node(c, "nope", SR_REPLICA, "postgresql://r/db", 1));
    ck_assert_msg_has(c, "unknown shard 'nope'");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_node(c, "s0", SR_REPLICA, "postgresql://r:0/db", 1));
    /* A URI that does not parse is shown by its scheme only: any more could be a password. */
    ck_assert_msg_has(c, "shard 's0': invalid URI 'postgresql://***' at offset 15: the port is out of range");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_node(c, "s0", SR_REPLICA, "", 1));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_node(c, "s0", SR_REPLICA, "not a uri", 1));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_node(c, "s0", SR_REPLICA, NULL, 1));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_add_node(c, NULL, SR_REPLICA, "sqlite::memory:", 1));
    /* An unknown scheme is syntax-valid here; the router checks the driver. */
    ck_assert_int_eq(sr_config_add_node(c, "s0", SR_REPLICA, "nosuchdb://h/db", 1), SR_OK);
    sr_config_free(c);
}
END_TEST

/* ------------------------------------------------------------------ pins */

START_TEST(test_pin_key)
{
    sr_config *c = dirty_config();
    ck_assert_int_eq(sr_config_add_shard(c, "a"), SR_OK);
    ck_assert_int_eq(sr_config_add_shard(c, "b"), SR_OK);

    ck_assert_int_eq(sr_config_pin_key(c, sr_key_int(42), "b"), SR_OK);
    ck_assert_str_eq(sr_config_errmsg(c), "");
    char text[] = "acme";
    ck_assert_int_eq(sr_config_pin_key(c, sr_key_text(text), "a"), SR_OK);
    const unsigned char bin[] = {0, 1, 2, 0xff};
    ck_assert_int_eq(sr_config_pin_key(c, sr_key_bytes(bin, sizeof bin), "b"), SR_OK);
    ck_assert_int_eq(sr_config_pin_key(c, sr_key_bytes(NULL, 0), "a"), SR_OK); /* the empty key */
    /* The integer 42 and the text "42" are different keys. */
    ck_assert_int_eq(sr_config_pin_key(c, sr_key_text("42"), "a"), SR_OK);
    ck_assert_int_eq(c->npins, 5);

    /* The bytes were copied: changing the caller's buffer changes nothing. */
    text[0] = 'X';
    ck_assert_int_eq(c->pins[1].kind, SR_KEY_BYTES);
    ck_assert_uint_eq(c->pins[1].len, 4);
    ck_assert(memcmp(c->pins[1].bytes, "acme", 4) == 0);
    ck_assert_int_eq(c->pins[1].shard, 0);
    ck_assert_int_eq(c->pins[0].kind, SR_KEY_INT);
    ck_assert_int_eq(c->pins[0].i, 42);
    ck_assert_int_eq(c->pins[0].shard, 1);
    ck_assert(memcmp(c->pins[2].bytes, bin, sizeof bin) == 0);
    ck_assert_uint_eq(c->pins[3].len, 0);

    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_pin_key(c, sr_key_int(42), "a"));
    ck_assert_str_eq(sr_config_errmsg(c), "key 42 is already pinned to shard 'b'");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_pin_key(c, sr_key_text("acme"), "a"));
    ck_assert_str_eq(sr_config_errmsg(c), "key 'acme' is already pinned to shard 'a'");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_pin_key(c, sr_key_bytes(bin, sizeof bin), "a"));
    ck_assert_msg_has(c, "<4 bytes>");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_pin_key(c, sr_key_int(7), "zz"));
    ck_assert_msg_has(c, "unknown shard 'zz'");
    sr_key invalid;
    memset(&invalid, 0, sizeof invalid);
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_pin_key(c, invalid, "a"));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_pin_key(c, sr_key_text(NULL), "a"));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_pin_key(c, sr_key_int(7), NULL));

    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(sr_config_pin_key(c, sr_key_int(1000 + i), i % 2 ? "a" : "b"), SR_OK);
    ck_assert_int_eq(c->npins, 105);
    sr_config_free(c);
}
END_TEST

/* ------------------------------------------------------------- callbacks */

START_TEST(test_log_fn)
{
    sr_config *c = dirty_config();
    int ud;
    ck_assert_int_eq(sr_config_set_log_fn(c, dummy_log, &ud), SR_OK);
    ck_assert_str_eq(sr_config_errmsg(c), "");
    ck_assert_ptr_eq((void *)(uintptr_t)c->log_fn, (void *)(uintptr_t)dummy_log);
    ck_assert_ptr_eq(c->log_ud, &ud);
    ck_assert_int_eq(sr_config_set_log_fn(c, NULL, NULL), SR_OK); /* logging off */
    ck_assert_ptr_null(c->log_fn);
    sr_config_free(c);
}
END_TEST

/* ------------------------------------------------------------------ NULL */

START_TEST(test_null_config)
{
    ck_assert_int_eq(sr_config_set(NULL, "pool.max_size", "1"), SR_EINVAL);
    ck_assert_int_eq(sr_config_add_shard(NULL, "a"), SR_EINVAL);
    ck_assert_int_eq(sr_config_shard_set(NULL, "a", "range", ".."), SR_EINVAL);
    ck_assert_int_eq(sr_config_add_node(NULL, "a", SR_PRIMARY, "sqlite::memory:", 1), SR_EINVAL);
    ck_assert_int_eq(sr_config_pin_key(NULL, sr_key_int(1), "a"), SR_EINVAL);
    ck_assert_int_eq(sr_config_set_keymap_fn(NULL, dummy_keymap, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_config_set_log_fn(NULL, dummy_log, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_config_parse(NULL, "pool.max_size = 1"), SR_EINVAL);
    ck_assert_int_eq(sr_config_load_file(NULL, "/dev/null"), SR_EINVAL);
    ck_assert_str_eq(sr_config_errmsg(NULL), "no configuration (NULL)");
    sr_config_free(NULL);
    ck_assert_int_eq(sr__config_fail(NULL, SR_ENOMEM, "x"), SR_ENOMEM);
}
END_TEST

START_TEST(test_null_arguments)
{
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_add_shard(c, "a"), SR_OK);
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, NULL, "1"));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, "pool.max_size", NULL));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_set(c, "shards", NULL));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_parse(c, NULL));
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_load_file(c, NULL));
    ck_assert_int_eq(sr__config_fail(c, SR_EBUSY, "code %d", 7), SR_EBUSY);
    ck_assert_str_eq(sr_config_errmsg(c), "code 7");
    sr_config_free(c);
}
END_TEST

/* ----------------------------------------------------------- file syntax */

static const char full_file[] =
    "# a full configuration\n"
    "\n"
    "shard.distribution = keyrange\n"
    "   balance.policy=least_outstanding   # trailing comment\n"
    "balance.primary_reads = never\n"
    "balance.ewma_decay_ms = 2500\n"
    "pool.max_size = 8\n"
    "pool.checkout_timeout_ms = 250\n"
    "connect_timeout_ms = 1500\n"
    "statement_timeout_ms = 60000\n"
    "stmt_cache.max_size = 0\n"
    "\n"
    "[shard -80]\n"
    "primary = postgresql://app:s#cret@pg1:5432/app   # '#' inside a value stays\n"
    "replica = postgresql://app:pw@pg2:5432/app weight=3\n"
    "replica = postgresql://app:pw@pg3:5432/app   weight = 2\n"
    "replica = postgresql://app:pw@pg4:5432/app weight=0\n"
    "pin_int = 42\n"
    "pin_int = -7\n"
    "pin_text = acme#corp\n"
    "\t[ shard   80- ]  \n"
    "primary=sqlite:/data/b.db\n"
    "keyrange = 80-\n"
    "range = 1000..\n"
    "pin_text =   big tenant  \n"
    "# the end, without a newline\n"
    "[shard c]";

static void check_full_file(const sr_config *c)
{
    ck_assert_str_eq(sr_config_errmsg(c), "");
    ck_assert_int_eq(c->opts.distribution, SR_DIST_KEYRANGE);
    ck_assert_int_eq(c->opts.balance_policy, SR_POLICY_LEAST_OUTSTANDING);
    ck_assert_int_eq(c->opts.primary_reads, SR_PRIMARY_READS_NEVER);
    ck_assert_int_eq(c->opts.ewma_decay_ms, 2500);
    ck_assert_int_eq(c->opts.pool_max_size, 8);
    ck_assert_int_eq(c->opts.pool_checkout_timeout_ms, 250);
    ck_assert_int_eq(c->opts.connect_timeout_ms, 1500);
    ck_assert_int_eq(c->opts.statement_timeout_ms, 60000);
    ck_assert_int_eq(c->opts.stmt_cache_size, 0);

    ck_assert_int_eq(c->nshards, 3);
    const sr_config_shard *a = &c->shards[0], *b = &c->shards[1];
    ck_assert_str_eq(a->name, "-80");
    ck_assert_int_eq(a->nnodes, 4);
    ck_assert_int_eq(a->nodes[0].role, SR_PRIMARY);
    ck_assert_str_eq(a->nodes[0].uri, "postgresql://app:s#cret@pg1:5432/app");
    ck_assert_int_eq(a->nodes[0].weight, 1);
    ck_assert_int_eq(a->nodes[1].role, SR_REPLICA);
    ck_assert_str_eq(a->nodes[1].uri, "postgresql://app:pw@pg2:5432/app");
    ck_assert_int_eq(a->nodes[1].weight, 3);
    ck_assert_int_eq(a->nodes[2].weight, 2);
    ck_assert_int_eq(a->nodes[3].weight, 1); /* 0 means 1, as in sr_config_add_node() */
    ck_assert_ptr_null(a->keyrange);

    ck_assert_str_eq(b->name, "80-");
    ck_assert_int_eq(b->nnodes, 1);
    ck_assert_str_eq(b->nodes[0].uri, "sqlite:/data/b.db");
    ck_assert_str_eq(b->keyrange, "80-");
    ck_assert_str_eq(b->range, "1000..");
    ck_assert_str_eq(c->shards[2].name, "c");
    ck_assert_int_eq(c->shards[2].nnodes, 0);

    ck_assert_int_eq(c->npins, 4);
    ck_assert_int_eq(c->pins[0].kind, SR_KEY_INT);
    ck_assert_int_eq(c->pins[0].i, 42);
    ck_assert_int_eq(c->pins[1].i, -7);
    ck_assert_int_eq(c->pins[2].kind, SR_KEY_BYTES);
    ck_assert_uint_eq(c->pins[2].len, 9);
    ck_assert(memcmp(c->pins[2].bytes, "acme#corp", 9) == 0);
    ck_assert_int_eq(c->pins[2].shard, 0);
    ck_assert_uint_eq(c->pins[3].len, 10);
    ck_assert(memcmp(c->pins[3].bytes, "big tenant", 10) == 0);
    ck_assert_int_eq(c->pins[3].shard, 1);
}

START_TEST(test_parse_full)
{
    sr_config *c = dirty_config();
    ck_assert_msg(sr_config_parse(c, full_file) == SR_OK, "%s", sr_config_errmsg(c));
    check_full_file(c);
    sr_config_free(c);
}
END_TEST

START_TEST(test_parse_crlf)
{
    /* The same file with CRLF line ends parses to the same config. */
    size_t n = strlen(full_file);
    char *crlf = malloc(2 * n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (full_file[i] == '\n')
            crlf[k++] = '\r';
        crlf[k++] = full_file[i];
    }
    crlf[k] = '\0';
    sr_config *c = sr_config_new();
    ck_assert_msg(sr_config_parse(c, crlf) == SR_OK, "%s", sr_config_errmsg(c));
    check_full_file(c);
    sr_config_free(c);
    free(crlf);
}
END_TEST

START_TEST(test_parse_empty_and_comments)
{
    static const char *const texts[] = {"", "\n", "\r\n", "   \n\t\n", "# only a comment", "#\n#\n  # x = 1\n",
                                        "\n\n\n# [shard x]\n"};
    for (size_t i = 0; i < SR_ARRAY_LEN(texts); i++) {
        sr_config *c = dirty_config();
        char *before = snapshot(c);
        ck_assert_int_eq(sr_config_parse(c, texts[i]), SR_OK);
        ck_assert_str_eq(sr_config_errmsg(c), "");
        char *after = snapshot(c);
        ck_assert_str_eq(before, after);
        free(before);
        free(after);
        sr_config_free(c);
    }
}
END_TEST

START_TEST(test_parse_shards_then_sections)
{
    sr_config *c = sr_config_new();
    const char *text = "shards = 2\n"
                       "[shard -80]\nprimary = sqlite:/a.db\n"
                       "[shard 80-]\nprimary = sqlite:/b.db\n"
                       "[shard -80]\nreplica = sqlite:/a2.db\n"; /* a section may be reopened */
    ck_assert_msg(sr_config_parse(c, text) == SR_OK, "%s", sr_config_errmsg(c));
    ck_assert_int_eq(c->nshards, 2);
    ck_assert_int_eq(c->shards[0].nnodes, 2);
    ck_assert_int_eq(c->shards[1].nnodes, 1);
    sr_config_free(c);
}
END_TEST

typedef struct parse_error_case {
    const char *text;
    const char *message; /* the exact message, or a fragment when `exact` is 0 */
    int exact;
} parse_error_case;

static const parse_error_case parse_errors[] = {
    {"pool.max_size = 8\n\n# c\npool.max_size 8\n", "line 4: expected 'key = value' or '[shard NAME]'", 1},
    {"pool.maxsize = 8\n", "line 1: unknown option 'pool.maxsize' (did you mean 'pool.max_size'?)", 1},
    {"\n\npool.max_size = 0\n", "line 3: pool.max_size: '0' is out of range (1..10000)", 1},
    {"pool.max_size = 12abc\n", "line 1: pool.max_size: '12abc' is not an integer (1..10000)", 1},
    {"pool.max_size =\n", "line 1: pool.max_size: '' is not an integer", 0},
    {"= 8\n", "line 1: missing key before '='", 1},
    {"balance.policy = fast\n", "line 1: balance.policy: 'fast' is not one of", 0},
    {"primary = sqlite:/a.db\n", "line 1: 'primary' belongs in a [shard NAME] section", 1},
    {"# x\nreplica = sqlite:/a.db\n", "line 2: 'replica' belongs in a [shard NAME] section", 1},
    {"pin_int = 1\n", "line 1: 'pin_int' belongs in a [shard NAME] section", 1},
    {"keyrange = -80\n", "line 1: 'keyrange' belongs in a [shard NAME] section", 1},
    {"[shard a]\nfoo = 1\n", "line 2: unknown key 'foo' in [shard a] (expected primary, replica", 0},
    {"[shard a]\npool.max_size = 4\n", "line 2: global option 'pool.max_size' must come before the first", 0},
    {"[shard a]\nshards = 4\n", "line 2: global option 'shards' must come before the first", 0},
    {"[shard a\n", "line 1: a section header must end with ']'", 1},
    {"[shards a]\n", "line 1: unknown section '[shards a]' (expected [shard NAME])", 1},
    {"[node a]\n", "line 1: unknown section", 0},
    {"[shard]\n", "line 1: [shard] needs a name", 0},
    {"[shard   ]\n", "line 1: [shard] needs a name", 0},
    {"[shard a b]\n", "line 1: shard 'a b': a shard name must not contain whitespace", 0},
    {"[shard a=b]\n", "line 1: ", 0},
    {"[shard a]\nprimary = sqlite:/a.db\nprimary = sqlite:/b.db\n", "line 3: shard 'a' already has a primary", 0},
    {"[shard a]\nreplica = sqlite:/a.db weight=-1\n",
     "line 2: shard 'a': weight -1 is out of range (1..1000; 0 means 1)", 1},
    {"[shard a]\nreplica = sqlite:/a.db weight=1001\n", "line 2: shard 'a': weight 1001 is out of range", 0},
    {"[shard a]\nreplica = sqlite:/a.db weight=99999999999\n", "line 2: weight 99999999999 is out of range", 0},
    {"[shard a]\nreplica = sqlite:/a.db weight=x\n", "line 2: weight must be an integer", 0},
    {"[shard a]\nreplica = sqlite:/a.db weight\n", "line 2: only weight=N may follow the URI", 1},
    {"[shard a]\nreplica = sqlite:/a.db w=1\n", "line 2: only weight=N may follow the URI", 1},
    {"[shard a]\nreplica = sqlite:/a.db weight=1 extra\n", "line 2: weight must be an integer", 0},
    {"[shard a]\nreplica =\n", "line 2: shard 'a': invalid URI", 0},
    {"[shard a]\nreplica = postgresql://h:0/db\n", "line 2: shard 'a': invalid URI", 0},
    {"[shard a]\nkeyrange = 80-40\n", "line 2: shard 'a': keyrange '80-40' is malformed", 0},
    {"[shard a]\nrange = 5..1\n", "line 2: shard 'a': range '5..1' is malformed", 0},
    {"[shard a]\npin_int = 4x\n", "line 2: pin_int: '4x' is not a 64-bit integer", 1},
    {"[shard a]\npin_int = 99999999999999999999\n", "line 2: pin_int:", 0},
    {"[shard a]\npin_text =\n", "line 2: pin_text needs a value", 1},
    {"[shard a]\npin_int = 1\n[shard b]\npin_int = 1\n", "line 4: key 1 is already pinned to shard 'a'", 1},
    {"[shard a]\n[shard b]\npin_text = t\npin_text = t # again\n", "line 4: key 't' is already pinned", 0},
    {"shards = 0\n", "line 1: shards:", 0},
    {"[shard a]\r\nfoo = 1\r\n", "line 2: unknown key 'foo'", 0},
    {"pool.max_size = 4\r\npool.max_size = 0\r\n", "line 2: pool.max_size: '0' is out of range", 0},
};

START_TEST(test_parse_errors)
{
    const parse_error_case *e = &parse_errors[_i];
    sr_config *c = sr_config_new();
    ck_assert_msg(sr_config_parse(c, e->text) == SR_EINVAL, "should fail: %s", e->text);
    const char *m = sr_config_errmsg(c);
    if (e->exact)
        ck_assert_msg(strcmp(m, e->message) == 0, "text:\n%s\nmessage: '%s'\nexpected: '%s'", e->text, m,
                      e->message);
    else
        ck_assert_msg(strncmp(m, e->message, strlen(e->message)) == 0,
                      "text:\n%s\nmessage: '%s'\nexpected to start with: '%s'", e->text, m, e->message);
    sr_config_free(c);
}
END_TEST

START_TEST(test_parse_applies_lines_before_error)
{
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_parse(c, "pool.max_size = 4\n[shard a]\nbogus = 1\n[shard b]\n"), SR_EINVAL);
    ck_assert_int_eq(c->opts.pool_max_size, 4); /* as documented: earlier lines stay applied */
    ck_assert_int_eq(c->nshards, 1);
    /* A later successful parse clears the message. */
    ck_assert_int_eq(sr_config_parse(c, "pool.max_size = 5\n"), SR_OK);
    ck_assert_str_eq(sr_config_errmsg(c), "");
    ck_assert_int_eq(c->opts.pool_max_size, 5);
    sr_config_free(c);
}
END_TEST

START_TEST(test_parse_long_lines)
{
    size_t n = 300000;
    /* A very long comment, then a very long text pin, then a very long bad value. */
    char *text = malloc(3 * n + 200);
    size_t k = 0;
    text[k++] = '#';
    memset(text + k, 'c', n);
    k += n;
    k += (size_t)sprintf(text + k, "\n[shard a]\npin_text = ");
    memset(text + k, 't', n);
    k += n;
    text[k++] = '\n';
    text[k] = '\0';
    sr_config *c = sr_config_new();
    ck_assert_msg(sr_config_parse(c, text) == SR_OK, "%s", sr_config_errmsg(c));
    ck_assert_int_eq(c->npins, 1);
    ck_assert_uint_eq(c->pins[0].len, n);

    k += (size_t)sprintf(text + k, "pin_int = ");
    memset(text + k, '9', n);
    k += n;
    text[k] = '\0';
    sr_config_free(c);
    c = sr_config_new();
    ck_assert_int_eq(sr_config_parse(c, text), SR_EINVAL);
    ck_assert_msg(strncmp(sr_config_errmsg(c), "line 4: pin_int: '999", 21) == 0, "%s", sr_config_errmsg(c));
    ck_assert_uint_lt(strlen(sr_config_errmsg(c)), SR_ERRMSG_LEN);
    sr_config_free(c);
    free(text);
}
END_TEST

/* ------------------------------------------------------------- load_file */

static char *write_temp(const void *data, size_t n)
{
    char *path = strdup("/tmp/sr_test_config_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        ck_assert_int_gt(w, 0);
        p += w;
        n -= (size_t)w;
    }
    close(fd);
    return path;
}

START_TEST(test_load_file)
{
    sr_config *c = dirty_config();
    char *path = write_temp(full_file, strlen(full_file));
    ck_assert_msg(sr_config_load_file(c, path) == SR_OK, "%s", sr_config_errmsg(c));
    check_full_file(c);
    unlink(path);
    free(path);

    /* Errors name the file and the line. */
    const char *bad = "pool.max_size = 4\nnope = 1\n";
    path = write_temp(bad, strlen(bad));
    ck_assert_int_eq(sr_config_load_file(c, path), SR_EINVAL);
    char want[256];
    snprintf(want, sizeof want, "%s: line 2: unknown option 'nope'", path);
    ck_assert_str_eq(sr_config_errmsg(c), want);
    unlink(path);
    free(path);
    sr_config_free(c);
}
END_TEST

START_TEST(test_load_file_errors)
{
    sr_config *c = sr_config_new();
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_load_file(c, "/nonexistent/dir/shardroute.conf"));
    ck_assert_str_eq(sr_config_errmsg(c), "cannot read '/nonexistent/dir/shardroute.conf': No such file or directory");
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_load_file(c, "/tmp"));
    ck_assert_msg_has(c, "cannot read '/tmp': it is a directory");
    /* A FIFO with no writer would block a plain open forever: refused at once. */
    char fifo[] = "/tmp/sr-test-fifo-XXXXXX";
    int fifo_fd = mkstemp(fifo);
    ck_assert_int_ge(fifo_fd, 0);
    close(fifo_fd);
    unlink(fifo);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_load_file(c, fifo));
    ck_assert_msg_has(c, "not a regular file");
    unlink(fifo);
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_load_file(c, ""));
    ck_assert_msg_has(c, "cannot read '': ");

    /* Bigger than 64 MiB: refused before parsing (it is all valid comments). */
    size_t big = 64 * 1024 * 1024 + 1;
    char *data = malloc(big);
    memset(data, '#', big);
    char *path = write_temp(data, big);
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_load_file(c, path));
    ck_assert_msg_has(c, "larger than 64 MiB");
    unlink(path);
    free(path);
    /* Exactly 64 MiB is fine (read through every step of the growing buffer). */
    path = write_temp(data, big - 1);
    ck_assert_msg(sr_config_load_file(c, path) == SR_OK, "%s", sr_config_errmsg(c));
    unlink(path);
    free(path);
    /* A setting past the first buffer's 64 KiB, and on its last byte, is read. */
    size_t mid = 3 * 64 * 1024 + 17;
    const char tail[] = "\npool.max_size = 7\n";
    memset(data, '#', mid);
    memcpy(data + mid, tail, sizeof tail - 1);
    path = write_temp(data, mid + sizeof tail - 1);
    ck_assert_msg(sr_config_load_file(c, path) == SR_OK, "%s", sr_config_errmsg(c));
    ck_assert_int_eq(c->opts.pool_max_size, 7);
    unlink(path);
    free(path);
    free(data);

    /* A NUL byte would silently cut the file: refused. */
    const char nul[] = "pool.max_size = 4\n\0pool.max_size = 0\n";
    path = write_temp(nul, sizeof nul - 1);
    EXPECT_FAIL_UNCHANGED(c, SR_EINVAL, sr_config_load_file(c, path));
    ck_assert_msg_has(c, "NUL byte");
    unlink(path);
    free(path);

    /* An empty file is an empty configuration. */
    path = write_temp("", 0);
    ck_assert_int_eq(sr_config_load_file(c, path), SR_OK);
    ck_assert_str_eq(sr_config_errmsg(c), "");
    unlink(path);
    free(path);
    sr_config_free(c);
}
END_TEST

/* ------------------------------------------------------------------ docs */

/*
 * docs/options.md sits at ../../docs from this source file. __FILE__ may be
 * relative to the build directory, which is not always the working
 * directory, so the executable's location (the build tree) is tried too.
 */
static FILE *open_docs(char *path, size_t len)
{
    const char *here = __FILE__;
    const char *slash = strrchr(here, '/');
    int dirlen = slash ? (int)(slash - here) : 1;
    const char *dir = slash ? here : ".";
    snprintf(path, len, "%.*s/../../docs/options.md", dirlen, dir);
    FILE *f = fopen(path, "r");
    if (f || here[0] == '/')
        return f;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    /* The test binary is <build>/tests/test_options; __FILE__ is relative to <build>. */
    for (int up = 0; up < 2; up++) {
        char *s = strrchr(exe, '/');
        if (!s)
            return NULL;
        *s = '\0';
    }
    snprintf(path, len, "%s/%.*s/../../docs/options.md", exe, dirlen, dir);
    return fopen(path, "r");
}

START_TEST(test_docs_list_every_option)
{
    char path[8192];
    FILE *f = open_docs(path, sizeof path);
    ck_assert_msg(f != NULL, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 20;
    char *doc = malloc(cap + 1);
    size_t n = fread(doc, 1, cap, f);
    fclose(f);
    doc[n] = '\0';

    size_t count;
    const sr_option_def *defs = sr__option_defs(&count);
    for (size_t i = 0; i < count; i++) {
        /* Each option has a table row: "| `name` |", with its default. */
        char row[128];
        snprintf(row, sizeof row, "| `%s` |", defs[i].name);
        const char *at = strstr(doc, row);
        ck_assert_msg(at != NULL, "docs/options.md has no row for %s", defs[i].name);
        const char *eol = strchr(at, '\n');
        size_t rowlen = eol ? (size_t)(eol - at) : strlen(at);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)rowlen, at);
        char def[64];
        if (defs[i].type == SR_OPT_INT)
            snprintf(def, sizeof def, "`%d`", defs[i].def);
        else if (defs[i].type == SR_OPT_STRING)
            snprintf(def, sizeof def, "(none)");
        else
            snprintf(def, sizeof def, "`%s`", defs[i].enum_names[defs[i].def]);
        ck_assert_msg(strstr(line, def) != NULL, "row of %s lacks its default %s: %s", defs[i].name, def, line);
        if (defs[i].type == SR_OPT_ENUM)
            for (int k = 0; defs[i].enum_names[k]; k++)
                ck_assert_msg(strstr(line, defs[i].enum_names[k]) != NULL, "row of %s lacks value %s",
                              defs[i].name, defs[i].enum_names[k]);
    }
    ck_assert_msg(strstr(doc, "| `shards` |") != NULL, "docs/options.md has no row for shards");

    /* The example under "## File syntax" is a valid configuration. */
    const char *sec = strstr(doc, "## File syntax");
    ck_assert_ptr_nonnull(sec);
    const char *start = strstr(sec, "```\n");
    ck_assert_ptr_nonnull(start);
    start += 4;
    const char *end = strstr(start, "```");
    ck_assert_ptr_nonnull(end);
    char *example = strndup(start, (size_t)(end - start));
    sr_config *c = sr_config_new();
    ck_assert_msg(sr_config_parse(c, example) == SR_OK, "docs example: %s", sr_config_errmsg(c));
    ck_assert_int_eq(c->nshards, 2);
    ck_assert_int_eq(c->shards[0].nnodes, 2);
    ck_assert_int_eq(c->shards[1].nnodes, 1);
    ck_assert_int_eq(c->npins, 2);
    sr_config_free(c);
    free(example);
    free(doc);
}
END_TEST

static Suite *options_suite(void)
{
    size_t nopts;
    sr__option_defs(&nopts);
    Suite *s = suite_create("options");

    TCase *tc = tcase_create("options");
    tcase_add_test(tc, test_table_sane);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_expected_ranges);
    tcase_add_loop_test(tc, test_int_bounds, 0, (int)nopts);
    tcase_add_test(tc, test_pool_max_size_message);
    tcase_add_test(tc, test_long_value_message_bounded);
    tcase_add_test(tc, test_enum_values);
    tcase_add_test(tc, test_enum_message);
    tcase_add_test(tc, test_callback_by_name);
    tcase_add_test(tc, test_unknown_option);
    tcase_add_test(tc, test_docs_list_every_option);
    suite_add_tcase(s, tc);

    tc = tcase_create("builder");
    tcase_add_test(tc, test_shards_keyrange_names);
    tcase_add_test(tc, test_shards_numbered_names);
    tcase_add_test(tc, test_shards_bounds);
    tcase_add_test(tc, test_add_shard);
    tcase_add_test(tc, test_many_shards);
    tcase_add_test(tc, test_shard_set);
    tcase_add_test(tc, test_add_node);
    tcase_add_test(tc, test_pin_key);
    tcase_add_test(tc, test_log_fn);
    tcase_add_test(tc, test_null_config);
    tcase_add_test(tc, test_null_arguments);
    suite_add_tcase(s, tc);

    tc = tcase_create("file");
    tcase_add_test(tc, test_parse_full);
    tcase_add_test(tc, test_parse_crlf);
    tcase_add_test(tc, test_parse_empty_and_comments);
    tcase_add_test(tc, test_parse_shards_then_sections);
    tcase_add_loop_test(tc, test_parse_errors, 0, (int)SR_ARRAY_LEN(parse_errors));
    tcase_add_test(tc, test_parse_applies_lines_before_error);
    tcase_add_test(tc, test_parse_long_lines);
    tcase_add_test(tc, test_load_file);
    tcase_add_test(tc, test_load_file_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(options_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
