/*
 * Connection pool: reuse, the max_size bound, waiting and the checkout
 * deadline, broken connections, connect failures, draining, and a
 * multithreaded stress run. Driven by the fake driver (tests/unit/fake_driver.h).
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "fake_driver.h"

static sr_uri test_uri = {.scheme = "fake", .path = "pool-test", .redacted = "fake:pool-test"};
static sr_driver_connect_args test_args = {
    .uri = &test_uri, .role = SR_REPLICA, .connect_timeout_ms = 1000, .statement_timeout_ms = 0};

#define FAKE (fake_driver_state_get())

static sr_pool *new_pool(int max_size)
{
    sr_pool *p = NULL;
    ck_assert_int_eq(sr__pool_new(fake_driver(), &test_args, max_size, &p), SR_OK);
    ck_assert_ptr_nonnull(p);
    return p;
}

static int64_t far_deadline(void) { return sr__deadline_after_ms(20000); }

static sr_driver_conn *checkout_ok(sr_pool *p)
{
    sr_driver_conn *c = NULL;
    sr_driver_error err;
    memset(&err, 0, sizeof err);
    int rc = sr__pool_checkout(p, far_deadline(), 0, &c, &err);
    ck_assert_msg(rc == SR_OK, "checkout failed: %d %s", rc, err.message);
    ck_assert_ptr_nonnull(c);
    return c;
}

static void stats(sr_pool *p, int open, int idle, int waiting)
{
    sr_pool_stats st;
    sr__pool_stats(p, &st);
    ck_assert_int_eq(st.open, open);
    ck_assert_int_eq(st.idle, idle);
    ck_assert_int_eq(st.waiting, waiting);
}

static void sleep_ms(int ms) { fake_driver_sleep_us(ms * 1000); }

/* Polls (without a time limit: Check's timeout catches a hang) until `waiting` callers block. */
static void wait_for_waiters(sr_pool *p, int n)
{
    for (;;) {
        sr_pool_stats st;
        sr__pool_stats(p, &st);
        if (st.waiting >= n)
            return;
        sleep_ms(1);
    }
}

static void setup(void) { fake_driver_reset(); }

START_TEST(test_new_rejects_bad_arguments)
{
    sr_pool *p = (sr_pool *)1;
    ck_assert_int_eq(sr__pool_new(fake_driver(), &test_args, 0, &p), SR_EINVAL);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(sr__pool_new(NULL, &test_args, 2, &p), SR_EINVAL);
    ck_assert_int_eq(sr__pool_new(fake_driver(), NULL, 2, &p), SR_EINVAL);
    ck_assert_int_eq(sr__pool_new(fake_driver(), &test_args, 2, NULL), SR_EINVAL);
    ck_assert_int_eq(atomic_load(&FAKE->connect_calls), 0);
    sr__pool_free(NULL); /* a no-op */
}
END_TEST

START_TEST(test_connects_lazily_with_the_callers_args)
{
    sr_pool *p = new_pool(4);
    ck_assert_int_eq(atomic_load(&FAKE->connect_calls), 0);
    stats(p, 0, 0, 0);
    sr_driver_conn *c = checkout_ok(p);
    ck_assert_ptr_eq(atomic_load(&FAKE->last_args), &test_args);
    ck_assert_ptr_eq(c->args, &test_args);
    stats(p, 1, 0, 0);
    sr__pool_checkin(p, c, 0);
    sr__pool_free(p);
}
END_TEST

START_TEST(test_idle_connection_is_reused)
{
    sr_pool *p = new_pool(4);
    sr_driver_conn *c1 = checkout_ok(p);
    sr__pool_checkin(p, c1, 0);
    stats(p, 1, 1, 0);
    for (int i = 0; i < 10; i++) {
        sr_driver_conn *c = checkout_ok(p);
        ck_assert_ptr_eq(c, c1);
        sr__pool_checkin(p, c, 0);
    }
    ck_assert_int_eq(atomic_load(&FAKE->connects), 1);
    ck_assert_int_eq(atomic_load(&FAKE->closes), 0);
    stats(p, 1, 1, 0);
    sr__pool_free(p);
    ck_assert_int_eq(atomic_load(&FAKE->closes), 1);
}
END_TEST

START_TEST(test_idle_reuse_is_last_in_first_out)
{
    sr_pool *p = new_pool(4);
    sr_driver_conn *a = checkout_ok(p);
    sr_driver_conn *b = checkout_ok(p);
    sr_driver_conn *c = checkout_ok(p);
    ck_assert_ptr_ne(a, b);
    sr__pool_checkin(p, a, 0);
    sr__pool_checkin(p, c, 0);
    sr__pool_checkin(p, b, 0);
    ck_assert_ptr_eq(checkout_ok(p), b);
    ck_assert_ptr_eq(checkout_ok(p), c);
    ck_assert_ptr_eq(checkout_ok(p), a);
    ck_assert_int_eq(atomic_load(&FAKE->connects), 3);
    stats(p, 3, 0, 0);
    sr__pool_checkin(p, a, 0);
    sr__pool_checkin(p, b, 0);
    sr__pool_checkin(p, c, 0);
    sr__pool_free(p);
    ck_assert_int_eq(atomic_load(&FAKE->closes), 3);
}
END_TEST

START_TEST(test_exhausted_pool_times_out_with_ebusy)
{
    sr_pool *p = new_pool(2);
    sr_driver_conn *a = checkout_ok(p);
    sr_driver_conn *b = checkout_ok(p);

    sr_driver_conn *c = (sr_driver_conn *)1;
    sr_driver_error err;
    memset(&err, 0, sizeof err);
    int64_t start = sr_clock_ns();
    int64_t deadline = start + 50 * 1000000LL;
    int rc = sr__pool_checkout(p, deadline, 0, &c, &err);
    int64_t end = sr_clock_ns();
    ck_assert_int_eq(rc, SR_EBUSY);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(err.status, SR_EBUSY);
    ck_assert_msg(strstr(err.message, "pool exhausted: 2 connections in use, waited ") != NULL,
                  "message: %s", err.message);
    /* Lower bound only: it waited for the whole checkout timeout. */
    ck_assert_int_ge(end, deadline);
    /* It never opened a third connection. */
    ck_assert_int_eq(atomic_load(&FAKE->connect_calls), 2);
    stats(p, 2, 0, 0);

    sr__pool_checkin(p, a, 0);
    sr__pool_checkin(p, b, 0);
    sr__pool_free(p);
}
END_TEST

START_TEST(test_past_deadline_returns_ebusy_without_waiting_but_takes_idle)
{
    sr_pool *p = new_pool(1);
    sr_driver_conn *a = checkout_ok(p);
    sr_driver_conn *c = NULL;
    sr_driver_error err;
    /* Deadline 0 is long past: a full pool fails at once. */
    ck_assert_int_eq(sr__pool_checkout(p, 0, 0, &c, &err), SR_EBUSY);
    ck_assert_int_eq(err.status, SR_EBUSY);
    ck_assert_ptr_nonnull(strstr(err.message, "pool exhausted: 1 connections in use"));
    /* A NULL err is allowed. */
    ck_assert_int_eq(sr__pool_checkout(p, 0, 0, &c, NULL), SR_EBUSY);

    /* An idle connection is handed out even when the deadline has passed. */
    sr__pool_checkin(p, a, 0);
    ck_assert_int_eq(sr__pool_checkout(p, 0, 0, &c, &err), SR_OK);
    ck_assert_ptr_eq(c, a);
    sr__pool_checkin(p, c, 0);
    sr__pool_free(p);
}
END_TEST

struct waiter {
    sr_pool *p;
    int64_t deadline;
    int rc;
    sr_driver_conn *conn;
    sr_driver_error err;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    w->rc = sr__pool_checkout(w->p, w->deadline, 0, &w->conn, &w->err);
    return NULL;
}

START_TEST(test_waiter_gets_returned_connection)
{
    sr_pool *p = new_pool(1);
    sr_driver_conn *a = checkout_ok(p);
    struct waiter w = {.p = p, .deadline = far_deadline(), .rc = 1};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, waiter_main, &w), 0);
    wait_for_waiters(p, 1);
    sr__pool_checkin(p, a, 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(w.rc, SR_OK);
    ck_assert_ptr_eq(w.conn, a);
    ck_assert_int_eq(atomic_load(&FAKE->connects), 1);
    stats(p, 1, 0, 0);
    sr__pool_checkin(p, w.conn, 0);
    sr__pool_free(p);
}
END_TEST

START_TEST(test_waiter_gets_slot_freed_by_broken_connection)
{
    sr_pool *p = new_pool(1);
    sr_driver_conn *a = checkout_ok(p);
    uint64_t old_id = a->id;
    struct waiter w = {.p = p, .deadline = far_deadline(), .rc = 1};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, waiter_main, &w), 0);
    wait_for_waiters(p, 1);
    sr__pool_checkin(p, a, 1);
    pthread_join(t, NULL);
    ck_assert_int_eq(w.rc, SR_OK);
    ck_assert_ptr_nonnull(w.conn);
    ck_assert_uint_ne(w.conn->id, old_id);
    ck_assert_int_eq(atomic_load(&FAKE->connects), 2);
    ck_assert_int_eq(atomic_load(&FAKE->closes), 1);
    ck_assert_int_le(atomic_load(&FAKE->high_water), 1);
    sr__pool_checkin(p, w.conn, 0);
    sr__pool_free(p);
}
END_TEST

START_TEST(test_broken_connection_is_closed_and_replaced)
{
    sr_pool *p = new_pool(2);
    sr_driver_conn *a = checkout_ok(p);
    uint64_t a_id = a->id;
    sr__pool_checkin(p, a, 1);
    ck_assert_int_eq(atomic_load(&FAKE->closes), 1);
    ck_assert_int_eq(atomic_load(&FAKE->live), 0);
    stats(p, 0, 0, 0);

    sr_driver_conn *b = checkout_ok(p);
    ck_assert_uint_ne(b->id, a_id);
    ck_assert_int_eq(atomic_load(&FAKE->connects), 2);
    stats(p, 1, 0, 0);
    sr__pool_checkin(p, b, 0);
    sr__pool_free(p);
    ck_assert_int_eq(atomic_load(&FAKE->closes), 2);
    ck_assert_int_eq(atomic_load(&FAKE->live), 0);
}
END_TEST

START_TEST(test_connect_failure_returns_status_and_frees_slot)
{
    sr_pool *p = new_pool(1);
    atomic_store(&FAKE->fail_connects, 1);
    sr_driver_conn *c = (sr_driver_conn *)1;
    sr_driver_error err;
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(sr__pool_checkout(p, far_deadline(), 0, &c, &err), SR_ECONNECT);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(err.status, SR_ECONNECT);
    ck_assert_int_eq(err.transient, 1);
    ck_assert_str_eq(err.message, "fake: connect refused");
    ck_assert_str_eq(err.sqlstate, "08006");
    stats(p, 0, 0, 0);

    /* The slot was released: with max_size 1 the next checkout connects. */
    c = checkout_ok(p);
    ck_assert_int_eq(atomic_load(&FAKE->connect_calls), 2);
    ck_assert_int_eq(atomic_load(&FAKE->connects), 1);
    stats(p, 1, 0, 0);
    sr__pool_checkin(p, c, 0);
    sr__pool_free(p);
    ck_assert_int_eq(atomic_load(&FAKE->live), 0);
}
END_TEST

/* A waiter blocked on a full pool is woken when another caller's connect fails. */
START_TEST(test_connect_failure_wakes_a_waiter)
{
    sr_pool *p = new_pool(1);
    atomic_store(&FAKE->fail_connects, 1);
    atomic_store(&FAKE->connect_gate, 1);

    struct waiter first = {.p = p, .deadline = far_deadline(), .rc = 1};
    pthread_t t1;
    ck_assert_int_eq(pthread_create(&t1, NULL, waiter_main, &first), 0);
    while (atomic_load(&FAKE->connect_calls) < 1)
        sleep_ms(1);

    /* The only slot is reserved by the stalled connect: the second caller must wait. */
    struct waiter second = {.p = p, .deadline = far_deadline(), .rc = 1};
    pthread_t t2;
    ck_assert_int_eq(pthread_create(&t2, NULL, waiter_main, &second), 0);
    wait_for_waiters(p, 1);

    atomic_store(&FAKE->connect_gate, 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    ck_assert_int_eq(first.rc, SR_ECONNECT);
    ck_assert_int_eq(second.rc, SR_OK);
    ck_assert_ptr_nonnull(second.conn);
    ck_assert_int_eq(atomic_load(&FAKE->connects), 1);
    sr__pool_checkin(p, second.conn, 0);
    sr__pool_free(p);
}
END_TEST

/* A stalled connect must not hold the lock: others keep checking in and out. */
START_TEST(test_connect_runs_outside_the_lock)
{
    sr_pool *p = new_pool(2);
    sr_driver_conn *a = checkout_ok(p);
    atomic_store(&FAKE->connect_gate, 1);

    struct waiter slow = {.p = p, .deadline = far_deadline(), .rc = 1};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, waiter_main, &slow), 0);
    while (atomic_load(&FAKE->connect_calls) < 2)
        sleep_ms(1);

    /* These would hang (and hit Check's timeout) if connect() ran under the lock. */
    sr__pool_checkin(p, a, 0);
    stats(p, 2, 1, 0);
    sr_driver_conn *again = checkout_ok(p);
    ck_assert_ptr_eq(again, a);

    atomic_store(&FAKE->connect_gate, 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(slow.rc, SR_OK);
    ck_assert_ptr_ne(slow.conn, a);
    sr__pool_checkin(p, again, 0);
    sr__pool_checkin(p, slow.conn, 0);
    sr__pool_free(p);
    ck_assert_int_eq(atomic_load(&FAKE->closes), 2);
}
END_TEST

START_TEST(test_drain_idle_closes_only_idle_connections)
{
    sr_pool *p = new_pool(4);
    sr_driver_conn *c[4];
    for (int i = 0; i < 4; i++)
        c[i] = checkout_ok(p);
    for (int i = 0; i < 3; i++)
        sr__pool_checkin(p, c[i], 0);
    stats(p, 4, 3, 0);

    sr__pool_drain_idle(p);
    ck_assert_int_eq(atomic_load(&FAKE->closes), 3);
    stats(p, 1, 0, 0);

    /* The in-use one is untouched and still returns normally. */
    sr__pool_checkin(p, c[3], 0);
    stats(p, 1, 1, 0);
    ck_assert_ptr_eq(checkout_ok(p), c[3]);
    sr__pool_checkin(p, c[3], 0);

    sr__pool_drain_idle(p);
    stats(p, 0, 0, 0);
    ck_assert_int_eq(atomic_load(&FAKE->live), 0);
    /* An empty pool connects again afterwards. */
    sr_driver_conn *n = checkout_ok(p);
    ck_assert_int_eq(atomic_load(&FAKE->connects), 5);
    sr__pool_checkin(p, n, 0);
    sr__pool_free(p);
    ck_assert_int_eq(atomic_load(&FAKE->closes), 5);
}
END_TEST

START_TEST(test_free_closes_idle_connections)
{
    sr_pool *p = new_pool(3);
    sr_driver_conn *a = checkout_ok(p);
    sr_driver_conn *b = checkout_ok(p);
    sr__pool_checkin(p, a, 0);
    sr__pool_checkin(p, b, 0);
    ck_assert_int_eq(atomic_load(&FAKE->closes), 0);
    sr__pool_free(p);
    ck_assert_int_eq(atomic_load(&FAKE->closes), 2);
    ck_assert_int_eq(atomic_load(&FAKE->live), 0);
}
END_TEST

/* ---- stress ----------------------------------------------------------- */

#define STRESS_THREADS 8
#define STRESS_MAX 4

struct stress {
    sr_pool *p;
    int iterations;
    unsigned seed;
    int failures;      /* checkouts that did not return SR_OK */
    int shared_use;    /* times a connection was found in use by someone else */
    int broken;
};

static void *stress_main(void *arg)
{
    struct stress *s = arg;
    uint64_t x = s->seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int i = 0; i < s->iterations; i++) {
        sr_driver_conn *c = NULL;
        sr_driver_error err;
        if (sr__pool_checkout(s->p, sr__deadline_after_ms(30000), 0, &c, &err) != SR_OK || !c) {
            s->failures++;
            continue;
        }
        if (atomic_fetch_add(&c->users, 1) != 0)
            s->shared_use++;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int broken = (x % 32) == 0;
        s->broken += broken;
        atomic_fetch_sub(&c->users, 1);
        sr__pool_checkin(s->p, c, broken);
    }
    return NULL;
}

START_TEST(test_many_threads_one_small_pool)
{
    /* Valgrind serialises threads and runs ~50x slower; keep its run short. */
    int iterations = getenv("SR_UNDER_VALGRIND") ? 2000 : 20000;
    sr_pool *p = new_pool(STRESS_MAX);
    pthread_t t[STRESS_THREADS];
    struct stress s[STRESS_THREADS];
    for (int i = 0; i < STRESS_THREADS; i++) {
        s[i] = (struct stress){.p = p, .iterations = iterations, .seed = (unsigned)i + 1};
        ck_assert_int_eq(pthread_create(&t[i], NULL, stress_main, &s[i]), 0);
    }
    int broken = 0;
    for (int i = 0; i < STRESS_THREADS; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(s[i].failures, 0);
        ck_assert_int_eq(s[i].shared_use, 0);
        broken += s[i].broken;
    }
    ck_assert_int_gt(broken, 0);
    ck_assert_int_le(atomic_load(&FAKE->high_water), STRESS_MAX);
    ck_assert_int_ge(atomic_load(&FAKE->high_water), 1);
    sr_pool_stats st;
    sr__pool_stats(p, &st);
    ck_assert_int_le(st.open, STRESS_MAX);
    ck_assert_int_eq(st.open, st.idle);
    ck_assert_int_eq(st.waiting, 0);
    /* Every broken connection was closed at checkin and nothing else. */
    ck_assert_int_eq(atomic_load(&FAKE->closes), broken);
    sr__pool_free(p);
    ck_assert_int_eq(atomic_load(&FAKE->connects), atomic_load(&FAKE->closes));
    ck_assert_int_eq(atomic_load(&FAKE->live), 0);
}
END_TEST

static Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_new_rejects_bad_arguments);
    tcase_add_test(tc, test_connects_lazily_with_the_callers_args);
    tcase_add_test(tc, test_idle_connection_is_reused);
    tcase_add_test(tc, test_idle_reuse_is_last_in_first_out);
    tcase_add_test(tc, test_exhausted_pool_times_out_with_ebusy);
    tcase_add_test(tc, test_past_deadline_returns_ebusy_without_waiting_but_takes_idle);
    tcase_add_test(tc, test_waiter_gets_returned_connection);
    tcase_add_test(tc, test_waiter_gets_slot_freed_by_broken_connection);
    tcase_add_test(tc, test_broken_connection_is_closed_and_replaced);
    tcase_add_test(tc, test_connect_failure_returns_status_and_frees_slot);
    tcase_add_test(tc, test_connect_failure_wakes_a_waiter);
    tcase_add_test(tc, test_connect_runs_outside_the_lock);
    tcase_add_test(tc, test_drain_idle_closes_only_idle_connections);
    tcase_add_test(tc, test_free_closes_idle_connections);
    suite_add_tcase(s, tc);

    TCase *stress = tcase_create("stress");
    tcase_add_checked_fixture(stress, setup, NULL);
    /* Generous for sanitizer builds; a deadlock still fails instead of hanging CI. */
    tcase_set_timeout(stress, 120);
    tcase_add_test(stress, test_many_threads_one_small_pool);
    suite_add_tcase(s, stress);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pool_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
