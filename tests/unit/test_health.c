/*
 * The node health state machine, driven by a fake clock: ejection after
 * fail_threshold consecutive transient failures, one half-open probe after
 * the back-off, doubling back-off up to the cap, and races between threads
 * that report or probe at once (also run under ThreadSanitizer).
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>

#include "health.h"

#define MS (1000000LL)

static const sr_health_policy policy = {.fail_threshold = 3, .retry_ms = 1000, .retry_max_ms = 5000};

START_TEST(stays_up_below_threshold_and_success_resets)
{
    sr_health h;
    sr__health_init(&h);
    ck_assert(sr__health_is_up(&h));
    for (int round = 0; round < 5; round++) {
        ck_assert_int_eq(sr__health_report(&h, &policy, true, false, 0), SR_HEALTH_NO_CHANGE);
        ck_assert_int_eq(sr__health_report(&h, &policy, true, false, 0), SR_HEALTH_NO_CHANGE);
        /* A success (or an SQL error, which proves the node alive) resets the count. */
        ck_assert_int_eq(sr__health_report(&h, &policy, false, false, 0), SR_HEALTH_NO_CHANGE);
        ck_assert(sr__health_is_up(&h));
    }
    ck_assert_uint_eq(atomic_load(&h.ejections), 0);
}
END_TEST

START_TEST(ejects_at_threshold_then_probes_once_after_backoff)
{
    sr_health h;
    sr__health_init(&h);
    int64_t t = 10000 * MS;
    ck_assert_int_eq(sr__health_report(&h, &policy, true, false, t), SR_HEALTH_NO_CHANGE);
    ck_assert_int_eq(sr__health_report(&h, &policy, true, false, t), SR_HEALTH_NO_CHANGE);
    ck_assert_int_eq(sr__health_report(&h, &policy, true, false, t), SR_HEALTH_EJECTED_NOW);
    ck_assert(!sr__health_is_up(&h));
    /* Late reports from statements already in flight change nothing. */
    ck_assert_int_eq(sr__health_report(&h, &policy, true, false, t), SR_HEALTH_NO_CHANGE);
    ck_assert_uint_eq(atomic_load(&h.ejections), 1);

    ck_assert_int_eq(sr__health_retry_in_ms(&h, t), 1000);
    ck_assert(!sr__health_try_probe(&h, t + 999 * MS));
    ck_assert(sr__health_try_probe(&h, t + 1000 * MS));
    ck_assert(!sr__health_try_probe(&h, t + 1000 * MS)); /* only one caller probes */
    ck_assert(!sr__health_is_up(&h));                     /* probing is not up */
    ck_assert_int_eq(sr__health_report(&h, &policy, false, true, t + 1001 * MS),
                     SR_HEALTH_READMITTED);
    ck_assert(sr__health_is_up(&h));
    ck_assert_uint_eq(atomic_load(&h.readmissions), 1);
    /* Readmitted with a clean slate: it takes a full threshold to eject again. */
    ck_assert_int_eq(sr__health_report(&h, &policy, true, false, t), SR_HEALTH_NO_CHANGE);
    ck_assert_int_eq(sr__health_report(&h, &policy, true, false, t), SR_HEALTH_NO_CHANGE);
    ck_assert_int_eq(sr__health_report(&h, &policy, true, false, t), SR_HEALTH_EJECTED_NOW);
}
END_TEST

START_TEST(failed_probes_double_the_backoff_up_to_the_cap)
{
    sr_health h;
    sr__health_init(&h);
    int64_t t = 0;
    for (int i = 0; i < 3; i++)
        sr__health_report(&h, &policy, true, false, t);
    int expected[] = {2000, 4000, 5000, 5000};
    int64_t backoff = 1000;
    for (int i = 0; i < 4; i++) {
        t += backoff * MS;
        ck_assert(sr__health_try_probe(&h, t));
        ck_assert_int_eq(sr__health_report(&h, &policy, true, true, t), SR_HEALTH_PROBE_FAILED);
        ck_assert(!sr__health_is_up(&h));
        ck_assert_int_eq(atomic_load(&h.backoff_ms), expected[i]);
        ck_assert_int_eq(sr__health_retry_in_ms(&h, t), expected[i]);
        ck_assert(!sr__health_try_probe(&h, t + (expected[i] - 1) * MS));
        backoff = expected[i];
    }
    t += backoff * MS;
    ck_assert(sr__health_try_probe(&h, t));
    ck_assert_int_eq(sr__health_report(&h, &policy, false, true, t), SR_HEALTH_READMITTED);
    /* The next ejection starts from the first back-off again. */
    for (int i = 0; i < 3; i++)
        sr__health_report(&h, &policy, true, false, t);
    ck_assert_int_eq(atomic_load(&h.backoff_ms), 1000);
}
END_TEST

START_TEST(abandoned_probe_lets_the_next_caller_probe)
{
    sr_health h;
    sr__health_init(&h);
    for (int i = 0; i < 3; i++)
        sr__health_report(&h, &policy, true, false, 0);
    ck_assert(sr__health_try_probe(&h, 1000 * MS));
    sr__health_abandon_probe(&h);
    ck_assert(!sr__health_is_up(&h));
    ck_assert(sr__health_try_probe(&h, 1000 * MS));
    /* abandoning when not probing is harmless */
    sr__health_report(&h, &policy, false, true, 1000 * MS);
    sr__health_abandon_probe(&h);
    ck_assert(sr__health_is_up(&h));
}
END_TEST

START_TEST(threshold_of_one_ejects_on_the_first_failure)
{
    sr_health_policy p1 = {.fail_threshold = 1, .retry_ms = 10, .retry_max_ms = 10};
    sr_health h;
    sr__health_init(&h);
    ck_assert_int_eq(sr__health_report(&h, &p1, true, false, 0), SR_HEALTH_EJECTED_NOW);
    ck_assert(sr__health_try_probe(&h, 10 * MS));
    ck_assert_int_eq(sr__health_report(&h, &p1, true, true, 10 * MS), SR_HEALTH_PROBE_FAILED);
    ck_assert_int_eq(atomic_load(&h.backoff_ms), 10); /* capped at retry_max_ms */
}
END_TEST

/* ---- races ---- */

enum { NTHREADS = 8, ROUNDS = 2000 };

typedef struct race {
    sr_health *h;
    pthread_barrier_t *barrier;
    int ejected, probes, readmitted;
} race;

static void *report_failures(void *p)
{
    race *r = p;
    pthread_barrier_wait(r->barrier);
    for (int i = 0; i < 10; i++)
        if (sr__health_report(r->h, &policy, true, false, 0) == SR_HEALTH_EJECTED_NOW)
            r->ejected++;
    return NULL;
}

START_TEST(concurrent_failures_eject_exactly_once)
{
    for (int round = 0; round < 200; round++) {
        sr_health h;
        sr__health_init(&h);
        pthread_barrier_t b;
        pthread_barrier_init(&b, NULL, NTHREADS);
        pthread_t th[NTHREADS];
        race rs[NTHREADS] = {{0}};
        for (int i = 0; i < NTHREADS; i++) {
            rs[i] = (race){&h, &b, 0, 0, 0};
            pthread_create(&th[i], NULL, report_failures, &rs[i]);
        }
        int ejected = 0;
        for (int i = 0; i < NTHREADS; i++) {
            pthread_join(th[i], NULL);
            ejected += rs[i].ejected;
        }
        pthread_barrier_destroy(&b);
        ck_assert_int_eq(ejected, 1);
        ck_assert_uint_eq(atomic_load(&h.ejections), 1);
        ck_assert(!sr__health_is_up(&h));
    }
}
END_TEST

static void *probe_and_fail(void *p)
{
    race *r = p;
    pthread_barrier_wait(r->barrier);
    for (int i = 0; i < ROUNDS; i++) {
        /* The fake clock is far in the future: a probe is always due when ejected. */
        if (sr__health_try_probe(r->h, INT64_MAX / 2)) {
            r->probes++;
            /* While this thread holds the probe nobody else may take it. */
            if (sr__health_try_probe(r->h, INT64_MAX / 2))
                r->probes += 1000000;
            sr__health_report(r->h, &policy, i % 2 == 0, true, 0);
            if (sr__health_is_up(r->h)) {
                /* Eject it again so the race goes on. */
                for (int k = 0; k < 3; k++)
                    sr__health_report(r->h, &policy, true, false, 0);
            }
        }
    }
    return NULL;
}

START_TEST(one_probe_at_a_time)
{
    sr_health h;
    sr__health_init(&h);
    for (int k = 0; k < 3; k++)
        sr__health_report(&h, &policy, true, false, 0);
    pthread_barrier_t b;
    pthread_barrier_init(&b, NULL, NTHREADS);
    pthread_t th[NTHREADS];
    race rs[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        rs[i] = (race){&h, &b, 0, 0, 0};
        pthread_create(&th[i], NULL, probe_and_fail, &rs[i]);
    }
    int probes = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        probes += rs[i].probes;
    }
    pthread_barrier_destroy(&b);
    ck_assert_int_gt(probes, 0);
    ck_assert_int_lt(probes, 1000000); /* never two probes at once */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("health");
    TCase *tc = tcase_create("state machine");
    tcase_add_test(tc, stays_up_below_threshold_and_success_resets);
    tcase_add_test(tc, ejects_at_threshold_then_probes_once_after_backoff);
    tcase_add_test(tc, failed_probes_double_the_backoff_up_to_the_cap);
    tcase_add_test(tc, abandoned_probe_lets_the_next_caller_probe);
    tcase_add_test(tc, threshold_of_one_ejects_on_the_first_failure);
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("races");
    tcase_set_timeout(tr, 120);
    tcase_add_test(tr, concurrent_failures_eject_exactly_once);
    tcase_add_test(tr, one_probe_at_a_time);
    suite_add_tcase(s, tr);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
