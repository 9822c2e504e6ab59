/*
 * Consistency tokens without servers: a fake driver with replication
 * positions (tests/unit/fake_driver.h plus a small GTID-like position
 * algebra) registered through sr_driver_register(), so that sessions record
 * positions through the real write path and tokens go through the public
 * sr_session_token() / sr_session_set_token().
 *
 * Positions of the fake backend: tests/support/fake_positions.h's fp_gtid_*,
 * "D-N" entries (domain, sequence), comma separated, white space allowed
 * around them, "" the empty position; merge is the per-domain maximum
 * written canonically ("0-5,3-9"), as MariaDB's.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_driver.h"
#include "fake_positions.h" /* tests/support/: the position algebra */
#include "token.h"

/* What the next write reports as its position (set by each test). */
static char next_position[600];

static int fake_write_position(sr_driver_conn *c, int64_t deadline, char *buf, size_t len,
                               sr_driver_error *err)
{
    (void)c, (void)deadline;
    if (strlen(next_position) >= len)
        return sr_driver_error_set(err, SR_EQUERY, 0, NULL, 0, "fake: position too long");
    strcpy(buf, next_position);
    return SR_OK;
}

static const sr_driver *positions_driver(void)
{
    static const char *const schemes[] = {"tok", NULL};
    static sr_driver drv;
    if (!drv.name) {
        drv = *fake_driver();
        drv.abi_version = SR_DRIVER_ABI_VERSION;
        drv.name = "tok";
        drv.schemes = schemes;
        drv.write_position = fake_write_position;
        drv.replay_position = fake_write_position;
        drv.position_covers = fp_gtid_covers;
        drv.position_merge = fp_gtid_merge;
        ck_assert_int_eq(sr_driver_register(&drv), SR_OK);
    }
    return &drv;
}

/* ---- routers ---- */

static char log_text[4096];
static int log_lines;

static void capture(void *ud, sr_log_level level, const char *msg)
{
    (void)ud, (void)level;
    log_lines++;
    snprintf(log_text, sizeof log_text, "%s", msg);
}

/* A router of n shards named by `name_of`, one fake primary each. */
static sr_router *open_router(int n, const char *(*name_of)(int))
{
    positions_driver();
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sr_config_set(c, "shard.distribution", "jump"), SR_OK);
    ck_assert_int_eq(sr_config_set_log_fn(c, capture, NULL), SR_OK);
    for (int i = 0; i < n; i++) {
        const char *name = name_of(i);
        ck_assert_msg(sr_config_add_shard(c, name) == SR_OK, "%s", sr_config_errmsg(c));
        ck_assert_msg(sr_config_add_node(c, name, SR_PRIMARY, "tok://fake/db", 1) == SR_OK, "%s",
                      sr_config_errmsg(c));
    }
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

/* Names that need escaping in a token: ';' '%' and UTF-8. */
static const char *odd_name(int i)
{
    static char buf[8][32];
    static const char *const base[] = {"plain", "semi;colon", "per%cent", "caf\xc3\xa9", "a.b-c"};
    if (i < 5)
        return base[i];
    snprintf(buf[i % 8], sizeof buf[0], "s%d", i);
    return buf[i % 8];
}

static char many_names[4096][16];
static const char *many_name(int i) { return many_names[i]; }

/* Writes on `shard`, the driver reporting `position` for it. */
static void write_at(sr_session *s, int shard, const char *position)
{
    snprintf(next_position, sizeof next_position, "%s", position);
    int rc = sr_exec_shard(s, shard, SR_WRITE, "INSERT", 0, NULL, NULL);
    ck_assert_msg(rc == SR_OK, "%s", sr_session_errmsg(s));
}

static void setup(void)
{
    fake_driver_reset();
    log_text[0] = '\0';
    log_lines = 0;
}

/* ---- emitted tokens are accepted ---- */

/* Random positions: well-formed, white space only, empty, padded, or garbage. */
static void random_position(unsigned *seed, char *buf, size_t len)
{
    static const char *const pads[] = {"", " ", "  ", "\t", " \t "};
    int kind = rand_r(seed) % 6;
    if (kind == 0) {
        snprintf(buf, len, "%s", pads[rand_r(seed) % 5]); /* nothing but white space, or "" */
        return;
    }
    if (kind == 1) {
        snprintf(buf, len, "x%d", rand_r(seed) % 10); /* the backend's own garbage */
        return;
    }
    size_t o = 0;
    int n = 1 + rand_r(seed) % 3;
    for (int i = 0; i < n && o + 40 < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s%d-%d%s", i ? "," : "",
                              pads[rand_r(seed) % 5], rand_r(seed) % 4, 1 + rand_r(seed) % 1000,
                              pads[rand_r(seed) % 5]);
}

/*
 * Property: whatever positions a session recorded, in whatever order, its
 * token is accepted by sr_session_set_token() and a fresh session given it
 * emits the same token (a fixed point). A position of only white space used
 * to merge into "", which was emitted as "name=" and then refused.
 */
START_TEST(every_emitted_token_is_accepted_and_round_trips)
{
    enum { NSH = 6 };
    sr_router *r = open_router(NSH, odd_name);
    unsigned seed = 12345;
    int emitted = 0, refused = 0;
    for (int round = 0; round < 400; round++) {
        sr_session *a;
        ck_assert_int_eq(sr_session_new(r, &a), SR_OK);
        int writes = 1 + rand_r(&seed) % 8;
        for (int w = 0; w < writes; w++) {
            char pos[200];
            random_position(&seed, pos, sizeof pos);
            write_at(a, rand_r(&seed) % NSH, pos);
        }
        const char *t = sr_session_token(a);
        if (!t) {
            /* The backend's garbage made a position unknown: no token, and the
             * message says which shard (a token without it would drop a write). */
            ck_assert_msg(strstr(sr_session_errmsg(a), "is unknown"), "round %d: %s", round,
                          sr_session_errmsg(a));
            refused++;
            sr_session_free(a);
            continue;
        }
        emitted++;
        char *token = strdup(t);
        for (const char *p = token; *p; p++)
            ck_assert_msg(*p > ' ' && *p < 0x7f, "unprintable byte in '%s'", token);
        sr_session *b;
        ck_assert_int_eq(sr_session_new(r, &b), SR_OK);
        int rc = sr_session_set_token(b, token);
        ck_assert_msg(rc == SR_OK, "round %d: token '%s' refused: %s", round, token,
                      sr_session_errmsg(b));
        ck_assert_str_eq(sr_session_token(b), token);
        /* Merging it again changes nothing, and so does merging it into its source. */
        ck_assert_int_eq(sr_session_set_token(b, token), SR_OK);
        ck_assert_str_eq(sr_session_token(b), token);
        ck_assert_int_eq(sr_session_set_token(a, token), SR_OK);
        ck_assert_str_eq(sr_session_token(a), token);
        free(token);
        sr_session_free(a);
        sr_session_free(b);
    }
    /* Both branches ran, so the property was checked on many tokens. */
    ck_assert_int_gt(emitted, 100);
    ck_assert_int_gt(refused, 0);
    sr_router_close(r);
}
END_TEST

/* The exact case of the audit: a white-space position, merged, then emitted. */
START_TEST(a_white_space_position_is_emitted_as_one_the_parser_takes)
{
    sr_router *r = open_router(2, odd_name);
    sr_session *a, *b;
    ck_assert_int_eq(sr_session_new(r, &a), SR_OK);
    ck_assert_int_eq(sr_session_new(r, &b), SR_OK);
    write_at(a, 0, " ");
    write_at(a, 0, " ");
    write_at(a, 1, "1-7");
    const char *t = sr_session_token(a);
    ck_assert_msg(t != NULL, "%s", sr_session_errmsg(a));
    char *token = strdup(t);
    ck_assert_msg(sr_session_set_token(b, token) == SR_OK, "'%s': %s", token, sr_session_errmsg(b));
    ck_assert_str_eq(sr_session_token(b), token);
    /* Garbage from the backend guarantees nothing: that shard is read on the primary,
     * and no token is emitted (one without that write would let the importer read a
     * stale replica); the message names the shard. A later write with a position
     * the driver takes makes tokens possible again. */
    write_at(a, 1, "nonsense");
    ck_assert_ptr_null(sr_session_token(a));
    ck_assert_msg(strstr(sr_session_errmsg(a), "shard 'semi;colon' is unknown"), "%s",
                  sr_session_errmsg(a));
    write_at(a, 1, "1-9");
    ck_assert_ptr_nonnull(sr_session_token(a));
    free(token);
    sr_session_free(a);
    sr_session_free(b);
    sr_router_close(r);
}
END_TEST

/* ---- the cost of a token is bounded ---- */

static char *token_prefix(sr_router *r)
{
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    write_at(s, 0, "1-1");
    const char *t = sr_session_token(s);
    char *prefix = strndup(t, 22); /* "sr1;c=<16 hex>" */
    sr_session_free(s);
    return prefix;
}

START_TEST(unknown_shards_are_capped_and_logged_once)
{
    sr_router *r = open_router(3, odd_name);
    char *prefix = token_prefix(r);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    size_t cap = 64 * 100 + 200;
    char *tok = malloc(cap);
    /* 64 unknown entries (one with a newline and an ANSI escape in its name) and one known. */
    size_t o = (size_t)snprintf(tok, cap, "%s;evil%%0Aforged%%1B[31m=0-1", prefix);
    for (int i = 1; i < 64; i++)
        o += (size_t)snprintf(tok + o, cap - o, ";gone%d=0-%d", i, i);
    snprintf(tok + o, cap - o, ";plain=2-9");
    log_lines = 0;
    ck_assert_msg(sr_session_set_token(s, tok) == SR_OK, "%s", sr_session_errmsg(s));
    ck_assert_int_eq(log_lines, 1);
    ck_assert_msg(strstr(log_text, "64 entries") != NULL, "log: %s", log_text);
    ck_assert_msg(strchr(log_text, '\n') == NULL && strchr(log_text, 0x1b) == NULL, "log: %s",
                  log_text);
    ck_assert_msg(strstr(log_text, "evil\\x0aforged\\x1b[31m") != NULL, "log: %s", log_text);
    ck_assert_ptr_nonnull(strstr(sr_session_token(s), ";plain=2-9"));

    /* A 65th unknown entry: refused, and nothing of the token is merged. */
    sr_session *f;
    ck_assert_int_eq(sr_session_new(r, &f), SR_OK);
    o = strlen(tok);
    snprintf(tok + o, cap - o, ";gone64=0-1");
    ck_assert_int_eq(sr_session_set_token(f, tok), SR_EINVAL);
    ck_assert_msg(strstr(sr_session_errmsg(f), "does not have") != NULL, "%s",
                  sr_session_errmsg(f));
    ck_assert_str_eq(sr_session_token(f), "");

    /* A shard named twice: never emitted, refused. */
    char dup[256];
    snprintf(dup, sizeof dup, "%s;plain=0-1;plain=0-2", prefix);
    ck_assert_int_eq(sr_session_set_token(f, dup), SR_EINVAL);
    ck_assert_msg(strstr(sr_session_errmsg(f), "twice") != NULL, "%s", sr_session_errmsg(f));

    /* An empty position is taken when the backend takes it ("" is its empty position). */
    snprintf(dup, sizeof dup, "%s;plain=", prefix);
    ck_assert_msg(sr_session_set_token(f, dup) == SR_OK, "%s", sr_session_errmsg(f));

    /* Control bytes in a malformed token are escaped in the message. */
    snprintf(dup, sizeof dup, "%s;pl\nain=0-1\x1b", prefix);
    ck_assert_int_eq(sr_session_set_token(f, dup), SR_EINVAL);
    ck_assert_msg(strchr(sr_session_errmsg(f), '\n') == NULL &&
                      strchr(sr_session_errmsg(f), 0x1b) == NULL &&
                      strstr(sr_session_errmsg(f), "\\x0a") != NULL,
                  "%s", sr_session_errmsg(f));
    free(tok);
    free(prefix);
    sr_session_free(s);
    sr_session_free(f);
    sr_router_close(r);
}
END_TEST

START_TEST(an_oversized_token_is_refused_before_it_is_read)
{
    sr_router *r = open_router(3, odd_name);
    char *prefix = token_prefix(r);
    sr_session *s;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    size_t max = sr__token_max_bytes(atomic_load(&r->current));
    ck_assert_uint_eq(max, 64 * 1024); /* three shards emit far less */
    char *tok = malloc(max + 2);
    /* One huge position entry for a known shard: longer than the cap by one byte. */
    size_t o = (size_t)snprintf(tok, max + 2, "%s;plain=", prefix);
    memset(tok + o, '1', max + 1 - o);
    tok[max + 1] = '\0';
    ck_assert_int_eq(sr_session_set_token(s, tok), SR_EINVAL);
    ck_assert_msg(strstr(sr_session_errmsg(s), "longer than 65536 bytes") != NULL, "%s",
                  sr_session_errmsg(s));
    /* At the cap it is read (and refused for its position, too long for the backend). */
    tok[max] = '\0';
    ck_assert_int_eq(sr_session_set_token(s, tok), SR_EINVAL);
    ck_assert_msg(strstr(sr_session_errmsg(s), "bad position") != NULL, "%s",
                  sr_session_errmsg(s));
    free(tok);
    free(prefix);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/*
 * With 4,096 shards, each holding a long position, the token is far above
 * 64 KiB: the cap grows with what the router can emit, so the router still
 * takes its own tokens.
 */
START_TEST(a_large_router_takes_its_largest_tokens)
{
    for (int i = 0; i < 4096; i++)
        snprintf(many_names[i], sizeof many_names[i], "shard-%04d", i);
    sr_router *r = open_router(4096, many_name);
    sr_session *a, *b;
    ck_assert_int_eq(sr_session_new(r, &a), SR_OK);
    ck_assert_int_eq(sr_session_new(r, &b), SR_OK);
    char pos[512];
    size_t o = 0;
    for (int d = 0; d < FP_DOMAINS; d++)
        o += (size_t)snprintf(pos + o, sizeof pos - o, "%s%d-%d", d ? "," : "", d, 1000000000 + d);
    for (int i = 0; i < 4096; i++)
        write_at(a, i, pos);
    char *token = strdup(sr_session_token(a));
    ck_assert_uint_gt(strlen(token), 64 * 1024);
    ck_assert_uint_le(strlen(token), sr__token_max_bytes(atomic_load(&r->current)));
    ck_assert_msg(sr_session_set_token(b, token) == SR_OK, "%s", sr_session_errmsg(b));
    ck_assert_str_eq(sr_session_token(b), token);
    free(token);
    sr_session_free(a);
    sr_session_free(b);
    sr_router_close(r);
}
END_TEST

/* ---- the internal parser and encoder agree ---- */

START_TEST(parse_then_encode_is_a_fixed_point)
{
    sr_router *r = open_router(5, odd_name);
    char *prefix = token_prefix(r);
    char tok[512];
    snprintf(tok, sizeof tok, "%s;caf%%C3%%A9=%%20;per%%25cent=1-3,0-2;gone=9-9", prefix);
    sr_token_parsed t;
    char why[256];
    ck_assert_msg(sr__token_parse(atomic_load(&r->current), tok, &t, why, sizeof why) == SR_OK, "%s", why);
    ck_assert_int_eq(t.entries, 2);
    ck_assert_int_eq(t.unknown, 1);
    const char *names[5], *pos[5];
    for (int i = 0; i < 5; i++) {
        names[i] = sr_router_shard_name(r, i);
        pos[i] = t.pos_of[i] >= 0 ? t.text + t.pos_of[i] : NULL;
    }
    ck_assert_str_eq(pos[3], " ");
    ck_assert_str_eq(pos[2], "1-3,0-2");
    char out[512];
    unsigned long long id = strtoull(prefix + 6, NULL, 16);
    size_t n = sr__token_encode(id, names, pos, 5, out, sizeof out);
    ck_assert_uint_gt(n, 0);
    sr__token_parsed_free(&t);
    sr_token_parsed u;
    ck_assert_msg(sr__token_parse(atomic_load(&r->current), out, &u, why, sizeof why) == SR_OK, "%s", why);
    char again[512];
    for (int i = 0; i < 5; i++)
        pos[i] = u.pos_of[i] >= 0 ? u.text + u.pos_of[i] : NULL;
    sr__token_encode(id, names, pos, 5, again, sizeof again);
    ck_assert_str_eq(again, out);
    sr__token_parsed_free(&u);
    free(prefix);
    sr_router_close(r);
}
END_TEST

static Suite *token_suite(void)
{
    Suite *su = suite_create("token");
    TCase *tc = tcase_create("token");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, every_emitted_token_is_accepted_and_round_trips);
    tcase_add_test(tc, a_white_space_position_is_emitted_as_one_the_parser_takes);
    tcase_add_test(tc, unknown_shards_are_capped_and_logged_once);
    tcase_add_test(tc, an_oversized_token_is_refused_before_it_is_read);
    tcase_add_test(tc, a_large_router_takes_its_largest_tokens);
    tcase_add_test(tc, parse_then_encode_is_a_fixed_point);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(token_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
