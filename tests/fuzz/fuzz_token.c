/*
 * libFuzzer target for consistency tokens: sr__token_parse() and
 * sr_session_set_token() on arbitrary bytes, against routers opened once.
 *
 * Built by meson with -Dfuzz=true (the whole library and its drivers) and run
 * by scripts/fuzz.sh fuzz_token. SQLite has no positions, so the routers'
 * shards are on two small registered drivers whose position algebra is the
 * real one of a backend: MariaDB GTID positions (the MySQL driver's functions)
 * and PostgreSQL LSNs (the PostgreSQL driver's), when those drivers are built.
 *
 * The first input byte picks the router (bit 0) and whether the router's own
 * "sr1;c=<topology>" prefix is put in front of the rest (bit 1), so that the
 * fuzzer reaches the entries without guessing a 64-bit hash; the rest is the
 * token (NUL-terminated copy, exactly sized).
 *
 * Properties, for every input:
 *  - sr__token_parse() and sr_session_set_token() agree (same status); a
 *    refused token leaves the session without positions;
 *  - the message and every log line hold no control byte (a token cannot
 *    forge log lines);
 *  - a token that parses, encoded again from what was parsed, parses to the
 *    same positions and encodes to the same text (a fixed point);
 *  - the token a session emits after taking it is accepted by another
 *    session, which emits it unchanged.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

#define FAKE_POSITIONS_NOOP_DRIVER
#include "fake_positions.h" /* tests/support/ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#if defined(SR_HAVE_MYSQL)
int sr__my_position_covers(const char *have, const char *want);
int sr__my_position_merge(const char *a, const char *b, char *buf, size_t buflen);
#endif
#if defined(SR_HAVE_POSTGRES)
int sr__pg_position_covers(const char *have, const char *want);
int sr__pg_position_merge(const char *a, const char *b, char *buf, size_t buflen);
#endif

/* A position each algebra takes ("1" is one for the numbers, not for GTIDs or LSNs). */
static int f_gtid_position(sr_driver_conn *c, int64_t d, char *buf, size_t len,
                           sr_driver_error *e)
{
    (void)c, (void)d, (void)e;
#if defined(SR_HAVE_MYSQL)
    snprintf(buf, len, "0-1-1");
#else
    snprintf(buf, len, "1");
#endif
    return SR_OK;
}
static int f_lsn_position(sr_driver_conn *c, int64_t d, char *buf, size_t len, sr_driver_error *e)
{
    (void)c, (void)d, (void)e;
#if defined(SR_HAVE_POSTGRES)
    snprintf(buf, len, "0/1");
#else
    snprintf(buf, len, "1");
#endif
    return SR_OK;
}

static const char *const gtid_schemes[] = {"fzgtid", NULL};
static const char *const lsn_schemes[] = {"fzlsn", NULL};
static sr_driver drivers[2] = {
    {.abi_version = SR_DRIVER_ABI_VERSION, .name = "fzgtid", .schemes = gtid_schemes},
    {.abi_version = SR_DRIVER_ABI_VERSION, .name = "fzlsn", .schemes = lsn_schemes},
};

static sr_router *routers[2];
static char prefixes[2][32];

static int log_bad; /* a log line held a control byte */

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            return 1;
    return 0;
}

static void on_log(void *ud, sr_log_level level, const char *msg)
{
    (void)ud;
    (void)level;
    log_bad |= has_control(msg);
}

static void open_routers(void)
{
    /* Names that need escaping, and one like the prefix of another. */
    static const char *const names[] = {"a", "ab", "semi;colon", "per%cent", "caf\xc3\xa9"};
    for (int k = 0; k < 2; k++) {
        sr_driver *d = &drivers[k];
        d->dialect = SR_SQL_GENERIC;
        fp_noop_driver(d);
        d->write_position = k == 0 ? f_gtid_position : f_lsn_position;
        d->replay_position = d->write_position;
        /* Without a backend's own algebra: decimal numbers, merge the maximum. */
        d->position_covers = fp_num_covers;
        d->position_merge = fp_num_merge;
#if defined(SR_HAVE_MYSQL)
        if (k == 0) {
            d->position_covers = sr__my_position_covers;
            d->position_merge = sr__my_position_merge;
        }
#endif
#if defined(SR_HAVE_POSTGRES)
        if (k == 1) {
            d->position_covers = sr__pg_position_covers;
            d->position_merge = sr__pg_position_merge;
        }
#endif
        if (sr_driver_register(d) != SR_OK)
            abort();
        sr_config *c = sr_config_new();
        sr_config_set_log_fn(c, on_log, NULL);
        char uri[64];
        snprintf(uri, sizeof uri, "%s://fuzz/db", d->name);
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (sr_config_add_shard(c, names[i]) != SR_OK ||
                sr_config_add_node(c, names[i], SR_PRIMARY, uri, 1) != SR_OK)
                abort();
        if (sr_router_open(c, &routers[k]) != SR_OK)
            abort();
        sr_config_free(c);
        /* The prefix of this router's tokens, from a token it emits. */
        sr_session *s;
        if (sr_session_new(routers[k], &s) != SR_OK ||
            sr_exec_shard(s, 0, SR_WRITE, "x", 0, NULL, NULL) != SR_OK)
            abort();
        const char *t = sr_session_token(s);
        if (!t || strlen(t) < 22)
            abort();
        memcpy(prefixes[k], t, 22);
        sr_session_free(s);
    }
}

/* Encodes what was parsed; its length (0: no entry). */
static size_t encode(sr_router *r, uint64_t id, const sr_token_parsed *t, char *buf, size_t cap)
{
    int n = sr_router_nshards(r);
    const char *names[8], *pos[8];
    for (int i = 0; i < n; i++) {
        names[i] = sr_router_shard_name(r, i);
        pos[i] = t->pos_of[i] >= 0 ? t->text + t->pos_of[i] : NULL;
    }
    return sr__token_encode(id, names, pos, n, buf, cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!routers[0])
        open_routers();
    if (size == 0)
        return 0;
    int k = data[0] & 1;
    int prefixed = (data[0] & 2) != 0;
    sr_router *r = routers[k];
    size_t n = size - 1, off = prefixed ? 22 : 0;
    char *token = malloc(off + n + 1);
    if (!token)
        return 0;
    memcpy(token, prefixes[k], off);
    memcpy(token + off, data + 1, n);
    token[off + n] = '\0';

    log_bad = 0;
    sr_token_parsed t;
    char why[SR_ERRMSG_LEN];
    int rc = sr__token_parse(atomic_load(&r->current), token, &t, why, sizeof why);
    if (rc != SR_OK && has_control(why))
        abort();

    sr_session *s;
    if (sr_session_new(r, &s) != SR_OK)
        abort();
    int rc2 = sr_session_set_token(s, token);
    if (rc2 != rc || has_control(sr_session_errmsg(s)) || log_bad)
        abort();
    if (rc != SR_OK) {
        const char *after = sr_session_token(s);
        if (!after || *after) /* a refused token changes nothing */
            abort();
        sr_session_free(s);
        free(token);
        return 0;
    }

    /* Parse -> encode -> parse -> encode: the same positions, the same text. */
    uint64_t id = strtoull(prefixes[k] + 6, NULL, 16);
    size_t cap = 3 * strlen(token) + 64;
    char *e1 = malloc(cap), *e2 = malloc(cap);
    if (!e1 || !e2)
        abort();
    size_t l1 = t.pos_of ? encode(r, id, &t, e1, cap) : 0; /* "" parses to nothing */
    if (l1 == 0 && t.entries > 0)
        abort();
    if (l1 > 0) {
        sr_token_parsed u;
        if (sr__token_parse(atomic_load(&r->current), e1, &u, why, sizeof why) != SR_OK || u.entries != t.entries)
            abort();
        for (int i = 0; i < sr_router_nshards(r); i++) {
            if ((t.pos_of[i] >= 0) != (u.pos_of[i] >= 0))
                abort();
            if (t.pos_of[i] >= 0 && strcmp(t.text + t.pos_of[i], u.text + u.pos_of[i]) != 0)
                abort();
        }
        size_t l2 = encode(r, id, &u, e2, cap);
        if (l2 != l1 || memcmp(e1, e2, l1) != 0)
            abort();
        sr__token_parsed_free(&u);
    }
    sr__token_parsed_free(&t);

    /* What the session emits now is taken by another session, which emits it unchanged. */
    const char *emitted = sr_session_token(s);
    if (!emitted)
        abort();
    sr_session *s2;
    if (sr_session_new(r, &s2) != SR_OK)
        abort();
    if (sr_session_set_token(s2, emitted) != SR_OK)
        abort();
    const char *again = sr_session_token(s2);
    if (!again || strcmp(again, emitted) != 0)
        abort();
    sr_session_free(s2);
    sr_session_free(s);
    free(e1);
    free(e2);
    free(token);
    return 0;
}
