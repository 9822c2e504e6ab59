/*
 * Key maps: every distribution's placement rules, the statistical quality of
 * the hashing ones, resharding behaviour, bit-exactness with PostgreSQL's hash
 * partitioning, pinned keys, and build errors.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keymap/keymap.h"
#include "pg_hash_vectors.h"

#define NKEYS 1000000

/*
 * Check's ck_assert records a mark point (a write to its message channel) on
 * every success, which would dominate loops over a million keys; these only
 * call into Check when they fail.
 */
#define REQUIRE(cond)                                                                                   \
    do {                                                                                               \
        if (!(cond))                                                                                   \
            ck_abort_msg("%s:%d: assertion '%s' failed", __FILE__, __LINE__, #cond);                   \
    } while (0)
#define REQUIRE_MSG(cond, ...)                                                                          \
    do {                                                                                               \
        if (!(cond))                                                                                   \
            ck_abort_msg(__VA_ARGS__);                                                                 \
    } while (0)
#define REQUIRE_EQ(a, b)                                                                                \
    do {                                                                                               \
        long long a_ = (long long)(a), b_ = (long long)(b);                                            \
        if (a_ != b_)                                                                                  \
            ck_abort_msg("%s:%d: %s == %s failed (%lld != %lld)", __FILE__, __LINE__, #a, #b, a_, b_); \
    } while (0)

/* ---- helpers ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A random string of 4..23 characters from [a-z0-9_], into buf (NUL-terminated). */
static size_t random_string(uint64_t *s, char *buf)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789_";
    uint64_t r = splitmix64(s);
    size_t len = 4 + (size_t)(r % 20);
    for (size_t i = 0; i < len; i++) {
        if (i % 8 == 0)
            r = splitmix64(s);
        buf[i] = alphabet[(r & 0xff) % (sizeof alphabet - 1)];
        r >>= 8;
    }
    buf[len] = '\0';
    return len;
}

static sr_keymap *build_ok(sr_dist_kind kind, const sr_keymap_shard_spec *shards, int n)
{
    sr_keymap_spec spec = {.kind = kind, .shards = shards, .nshards = n};
    char err[SR_ERRMSG_LEN] = "";
    sr_keymap *m = NULL;
    int rc = sr__keymap_build(&spec, &m, err, sizeof err);
    ck_assert_msg(rc == 0, "build failed: %d %s", rc, err);
    ck_assert_ptr_nonnull(m);
    return m;
}

/* Shards with no names or ranges: what jump, pg_hash, modulo and an even keyrange need. */
static sr_keymap *build_n(sr_dist_kind kind, int n)
{
    sr_keymap_shard_spec *sh = calloc((size_t)n, sizeof *sh);
    ck_assert_ptr_nonnull(sh);
    char(*names)[16] = calloc((size_t)n, sizeof *names);
    ck_assert_ptr_nonnull(names);
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "s%d", i);
        sh[i].name = names[i];
    }
    sr_keymap *m = build_ok(kind, sh, n);
    free(names);
    free(sh);
    return m;
}

/* Expects a build error whose message contains every needle. */
static void build_fails(const sr_keymap_spec *spec, const char *needles[])
{
    char err[SR_ERRMSG_LEN] = "";
    sr_keymap *m = (sr_keymap *)1;
    int rc = sr__keymap_build(spec, &m, err, sizeof err);
    ck_assert_int_eq(rc, SR_EINVAL);
    ck_assert_ptr_null(m);
    ck_assert_msg(err[0] != '\0', "no message");
    for (int i = 0; needles && needles[i]; i++)
        REQUIRE_MSG(strstr(err, needles[i]) != NULL, "message \"%s\" lacks \"%s\"", err, needles[i]);
}

static double chi2_critical(int df)
{
    /* Wilson-Hilferty: chi2_p(df) ~ df * (1 - 2/(9df) + z_p * sqrt(2/(9df)))^3, z_0.999 = 3.0902. */
    double k = 2.0 / (9.0 * df);
    double t = 1.0 - k + 3.0902 * sqrt(k);
    return df * t * t * t;
}

static double chi2(const long *counts, int n, long total)
{
    double expect = (double)total / n, x = 0;
    for (int i = 0; i < n; i++) {
        double d = (double)counts[i] - expect;
        x += d * d / expect;
    }
    return x;
}

static const char *dist_name(sr_dist_kind k)
{
    static const char *names[] = {"keyrange", "jump", "pg_hash", "modulo", "range", "callback"};
    return names[k];
}

/* ---- keyrange: parsing and naming ---- */

START_TEST(keyrange_parse_valid)
{
    static const struct {
        const char *text;
        uint64_t start, end;
        int max;
    } v[] = {
        {"-", 0, 0, 1},
        {"-40", 0, UINT64_C(0x4000000000000000), 0},
        {"40-80", UINT64_C(0x4000000000000000), UINT64_C(0x8000000000000000), 0},
        {"80-c0", UINT64_C(0x8000000000000000), UINT64_C(0xc000000000000000), 0},
        {"c0-", UINT64_C(0xc000000000000000), 0, 1},
        {"C0-", UINT64_C(0xc000000000000000), 0, 1},
        {"0040-0080", UINT64_C(0x0040000000000000), UINT64_C(0x0080000000000000), 0},
        {"aB-aBcD", UINT64_C(0xab00000000000000), UINT64_C(0xabcd000000000000), 0},
        {"-0000000000000001", 0, 1, 0},
        {"fffffffffffffffe-ffffffffffffffff", UINT64_C(0xfffffffffffffffe), UINT64_C(0xffffffffffffffff), 0},
        {"ffffffffffffffff-", UINT64_C(0xffffffffffffffff), 0, 1},
    };
    for (size_t i = 0; i < SR_ARRAY_LEN(v); i++) {
        uint64_t s = 7, e = 7;
        int max = 7;
        REQUIRE_MSG(sr__keyrange_parse(v[i].text, &s, &e, &max) == 0, "%s rejected", v[i].text);
        REQUIRE_MSG(s == v[i].start && max == v[i].max && (max || e == v[i].end), "%s: %llx %llx %d",
                      v[i].text, (unsigned long long)s, (unsigned long long)e, max);
    }
}
END_TEST

START_TEST(keyrange_parse_invalid)
{
    static const char *bad[] = {
        "",       "40",  "4-8",    "-4",    "400-8",  "x0-",    "40-zz", "--",  "40-80-c0", "80-40",
        "40-40",  "-00", " 40-80", "40-80 ", "0x40-80", "+40-80", "-000000000000000001",
        "000000000000000000-", "shard-1", "c0-c0",
    };
    for (size_t i = 0; i < SR_ARRAY_LEN(bad); i++) {
        uint64_t s = 0, e = 0;
        int max = 0;
        REQUIRE_MSG(sr__keyrange_parse(bad[i], &s, &e, &max) == SR_EINVAL, "\"%s\" accepted", bad[i]);
    }
    uint64_t s, e;
    int max;
    ck_assert_int_eq(sr__keyrange_parse(NULL, &s, &e, &max), SR_EINVAL);
}
END_TEST

START_TEST(keyrange_names)
{
    static const struct {
        int n;
        const char *names[16];
    } v[] = {
        {1, {"-"}},
        {2, {"-80", "80-"}},
        {3, {"-5555555555555555", "5555555555555555-aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa-"}},
        {4, {"-40", "40-80", "80-c0", "c0-"}},
        {16, {"-10", "10-20", "20-30", "30-40", "40-50", "50-60", "60-70", "70-80", "80-90", "90-a0",
              "a0-b0", "b0-c0", "c0-d0", "d0-e0", "e0-f0", "f0-"}},
    };
    char buf[64];
    for (size_t t = 0; t < SR_ARRAY_LEN(v); t++)
        for (int i = 0; i < v[t].n; i++) {
            sr__keyrange_name(i, v[t].n, buf, sizeof buf);
            ck_assert_str_eq(buf, v[t].names[i]);
        }
    /* floor(i * 2^64 / n) exactly, where 2^64 is not a multiple of n (from Python's big integers). */
    static const struct {
        int i, n;
        const char *name;
    } odd[] = {
        {0, 1000, "-004189374bc6a7ef"},
        {1, 1000, "004189374bc6a7ef-0083126e978d4fdf"},
        {999, 1000, "ffbe76c8b4395810-"},
        {2, 7, "4924924924924924-6db6db6db6db6db6"},
        {3, 7, "6db6db6db6db6db6-9249249249249249"},
        {99, 100, "fd70a3d70a3d70a3-"},
    };
    for (size_t t = 0; t < SR_ARRAY_LEN(odd); t++) {
        sr__keyrange_name(odd[t].i, odd[t].n, buf, sizeof buf);
        ck_assert_str_eq(buf, odd[t].name);
    }
    sr__keyrange_name(1, 1024, buf, sizeof buf);
    ck_assert_str_eq(buf, "0040-0080");
    sr__keyrange_name(1023, 1024, buf, sizeof buf);
    ck_assert_str_eq(buf, "ffc0-");
    /* Out of range and a short buffer: no overflow, always terminated. */
    sr__keyrange_name(4, 4, buf, sizeof buf);
    ck_assert_str_eq(buf, "");
    sr__keyrange_name(0, 0, buf, sizeof buf);
    ck_assert_str_eq(buf, "");
    char tiny[3] = "zz";
    sr__keyrange_name(1, 4, tiny, sizeof tiny);
    ck_assert_str_eq(tiny, "40");
}
END_TEST

/* Every even split's names parse and tile the keyspace with no gap or overlap. */
START_TEST(keyrange_names_tile)
{
    static const int ns[] = {1, 2, 3, 5, 7, 64, 100, 1000, 1024};
    for (size_t t = 0; t < SR_ARRAY_LEN(ns); t++) {
        int n = ns[t];
        uint64_t prev_end = 0;
        for (int i = 0; i < n; i++) {
            char buf[64];
            uint64_t s, e;
            int max;
            sr__keyrange_name(i, n, buf, sizeof buf);
            REQUIRE_MSG(sr__keyrange_parse(buf, &s, &e, &max) == 0, "%d/%d: %s", i, n, buf);
            REQUIRE_MSG(s == prev_end, "%d/%d %s does not start where the previous ended", i, n, buf);
            REQUIRE_EQ(max, i == n - 1);
            prev_end = e;
        }
    }
}
END_TEST

/* ---- keyrange: building ---- */

/* The shard a keyrange map picks owns the key's keyspace id, whatever the declaration order. */
START_TEST(keyrange_declaration_index)
{
    sr_keymap_shard_spec sh[] = {
        {"c0-", NULL, NULL}, {"shard-a", "-40", NULL}, {"80-c0", NULL, NULL}, {"x", "40-80", NULL}};
    const char *ranges[] = {"c0-", "-40", "80-c0", "40-80"};
    sr_keymap *m = build_ok(SR_DIST_KEYRANGE, sh, 4);
    long seen[4] = {0};
    for (int64_t k = 0; k < 20000; k++) {
        sr_key key = sr_key_int(k);
        int idx = sr__keymap_lookup(m, key);
        REQUIRE(idx >= 0 && idx < 4);
        uint64_t s, e, h = sr__hash_key(key);
        int max;
        REQUIRE_EQ(sr__keyrange_parse(ranges[idx], &s, &e, &max), 0);
        REQUIRE(h >= s && (max || h < e));
        seen[idx]++;
    }
    for (int i = 0; i < 4; i++)
        ck_assert_int_gt(seen[i], 4000);
    sr__keymap_free(m);
}
END_TEST

/*
 * A lopsided layout: a hundred narrow slices packed into 1/256 of the space
 * next to wide ones, declared in reverse. Every key must land in the slice
 * that holds its keyspace id, found here by a plain linear scan.
 */
START_TEST(keyrange_lopsided_layout)
{
    enum { NARROW = 100, N = NARROW + 3 };
    static char names[N][40];
    sr_keymap_shard_spec sh[N];
    uint64_t lo[N], hi[N];
    int max[N];
    int k = 0;
    snprintf(names[k++], sizeof names[0], "-40000000");
    for (uint32_t i = 0; i < NARROW; i++) {
        uint32_t a = 0x40000000u + i * 0x28f5cu, b = i + 1 == NARROW ? 0x41000000u : a + 0x28f5cu;
        snprintf(names[k++], sizeof names[0], "%08x-%08x", (unsigned)a, (unsigned)b);
    }
    snprintf(names[k++], sizeof names[0], "41000000-80");
    snprintf(names[k++], sizeof names[0], "80-");
    for (int i = 0; i < N; i++) {
        sh[i].name = names[N - 1 - i];
        sh[i].keyrange = NULL;
        sh[i].range = NULL;
        ck_assert_int_eq(sr__keyrange_parse(sh[i].name, &lo[i], &hi[i], &max[i]), 0);
    }
    sr_keymap *m = build_ok(SR_DIST_KEYRANGE, sh, N);
    long in_narrow = 0;
    for (int j = 0; j < 300000; j++) {
        sr_key key = sr_key_int(j);
        uint64_t h = sr__hash_key(key);
        int want = -1;
        for (int i = 0; i < N && want < 0; i++)
            if (h >= lo[i] && (max[i] || h < hi[i]))
                want = i;
        REQUIRE_EQ(sr__keymap_lookup(m, key), want);
        in_narrow += want >= 2 && want < N - 1;
    }
    ck_assert_int_gt(in_narrow, 800); /* the dense part was really exercised (expect ~1170) */
    sr__keymap_free(m);
}
END_TEST

/* Unranged shards split evenly, and shard i owns exactly sr__keyrange_name(i, n). */
START_TEST(keyrange_even_split_matches_names)
{
    static const int ns[] = {1, 3, 5, 64};
    for (size_t t = 0; t < SR_ARRAY_LEN(ns); t++) {
        int n = ns[t];
        sr_keymap *m = build_n(SR_DIST_KEYRANGE, n);
        uint64_t seed = 99;
        for (int j = 0; j < 20000; j++) {
            char buf[32];
            size_t len = random_string(&seed, buf);
            sr_key key = sr_key_bytes(buf, len);
            int idx = sr__keymap_lookup(m, key);
            REQUIRE(idx >= 0 && idx < n);
            char name[64];
            uint64_t s, e, h = sr__hash_key(key);
            int max;
            sr__keyrange_name(idx, n, name, sizeof name);
            REQUIRE_EQ(sr__keyrange_parse(name, &s, &e, &max), 0);
            REQUIRE_MSG(h >= s && (max || h < e), "%llx not in %s", (unsigned long long)h, name);
        }
        sr__keymap_free(m);
    }
}
END_TEST

/* Without a shard list (only a count), keyrange splits evenly like unnamed shards. */
START_TEST(keyrange_count_only)
{
    sr_keymap_spec spec = {.kind = SR_DIST_KEYRANGE, .shards = NULL, .nshards = 4};
    sr_keymap *m = NULL, *ref = build_n(SR_DIST_KEYRANGE, 4);
    char err[256];
    ck_assert_int_eq(sr__keymap_build(&spec, &m, err, sizeof err), 0);
    for (int j = 0; j < 10000; j++)
        REQUIRE_EQ(sr__keymap_lookup(m, sr_key_int(j)), sr__keymap_lookup(ref, sr_key_int(j)));
    sr__keymap_free(m);
    sr__keymap_free(ref);
}
END_TEST

/* Splitting 40-80 in two moves only keys that were in 40-80; every other key keeps its shard. */
START_TEST(keyrange_split_moves_only_that_range)
{
    sr_keymap_shard_spec before[] = {{"-40", 0, 0}, {"40-80", 0, 0}, {"80-c0", 0, 0}, {"c0-", 0, 0}};
    sr_keymap_shard_spec after[] = {{"-40", 0, 0}, {"40-60", 0, 0}, {"60-80", 0, 0}, {"80-c0", 0, 0}, {"c0-", 0, 0}};
    sr_keymap *a = build_ok(SR_DIST_KEYRANGE, before, 4);
    sr_keymap *b = build_ok(SR_DIST_KEYRANGE, after, 5);
    long moved_lo = 0, moved_hi = 0, stayed = 0;
    uint64_t seed = 5;
    for (int j = 0; j < 200000; j++) {
        char buf[32];
        sr_key key = j % 2 ? sr_key_int(j) : sr_key_bytes(buf, random_string(&seed, buf));
        const char *na = before[sr__keymap_lookup(a, key)].name;
        const char *nb = after[sr__keymap_lookup(b, key)].name;
        if (strcmp(na, "40-80") == 0) {
            REQUIRE_MSG(strcmp(nb, "40-60") == 0 || strcmp(nb, "60-80") == 0, "40-80 key went to %s", nb);
            if (strcmp(nb, "40-60") == 0)
                moved_lo++;
            else
                moved_hi++;
        } else {
            REQUIRE_MSG(strcmp(na, nb) == 0, "key %d moved from %s to %s", j, na, nb);
            stayed++;
        }
    }
    /* Both halves received keys, and the split range held about a quarter of them. */
    ck_assert_int_gt(moved_lo, 20000);
    ck_assert_int_gt(moved_hi, 20000);
    ck_assert_int_gt(stayed, 140000);
    sr__keymap_free(a);
    sr__keymap_free(b);
}
END_TEST

START_TEST(keyrange_build_errors)
{
    {
        sr_keymap_shard_spec sh[] = {{"-40", 0, 0}, {"80-", 0, 0}};
        sr_keymap_spec spec = {.kind = SR_DIST_KEYRANGE, .shards = sh, .nshards = 2};
        const char *n[] = {"gap", "\"-40\"", "\"80-\"", "4000000000000000", "8000000000000000", NULL};
        build_fails(&spec, n);
    }
    {
        sr_keymap_shard_spec sh[] = {{"a", "-80", 0}, {"b", "40-", 0}};
        sr_keymap_spec spec = {.kind = SR_DIST_KEYRANGE, .shards = sh, .nshards = 2};
        const char *n[] = {"overlap", "\"a\"", "\"b\"", "8000000000000000", "4000000000000000", "end", NULL};
        build_fails(&spec, n);
    }
    {
        /* The same range twice. */
        sr_keymap_shard_spec sh[] = {{"-80", 0, 0}, {"one", "80-", 0}, {"two", "80-", 0}};
        sr_keymap_spec spec = {.kind = SR_DIST_KEYRANGE, .shards = sh, .nshards = 3};
        const char *n[] = {"overlap", "\"one\"", "\"two\"", NULL};
        build_fails(&spec, n);
    }
    {
        sr_keymap_shard_spec sh[] = {{"40-80", 0, 0}, {"80-", 0, 0}};
        sr_keymap_spec spec = {.kind = SR_DIST_KEYRANGE, .shards = sh, .nshards = 2};
        const char *n[] = {"gap", "0000000000000000", "4000000000000000", "\"40-80\"", NULL};
        build_fails(&spec, n);
    }
    {
        sr_keymap_shard_spec sh[] = {{"-40", 0, 0}, {"40-80", 0, 0}};
        sr_keymap_spec spec = {.kind = SR_DIST_KEYRANGE, .shards = sh, .nshards = 2};
        const char *n[] = {"gap", "8000000000000000", "end", "\"40-80\"", NULL};
        build_fails(&spec, n);
    }
    {
        sr_keymap_shard_spec sh[] = {{"-80", 0, 0}, {"east", 0, 0}};
        sr_keymap_spec spec = {.kind = SR_DIST_KEYRANGE, .shards = sh, .nshards = 2};
        const char *n[] = {"\"east\"", "no keyrange", NULL};
        build_fails(&spec, n);
    }
    {
        sr_keymap_shard_spec sh[] = {{"a", "4-8", 0}};
        sr_keymap_spec spec = {.kind = SR_DIST_KEYRANGE, .shards = sh, .nshards = 1};
        const char *n[] = {"\"a\"", "malformed", "\"4-8\"", NULL};
        build_fails(&spec, n);
    }
    {
        sr_keymap_spec spec = {.kind = SR_DIST_KEYRANGE, .shards = NULL, .nshards = 0};
        build_fails(&spec, NULL);
    }
    {
        sr_keymap_shard_spec sh[] = {{"a", 0, 0}};
        sr_keymap_spec spec = {.kind = (sr_dist_kind)42, .shards = sh, .nshards = 1};
        build_fails(&spec, NULL);
    }
}
END_TEST

/* ---- every distribution ---- */

static int cb_mod(void *ud, sr_key key, int n)
{
    (*(int *)ud)++;
    return (int)((key.kind == SR_KEY_INT ? (uint64_t)key.i : key.len) % (uint64_t)n);
}

static sr_keymap *build_any(sr_dist_kind kind, int n, int *calls)
{
    if (kind == SR_DIST_CALLBACK) {
        sr_keymap_spec spec = {.kind = kind, .nshards = n, .fn = cb_mod, .fn_ud = calls};
        sr_keymap *m = NULL;
        char err[256];
        REQUIRE_EQ(sr__keymap_build(&spec, &m, err, sizeof err), 0);
        return m;
    }
    if (kind == SR_DIST_RANGE) {
        /* n ranges of width 100 from -100*(n/2), declared in reverse, unbounded at both ends. */
        sr_keymap_shard_spec *sh = calloc((size_t)n, sizeof *sh);
        char(*r)[64] = calloc((size_t)n, sizeof *r);
        for (int i = 0; i < n; i++) {
            long long lo = -100LL * (n / 2) + 100LL * (n - 1 - i);
            if (n == 1)
                snprintf(r[i], sizeof r[i], "..");
            else if (i == n - 1)
                snprintf(r[i], sizeof r[i], "..%lld", lo + 100);
            else if (i == 0)
                snprintf(r[i], sizeof r[i], "%lld..", lo);
            else
                snprintf(r[i], sizeof r[i], "%lld..%lld", lo, lo + 100);
            sh[i].name = r[i];
            sh[i].range = r[i];
        }
        sr_keymap *m = build_ok(kind, sh, n);
        free(r);
        free(sh);
        return m;
    }
    return build_n(kind, n);
}

static sr_key det_key(int j, char *buf)
{
    if (j % 2)
        return sr_key_int((int64_t)j * 7919 - 500000);
    snprintf(buf, 32, "key-%d", j);
    return sr_key_text(buf);
}

START_TEST(deterministic_and_in_range)
{
    sr_dist_kind kind = (sr_dist_kind)_i;
    static const int ns[] = {1, 4, 64, 1024};
    for (size_t t = 0; t < SR_ARRAY_LEN(ns); t++) {
        int n = ns[t], calls = 0;
        sr_keymap *a = build_any(kind, n, &calls), *b = build_any(kind, n, &calls);
        int distinct = 0, first = -1;
        for (int j = 0; j < 20000; j++) {
            char buf[32];
            sr_key key = det_key(j, buf);
            if (kind == SR_DIST_RANGE && key.kind != SR_KEY_INT)
                continue;
            int x = sr__keymap_lookup(a, key), y = sr__keymap_lookup(b, key);
            REQUIRE_MSG(x >= 0 && x < n, "%s n=%d: %d", dist_name(kind), n, x);
            REQUIRE_EQ(x, y);
            if (first < 0)
                first = x;
            else if (x != first)
                distinct = 1;
        }
        REQUIRE_MSG(n == 1 || distinct, "%s n=%d sends every key to one shard", dist_name(kind), n);
        if (kind == SR_DIST_CALLBACK)
            REQUIRE_EQ(calls, 40000);
        sr__keymap_free(a);
        sr__keymap_free(b);
    }
}
END_TEST

START_TEST(invalid_key)
{
    sr_dist_kind kind = (sr_dist_kind)_i;
    int calls = 0;
    sr_keymap *m = build_any(kind, 4, &calls);
    sr_key zero;
    memset(&zero, 0, sizeof zero);
    ck_assert_int_eq(sr__keymap_lookup(m, zero), SR_EINVAL);
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_bytes(NULL, 3)), SR_EINVAL);
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_text(NULL)), SR_EINVAL);
    sr_key odd = sr_key_int(1);
    odd.kind = (sr_key_kind)3;
    ck_assert_int_eq(sr__keymap_lookup(m, odd), SR_EINVAL);
    ck_assert_int_eq(sr__keymap_lookup(NULL, sr_key_int(1)), SR_EINVAL);
    ck_assert_int_eq(calls, 0); /* the callback never sees an invalid key */
    /* The empty byte string is a valid key. */
    int r = sr__keymap_lookup(m, sr_key_bytes(NULL, 0));
    if (kind == SR_DIST_RANGE)
        REQUIRE_EQ(r, SR_EINVAL); /* range takes integers only */
    else
        REQUIRE(r >= 0 && r < 4);
    sr__keymap_free(m);
}
END_TEST

/* ---- uniformity: 1M keys, chi-square not rejected at p = 0.001 ---- */

static const sr_dist_kind uniform_kinds[] = {SR_DIST_KEYRANGE, SR_DIST_JUMP, SR_DIST_PG_HASH};
static const int uniform_ns[] = {4, 64, 1024};

START_TEST(chi_square_uniform)
{
    /* _i: kind (3) x shard count (3) x key set (2: sequential ints, random strings) */
    sr_dist_kind kind = uniform_kinds[_i / 6];
    int n = uniform_ns[(_i / 2) % 3];
    int strings = _i % 2;
    sr_keymap *m = build_n(kind, n);
    long *counts = calloc((size_t)n, sizeof *counts);
    uint64_t seed = UINT64_C(0x5eed) + (uint64_t)_i;
    for (int j = 0; j < NKEYS; j++) {
        char buf[32];
        sr_key key = strings ? sr_key_bytes(buf, random_string(&seed, buf)) : sr_key_int(j);
        int idx = sr__keymap_lookup(m, key);
        REQUIRE(idx >= 0 && idx < n);
        counts[idx]++;
    }
    double x = chi2(counts, n, NKEYS), crit = chi2_critical(n - 1);
    ck_assert_msg(x < crit, "%s n=%d %s: chi2 %.1f >= critical %.1f", dist_name(kind), n,
                  strings ? "strings" : "ints", x, crit);
    free(counts);
    sr__keymap_free(m);
}
END_TEST

/* The checker itself must reject a visibly skewed distribution, or the test above proves nothing. */
START_TEST(chi_square_rejects_skew)
{
    ck_assert(fabs(chi2_critical(3) - 16.27) < 0.5); /* tables: 16.266; the approximation is weakest at small df */
    ck_assert(fabs(chi2_critical(63) - 103.44) < 0.5); /* tables: 103.442 */
    ck_assert(fabs(chi2_critical(1023) - 1168.5) < 1.5);
    long counts[64];
    for (int i = 0; i < 64; i++)
        counts[i] = 1000000 / 64;
    counts[0] += 1600; /* 10% more on one shard, 10% less on another */
    counts[1] -= 1600;
    ck_assert(chi2(counts, 64, 1000000) > chi2_critical(63));
}
END_TEST

/* ---- jump: growing by one shard ---- */

START_TEST(jump_grow_by_one)
{
    static const int ns[] = {4, 64, 1000};
    int n = ns[_i];
    sr_keymap *a = build_n(SR_DIST_JUMP, n), *b = build_n(SR_DIST_JUMP, n + 1);
    long moved = 0;
    for (int j = 0; j < NKEYS; j++) {
        sr_key key = sr_key_int(j);
        int x = sr__keymap_lookup(a, key), y = sr__keymap_lookup(b, key);
        if (x != y) {
            REQUIRE_MSG(y == n, "key %d moved from %d to %d, not to the new shard %d", j, x, y, n);
            moved++;
        }
    }
    double lo = 0.9 * NKEYS / (n + 1), hi = 1.1 * NKEYS / (n + 1);
    ck_assert_msg(moved >= lo && moved <= hi, "n=%d: %ld moved, expected %.0f..%.0f", n, moved, lo, hi);
    sr__keymap_free(a);
    sr__keymap_free(b);
}
END_TEST

START_TEST(jump_hash_reference)
{
    /* Fixed points of the algorithm that do not depend on the key: one bucket, bad counts. */
    ck_assert_int_eq(sr__jump_hash(12345, 1), 0);
    ck_assert_int_eq(sr__jump_hash(0, 0), SR_EINVAL);
    ck_assert_int_eq(sr__jump_hash(0, -3), SR_EINVAL);
    /* Monotone: a key's bucket never decreases as buckets are added. */
    for (uint64_t k = 1; k < 2000; k++) {
        uint64_t key = k * UINT64_C(0x9e3779b97f4a7c15);
        int32_t prev = 0;
        for (int32_t n = 1; n <= 200; n++) {
            int32_t b = sr__jump_hash(key, n);
            REQUIRE(b >= prev && b < n);
            REQUIRE(b == prev || b == n - 1);
            prev = b;
        }
    }
}
END_TEST

/* ---- pg_hash: PostgreSQL's own placement ---- */

START_TEST(pg_hash_int_vectors)
{
    sr_keymap *maps[PG_VEC_NMODULI];
    for (int j = 0; j < PG_VEC_NMODULI; j++)
        maps[j] = build_n(SR_DIST_PG_HASH, pg_vec_moduli[j]);
    ck_assert_int_gt((int)SR_ARRAY_LEN(pg_int_vectors), 200);
    for (size_t i = 0; i < SR_ARRAY_LEN(pg_int_vectors); i++) {
        const pg_int_vector *v = &pg_int_vectors[i];
        uint64_t h = sr__pg_hash_int8(v->key);
        REQUIRE_MSG(h == v->hash, "hashint8extended(%lld): %016llx, PostgreSQL %016llx", (long long)v->key,
                      (unsigned long long)h, (unsigned long long)v->hash);
        for (int j = 0; j < PG_VEC_NMODULI; j++) {
            REQUIRE_EQ((int)(sr__pg_partition_hash(h) % (uint64_t)pg_vec_moduli[j]), v->part[j]);
            REQUIRE_MSG(sr__keymap_lookup(maps[j], sr_key_int(v->key)) == v->part[j],
                          "key %lld modulus %d", (long long)v->key, pg_vec_moduli[j]);
        }
    }
    for (int j = 0; j < PG_VEC_NMODULI; j++)
        sr__keymap_free(maps[j]);
}
END_TEST

START_TEST(pg_hash_text_vectors)
{
    sr_keymap *maps[PG_VEC_NMODULI];
    for (int j = 0; j < PG_VEC_NMODULI; j++)
        maps[j] = build_n(SR_DIST_PG_HASH, pg_vec_moduli[j]);
    ck_assert_int_gt((int)SR_ARRAY_LEN(pg_text_vectors), 150);
    size_t longest = 0;
    for (size_t i = 0; i < SR_ARRAY_LEN(pg_text_vectors); i++)
        if (pg_text_vectors[i].len > longest)
            longest = pg_text_vectors[i].len;
    unsigned char *copy = malloc(longest + 8);
    for (size_t i = 0; i < SR_ARRAY_LEN(pg_text_vectors); i++) {
        const pg_text_vector *v = &pg_text_vectors[i];
        REQUIRE_EQ(strlen(v->bytes), v->len);
        REQUIRE_MSG(sr__pg_hash_text(v->bytes, v->len) == v->hash, "hashtextextended(\"%.40s\") len %zu", v->bytes,
                      v->len);
        /* PostgreSQL reads aligned words; the result must not depend on where the bytes sit. */
        for (size_t off = 1; off < 4; off++) {
            memcpy(copy + off, v->bytes, v->len);
            REQUIRE(sr__pg_hash_text(copy + off, v->len) == v->hash);
        }
        for (int j = 0; j < PG_VEC_NMODULI; j++)
            REQUIRE_MSG(sr__keymap_lookup(maps[j], sr_key_bytes(v->bytes, v->len)) == v->part[j],
                          "\"%.40s\" modulus %d", v->bytes, pg_vec_moduli[j]);
    }
    free(copy);
    for (int j = 0; j < PG_VEC_NMODULI; j++)
        sr__keymap_free(maps[j]);
}
END_TEST

/* ---- modulo ---- */

START_TEST(modulo_is_hash_mod_n)
{
    static const int ns[] = {1, 3, 10, 1024};
    for (size_t t = 0; t < SR_ARRAY_LEN(ns); t++) {
        sr_keymap *m = build_n(SR_DIST_MODULO, ns[t]);
        for (int j = 0; j < 5000; j++) {
            char buf[32];
            sr_key key = det_key(j, buf);
            REQUIRE_EQ(sr__keymap_lookup(m, key), (int)(sr__hash_key(key) % (uint64_t)ns[t]));
        }
        sr__keymap_free(m);
    }
}
END_TEST

/* ---- range ---- */

START_TEST(range_lookup)
{
    /* Declared out of order, with a hole [3000, 5000) and nothing at or above 9000. */
    sr_keymap_shard_spec sh[] = {
        {"mid", NULL, "1000..2000"}, {"low", NULL, "..1000"}, {"b", NULL, "2000..3000"}, {"far", NULL, "5000..9000"}};
    sr_keymap *m = build_ok(SR_DIST_RANGE, sh, 4);
    static const struct {
        int64_t k;
        int want;
    } v[] = {
        {INT64_MIN, 1}, {-1, 1}, {0, 1}, {999, 1}, {1000, 0}, {1999, 0}, {2000, 2}, {2999, 2},
        {3000, SR_ENOSHARD}, {4999, SR_ENOSHARD}, {5000, 3}, {8999, 3}, {9000, SR_ENOSHARD},
        {INT64_MAX, SR_ENOSHARD},
    };
    for (size_t i = 0; i < SR_ARRAY_LEN(v); i++)
        REQUIRE_MSG(sr__keymap_lookup(m, sr_key_int(v[i].k)) == v[i].want, "key %lld", (long long)v[i].k);
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_text("1500")), SR_EINVAL);
    sr__keymap_free(m);

    sr_keymap_shard_spec edges[] = {{"neg", NULL, "-9223372036854775808..-5"}, {"top", NULL, "9223372036854775806.."}};
    m = build_ok(SR_DIST_RANGE, edges, 2);
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_int(INT64_MIN)), 0);
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_int(-6)), 0);
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_int(-5)), SR_ENOSHARD);
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_int(INT64_MAX)), 1);
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_int(INT64_MAX - 1)), 1);
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_int(INT64_MAX - 2)), SR_ENOSHARD);
    sr__keymap_free(m);

    sr_keymap_shard_spec all[] = {{"all", NULL, ".."}};
    m = build_ok(SR_DIST_RANGE, all, 1);
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_int(INT64_MIN)), 0);
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_int(INT64_MAX)), 0);
    sr__keymap_free(m);
}
END_TEST

START_TEST(range_build_errors)
{
    {
        sr_keymap_shard_spec sh[] = {{"a", NULL, "..1000"}, {"b", NULL, "500..2000"}};
        sr_keymap_spec spec = {.kind = SR_DIST_RANGE, .shards = sh, .nshards = 2};
        const char *n[] = {"overlap", "\"a\"", "\"b\"", "..1000", "500..2000", NULL};
        build_fails(&spec, n);
    }
    {
        /* Half-open: sharing one value is an overlap, touching is not. */
        sr_keymap_shard_spec sh[] = {{"a", NULL, "..1001"}, {"b", NULL, "1000.."}};
        sr_keymap_spec spec = {.kind = SR_DIST_RANGE, .shards = sh, .nshards = 2};
        const char *n[] = {"overlap", "\"a\"", "\"b\"", "1000", NULL};
        build_fails(&spec, n);
    }
    {
        sr_keymap_shard_spec sh[] = {{"a", NULL, "0.."}, {"b", NULL, "10..20"}};
        sr_keymap_spec spec = {.kind = SR_DIST_RANGE, .shards = sh, .nshards = 2};
        const char *n[] = {"overlap", "\"a\"", "\"b\"", NULL};
        build_fails(&spec, n);
    }
    {
        sr_keymap_shard_spec sh[] = {{"a", NULL, "..0"}, {"lonely", NULL, NULL}};
        sr_keymap_spec spec = {.kind = SR_DIST_RANGE, .shards = sh, .nshards = 2};
        const char *n[] = {"\"lonely\"", "no range", NULL};
        build_fails(&spec, n);
    }
    static const char *bad[] = {"", "5", "1..1", "2..1", "a..b", "1...2", "1..2..3", "1 ..2", "--1..2",
                                "+1..2", "99999999999999999999..", "..-9223372036854775808", "1.2", "0x10..0x20"};
    for (size_t i = 0; i < SR_ARRAY_LEN(bad); i++) {
        sr_keymap_shard_spec sh[] = {{"s", NULL, bad[i]}};
        sr_keymap_spec spec = {.kind = SR_DIST_RANGE, .shards = sh, .nshards = 1};
        const char *n[] = {"malformed", bad[i], NULL};
        build_fails(&spec, n);
    }
}
END_TEST

/* ---- callback ---- */

static int cb_fixed(void *ud, sr_key key, int n)
{
    (void)key;
    (void)n;
    return *(int *)ud;
}

static int cb_record(void *ud, sr_key key, int n)
{
    int *seen = ud;
    seen[0] = n;
    seen[1] = (int)key.i;
    return 2;
}

START_TEST(callback_results)
{
    int answer = 0;
    sr_keymap_spec spec = {.kind = SR_DIST_CALLBACK, .nshards = 5, .fn = cb_fixed, .fn_ud = &answer};
    sr_keymap *m = NULL;
    char err[256];
    ck_assert_int_eq(sr__keymap_build(&spec, &m, err, sizeof err), 0);
    static const struct {
        int ret, want;
    } v[] = {{0, 0}, {4, 4}, {5, SR_ENOSHARD}, {1000, SR_ENOSHARD}, {-1, -1}, {-3, -3}, {-77, -77}};
    for (size_t i = 0; i < SR_ARRAY_LEN(v); i++) {
        answer = v[i].ret;
        REQUIRE_EQ(sr__keymap_lookup(m, sr_key_int(1)), v[i].want);
    }
    sr__keymap_free(m);

    int seen[2] = {0, 0};
    sr_keymap_spec rec = {.kind = SR_DIST_CALLBACK, .nshards = 7, .fn = cb_record, .fn_ud = seen};
    ck_assert_int_eq(sr__keymap_build(&rec, &m, err, sizeof err), 0);
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_int(31337)), 2);
    ck_assert_int_eq(seen[0], 7);
    ck_assert_int_eq(seen[1], 31337);
    sr__keymap_free(m);

    sr_keymap_spec none = {.kind = SR_DIST_CALLBACK, .nshards = 3};
    const char *n[] = {"callback", NULL};
    build_fails(&none, n);
}
END_TEST

/* ---- pins ---- */

START_TEST(pins_override)
{
    sr_dist_kind kind = (sr_dist_kind)_i;
    int calls = 0;
    sr_keymap *plain = build_any(kind, 4, &calls);
    /* Pin keys to a shard other than their natural one (range: 42 is outside every range below). */
    char text[] = "customer:alice";
    sr_key kint = sr_key_int(kind == SR_DIST_RANGE ? 42 : 7), ktext = sr_key_text(text);
    sr_key kempty = sr_key_bytes(NULL, 0), kdigits = sr_key_text("42");
    int nat_int = SR_ENOSHARD, pin_int = 1, pin_text = 3, pin_empty = 2, pin_digits = 1;
    if (kind != SR_DIST_RANGE) {
        nat_int = sr__keymap_lookup(plain, kint);
        pin_int = (nat_int + 1) % 4;
        pin_text = (sr__keymap_lookup(plain, ktext) + 1) % 4;
        pin_empty = (sr__keymap_lookup(plain, kempty) + 2) % 4;
        pin_digits = (sr__keymap_lookup(plain, kdigits) + 3) % 4;
    }
    /* Many more pins to exercise probing; every other int from 1000 up. */
    enum { NEXTRA = 500 };
    sr_keymap_pin_spec pins[4 + NEXTRA] = {
        {kint, pin_int}, {ktext, pin_text}, {kempty, pin_empty}, {kdigits, pin_digits}};
    for (int i = 0; i < NEXTRA; i++) {
        pins[4 + i].key = sr_key_int(1000 + 2 * i);
        pins[4 + i].shard = i % 4;
    }
    sr_keymap_spec spec = {.kind = kind, .nshards = 4, .pins = pins, .npins = 4 + NEXTRA, .fn = cb_mod, .fn_ud = &calls};
    sr_keymap_shard_spec range_shards[4] = {{"a", NULL, "..-100"}, {"b", NULL, "-100..0"}, {"c", NULL, "0..30"},
                                            {"d", NULL, "100000.."}};
    sr_keymap_shard_spec plain_shards[4] = {{"s0", 0, 0}, {"s1", 0, 0}, {"s2", 0, 0}, {"s3", 0, 0}};
    spec.shards = kind == SR_DIST_RANGE ? range_shards : plain_shards;
    sr_keymap *m = NULL;
    char err[256];
    ck_assert_msg(sr__keymap_build(&spec, &m, err, sizeof err) == 0, "%s", err);
    /* The pinned bytes were copied: changing the caller's buffer changes nothing. */
    text[0] = 'X';
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_text("customer:alice")), pin_text);
    ck_assert_int_eq(sr__keymap_lookup(m, kint), pin_int);
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_bytes("", 0)), pin_empty);
    ck_assert_int_eq(sr__keymap_lookup(m, sr_key_text("42")), pin_digits);
    ck_assert_int_ne(pin_int, nat_int);
    for (int i = 0; i < NEXTRA; i++)
        REQUIRE_EQ(sr__keymap_lookup(m, sr_key_int(1000 + 2 * i)), i % 4);
    /* Unpinned keys go where the distribution sends them. */
    if (kind != SR_DIST_RANGE) {
        sr_keymap *ref = build_any(kind, 4, &calls);
        REQUIRE_EQ(sr__keymap_lookup(m, sr_key_text("Xustomer:alice")),
                         sr__keymap_lookup(ref, sr_key_text("Xustomer:alice")));
        for (int i = 0; i < NEXTRA; i++) {
            sr_key k = sr_key_int(1001 + 2 * i);
            REQUIRE_EQ(sr__keymap_lookup(m, k), sr__keymap_lookup(ref, k));
        }
        sr__keymap_free(ref);
    } else {
        REQUIRE_EQ(sr__keymap_lookup(m, sr_key_int(50)), SR_ENOSHARD);
        REQUIRE_EQ(sr__keymap_lookup(m, sr_key_int(5)), 2);
        REQUIRE_EQ(sr__keymap_lookup(m, sr_key_text("other")), SR_EINVAL);
    }
    sr__keymap_free(m);
    sr__keymap_free(plain);
}
END_TEST

START_TEST(pins_errors)
{
    sr_keymap_shard_spec sh[3] = {{"s0", 0, 0}, {"s1", 0, 0}, {"s2", 0, 0}};
    char a[] = "dup", b[] = "dup";
    {
        sr_keymap_pin_spec pins[] = {{sr_key_text(a), 0}, {sr_key_int(5), 1}, {sr_key_text(b), 2}};
        sr_keymap_spec spec = {.kind = SR_DIST_JUMP, .shards = sh, .nshards = 3, .pins = pins, .npins = 3};
        const char *n[] = {"\"dup\"", "pinned twice", NULL};
        build_fails(&spec, n);
    }
    {
        sr_keymap_pin_spec pins[] = {{sr_key_int(-12), 0}, {sr_key_int(-12), 0}};
        sr_keymap_spec spec = {.kind = SR_DIST_KEYRANGE, .shards = sh, .nshards = 3, .pins = pins, .npins = 2};
        const char *n[] = {"-12", "pinned twice", NULL};
        build_fails(&spec, n);
    }
    {
        sr_keymap_pin_spec pins[] = {{sr_key_int(1), 3}};
        sr_keymap_spec spec = {.kind = SR_DIST_KEYRANGE, .shards = sh, .nshards = 3, .pins = pins, .npins = 1};
        const char *n[] = {"3", NULL};
        build_fails(&spec, n);
    }
    {
        sr_key bad;
        memset(&bad, 0, sizeof bad);
        sr_keymap_pin_spec pins[] = {{bad, 0}};
        sr_keymap_spec spec = {.kind = SR_DIST_KEYRANGE, .shards = sh, .nshards = 3, .pins = pins, .npins = 1};
        build_fails(&spec, NULL);
    }
    {
        /* An int key and a text key with the same digits are two keys. */
        sr_keymap_pin_spec pins[] = {{sr_key_int(42), 0}, {sr_key_text("42"), 1}};
        sr_keymap_spec spec = {.kind = SR_DIST_KEYRANGE, .shards = sh, .nshards = 3, .pins = pins, .npins = 2};
        sr_keymap *m = NULL;
        char err[256];
        REQUIRE_EQ(sr__keymap_build(&spec, &m, err, sizeof err), 0);
        REQUIRE_EQ(sr__keymap_lookup(m, sr_key_int(42)), 0);
        REQUIRE_EQ(sr__keymap_lookup(m, sr_key_text("42")), 1);
        sr__keymap_free(m);
    }
    sr__keymap_free(NULL);
}
END_TEST

static Suite *keymap_suite(void)
{
    Suite *s = suite_create("keymap");
    TCase *tc = tcase_create("keyrange");
    tcase_add_test(tc, keyrange_parse_valid);
    tcase_add_test(tc, keyrange_parse_invalid);
    tcase_add_test(tc, keyrange_names);
    tcase_add_test(tc, keyrange_names_tile);
    tcase_add_test(tc, keyrange_declaration_index);
    tcase_add_test(tc, keyrange_even_split_matches_names);
    tcase_add_test(tc, keyrange_lopsided_layout);
    tcase_add_test(tc, keyrange_count_only);
    tcase_add_test(tc, keyrange_split_moves_only_that_range);
    tcase_add_test(tc, keyrange_build_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("every distribution");
    tcase_add_loop_test(tc, deterministic_and_in_range, SR_DIST_KEYRANGE, SR_DIST_CALLBACK + 1);
    tcase_add_loop_test(tc, invalid_key, SR_DIST_KEYRANGE, SR_DIST_CALLBACK + 1);
    tcase_add_loop_test(tc, pins_override, SR_DIST_KEYRANGE, SR_DIST_CALLBACK + 1);
    tcase_add_test(tc, pins_errors);
    suite_add_tcase(s, tc);

    /* 1M keys per test: seconds natively, longer under sanitizers or valgrind. */
    tc = tcase_create("statistics");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, chi_square_rejects_skew);
    tcase_add_loop_test(tc, chi_square_uniform, 0, 18);
    tcase_add_loop_test(tc, jump_grow_by_one, 0, 3);
    tcase_add_test(tc, jump_hash_reference);
    suite_add_tcase(s, tc);

    tc = tcase_create("pg_hash");
    tcase_add_test(tc, pg_hash_int_vectors);
    tcase_add_test(tc, pg_hash_text_vectors);
    suite_add_tcase(s, tc);

    tc = tcase_create("modulo range callback");
    tcase_add_test(tc, modulo_is_hash_mod_n);
    tcase_add_test(tc, range_lookup);
    tcase_add_test(tc, range_build_errors);
    tcase_add_test(tc, callback_results);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(keymap_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
