/*
 * The trace context's comment (lib/trace.c): which traceparents and tags are
 * refused and why, and the exact text of the comment that reaches the SQL.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

/* Builds, expecting success; the caller frees the text. */
static char *build_ok(const char *tp, int ntags, const char *const *tags)
{
    char *out = NULL;
    size_t len = 0;
    int bad = 0;
    const char *why = NULL;
    int rc = sr__trace_build(tp, ntags, tags, &out, &len, &bad, &why);
    ck_assert_msg(rc == SR_OK, "refused (%d): %s", bad, why ? why : "?");
    ck_assert_ptr_nonnull(out);
    ck_assert_uint_eq(len, strlen(out));
    return out;
}

/* Builds, expecting SR_EINVAL for part `bad` with `why` containing `what`. */
static void build_bad(const char *tp, int ntags, const char *const *tags, int want_bad,
                      const char *what)
{
    char *out = (char *)"untouched";
    size_t len = 12345;
    int bad = 99;
    const char *why = NULL;
    int rc = sr__trace_build(tp, ntags, tags, &out, &len, &bad, &why);
    ck_assert_int_eq(rc, SR_EINVAL);
    ck_assert_int_eq(bad, want_bad);
    ck_assert_ptr_nonnull(why);
    ck_assert_msg(strstr(why, what), "why '%s' does not say '%s'", why, what);
    ck_assert_str_eq(out, "untouched"); /* written only on success */
    ck_assert_uint_eq(len, 12345);
}

/* ---- traceparent ---- */

typedef struct tp_case {
    const char *tp;
    const char *why;
} tp_case;

static const tp_case bad_tps[] = {
    {"0", "shorter than 55"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", "shorter than 55"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", "shorter than 55"},
    {TP "0", "after its 2-digit flags"},
    {TP " ", "after its 2-digit flags"},
    {TP "\n/*", "after its 2-digit flags"},
    {TP "-aa", "after its 2-digit flags"},
    /* uppercase hex, anywhere */
    {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", "lowercase hex"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A", "lowercase hex"},
    {"0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "lowercase hex"},
    {"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", "lowercase hex"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b'-01", "lowercase hex"},
    {"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "'-'"},
    {"00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01", "'-'"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b701-", "'-'"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7-01", "'-'"},
    {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version ff"},
    {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version other than 00"},
    {"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "all-zero trace-id"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "all-zero parent-id"},
};

START_TEST(bad_traceparents_are_refused)
{
    build_bad(bad_tps[_i].tp, 0, NULL, SR_TRACE_BAD_TRACEPARENT, bad_tps[_i].why);
}
END_TEST

START_TEST(a_null_traceparent_is_refused)
{
    build_bad(NULL, 0, NULL, SR_TRACE_BAD_TRACEPARENT, "NULL");
}
END_TEST

START_TEST(good_traceparents_are_written_as_they_are)
{
    const char *good[] = {
        TP,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", /* not sampled */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", /* any flags */
        "00-00000000000000000000000000000001-0000000000000001-01", /* zero but not all */
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char *c = build_ok(good[i], 0, NULL);
        char want[128];
        snprintf(want, sizeof want, "\n/*traceparent='%s'*/", good[i]);
        ck_assert_str_eq(c, want);
        free(c);
    }
}
END_TEST

/* ---- tags ---- */

START_TEST(the_comment_has_sorted_keys_and_encoded_values)
{
    const char *tags[] = {
        "route", "/users/{id}",
        "action", "it's a \"test\" */ --x\\n;",
        "Zeta", "caf\xc3\xa9",
        "db.driver", "shardroute~1.0_a-b.c",
        "empty", "",
    };
    char *c = build_ok(TP, 5, tags);
    ck_assert_str_eq(c, "\n/*Zeta='caf%C3%A9',"
                        "action='it%27s%20a%20%22test%22%20%2A%2F%20--x%5Cn%3B',"
                        "db.driver='shardroute~1.0_a-b.c',"
                        "empty='',"
                        "route='%2Fusers%2F%7Bid%7D',"
                        "traceparent='" TP "'*/");
    free(c);

    /* A key after "traceparent" in byte order comes after it. */
    const char *late[] = {"zone", "eu-1", "a", "1"};
    c = build_ok(TP, 2, late);
    ck_assert_str_eq(c, "\n/*a='1',traceparent='" TP "',zone='eu-1'*/");
    free(c);
}
END_TEST

START_TEST(values_cannot_end_or_nest_the_comment)
{
    /* Every byte but NUL, in one value: none of the meta characters survive. */
    char all[256];
    for (int i = 1; i < 256; i++)
        all[i - 1] = (char)i;
    all[255] = '\0';
    const char *tags[] = {"k", all};
    char *c = build_ok(TP, 1, tags);
    ck_assert_int_eq(strncmp(c, "\n/*", 3), 0);
    size_t n = strlen(c);
    ck_assert_str_eq(c + n - 2, "*/");
    char *end = strstr(c + 3, "*/");
    ck_assert_ptr_eq(end, c + n - 2);                      /* only its own end */
    ck_assert_ptr_null(strstr(c + 3, "/*"));               /* nothing nested */
    ck_assert_ptr_null(strchr(c + 1, '\n'));               /* one line */
    ck_assert_ptr_null(strchr(c, '\\'));
    for (const char *p = c + 1; *p; p++)
        ck_assert_msg(*p >= 0x21 && *p <= 0x7e, "byte 0x%02x in the comment", (unsigned char)*p);
    /* Quotes: exactly the two around each value. */
    int quotes = 0;
    for (const char *p = c; *p; p++)
        quotes += *p == '\'';
    ck_assert_int_eq(quotes, 4);
    free(c);
}
END_TEST

START_TEST(bad_tags_are_refused_and_named)
{
    char long_key[SR_TRACE_KEY_MAX + 2];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    char max_key[SR_TRACE_KEY_MAX + 1];
    memset(max_key, 'k', sizeof max_key - 1);
    max_key[sizeof max_key - 1] = '\0';
    char long_value[SR_TRACE_VALUE_MAX + 2];
    memset(long_value, 'v', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    char max_value[SR_TRACE_VALUE_MAX + 1];
    memset(max_value, '\'', sizeof max_value - 1);
    max_value[sizeof max_value - 1] = '\0';

    struct {
        const char *key, *value, *why;
    } cases[] = {
        {"it's", "v", "character outside"},
        {"a*/b", "v", "character outside"},
        {"a/*b", "v", "character outside"},
        {"a\\b", "v", "character outside"},
        {"a\nb", "v", "character outside"},
        {"a b", "v", "character outside"},
        {"a=b", "v", "character outside"},
        {"a,b", "v", "character outside"},
        {"caf\xc3\xa9", "v", "character outside"},
        {"k~", "v", "character outside"},
        {"", "v", "empty key"},
        {long_key, "v", "longer than 64"},
        {"traceparent", "v", "\"traceparent\""},
        {NULL, "v", "NULL key"},
        {"k", NULL, "NULL value"},
        {"k", long_value, "longer than 256"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* As the second tag: the index says which. */
        const char *tags[] = {"ok", "fine", cases[i].key, cases[i].value};
        build_bad(TP, 2, tags, 1, cases[i].why);
    }
    /* At the bounds: fine. */
    const char *edge[] = {max_key, max_value};
    char *c = build_ok(TP, 1, edge);
    ck_assert_uint_eq(strlen(c), 3 + SR_TRACE_KEY_MAX + 2 + 3 * SR_TRACE_VALUE_MAX + 1 + 1 +
                                     strlen("traceparent='" TP "'") + 2);
    free(c);
}
END_TEST

START_TEST(duplicate_and_too_many_tags_are_refused)
{
    const char *dup[] = {"a", "1", "b", "2", "a", "3"};
    build_bad(TP, 3, dup, 2, "repeats");
    /* Keys are compared exactly: case differs, so these are two tags. */
    const char *cased[] = {"a", "1", "A", "2"};
    free(build_ok(TP, 2, cased));

    const char *many[2 * (SR_TRACE_MAX_TAGS + 1)];
    char names[SR_TRACE_MAX_TAGS + 1][8];
    for (int i = 0; i <= SR_TRACE_MAX_TAGS; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i);
        many[2 * i] = names[i];
        many[2 * i + 1] = "v";
    }
    free(build_ok(TP, SR_TRACE_MAX_TAGS, many));
    build_bad(TP, SR_TRACE_MAX_TAGS + 1, many, SR_TRACE_BAD_TAGS, "more than 16");
    build_bad(TP, -1, many, SR_TRACE_BAD_TAGS, "negative");
    build_bad(TP, 1, NULL, SR_TRACE_BAD_TAGS, "tags is NULL");
    /* The traceparent is checked first. */
    build_bad("00", 1, dup, SR_TRACE_BAD_TRACEPARENT, "shorter");
}
END_TEST

static Suite *trace_suite(void)
{
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("traceparent");
    tcase_add_loop_test(tc, bad_traceparents_are_refused, 0,
                        (int)(sizeof bad_tps / sizeof bad_tps[0]));
    tcase_add_test(tc, a_null_traceparent_is_refused);
    tcase_add_test(tc, good_traceparents_are_written_as_they_are);
    suite_add_tcase(s, tc);

    tc = tcase_create("tags");
    tcase_add_test(tc, the_comment_has_sorted_keys_and_encoded_values);
    tcase_add_test(tc, values_cannot_end_or_nest_the_comment);
    tcase_add_test(tc, bad_tags_are_refused_and_named);
    tcase_add_test(tc, duplicate_and_too_many_tags_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(trace_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
