/*
 * The drivers' prepared-statement cache (sr_stmt_cache_*, shardroute/driver.h):
 * LRU order, the count and byte bounds, statements too large to cache, the
 * release callback (exactly once per entry), take, clear and free, and a
 * randomised run against a naive model of the same rules.
 */
#include <check.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shardroute/driver.h>

/* What a driver would keep per statement: here an id the release log records. */
typedef struct val {
    int id;
    char pad[20];
} val;

#define MAX_LOG 4096

typedef struct recorder {
    int released[MAX_LOG]; /* ids in release order */
    int n;
    sr_stmt_cache *cache;  /* to look at the cache from inside the callback */
    int count_seen;        /* the cache's count during the last callback */
} recorder;

static void record(void *ctx, void *value)
{
    recorder *r = ctx;
    ck_assert_int_lt(r->n, MAX_LOG);
    r->released[r->n++] = ((val *)value)->id;
    if (r->cache)
        r->count_seen = sr_stmt_cache_count(r->cache);
}

static sr_stmt_cache *new_cache(int max_entries, size_t max_bytes, recorder *r)
{
    sr_stmt_cache *c = NULL;
    ck_assert_int_eq(sr_stmt_cache_new(max_entries, max_bytes, sizeof(val), record, r, &c), SR_OK);
    ck_assert_ptr_nonnull(c);
    if (r)
        r->cache = c;
    return c;
}

static val *put(sr_stmt_cache *c, const char *sql, int id, size_t handle_bytes)
{
    val v = {.id = id};
    return sr_stmt_cache_put(c, sql, strlen(sql), &v, handle_bytes);
}

static int get_id(sr_stmt_cache *c, const char *sql)
{
    val *v = sr_stmt_cache_get(c, sql, strlen(sql));
    return v ? v->id : -1;
}

START_TEST(a_hit_returns_the_stored_value_and_a_miss_null)
{
    recorder r = {0};
    sr_stmt_cache *c = new_cache(8, 1 << 20, &r);
    ck_assert_ptr_null(sr_stmt_cache_get(c, "SELECT 1", 8));
    val *p = put(c, "SELECT 1", 7, 0);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->id, 7);
    ck_assert_uint_eq((uintptr_t)p % alignof(max_align_t), 0);
    ck_assert_ptr_eq(sr_stmt_cache_get(c, "SELECT 1", 8), p); /* the same copy, stable */
    /* Keys are the exact bytes: a trailing space or a prefix is another statement. */
    ck_assert_int_eq(get_id(c, "SELECT 1 "), -1);
    ck_assert_ptr_null(sr_stmt_cache_get(c, "SELECT 1", 7));
    /* Embedded NUL bytes are part of the key. */
    ck_assert_ptr_nonnull(sr_stmt_cache_put(c, "a\0b", 3, &(val){.id = 8}, 0));
    ck_assert_ptr_null(sr_stmt_cache_get(c, "a\0c", 3));
    ck_assert_int_eq(((val *)sr_stmt_cache_get(c, "a\0b", 3))->id, 8);
    /* A second put of a cached statement is refused; the first value stays. */
    ck_assert_ptr_null(put(c, "SELECT 1", 9, 0));
    ck_assert_int_eq(get_id(c, "SELECT 1"), 7);
    ck_assert_int_eq(sr_stmt_cache_count(c), 2);
    ck_assert_uint_eq(sr_stmt_cache_bytes(c), 8 + 3);
    ck_assert_int_eq(r.n, 0);
    sr_stmt_cache_free(c);
    ck_assert_int_eq(r.n, 2);
}
END_TEST

START_TEST(the_least_recently_used_goes_first)
{
    recorder r = {0};
    sr_stmt_cache *c = new_cache(3, 1 << 20, &r);
    put(c, "a", 1, 0);
    put(c, "b", 2, 0);
    put(c, "c", 3, 0);
    ck_assert_int_eq(get_id(c, "a"), 1); /* a is now the most recent: b is the oldest */
    put(c, "d", 4, 0);
    ck_assert_int_eq(r.n, 1);
    ck_assert_int_eq(r.released[0], 2);
    ck_assert_int_eq(get_id(c, "b"), -1);
    ck_assert_int_eq(get_id(c, "c"), 3); /* order now (recent first): c d a */
    put(c, "e", 5, 0);
    ck_assert_int_eq(r.released[1], 1);
    put(c, "f", 6, 0);
    ck_assert_int_eq(r.released[2], 4);
    ck_assert_int_eq(r.n, 3);
    ck_assert_int_eq(sr_stmt_cache_count(c), 3);
    ck_assert_int_eq(get_id(c, "c"), 3);
    ck_assert_int_eq(get_id(c, "e"), 5);
    ck_assert_int_eq(get_id(c, "f"), 6);
    sr_stmt_cache_free(c);
}
END_TEST

START_TEST(the_count_bound_holds)
{
    recorder r = {0};
    sr_stmt_cache *c = new_cache(10, (size_t)1 << 30, &r);
    char sql[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(sql, sizeof sql, "SELECT %d", i);
        ck_assert_ptr_nonnull(put(c, sql, i, 0));
        ck_assert_int_le(sr_stmt_cache_count(c), 10);
    }
    ck_assert_int_eq(sr_stmt_cache_count(c), 10);
    ck_assert_int_eq(r.n, 990);
    for (int i = 0; i < 990; i++)
        ck_assert_int_eq(r.released[i], i);
    sr_stmt_cache_free(c);
}
END_TEST

START_TEST(the_byte_bound_holds_and_counts_the_handle)
{
    recorder r = {0};
    sr_stmt_cache *c = new_cache(100, 100, &r);
    char a[31], b[31], d[31];
    memset(a, 'a', 30), a[30] = '\0';
    memset(b, 'b', 30), b[30] = '\0';
    memset(d, 'd', 30), d[30] = '\0';
    put(c, a, 1, 10); /* 40 */
    put(c, b, 2, 10); /* 80 */
    ck_assert_uint_eq(sr_stmt_cache_bytes(c), 80);
    ck_assert_int_eq(r.n, 0);
    put(c, d, 3, 10); /* 120 > 100: a goes */
    ck_assert_int_eq(r.n, 1);
    ck_assert_int_eq(r.released[0], 1);
    ck_assert_uint_eq(sr_stmt_cache_bytes(c), 80);
    ck_assert_int_eq(sr_stmt_cache_count(c), 2);
    /* One entry of exactly the bound fits, and pushes out everything else. */
    char big[101];
    memset(big, 'x', 95), big[95] = '\0';
    ck_assert(sr_stmt_cache_admits(c, 95, 5));
    ck_assert_ptr_nonnull(put(c, big, 4, 5));
    ck_assert_int_eq(r.n, 3);
    ck_assert_int_eq(sr_stmt_cache_count(c), 1);
    ck_assert_uint_eq(sr_stmt_cache_bytes(c), 100);
    ck_assert_int_eq(get_id(c, big), 4);
    sr_stmt_cache_free(c);
}
END_TEST

START_TEST(a_statement_larger_than_the_bound_is_not_cached)
{
    recorder r = {0};
    sr_stmt_cache *c = new_cache(100, 100, &r);
    put(c, "small one", 1, 0);
    put(c, "small two", 2, 0);
    char big[102];
    memset(big, 'x', 101), big[101] = '\0';
    ck_assert(!sr_stmt_cache_admits(c, 101, 0));
    ck_assert(!sr_stmt_cache_admits(c, 90, 11)); /* the handle counts too */
    ck_assert(!sr_stmt_cache_admits(c, SIZE_MAX, SIZE_MAX)); /* no overflow */
    ck_assert(!sr_stmt_cache_admits(c, 1, SIZE_MAX));
    ck_assert_ptr_null(put(c, big, 3, 0));
    big[90] = '\0';
    ck_assert_ptr_null(put(c, big, 4, 11));
    /* Refusing it evicted nothing and released nothing (the caller still owns it). */
    ck_assert_int_eq(r.n, 0);
    ck_assert_int_eq(sr_stmt_cache_count(c), 2);
    ck_assert_uint_eq(sr_stmt_cache_bytes(c), 18);
    ck_assert_int_eq(get_id(c, big), -1);
    ck_assert_int_eq(get_id(c, "small one"), 1);
    sr_stmt_cache_free(c);
    ck_assert_int_eq(r.n, 2);
}
END_TEST

START_TEST(a_disabled_cache_takes_nothing)
{
    recorder r = {0};
    sr_stmt_cache *c = new_cache(0, 1 << 20, &r);
    ck_assert(!sr_stmt_cache_admits(c, 1, 0));
    ck_assert_ptr_null(put(c, "SELECT 1", 1, 0));
    ck_assert_ptr_null(sr_stmt_cache_get(c, "SELECT 1", 8));
    sr_stmt_cache_free(c);
    c = new_cache(64, 0, &r);
    ck_assert(!sr_stmt_cache_admits(c, 0, 0));
    ck_assert_ptr_null(put(c, "SELECT 1", 1, 0));
    ck_assert_int_eq(sr_stmt_cache_count(c), 0);
    sr_stmt_cache_free(c);
    ck_assert_int_eq(r.n, 0);
}
END_TEST

/* A text that ends in the core's trace comment is new for every traced request: never cached. */
START_TEST(traced_one_off_texts_are_not_cached)
{
    recorder r = {0};
    sr_stmt_cache *c = new_cache(8, 1 << 20, &r);
    const char *traced = "SELECT 1\n/*app='x',traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-"
                         "00f067aa0ba902b7-01'*/";
    ck_assert(!sr_stmt_cache_admits_text(c, traced, strlen(traced), 0));
    ck_assert_ptr_null(put(c, traced, 1, 0));
    ck_assert_int_eq(sr_stmt_cache_count(c), 0);
    /* Other texts that end in a comment are cached as before. */
    const char *cached[] = {
        "SELECT 1 /*traceparent='x'*/",                /* not on a line of its own */
        "SELECT 1\n/*app='x'*/",                       /* no traceparent */
        "SELECT 1\n/*traceparent='x'*/\n/*app='y'*/",  /* not in the last one */
        "SELECT 1\n/**/", "*/", "SELECT '*/'",
    };
    for (int i = 0; i < (int)(sizeof cached / sizeof cached[0]); i++) {
        ck_assert_msg(sr_stmt_cache_admits_text(c, cached[i], strlen(cached[i]), 0), "%s", cached[i]);
        ck_assert_ptr_nonnull(put(c, cached[i], i, 0));
    }
    ck_assert(!sr_stmt_cache_admits_text(c, NULL, 0, 0));
    ck_assert(!sr_stmt_cache_admits_text(NULL, "SELECT 1", 8, 0));
    sr_stmt_cache_free(c);
}
END_TEST

START_TEST(release_runs_exactly_once_per_entry)
{
    enum { N = 500 };
    recorder r = {0};
    sr_stmt_cache *c = new_cache(50, 2000, &r);
    char sql[64];
    int taken = 0;
    for (int i = 0; i < N; i++) {
        snprintf(sql, sizeof sql, "SELECT %d -- %.*s", i, i % 40, "........................................");
        ck_assert_ptr_nonnull(put(c, sql, i, (size_t)(i % 7)));
        ck_assert_uint_le(sr_stmt_cache_bytes(c), 2000);
        ck_assert_int_le(sr_stmt_cache_count(c), 50);
        /* The callback runs on an entry already out of the cache (51 otherwise). */
        if (r.n > 0)
            ck_assert_int_le(r.count_seen, 50);
        if (i % 10 == 3) {
            val out = {.id = -1};
            ck_assert_int_eq(sr_stmt_cache_take(c, sql, strlen(sql), &out), 1);
            ck_assert_int_eq(out.id, i);
            ck_assert_int_eq(sr_stmt_cache_take(c, sql, strlen(sql), &out), 0);
            taken++;
        }
    }
    sr_stmt_cache_clear(c);
    ck_assert_int_eq(sr_stmt_cache_count(c), 0);
    ck_assert_uint_eq(sr_stmt_cache_bytes(c), 0);
    ck_assert_int_eq(r.n, N - taken);
    /* Still usable after clear; free releases what is left. */
    ck_assert_ptr_nonnull(put(c, "after clear", N, 0));
    ck_assert_int_eq(get_id(c, "after clear"), N);
    sr_stmt_cache_free(c);
    ck_assert_int_eq(r.n, N - taken + 1);
    int seen[N + 1] = {0};
    for (int i = 0; i < r.n; i++) {
        ck_assert(r.released[i] >= 0 && r.released[i] <= N);
        seen[r.released[i]]++;
    }
    for (int i = 0; i <= N; i++)
        ck_assert_int_eq(seen[i], (i < N && i % 10 == 3) ? 0 : 1);
}
END_TEST

START_TEST(many_entries_stay_reachable)
{
    /* Past several table doublings, every entry is found and the others are not. */
    enum { N = 20000 };
    sr_stmt_cache *c = NULL;
    ck_assert_int_eq(sr_stmt_cache_new(N, (size_t)1 << 30, sizeof(int), NULL, NULL, &c), SR_OK);
    char sql[32];
    for (int i = 0; i < N; i++) {
        snprintf(sql, sizeof sql, "SELECT %d", i);
        ck_assert_ptr_nonnull(sr_stmt_cache_put(c, sql, strlen(sql), &i, 0));
    }
    for (int i = N - 1; i >= 0; i--) {
        snprintf(sql, sizeof sql, "SELECT %d", i);
        int *v = sr_stmt_cache_get(c, sql, strlen(sql));
        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(*v, i);
    }
    ck_assert_ptr_null(sr_stmt_cache_get(c, "SELECT 20000", 12));
    ck_assert_int_eq(sr_stmt_cache_count(c), N);
    sr_stmt_cache_free(c); /* no callback: nothing to release, nothing leaks */
}
END_TEST

START_TEST(bad_arguments_are_refused)
{
    sr_stmt_cache *c = (sr_stmt_cache *)(uintptr_t)1;
    ck_assert_int_eq(sr_stmt_cache_new(1, 1, 8, NULL, NULL, NULL), SR_EINVAL);
    ck_assert_int_eq(sr_stmt_cache_new(-1, 1, 8, NULL, NULL, &c), SR_EINVAL);
    ck_assert_int_eq(sr_stmt_cache_new(1, 1, 100000, NULL, NULL, &c), SR_EINVAL);
    ck_assert_ptr_eq(c, (sr_stmt_cache *)(uintptr_t)1); /* untouched on failure */
    ck_assert_ptr_null(sr_stmt_cache_get(NULL, "x", 1));
    ck_assert_ptr_null(sr_stmt_cache_put(NULL, "x", 1, &(val){0}, 0));
    ck_assert_int_eq(sr_stmt_cache_take(NULL, "x", 1, NULL), 0);
    ck_assert(!sr_stmt_cache_admits(NULL, 1, 0));
    ck_assert_int_eq(sr_stmt_cache_count(NULL), 0);
    ck_assert_uint_eq(sr_stmt_cache_bytes(NULL), 0);
    sr_stmt_cache_clear(NULL);
    sr_stmt_cache_free(NULL);
    recorder r = {0};
    c = new_cache(4, 100, &r);
    ck_assert_ptr_null(sr_stmt_cache_put(c, NULL, 1, &(val){0}, 0));
    ck_assert_ptr_null(sr_stmt_cache_put(c, "x", 1, NULL, 0)); /* a value is required */
    ck_assert_ptr_null(sr_stmt_cache_get(c, NULL, 1));
    ck_assert_int_eq(sr_stmt_cache_take(c, "x", 1, NULL), 0);
    put(c, "x", 1, 0);
    ck_assert_int_eq(sr_stmt_cache_take(c, "x", 1, NULL), 1); /* value_out may be NULL */
    ck_assert_int_eq(sr_stmt_cache_count(c), 0);
    sr_stmt_cache_free(c);
    ck_assert_int_eq(r.n, 0);
}
END_TEST

/* ---- a randomised run against a naive model ---- */

#define NKEYS 24
#define MODEL_ENTRIES 6
#define MODEL_BYTES 150

typedef struct model {
    int order[NKEYS]; /* key indexes, most recent first */
    size_t charge[NKEYS];
    int n;
    size_t bytes;
} model;

static int model_find(const model *m, int k)
{
    for (int i = 0; i < m->n; i++)
        if (m->order[i] == k)
            return i;
    return -1;
}

static void model_remove_at(model *m, int i)
{
    m->bytes -= m->charge[m->order[i]];
    memmove(&m->order[i], &m->order[i + 1], (size_t)(m->n - i - 1) * sizeof m->order[0]);
    m->n--;
}

static void model_to_front(model *m, int k)
{
    memmove(&m->order[1], &m->order[0], (size_t)m->n * sizeof m->order[0]);
    m->order[0] = k;
    m->n++;
}

START_TEST(random_operations_match_a_naive_model)
{
    char keys[NKEYS][80];
    size_t lens[NKEYS];
    for (int k = 0; k < NKEYS; k++) {
        /* Lengths 5..79: some single keys are close to half the bound. */
        lens[k] = (size_t)(5 + (k * 37) % 75);
        memset(keys[k], 'a' + k % 26, lens[k]);
        snprintf(keys[k], 4, "%02d", k); /* distinct prefixes */
        keys[k][2] = '#';
    }
    recorder r = {0};
    sr_stmt_cache *c = new_cache(MODEL_ENTRIES, MODEL_BYTES, &r);
    model m = {0};
    unsigned seed = 12345;
    int hits = 0, evictions = 0;
    for (int step = 0; step < 20000; step++) {
        seed = seed * 1103515245u + 12345u;
        int k = (int)((seed >> 16) % NKEYS);
        int op = (int)((seed >> 8) % 10);
        size_t handle = (seed >> 4) % 40;
        int at = model_find(&m, k);
        int before = r.n;
        if (op == 0) {
            val out;
            ck_assert_int_eq(sr_stmt_cache_take(c, keys[k], lens[k], &out), at >= 0);
            if (at >= 0) {
                ck_assert_int_eq(out.id, k);
                model_remove_at(&m, at);
            }
        } else {
            val *v = sr_stmt_cache_get(c, keys[k], lens[k]);
            ck_assert_int_eq(v != NULL, at >= 0);
            if (at >= 0) {
                hits++;
                ck_assert_int_eq(v->id, k);
                model_remove_at(&m, at);
                m.bytes += m.charge[k];
                model_to_front(&m, k);
            } else {
                val nv = {.id = k};
                int fits = lens[k] + handle <= MODEL_BYTES;
                v = sr_stmt_cache_put(c, keys[k], lens[k], &nv, handle);
                ck_assert_int_eq(v != NULL, fits);
                if (fits) {
                    m.charge[k] = lens[k] + handle;
                    m.bytes += m.charge[k];
                    model_to_front(&m, k);
                    /* The model evicts from its tail; the cache must release the same keys. */
                    while (m.n > MODEL_ENTRIES || m.bytes > MODEL_BYTES) {
                        int victim = m.order[m.n - 1];
                        model_remove_at(&m, m.n - 1);
                        ck_assert_int_lt(before, r.n);
                        ck_assert_int_eq(r.released[before], victim);
                        before++;
                        evictions++;
                    }
                }
            }
        }
        ck_assert_int_eq(r.n, before); /* nothing else released */
        ck_assert_int_eq(sr_stmt_cache_count(c), m.n);
        ck_assert_uint_eq(sr_stmt_cache_bytes(c), m.bytes);
        ck_assert_uint_le(sr_stmt_cache_bytes(c), MODEL_BYTES);
        if (r.n > MAX_LOG - 64)
            r.n = 0;
    }
    /* The run exercised both paths. */
    ck_assert_int_gt(hits, 1000);
    ck_assert_int_gt(evictions, 1000);
    sr_stmt_cache_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stmt_cache");
    TCase *tc = tcase_create("stmt_cache");
    tcase_add_test(tc, a_hit_returns_the_stored_value_and_a_miss_null);
    tcase_add_test(tc, the_least_recently_used_goes_first);
    tcase_add_test(tc, the_count_bound_holds);
    tcase_add_test(tc, the_byte_bound_holds_and_counts_the_handle);
    tcase_add_test(tc, a_statement_larger_than_the_bound_is_not_cached);
    tcase_add_test(tc, a_disabled_cache_takes_nothing);
    tcase_add_test(tc, traced_one_off_texts_are_not_cached);
    tcase_add_test(tc, release_runs_exactly_once_per_entry);
    tcase_add_test(tc, many_entries_stay_reachable);
    tcase_add_test(tc, bad_arguments_are_refused);
    tcase_add_test(tc, random_operations_match_a_naive_model);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
