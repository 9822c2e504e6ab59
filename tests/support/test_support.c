/*
 * The test support code itself (tests/support/): process identity and the
 * log watcher. What matters for issue 9 is that "alive" never means "some
 * process answers to this PID": a zombie answers kill(pid, 0), so does a
 * thread's TID (/proc/TID exists for threads), and so does whatever process
 * the kernel gave a dead server's PID to (shown end to end, with a real PID
 * handed on, by tests/support/pid_reuse_check.sh).
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "logwatch.h"
#include "proc.h"

/* A child running `sh -c 'sleep 30; :' ARG0 ARGS...`: its command line holds ARGS. */
static pid_t spawn_sleeper(const char *a1, const char *a2)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "sleep 30; :", "sleeper", a1, a2, (char *)NULL);
        _exit(127);
    }
    /* Until it has exec'd, its command line is ours. */
    for (double t0 = tp_now_ms(); tp_now_ms() - t0 < 5000; tp_sleep_ms(5))
        if (tp_identify(pid, a2 ? a2 : a1).pid)
            break;
    return pid;
}

static void reap(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

START_TEST(a_process_is_known_by_its_command_line_and_start_time)
{
    pid_t pid = spawn_sleeper("-D", "/tmp/sr-x/replica1");
    tp_proc p = tp_identify(pid, "/tmp/sr-x/replica1");
    ck_assert_int_eq(p.pid, pid);
    ck_assert_int_eq(tp_alive(p), 1);
    /* Another server's data directory, or a prefix of it, is not this one. */
    ck_assert_int_eq(tp_identify(pid, "/tmp/sr-x/replica2").pid, 0);
    ck_assert_int_eq(tp_identify(pid, "/tmp/sr-x").pid, 0);
    ck_assert_int_eq(tp_identify(pid, NULL).pid, pid);
    /* The same PID with another start time is another process: not alive, not signalled. */
    tp_proc other = {pid, p.start + 1};
    ck_assert_int_eq(tp_alive(other), 0);
    ck_assert_int_eq(tp_signal(other, SIGKILL), -1);
    ck_assert_int_eq(tp_alive(p), 1);
    ck_assert_int_eq(tp_signal(p, SIGSTOP), 0);
    ck_assert_int_eq(tp_wait_stopped(&p, 1, 5000), 1);
    ck_assert_int_eq(tp_state(p), 'T');
    ck_assert_int_eq(tp_signal(p, SIGCONT), 0);
    reap(pid);
    ck_assert_int_eq(tp_alive(p), 0);
    ck_assert_int_eq(tp_signal(p, SIGCONT), -1);
}
END_TEST

START_TEST(an_option_marker_matches_after_its_equals_sign)
{
    pid_t pid = spawn_sleeper("--datadir=/tmp/sr-y/replica/data", NULL);
    ck_assert_int_eq(tp_identify(pid, "/tmp/sr-y/replica/data").pid, pid);
    ck_assert_int_eq(tp_identify(pid, "/tmp/sr-y/primary/data").pid, 0);
    ck_assert_int_eq(tp_identify(pid, "replica/data").pid, 0);
    reap(pid);
}
END_TEST

START_TEST(a_zombie_is_gone_though_kill_0_finds_it)
{
    pid_t pid = spawn_sleeper("--datadir=/tmp/sr-z/data", NULL);
    tp_proc p = tp_identify(pid, "/tmp/sr-z/data");
    ck_assert_int_eq(p.pid, pid);
    ck_assert_int_eq(tp_signal(p, SIGKILL), 0);
    /* Not reaped: a zombie until waitpid below. */
    ck_assert_int_eq(tp_wait_gone(&p, 1, 5000), 1);
    ck_assert_int_eq(tp_stat(pid, NULL, NULL), 'Z');
    ck_assert_int_eq(kill(pid, 0), 0); /* what a bare PID check relies on */
    ck_assert_int_eq(tp_alive(p), 0);
    ck_assert_int_eq(tp_identify(pid, NULL).pid, 0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    ck_assert_int_eq(tp_stat(pid, NULL, NULL), 0);
}
END_TEST

static atomic_int thread_tid, thread_stop;

static void *park(void *arg)
{
    (void)arg;
    atomic_store(&thread_tid, (int)syscall(SYS_gettid));
    while (!atomic_load(&thread_stop))
        tp_sleep_ms(5);
    return NULL;
}

START_TEST(a_thread_id_is_no_process)
{
    /* What a dead server's PID may become: a thread of another server. */
    pthread_t th;
    atomic_store(&thread_tid, 0);
    atomic_store(&thread_stop, 0);
    ck_assert_int_eq(pthread_create(&th, NULL, park, NULL), 0);
    while (atomic_load(&thread_tid) == 0)
        tp_sleep_ms(1);
    pid_t tid = atomic_load(&thread_tid);
    ck_assert_int_ne(tid, getpid());
    ck_assert_int_eq(kill(tid, 0), 0);
    ck_assert_int_ne(tp_stat(tid, NULL, NULL), 0);
    ck_assert_int_eq(tp_identify(tid, NULL).pid, 0);
    ck_assert_int_eq(tp_identify(getpid(), NULL).pid, getpid());
    atomic_store(&thread_stop, 1);
    pthread_join(th, NULL);
}
END_TEST

START_TEST(children_are_listed_with_their_identity)
{
    pid_t a = spawn_sleeper("-D", "/tmp/sr-c/a");
    tp_proc self = tp_identify(getpid(), NULL);
    tp_proc kids[64];
    int n = tp_children(self, kids, 64), found = 0;
    for (int i = 0; i < n; i++)
        if (kids[i].pid == a) {
            found = 1;
            ck_assert_int_eq(tp_alive(kids[i]), 1);
        }
    ck_assert_int_eq(found, 1);
    reap(a);
}
END_TEST

START_TEST(a_command_is_bounded)
{
    char why[256] = "";
    ck_assert_int_eq(tp_run_command("exit 3", 10000, why, sizeof why), 3);
    ck_assert_ptr_nonnull(strstr(why, "exited with 3"));
    ck_assert_int_eq(tp_run_command("true", 10000, why, sizeof why), 0);
    double t0 = tp_now_ms();
    ck_assert_int_eq(tp_run_command("sleep 20", 300, why, sizeof why), -1);
    ck_assert_msg(tp_now_ms() - t0 < 10000, "a 300 ms bound took %.0f ms", tp_now_ms() - t0);
    ck_assert_ptr_nonnull(strstr(why, "did not finish"));
}
END_TEST

static void say(int fd, void *arg)
{
    const char *text = arg;
    ssize_t n = write(fd, text, strlen(text));
    _exit(n == (ssize_t)strlen(text) ? 0 : 1);
}

static void hang(int fd, void *arg)
{
    (void)arg;
    ssize_t n = write(fd, "started", 7);
    (void)n;
    sleep(30);
    _exit(0);
}

START_TEST(a_child_is_bounded_and_its_output_collected)
{
    int status = -2;
    char *out = tp_run_child(say, "sr1;c=abc", 10000, &status);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out, "sr1;c=abc");
    ck_assert_int_eq(status, 0);
    free(out);
    double t0 = tp_now_ms();
    out = tp_run_child(hang, NULL, 300, &status);
    ck_assert_msg(tp_now_ms() - t0 < 10000, "a 300 ms bound took %.0f ms", tp_now_ms() - t0);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out, "started");
    ck_assert_int_eq(status, -1);
    free(out);
}
END_TEST

START_TEST(log_lines_are_matched_by_prefix_and_port)
{
    logwatch w;
    lw_init(&w);
    lw_log(&w, SR_LOG_WARN, "read on shard 'shard0' node postgresql://u@127.0.0.1:5001/s failed");
    lw_log(&w, SR_LOG_WARN, "node ejected: postgresql://u@127.0.0.1:5001/s");
    lw_log(&w, SR_LOG_WARN, "read on shard 'shard0' node postgresql://u@127.0.0.1:5001/s failed");
    lw_log(&w, SR_LOG_WARN, "node ejected: postgresql://u@127.0.0.1:5002/s");
    ck_assert_int_eq(lw_port("x 127.0.0.1:5002/s"), 5002);
    ck_assert_int_eq(lw_match(&w, "node ejected", 5001, -1).count, 1);
    ck_assert_int_eq(lw_match(&w, "node ejected", 5001, -1).first, 1);
    ck_assert_int_eq(lw_match(&w, "node ejected", -5001, -1).count, 1);
    ck_assert_int_eq(lw_match(&w, "node ejected", LW_ANY_PORT, -1).count, 2);
    ck_assert_int_eq(lw_match(&w, "read on shard", 5001, -1).count, 2);
    ck_assert_int_eq(lw_match(&w, "read on shard", 5001, 1).count, 1);
    ck_assert_int_eq(lw_match(&w, "node re-admitted", 5001, -1).count, 0);
    ck_assert_int_eq(lw_contains(&w, "5002/s"), 1);
    double t0 = tp_now_ms();
    ck_assert_int_eq(lw_wait(&w, "node re-admitted", 5001, 1, 100).count, 0);
    ck_assert(tp_now_ms() - t0 >= 100);
    char buf[2000];
    ck_assert_ptr_nonnull(strstr(lw_lines(&w, 0, 0, 0, buf, sizeof buf), "5002"));
    lw_clear(&w);
    ck_assert_int_eq(lw_contains(&w, "5002/s"), 0);
    lw_free(&w);
}
END_TEST

static Suite *support_suite(void)
{
    Suite *s = suite_create("support");
    TCase *t = tcase_create("proc");
    tcase_add_test(t, a_process_is_known_by_its_command_line_and_start_time);
    tcase_add_test(t, an_option_marker_matches_after_its_equals_sign);
    tcase_add_test(t, a_zombie_is_gone_though_kill_0_finds_it);
    tcase_add_test(t, a_thread_id_is_no_process);
    tcase_add_test(t, children_are_listed_with_their_identity);
    tcase_add_test(t, a_command_is_bounded);
    tcase_add_test(t, a_child_is_bounded_and_its_output_collected);
    tcase_set_timeout(t, 60);
    suite_add_tcase(s, t);
    TCase *l = tcase_create("logwatch");
    tcase_add_test(l, log_lines_are_matched_by_prefix_and_port);
    suite_add_tcase(s, l);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(support_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
