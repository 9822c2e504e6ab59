/*
 * libFuzzer target for node URIs (lib/uri.c): sr__uri_parse, sr__uri_redact
 * and sr__uri_resolve_password, with a marked secret.
 *
 * Input: byte 0 holds flags (bit 0: splice the secret percent-encoded,
 * bit 1: prefix "postgresql://u:" + marker + "@", bit 2: append
 * "?password=" + marker), byte 1 the secret's length (3..34), then the
 * secret, then a template. Secret bytes are forced to 0x80..0xff and
 * template bytes to 0x01..0x7f, so no byte of the template or of any
 * message text can be mistaken for the secret. Each 0x01 in the template
 * is a marker and becomes the secret.
 *
 * Properties (checked on every input):
 *  - A text that fails to parse is shown by its scheme only: the message
 *    quotes "***", or SCHEME with "//" or ":" and "***", SCHEME being the text's
 *    own first bytes, and holds no byte >= 0x80 and no two percent-encoded
 *    secret bytes; sr__uri_redact shows the same (or the text unchanged
 *    when it has no ':', '@' or '=', which cannot hold a URI password).
 *  - A URI that parses: no 3-byte window of secret bytes from its password
 *    or from a password-like parameter's value appears in the redacted form
 *    unless the same window is part of a field that is shown by design
 *    (user, host, database, path, a parameter name or harmless value): the
 *    template may well put the secret there, and it is then not a secret.
 *  - Round trip: sr__uri_redact(text) is the parser's redacted form, which
 *    itself parses to the same parts and redacts to itself.
 *  - password_env=SRFUZZ_PW resolves to the variable's value, drops the
 *    parameter and keeps the redacted form.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ENV_NAME "SRFUZZ_PW"
#define ENV_VALUE "env\xe2\x82\xacvalue"

static void check(bool ok, const char *what, const char *text, const char *out)
{
    if (ok)
        return;
    fprintf(stderr, "property failed: %s\n  text: ", what);
    for (const char *p = text; *p; p++)
        fprintf(stderr, (unsigned char)*p >= 0x80 || *p < 0x20 ? "\\x%02x" : "%c", (unsigned char)*p);
    fprintf(stderr, "\n  out:  ");
    for (const char *p = out ? out : ""; *p; p++)
        fprintf(stderr, (unsigned char)*p >= 0x80 || *p < 0x20 ? "\\x%02x" : "%c", (unsigned char)*p);
    fprintf(stderr, "\n");
    abort();
}

static bool has_high(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

/* The harness's own idea of a password-like key (decoded): as loose as the library's. */
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

/* Whether the 3 bytes at w occur in s. */
static bool has3(const char *s, const char *w)
{
    for (; s && s[0] && s[1] && s[2]; s++)
        if (s[0] == w[0] && s[1] == w[1] && s[2] == w[2])
            return true;
    return false;
}

static bool in_field(const char *f, const char *w) { return has3(f, w); }

/* Whether window w (3 bytes) is part of a field that messages show by design. */
static bool shown_field(const sr_uri *u, const char *w)
{
    if (in_field(u->scheme, w) || in_field(u->user, w) || in_field(u->host, w) || in_field(u->database, w) ||
        in_field(u->path, w))
        return true;
    for (int i = 0; i < u->nparams; i++) {
        if (in_field(u->params[i].key, w))
            return true;
        if (!secret_key(u->params[i].key) && in_field(u->params[i].value, w))
            return true;
    }
    return false;
}

/* No 3-window of secret bytes of `secret` may appear in out unless a shown field has it too. */
static void check_hidden(const sr_uri *u, const char *secret, const char *text, const char *out)
{
    size_t n = strlen(secret);
    for (size_t i = 0; i + 3 <= n; i++) {
        const char *w = secret + i;
        if ((unsigned char)w[0] < 0x80 || (unsigned char)w[1] < 0x80 || (unsigned char)w[2] < 0x80)
            continue;
        if (has3(out, w) && !shown_field(u, w))
            check(false, "a parsed password shows in the redacted form", text, out);
    }
}

static bool same(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

/* The quoted part of "invalid URI '...'" must be "***" or the text's scheme with "//" or ":" then "***". */
static void check_unparsed_form(const char *text, const char *shown, size_t len, const char *out)
{
    check(len >= 3 && memcmp(shown + len - 3, "***", 3) == 0, "unparsed form does not end in ***", text, out);
    size_t pre = len - 3;
    check(pre <= 32 + 3 && strncmp(shown, text, pre) == 0, "unparsed form is not a prefix of the text", text,
          out);
    if (pre > 0) {
        const char *colon = memchr(shown, ':', pre);
        check(colon != NULL, "unparsed form has no scheme", text, out);
        for (const char *p = shown; p < colon; p++)
            check(isalnum((unsigned char)*p) || strchr("+.-", *p), "unparsed form shows more than a scheme", text,
                  out);
        size_t after = pre - (size_t)(colon + 1 - shown);
        check(after == 0 || (after == 2 && colon[1] == '/' && colon[2] == '/'),
              "unparsed form shows more than scheme://", text, out);
    }
}

static void percent_encode(const unsigned char *s, size_t n, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        *out++ = '%';
        *out++ = hex[s[i] >> 4];
        *out++ = hex[s[i] & 15];
    }
    *out = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool env_set;
    if (!env_set) {
        setenv(ENV_NAME, ENV_VALUE, 1);
        env_set = true;
    }
    if (size < 2 || size > 4096)
        return 0;
    unsigned flags = data[0];
    size_t slen = 3 + data[1] % 32;
    if (size < 2 + slen)
        return 0;
    unsigned char secret[40];
    for (size_t i = 0; i < slen; i++)
        secret[i] = (unsigned char)(data[2 + i] | 0x80);
    secret[slen] = '\0';
    char encoded[40 * 3 + 1];
    percent_encode(secret, slen, encoded);
    const char *splice = (flags & 1) ? encoded : (const char *)secret;
    size_t splen = strlen(splice);

    const uint8_t *tpl = data + 2 + slen;
    size_t tn = size - 2 - slen;
    static const char prefix[] = "postgresql://u:\x01@";
    static const char suffix[] = "?password=\x01";
    /* Worst case: every template byte a marker, plus prefix and suffix markers. */
    size_t cap = (tn + 2) * splen + tn + sizeof prefix + sizeof suffix + 1;
    char *text = malloc(cap);
    char *full = malloc(tn + sizeof prefix + sizeof suffix + 1);
    if (!text || !full) {
        free(text);
        free(full);
        return 0;
    }
    size_t fl = 0;
    if (flags & 2) {
        memcpy(full, prefix, sizeof prefix - 1);
        fl = sizeof prefix - 1;
    }
    for (size_t i = 0; i < tn; i++)
        full[fl++] = (char)(tpl[i] & 0x7f ? tpl[i] & 0x7f : 'a');
    if (flags & 4) {
        memcpy(full + fl, suffix, sizeof suffix - 1);
        fl += sizeof suffix - 1;
    }
    full[fl] = '\0';
    size_t len = 0;
    for (size_t i = 0; i < fl; i++) {
        if (full[i] == '\x01') {
            memcpy(text + len, splice, splen);
            len += splen;
        } else {
            text[len++] = full[i];
        }
    }
    text[len] = '\0';
    free(full);

    char err[1024] = "";
    char red[8192];
    sr_uri *u = NULL;
    int rc = sr__uri_parse(text, &u, err, sizeof err);
    sr__uri_redact(text, red, sizeof red);
    if (rc != SR_OK) {
        check(u == NULL, "failed parse wrote *out", text, err);
        check(!has_high(err), "a failed parse's message shows secret bytes", text, err);
        for (size_t i = 0; i + 6 <= strlen(encoded); i += 3) {
            char w[7];
            memcpy(w, encoded + i, 6);
            w[6] = '\0';
            check(strstr(err, w) == NULL, "a failed parse's message shows the encoded secret", text, err);
        }
        const char *q = strstr(err, "invalid URI '");
        check(q == err, "message does not start with invalid URI", text, err);
        const char *open = err + strlen("invalid URI '");
        const char *close = strchr(open, '\'');
        check(close != NULL, "unterminated quote", text, err);
        check_unparsed_form(text, open, (size_t)(close - open), err);
        if (strpbrk(text, ":@=")) {
            check(!has_high(red), "sr__uri_redact shows secret bytes of unparsable text", text, red);
            check_unparsed_form(text, red, strlen(red), red);
        } else {
            check(strncmp(red, text, sizeof red - 1) == 0, "text without :@= not shown as is", text, red);
        }
        free(text);
        return 0;
    }

    /* Parsed. */
    if (u->password)
        check_hidden(u, u->password, text, u->redacted);
    for (int i = 0; i < u->nparams; i++)
        if (secret_key(u->params[i].key))
            check_hidden(u, u->params[i].value, text, u->redacted);
    if (strlen(u->redacted) < sizeof red - 1)
        check(strcmp(red, u->redacted) == 0, "sr__uri_redact differs from the parser's redacted form", text, red);

    /* The redacted form is a URI with the same parts, and its own redaction. */
    sr_uri *v = NULL;
    char err2[1024];
    if (sr__uri_parse(u->redacted, &v, err2, sizeof err2) != SR_OK)
        check(false, "the redacted form does not parse", text, err2);
    check(same(u->scheme, v->scheme) && same(u->user, v->user) && same(u->host, v->host) &&
              u->port == v->port && same(u->database, v->database) && same(u->path, v->path) &&
              u->nparams == v->nparams && (u->password == NULL) == (v->password == NULL),
          "the redacted form parses to other parts", text, u->redacted);
    check(strcmp(v->redacted, u->redacted) == 0, "redaction is not idempotent", text, v->redacted);
    sr__uri_free(v);

    /* A password source: only the environment one (no files from a fuzzer). */
    sr_uri *res = NULL;
    bool env_source = false, file_source = false;
    for (int i = 0; i < u->nparams; i++) {
        env_source |= strcmp(u->params[i].key, "password_env") == 0 && strcmp(u->params[i].value, ENV_NAME) == 0;
        file_source |= strcmp(u->params[i].key, "password_file") == 0;
    }
    if (env_source && !file_source) {
        char rerr[512];
        int r = sr__uri_resolve_password(u, &res, rerr, sizeof rerr);
        check(r == SR_OK && res, "password_env did not resolve", text, rerr);
        check(strcmp(res->password, ENV_VALUE) == 0, "resolved password differs", text, res->redacted);
        check(res->nparams == u->nparams - 1, "the source parameter was not dropped", text, res->redacted);
        check(strcmp(res->redacted, u->redacted) == 0, "resolving changed the redacted form", text,
              res->redacted);
        check(strstr(res->redacted, ENV_VALUE) == NULL, "the resolved password shows", text, res->redacted);
        sr__uri_free(res);
    }
    sr__uri_free(u);
    free(text);
    return 0;
}
