/*
 * Routing cost: nanoseconds per key -> shard lookup for each hashing
 * distribution at 4, 64 and 1024 shards, for integer keys and 16-byte text
 * keys, through the same internal call sr_router_shard_for() makes
 * (sr__keymap_lookup). The cost of the key hash alone (XXH3-64) is the
 * baseline every distribution except pg_hash pays.
 *
 *   bench_route [SECONDS_PER_CELL]     (default 0.2)
 *
 * Each cell runs 5 rounds over a pre-generated array of keys and shows the
 * median round. It measures; it asserts nothing about speed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keymap/keymap.h"

#define NKEYS 4096 /* a power of two, small enough to stay in cache */
#define ROUNDS 5
#define TEXT_LEN 16

static volatile uint64_t sink;

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef uint64_t (*pass_fn)(const void *ctx, const sr_key *keys, long n);

static uint64_t pass_lookup(const void *ctx, const sr_key *keys, long n)
{
    uint64_t acc = 0;
    for (long i = 0; i < n; i++)
        acc += (uint64_t)sr__keymap_lookup(ctx, keys[i & (NKEYS - 1)]);
    return acc;
}

static uint64_t pass_hash(const void *ctx, const sr_key *keys, long n)
{
    (void)ctx;
    uint64_t acc = 0;
    for (long i = 0; i < n; i++)
        acc += sr__hash_key(keys[i & (NKEYS - 1)]);
    return acc;
}

/* Median ns per call over ROUNDS rounds of about seconds/ROUNDS each. */
static double measure(pass_fn fn, const void *ctx, const sr_key *keys, double seconds)
{
    long n = NKEYS;
    for (;;) { /* calibrate: grow until one round takes a tenth of the budget */
        int64_t t0 = sr_clock_ns();
        sink += fn(ctx, keys, n);
        double dt = (double)(sr_clock_ns() - t0);
        if (dt > seconds * 1e9 / ROUNDS / 10 || n > (1L << 40)) {
            n = (long)((double)n * (seconds * 1e9 / ROUNDS) / (dt > 1 ? dt : 1));
            break;
        }
        n *= 4;
    }
    if (n < NKEYS)
        n = NKEYS;
    double r[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        int64_t t0 = sr_clock_ns();
        sink += fn(ctx, keys, n);
        r[i] = (double)(sr_clock_ns() - t0) / (double)n;
    }
    qsort(r, ROUNDS, sizeof r[0], cmp_double);
    return r[ROUNDS / 2];
}

static sr_keymap *build(sr_dist_kind kind, int nshards, const sr_keymap_pin_spec *pins, int npins)
{
    sr_keymap_shard_spec *sh = calloc((size_t)nshards, sizeof *sh);
    if (!sh)
        return NULL;
    for (int i = 0; i < nshards; i++)
        sh[i].name = "s"; /* unranged: keyrange splits evenly */
    sr_keymap_spec spec = {.kind = kind, .shards = sh, .nshards = nshards, .pins = pins, .npins = npins};
    sr_keymap *m = NULL;
    char err[SR_ERRMSG_LEN];
    if (sr__keymap_build(&spec, &m, err, sizeof err) != 0) {
        fprintf(stderr, "bench_route: build: %s\n", err);
        exit(1);
    }
    free(sh);
    return m;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.2;
    if (seconds <= 0)
        seconds = 0.2;

    static sr_key int_keys[NKEYS], text_keys[NKEYS];
    static char text[NKEYS][TEXT_LEN];
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    uint64_t seed = 42;
    for (int i = 0; i < NKEYS; i++) {
        int_keys[i] = sr_key_int((int64_t)(splitmix64(&seed) >> 20)); /* ids of up to 44 bits */
        for (int j = 0; j < TEXT_LEN; j++)
            text[i][j] = alphabet[splitmix64(&seed) % (sizeof alphabet - 1)];
        text_keys[i] = sr_key_bytes(text[i], TEXT_LEN);
    }
    /* 1000 pinned keys that the measured keys never hit: the cost of the pin probe alone. */
    static sr_keymap_pin_spec pins[1000];
    for (int i = 0; i < 1000; i++) {
        pins[i].key = sr_key_int(-1 - i);
        pins[i].shard = i % 4;
    }

    printf("bench_route: ns per key -> shard lookup (median of %d rounds, ~%.2f s per cell, %d keys cycled)\n\n",
           ROUNDS, seconds, NKEYS);
    printf("%-22s %9s %9s %9s   %9s %9s %9s\n", "", "int", "int", "int", "text16", "text16", "text16");
    printf("%-22s %9s %9s %9s   %9s %9s %9s\n", "distribution", "4", "64", "1024", "4", "64", "1024");
    printf("%-22s %9.2f %9s %9s   %9.2f %9s %9s\n", "sr__hash_key alone", measure(pass_hash, NULL, int_keys, seconds),
           "", "", measure(pass_hash, NULL, text_keys, seconds), "", "");

    static const struct {
        sr_dist_kind kind;
        const char *name;
        int npins;
    } rows[] = {
        {SR_DIST_KEYRANGE, "keyrange", 0}, {SR_DIST_JUMP, "jump", 0},       {SR_DIST_PG_HASH, "pg_hash", 0},
        {SR_DIST_MODULO, "modulo", 0},     {SR_DIST_KEYRANGE, "keyrange + 1000 pins", 1000},
    };
    static const int ns[] = {4, 64, 1024};
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        double cell[2][3];
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < 3; j++) {
                sr_keymap *m = build(rows[r].kind, ns[j], rows[r].npins ? pins : NULL, rows[r].npins);
                cell[k][j] = measure(pass_lookup, m, k ? text_keys : int_keys, seconds);
                sr__keymap_free(m);
            }
        printf("%-22s %9.2f %9.2f %9.2f   %9.2f %9.2f %9.2f\n", rows[r].name, cell[0][0], cell[0][1], cell[0][2],
               cell[1][0], cell[1][1], cell[1][2]);
    }
    return 0;
}
