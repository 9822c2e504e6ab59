/*
 * Replica policies: each policy's distribution, p2c with peak EWMA, affinity
 * stickiness, in-flight accounting, and a multithreaded run (this suite also
 * runs under ThreadSanitizer).
 *
 * Distribution checks are chi-square tests on large fixed samples. The
 * generator is seeded per thread from the clock, so the critical values are
 * taken at p = 1e-6 rather than the usual 0.001: a correct policy then fails
 * about once in a million runs per check instead of once in a thousand, while
 * any real bias at these sample sizes (e.g. ignoring weights) gives a
 * statistic in the thousands.
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "balance.h"

#define MAXN 8

/* Chi-square critical values at p = 1e-6, by degrees of freedom. */
static const double chi2_crit[] = {0, 23.928, 27.631, 30.665, 33.377, 35.888, 38.258, 40.522};

typedef struct nodes {
    sr_balance_stats st[MAXN];
    sr_balance_stats *c[MAXN];
    int n;
} nodes;

static void nodes_init(nodes *ns, int n, const int *weights)
{
    ns->n = n;
    for (int i = 0; i < n; i++) {
        sr__balance_init(&ns->st[i], weights ? weights[i] : 1, 0x1000 + (uint64_t)i);
        ns->c[i] = &ns->st[i];
    }
}

/* Chi-square statistic of observed counts against expected proportions. */
static double chi2(const long *counts, const double *p, int n, long total)
{
    double x = 0;
    for (int i = 0; i < n; i++) {
        double e = p[i] * (double)total;
        double d = (double)counts[i] - e;
        x += d * d / e;
    }
    return x;
}

static void assert_distribution(const long *counts, const double *p, int n, long total)
{
    double x = chi2(counts, p, n, total);
    ck_assert_msg(x < chi2_crit[n - 1], "chi-square %.2f >= %.2f (counts %ld %ld %ld %ld %ld)", x,
                  chi2_crit[n - 1], counts[0], n > 1 ? counts[1] : 0, n > 2 ? counts[2] : 0,
                  n > 3 ? counts[3] : 0, n > 4 ? counts[4] : 0);
}

static void count_picks(sr_policy_kind pol, nodes *ns, _Atomic uint64_t *rr, uint64_t aff, long total,
                        long *counts)
{
    memset(counts, 0, sizeof(long) * MAXN);
    long out_of_range = 0;
    for (long k = 0; k < total; k++) {
        int i = sr__balance_pick(pol, ns->c, ns->n, rr, aff, -1);
        if (i < 0 || i >= ns->n)
            out_of_range++;
        else
            counts[i]++;
    }
    /* One assertion per sample, not per pick: each ck_assert costs a write to Check's pipe. */
    ck_assert_int_eq(out_of_range, 0);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

#define MS 1000000LL

static const sr_policy_kind all_policies[] = {
    SR_POLICY_ROUND_ROBIN, SR_POLICY_RANDOM,    SR_POLICY_WEIGHTED,
    SR_POLICY_LEAST_OUTSTANDING, SR_POLICY_P2C_EWMA, SR_POLICY_AFFINITY,
};

/* ---- general ---------------------------------------------------------- */

START_TEST(test_single_candidate_is_always_index_0)
{
    int w[] = {5};
    nodes ns;
    nodes_init(&ns, 1, w);
    sr__balance_begin(&ns.st[0]);
    sr__balance_end(&ns.st[0], 7 * MS, 100);
    sr__balance_begin(&ns.st[0]);
    _Atomic uint64_t rr = 0;
    int nonzero = 0;
    for (size_t p = 0; p < sizeof all_policies / sizeof all_policies[0]; p++)
        for (int k = 0; k < 1000; k++)
            nonzero += sr__balance_pick(all_policies[p], ns.c, 1, &rr, (uint64_t)k, -1) != 0;
    ck_assert_int_eq(nonzero, 0);
}
END_TEST

START_TEST(test_no_candidates_is_an_error)
{
    nodes ns;
    nodes_init(&ns, 2, NULL);
    _Atomic uint64_t rr = 0;
    ck_assert_int_eq(sr__balance_pick(SR_POLICY_P2C_EWMA, ns.c, 0, &rr, 0, -1), SR_EINVAL);
    ck_assert_int_eq(sr__balance_pick(SR_POLICY_RANDOM, NULL, 2, &rr, 0, -1), SR_EINVAL);
}
END_TEST

START_TEST(test_init_clamps_weight)
{
    sr_balance_stats st;
    sr__balance_init(&st, 0, 42);
    ck_assert_int_eq(st.weight, 1);
    ck_assert_uint_eq(st.id_hash, 42);
    ck_assert_int_eq(atomic_load(&st.in_flight), 0);
    ck_assert_int_eq(atomic_load(&st.ewma_ns), 0);
}
END_TEST

START_TEST(test_in_flight_counts_and_never_goes_negative)
{
    sr_balance_stats st;
    sr__balance_init(&st, 1, 1);
    for (int i = 0; i < 3; i++)
        sr__balance_begin(&st);
    ck_assert_int_eq(atomic_load(&st.in_flight), 3);
    for (int i = 0; i < 3; i++)
        sr__balance_end(&st, MS, 1000);
    ck_assert_int_eq(atomic_load(&st.in_flight), 0);
    sr__balance_end(&st, MS, 1000);
    ck_assert_int_eq(atomic_load(&st.in_flight), 0);
}
END_TEST

/* ---- round robin and random ------------------------------------------ */

START_TEST(test_round_robin_cycles_exactly)
{
    nodes ns;
    nodes_init(&ns, 5, NULL);
    _Atomic uint64_t rr = 0;
    int wrong = 0;
    for (int k = 0; k < 1000; k++)
        wrong += sr__balance_pick(SR_POLICY_ROUND_ROBIN, ns.c, 5, &rr, 0, -1) != k % 5;
    ck_assert_int_eq(wrong, 0);
    ck_assert_uint_eq(atomic_load(&rr), 1000);

    /* Another shard's counter is independent. */
    _Atomic uint64_t rr2 = 3;
    ck_assert_int_eq(sr__balance_pick(SR_POLICY_ROUND_ROBIN, ns.c, 5, &rr2, 0, -1), 3);
    ck_assert_int_eq(sr__balance_pick(SR_POLICY_ROUND_ROBIN, ns.c, 5, &rr2, 0, -1), 4);
    ck_assert_int_eq(sr__balance_pick(SR_POLICY_ROUND_ROBIN, ns.c, 5, &rr2, 0, -1), 0);
}
END_TEST

START_TEST(test_random_is_uniform)
{
    nodes ns;
    nodes_init(&ns, 5, NULL);
    long counts[MAXN];
    count_picks(SR_POLICY_RANDOM, &ns, NULL, 0, 100000, counts);
    double p[] = {0.2, 0.2, 0.2, 0.2, 0.2};
    assert_distribution(counts, p, 5, 100000);
}
END_TEST

/* A policy that never picks some node fails this even with a lenient threshold. */
START_TEST(test_chi_square_detects_bias)
{
    long counts[] = {25000, 25000, 25000, 25000, 0};
    double p[] = {0.2, 0.2, 0.2, 0.2, 0.2};
    ck_assert(chi2(counts, p, 5, 100000) > chi2_crit[4]);
}
END_TEST

static void *rand_first_values(void *arg)
{
    uint64_t *out = arg;
    for (int i = 0; i < 4; i++)
        out[i] = sr__rand64();
    return NULL;
}

START_TEST(test_threads_get_different_random_streams)
{
    uint64_t a[4], b[4];
    pthread_t ta, tb;
    ck_assert_int_eq(pthread_create(&ta, NULL, rand_first_values, a), 0);
    ck_assert_int_eq(pthread_create(&tb, NULL, rand_first_values, b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    ck_assert(memcmp(a, b, sizeof a) != 0);
    ck_assert(a[0] != a[1] || a[1] != a[2]);
}
END_TEST

/* ---- weighted --------------------------------------------------------- */

START_TEST(test_weighted_random_follows_weights)
{
    int w[] = {1, 2, 7};
    nodes ns;
    nodes_init(&ns, 3, w);
    long counts[MAXN];
    /* Without a counter every pick is an independent weighted draw. */
    count_picks(SR_POLICY_WEIGHTED, &ns, NULL, 0, 100000, counts);
    double p[] = {0.1, 0.2, 0.7};
    assert_distribution(counts, p, 3, 100000);
}
END_TEST

static void check_weighted_counter(const int *w, int n)
{
    nodes ns;
    nodes_init(&ns, n, w);
    int total = 0;
    for (int i = 0; i < n; i++)
        total += w[i];
    _Atomic uint64_t rr = 12345;
    enum { PICKS = 2000 };
    int seq[PICKS];
    for (int k = 0; k < PICKS; k++)
        seq[k] = sr__balance_pick(SR_POLICY_WEIGHTED, ns.c, n, &rr, 0, -1);

    /* Every window of `total` consecutive picks holds each node exactly weight times. */
    for (int start = 0; start + total <= PICKS; start++) {
        int counts[MAXN] = {0};
        for (int k = start; k < start + total; k++)
            counts[seq[k]]++;
        for (int i = 0; i < n; i++)
            if (counts[i] != w[i])
                ck_abort_msg("window at %d: node %d got %d, weight %d", start, i, counts[i], w[i]);
    }

    /* Smooth: the heaviest node's picks are interleaved, not one burst of its weight. */
    int heavy = 0;
    for (int i = 1; i < n; i++)
        if (w[i] > w[heavy])
            heavy = i;
    int run = 0, longest = 0;
    for (int k = 0; k < PICKS; k++) {
        run = seq[k] == heavy ? run + 1 : 0;
        if (run > longest)
            longest = run;
    }
    ck_assert_int_lt(longest, w[heavy]);
}

START_TEST(test_weighted_with_counter_is_exact_and_smooth)
{
    int w1[] = {1, 2, 7};
    check_weighted_counter(w1, 3);
    int w2[] = {3, 1, 1, 5};
    check_weighted_counter(w2, 4);
    int w3[] = {4, 4};
    check_weighted_counter(w3, 2);
}
END_TEST

/* ---- least outstanding ------------------------------------------------ */

START_TEST(test_least_outstanding_picks_the_idle_node)
{
    nodes ns;
    nodes_init(&ns, 3, NULL);
    for (int i = 0; i < 3; i++)
        sr__balance_begin(&ns.st[0]);
    for (int i = 0; i < 2; i++)
        sr__balance_begin(&ns.st[2]);
    long counts[MAXN];
    count_picks(SR_POLICY_LEAST_OUTSTANDING, &ns, NULL, 0, 1000, counts);
    ck_assert_int_eq(counts[1], 1000);

    /* Once node 1 is busier than node 2, node 2 wins. */
    for (int i = 0; i < 3; i++)
        sr__balance_begin(&ns.st[1]);
    ck_assert_int_eq(sr__balance_pick(SR_POLICY_LEAST_OUTSTANDING, ns.c, 3, NULL, 0, -1), 2);
}
END_TEST

START_TEST(test_least_outstanding_spreads_ties)
{
    nodes ns;
    nodes_init(&ns, 4, NULL);
    for (int i = 0; i < 5; i++)
        sr__balance_begin(&ns.st[3]);
    long counts[MAXN];
    count_picks(SR_POLICY_LEAST_OUTSTANDING, &ns, NULL, 0, 60000, counts);
    ck_assert_int_eq(counts[3], 0);
    double p[] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
    assert_distribution(counts, p, 3, 60000);
}
END_TEST

/* ---- p2c + peak EWMA -------------------------------------------------- */

START_TEST(test_p2c_equal_nodes_share_evenly)
{
    nodes ns;
    nodes_init(&ns, 4, NULL);
    long counts[MAXN];
    count_picks(SR_POLICY_P2C_EWMA, &ns, NULL, 0, 100000, counts);
    double p[] = {0.25, 0.25, 0.25, 0.25};
    assert_distribution(counts, p, 4, 100000);
}
END_TEST

START_TEST(test_p2c_avoids_slow_node_until_others_are_loaded)
{
    nodes ns;
    nodes_init(&ns, 3, NULL);
    sr__balance_end(&ns.st[0], 1 * MS, 10000);
    sr__balance_end(&ns.st[1], 1 * MS, 10000);
    sr__balance_end(&ns.st[2], 10 * MS, 10000);
    long counts[MAXN];
    count_picks(SR_POLICY_P2C_EWMA, &ns, NULL, 0, 30000, counts);
    ck_assert_int_lt(counts[2], 3000);
    ck_assert_int_gt(counts[0], 9000);
    ck_assert_int_gt(counts[1], 9000);

    /* cost = ewma * (in_flight + 1): 1 ms * 21 > 10 ms * 1, so the slow node now wins. */
    for (int i = 0; i < 20; i++) {
        sr__balance_begin(&ns.st[0]);
        sr__balance_begin(&ns.st[1]);
    }
    count_picks(SR_POLICY_P2C_EWMA, &ns, NULL, 0, 30000, counts);
    ck_assert_int_gt(counts[2], 15000);
}
END_TEST

START_TEST(test_p2c_picks_two_distinct_candidates)
{
    /* With two nodes, distinct draws always compare both, so the slower never wins. */
    nodes ns;
    nodes_init(&ns, 2, NULL);
    sr__balance_end(&ns.st[0], 5 * MS, 10000);
    sr__balance_end(&ns.st[1], 2 * MS, 10000);
    long counts[MAXN];
    count_picks(SR_POLICY_P2C_EWMA, &ns, NULL, 0, 10000, counts);
    ck_assert_int_eq(counts[1], 10000);
}
END_TEST

START_TEST(test_p2c_avoids_node_with_in_flight_load)
{
    nodes ns;
    nodes_init(&ns, 3, NULL);
    for (int i = 0; i < 3; i++)
        sr__balance_end(&ns.st[i], 2 * MS, 10000);
    for (int i = 0; i < 10; i++)
        sr__balance_begin(&ns.st[0]);
    long counts[MAXN];
    count_picks(SR_POLICY_P2C_EWMA, &ns, NULL, 0, 30000, counts);
    ck_assert_int_lt(counts[0], 3000);
    ck_assert_int_gt(counts[1], 9000);
    ck_assert_int_gt(counts[2], 9000);
}
END_TEST

START_TEST(test_p2c_stays_on_the_last_node_unless_another_is_clearly_cheaper)
{
    nodes ns;
    nodes_init(&ns, 3, NULL);
    /* Costs within 1.5x of each other: the caller's last node every time. */
    sr__balance_end(&ns.st[0], 2 * MS, 10000);
    sr__balance_end(&ns.st[1], 3 * MS, 10000);
    sr__balance_end(&ns.st[2], 2 * MS, 10000);
    for (int k = 0; k < 10000; k++)
        ck_assert_int_eq(sr__balance_pick(SR_POLICY_P2C_EWMA, ns.c, 3, NULL, 0, 1), 1);
    /* Without a last node the cheaper draw wins, as before: node 1 only against itself. */
    long counts[MAXN];
    count_picks(SR_POLICY_P2C_EWMA, &ns, NULL, 0, 30000, counts);
    ck_assert_int_lt(counts[1], 1000);
    /* A statement in flight on the last node doubles its cost: the others take over. */
    sr__balance_begin(&ns.st[1]);
    int moved = 0;
    for (int k = 0; k < 10000; k++)
        moved += sr__balance_pick(SR_POLICY_P2C_EWMA, ns.c, 3, NULL, 0, 1) != 1;
    ck_assert_int_eq(moved, 10000);
    sr__balance_end(&ns.st[1], 3 * MS, 10000);
    /* An out-of-range last node is no last node. */
    count_picks(SR_POLICY_P2C_EWMA, &ns, NULL, 0, 30000, counts);
    ck_assert_int_lt(counts[1], 1000);
    for (int k = 0; k < 1000; k++) {
        int i = sr__balance_pick(SR_POLICY_P2C_EWMA, ns.c, 3, NULL, 0, 7);
        ck_assert(i >= 0 && i < 3);
    }
}
END_TEST

START_TEST(test_p2c_unmeasured_node)
{
    nodes ns;
    nodes_init(&ns, 2, NULL);
    sr__balance_end(&ns.st[1], 5 * MS, 10000);
    long counts[MAXN];
    /* Never measured and idle: it costs nothing, so it is tried. */
    count_picks(SR_POLICY_P2C_EWMA, &ns, NULL, 0, 1000, counts);
    ck_assert_int_eq(counts[0], 1000);
    /* Never measured but already busy (a hanging node looks like this): avoided. */
    for (int i = 0; i < 3; i++)
        sr__balance_begin(&ns.st[0]);
    count_picks(SR_POLICY_P2C_EWMA, &ns, NULL, 0, 1000, counts);
    ck_assert_int_eq(counts[1], 1000);
}
END_TEST

START_TEST(test_peak_ewma_jumps_up_at_once)
{
    sr_balance_stats st;
    sr__balance_init(&st, 1, 1);
    sr__balance_end(&st, 1 * MS, 100000);
    ck_assert_int_eq(atomic_load(&st.ewma_ns), 1 * MS);
    sr__balance_end(&st, 10 * MS, 100000);
    ck_assert_int_eq(atomic_load(&st.ewma_ns), 10 * MS);
    /* With a 100 s time constant, a fast answer right after barely moves the peak. */
    sr__balance_end(&st, 1 * MS, 100000);
    ck_assert_int_gt(atomic_load(&st.ewma_ns), 9 * MS);
    ck_assert_int_le(atomic_load(&st.ewma_ns), 10 * MS);
    /* Negative latencies are treated as zero, never stored. */
    sr__balance_end(&st, -5, 100000);
    ck_assert_int_ge(atomic_load(&st.ewma_ns), 0);
}
END_TEST

START_TEST(test_peak_ewma_decays_towards_recent_latency)
{
    sr_balance_stats st;
    sr__balance_init(&st, 1, 1);
    sr__balance_end(&st, 10 * MS, 1);
    int64_t prev = atomic_load(&st.ewma_ns);
    ck_assert_int_eq(prev, 10 * MS);
    for (int i = 0; i < 6; i++) {
        /* Each sleep is at least the 1 ms time constant: the weight of the past is <= 1/e. */
        sleep_ms(1);
        sr__balance_end(&st, 1 * MS, 1);
        int64_t cur = atomic_load(&st.ewma_ns);
        ck_assert_int_le(cur, prev);
        ck_assert_int_ge(cur, 1 * MS);
        prev = cur;
    }
    /* 1 ms + 9 ms * e^-6 < 1.03 ms. */
    ck_assert_int_lt(prev, 2 * MS);
    /* And a new peak is taken at once again. */
    sr__balance_end(&st, 4 * MS, 1);
    ck_assert_int_eq(atomic_load(&st.ewma_ns), 4 * MS);
}
END_TEST

/* ---- affinity --------------------------------------------------------- */

START_TEST(test_affinity_is_sticky_and_order_independent)
{
    nodes ns;
    nodes_init(&ns, 5, NULL);
    sr_balance_stats *rev[5];
    for (int i = 0; i < 5; i++)
        rev[i] = ns.c[4 - i];
    int unstable = 0, moved_by_order = 0;
    for (uint64_t a = 0; a < 2000; a++) {
        uint64_t aff = a * 0x9E3779B97F4A7C15ULL;
        int first = sr__balance_pick(SR_POLICY_AFFINITY, ns.c, 5, NULL, aff, -1);
        for (int k = 0; k < 5; k++)
            unstable += sr__balance_pick(SR_POLICY_AFFINITY, ns.c, 5, NULL, aff, -1) != first;
        /* The node, not its position in the list, is what sticks. */
        int r = sr__balance_pick(SR_POLICY_AFFINITY, rev, 5, NULL, aff, -1);
        moved_by_order += rev[r] != ns.c[first];
    }
    ck_assert_int_eq(unstable, 0);
    ck_assert_int_eq(moved_by_order, 0);
}
END_TEST

START_TEST(test_affinity_spreads_sessions)
{
    nodes ns;
    nodes_init(&ns, 5, NULL);
    long counts[MAXN] = {0};
    /* Consecutive integers: the worst case for a weak mix. */
    for (uint64_t a = 0; a < 100000; a++)
        counts[sr__balance_pick(SR_POLICY_AFFINITY, ns.c, 5, NULL, a, -1)]++;
    double p[] = {0.2, 0.2, 0.2, 0.2, 0.2};
    assert_distribution(counts, p, 5, 100000);
}
END_TEST

START_TEST(test_affinity_removal_moves_only_that_nodes_sessions)
{
    enum { SESSIONS = 20000 };
    nodes ns;
    nodes_init(&ns, 5, NULL);
    static sr_balance_stats *before[SESSIONS];
    for (int a = 0; a < SESSIONS; a++)
        before[a] = ns.c[sr__balance_pick(SR_POLICY_AFFINITY, ns.c, 5, NULL, (uint64_t)a * 7919, -1)];

    sr_balance_stats *without[4] = {ns.c[0], ns.c[1], ns.c[3], ns.c[4]};
    int moved = 0, on_removed = 0, moved_wrongly = 0, still_on_removed = 0;
    for (int a = 0; a < SESSIONS; a++) {
        sr_balance_stats *now = without[sr__balance_pick(SR_POLICY_AFFINITY, without, 4, NULL,
                                                         (uint64_t)a * 7919, -1)];
        still_on_removed += now == ns.c[2];
        if (before[a] == ns.c[2])
            on_removed++;
        else
            moved_wrongly += now != before[a];
        moved += now != before[a];
    }
    ck_assert_int_eq(still_on_removed, 0);
    ck_assert_int_eq(moved_wrongly, 0);
    ck_assert_int_eq(moved, on_removed);
    ck_assert_int_gt(on_removed, 0);
}
END_TEST

/* ---- concurrency ------------------------------------------------------ */

enum { MT_THREADS = 8, MT_NODES = 4, MT_OUTSTANDING = 4 };

struct mt {
    nodes *ns;
    _Atomic uint64_t *rr;
    long picks;
    long counts[MT_NODES];
    int bad_index;
    int rr_picks;
};

static void *mt_main(void *arg)
{
    struct mt *m = arg;
    int pending[MT_OUTSTANDING];
    int npending = 0;
    for (long k = 0; k < m->picks; k++) {
        /* Mostly the default policy, with every other policy mixed in. */
        sr_policy_kind pol = k % 4 == 0 ? all_policies[(k / 4) % 6] : SR_POLICY_P2C_EWMA;
        if (pol == SR_POLICY_ROUND_ROBIN || pol == SR_POLICY_WEIGHTED)
            m->rr_picks++;
        int i = sr__balance_pick(pol, m->ns->c, MT_NODES, m->rr, (uint64_t)k, -1);
        if (i < 0 || i >= MT_NODES) {
            m->bad_index++;
            continue;
        }
        m->counts[i]++;
        sr__balance_begin(m->ns->c[i]);
        if (npending == MT_OUTSTANDING) {
            int j = pending[--npending];
            sr__balance_end(m->ns->c[j], (int64_t)(j + 1) * 100000 + (k % 7) * 1000, 10);
        }
        pending[npending++] = i;
    }
    while (npending > 0) {
        int j = pending[--npending];
        sr__balance_end(m->ns->c[j], (int64_t)(j + 1) * 100000, 10);
    }
    return NULL;
}

START_TEST(test_many_threads_pick_begin_end)
{
    long picks = getenv("SR_UNDER_VALGRIND") ? 10000 : 100000;
    int w[] = {1, 2, 3, 4};
    nodes ns;
    nodes_init(&ns, MT_NODES, w);
    _Atomic uint64_t rr = 0;
    pthread_t t[MT_THREADS];
    struct mt m[MT_THREADS];
    for (int i = 0; i < MT_THREADS; i++) {
        memset(&m[i], 0, sizeof m[i]);
        m[i].ns = &ns;
        m[i].rr = &rr;
        m[i].picks = picks;
        ck_assert_int_eq(pthread_create(&t[i], NULL, mt_main, &m[i]), 0);
    }
    long total = 0, per_node[MT_NODES] = {0};
    uint64_t rr_picks = 0;
    for (int i = 0; i < MT_THREADS; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(m[i].bad_index, 0);
        rr_picks += (uint64_t)m[i].rr_picks;
        for (int j = 0; j < MT_NODES; j++) {
            per_node[j] += m[i].counts[j];
            total += m[i].counts[j];
        }
    }
    ck_assert_int_eq(total, picks * MT_THREADS);
    /* No begin or end was lost: every node is back to zero in flight. */
    for (int j = 0; j < MT_NODES; j++) {
        ck_assert_int_eq(atomic_load(&ns.st[j].in_flight), 0);
        ck_assert_int_gt(per_node[j], 0);
        ck_assert_int_gt(atomic_load(&ns.st[j].ewma_ns), 0);
    }
    /* The shared counter saw every round-robin and weighted pick. */
    ck_assert_uint_eq(atomic_load(&rr), rr_picks);
}
END_TEST

static Suite *balance_suite(void)
{
    Suite *s = suite_create("balance");
    TCase *tc = tcase_create("policies");
    tcase_add_test(tc, test_single_candidate_is_always_index_0);
    tcase_add_test(tc, test_no_candidates_is_an_error);
    tcase_add_test(tc, test_init_clamps_weight);
    tcase_add_test(tc, test_in_flight_counts_and_never_goes_negative);
    tcase_add_test(tc, test_round_robin_cycles_exactly);
    tcase_add_test(tc, test_random_is_uniform);
    tcase_add_test(tc, test_chi_square_detects_bias);
    tcase_add_test(tc, test_threads_get_different_random_streams);
    tcase_add_test(tc, test_weighted_random_follows_weights);
    tcase_add_test(tc, test_weighted_with_counter_is_exact_and_smooth);
    tcase_add_test(tc, test_least_outstanding_picks_the_idle_node);
    tcase_add_test(tc, test_least_outstanding_spreads_ties);
    tcase_add_test(tc, test_p2c_equal_nodes_share_evenly);
    tcase_add_test(tc, test_p2c_avoids_slow_node_until_others_are_loaded);
    tcase_add_test(tc, test_p2c_picks_two_distinct_candidates);
    tcase_add_test(tc, test_p2c_avoids_node_with_in_flight_load);
    tcase_add_test(tc, test_p2c_stays_on_the_last_node_unless_another_is_clearly_cheaper);
    tcase_add_test(tc, test_p2c_unmeasured_node);
    tcase_add_test(tc, test_peak_ewma_jumps_up_at_once);
    tcase_add_test(tc, test_peak_ewma_decays_towards_recent_latency);
    tcase_add_test(tc, test_affinity_is_sticky_and_order_independent);
    tcase_add_test(tc, test_affinity_spreads_sessions);
    tcase_add_test(tc, test_affinity_removal_moves_only_that_nodes_sessions);
    suite_add_tcase(s, tc);

    TCase *mt = tcase_create("threads");
    /* Generous for sanitizer builds. */
    tcase_set_timeout(mt, 120);
    tcase_add_test(mt, test_many_threads_pick_begin_end);
    suite_add_tcase(s, mt);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(balance_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
