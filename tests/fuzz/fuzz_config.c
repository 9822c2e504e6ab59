/*
 * libFuzzer target for the configuration file syntax and router open:
 * sr_config_parse, then sr_router_open and sr_router_close (plus one
 * statement when shard 0's primary is sqlite::memory:), with a marked
 * secret.
 *
 * Input: byte 0 is the secret's length (3..34), then the secret, then the
 * configuration text. Secret bytes are forced to 0x80..0xff, text bytes to
 * 0x01..0x7f; each 0x01 in the text becomes the secret. Opening connects to
 * nothing (pools are lazy) and only a sqlite::memory: node ever runs a
 * statement, so no input creates a file. Inputs that declare more than 256
 * shards are parsed but not opened (opening 64k shards is the benchmark's
 * job, and too slow for a fuzzer).
 *
 * Property: no message (sr_config_errmsg after parse or open, the session's
 * message, log lines) holds a 3-byte window of secret bytes unless that
 * window can be shown by design: it is part of a declared shard name, of a
 * token of the text that holds no ':', '@' or '=' (so no URI password), or
 * of a non-secret field (user, host, database, path, parameter name or
 * harmless value) of a token that parses as a URI. Tokens are taken
 * generously (each line's key, value, the value's first word, a section's
 * inner text and name), which can only hide a leak, never invent one.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct allowed {
    char **s;
    size_t n, cap;
} allowed;

static void allow(allowed *a, const char *p, size_t n)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        char **s = realloc(a->s, cap * sizeof *s);
        if (!s)
            abort();
        a->s = s;
        a->cap = cap;
    }
    char *d = malloc(n + 1);
    if (!d)
        abort();
    memcpy(d, p, n);
    d[n] = '\0';
    a->s[a->n++] = d;
}

static bool secret_key(const char *k)
{
    if (strcmp(k, "password_file") == 0 || strcmp(k, "password_env") == 0)
        return false;
    char low[64];
    size_t n = strlen(k);
    if (n >= sizeof low)
        return true;
    for (size_t i = 0; i <= n; i++)
        low[i] = (char)tolower((unsigned char)k[i]);
    return strstr(low, "pass") || strstr(low, "pwd") || strstr(low, "secret");
}

/* What messages may show of one token (see the top comment). */
static void allow_token(allowed *a, const char *p, size_t n)
{
    char *t = malloc(n + 1);
    if (!t)
        abort();
    memcpy(t, p, n);
    t[n] = '\0';
    sr_uri *u;
    if (sr__uri_parse(t, &u, NULL, 0) == SR_OK) {
        const char *f[] = {u->scheme, u->user, u->host, u->database, u->path};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
            if (f[i])
                allow(a, f[i], strlen(f[i]));
        for (int i = 0; i < u->nparams; i++) {
            allow(a, u->params[i].key, strlen(u->params[i].key));
            if (!secret_key(u->params[i].key))
                allow(a, u->params[i].value, strlen(u->params[i].value));
        }
        sr__uri_free(u);
    } else if (!strpbrk(t, ":@=")) {
        allow(a, t, n);
    }
    free(t);
}

static bool is_space(char c) { return isspace((unsigned char)c) != 0; }

static void trim(const char **p, size_t *n)
{
    while (*n && is_space(**p)) {
        (*p)++;
        (*n)--;
    }
    while (*n && is_space((*p)[*n - 1]))
        (*n)--;
}

/* Every token of every line, cut as the parser cuts them (comments, '=', whitespace). */
static void allow_text(allowed *a, const char *text)
{
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, "\n");
        const char *line = p;
        size_t n = len;
        for (size_t i = 0; i < len; i++)
            if (line[i] == '#' && (i == 0 || is_space(line[i - 1]))) {
                n = i;
                break;
            }
        trim(&line, &n);
        allow_token(a, line, n);
        if (n && line[0] == '[') {
            const char *in = line + 1;
            size_t inn = n - 1 - (line[n - 1] == ']');
            trim(&in, &inn);
            allow_token(a, in, inn);
            if (inn > 5) {
                const char *name = in + 5;
                size_t nn = inn - 5;
                trim(&name, &nn);
                allow_token(a, name, nn);
            }
        }
        const char *eq = memchr(line, '=', n);
        if (eq) {
            const char *k = line, *v = eq + 1;
            size_t kn = (size_t)(eq - line), vn = n - kn - 1;
            trim(&k, &kn);
            trim(&v, &vn);
            allow_token(a, k, kn);
            allow_token(a, v, vn);
            size_t w = 0;
            while (w < vn && !is_space(v[w]))
                w++;
            allow_token(a, v, w);
        }
        p += len + (p[len] == '\n');
    }
}

static bool window_allowed(const allowed *a, const char *w)
{
    for (size_t i = 0; i < a->n; i++)
        for (const char *s = a->s[i]; s[0] && s[1] && s[2]; s++)
            if (s[0] == w[0] && s[1] == w[1] && s[2] == w[2])
                return true;
    return false;
}

static void check_message(const allowed *a, const unsigned char *secret, size_t slen, const char *msg,
                          const char *text)
{
    for (const char *m = msg; m[0] && m[1] && m[2]; m++) {
        for (size_t i = 0; i + 3 <= slen; i++) {
            if (memcmp(m, secret + i, 3) != 0)
                continue;
            if (window_allowed(a, m))
                continue;
            fprintf(stderr, "property failed: a secret shows in a message\n  message: ");
            for (const char *q = msg; *q; q++)
                fprintf(stderr, (unsigned char)*q >= 0x80 || *q < 0x20 ? "\\x%02x" : "%c", (unsigned char)*q);
            fprintf(stderr, "\n  text: ");
            for (const char *q = text; *q; q++)
                fprintf(stderr, (unsigned char)*q >= 0x80 || *q < 0x20 ? "\\x%02x" : "%c", (unsigned char)*q);
            fprintf(stderr, "\n");
            abort();
        }
    }
}

typedef struct log_ctx {
    const allowed *a;
    const unsigned char *secret;
    size_t slen;
    const char *text;
} log_ctx;

static void on_log(void *ud, sr_log_level level, const char *msg)
{
    (void)level;
    const log_ctx *l = ud;
    check_message(l->a, l->secret, l->slen, msg, l->text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    size_t slen = 3 + data[0] % 32;
    if (size < 1 + slen)
        return 0;
    unsigned char secret[40];
    for (size_t i = 0; i < slen; i++)
        secret[i] = (unsigned char)(data[1 + i] | 0x80);
    const uint8_t *tpl = data + 1 + slen;
    size_t tn = size - 1 - slen;
    char *text = malloc(tn * slen + 1);
    if (!text)
        return 0;
    size_t len = 0;
    for (size_t i = 0; i < tn; i++) {
        char c = (char)(tpl[i] & 0x7f ? tpl[i] & 0x7f : '\n');
        if (c == '\x01') {
            memcpy(text + len, secret, slen);
            len += slen;
        } else {
            text[len++] = c;
        }
    }
    text[len] = '\0';

    allowed a = {0};
    allow_text(&a, text);
    log_ctx lc = {&a, secret, slen, text};

    sr_config *c = sr_config_new();
    if (!c)
        abort();
    sr_config_set_log_fn(c, on_log, &lc);
    int rc = sr_config_parse(c, text);
    for (int i = 0; i < c->nshards; i++)
        allow(&a, c->shards[i].name, strlen(c->shards[i].name));
    check_message(&a, secret, slen, sr_config_errmsg(c), text);
    if (rc != SR_OK && sr_config_errmsg(c)[0] == '\0')
        abort(); /* a failure always says why */

    if (c->nshards > 0 && c->nshards <= 256) {
        sr_router *r = NULL;
        rc = sr_router_open(c, &r);
        check_message(&a, secret, slen, sr_config_errmsg(c), text);
        if (rc == SR_OK) {
            sr_node_info info = SR_NODE_INFO_INIT;
            if (sr_router_node_info(r, 0, 0, &info) == SR_OK && strcmp(info.uri, "sqlite::memory:") == 0) {
                sr_session *s = NULL;
                if (sr_session_new(r, &s) == SR_OK) {
                    sr_exec_shard(s, 0, SR_READ, "SELECT 1", 0, NULL, NULL);
                    check_message(&a, secret, slen, sr_session_errmsg(s), text);
                    sr_session_free(s);
                }
            }
            for (int i = 0; i < sr_router_nshards(r); i++)
                for (int j = 0; j < sr_router_nnodes(r, i); j++)
                    if (sr_router_node_info(r, i, j, &info) == SR_OK)
                        check_message(&a, secret, slen, info.uri, text);
            sr_router_close(r);
        }
    }
    sr_config_free(c);
    for (size_t i = 0; i < a.n; i++)
        free(a.s[i]);
    free(a.s);
    free(text);
    return 0;
}
