/*
 * libFuzzer target for the trace context's comment (lib/trace.c):
 * sr__trace_build on arbitrary traceparents and tags.
 *
 * Input: byte 0 holds flags (bit 0: use a fixed valid traceparent instead
 * of the first field, so that the tags are reached on most inputs; bit 1:
 * pass NULL for tags), then NUL-separated fields: the traceparent (unless
 * bit 0), then keys and values in turn; ntags is the number of whole pairs
 * (up to 20, past the limit of 16 on purpose). Each field is copied to an
 * exactly sized buffer, so ASan catches any read past its end.
 *
 * Properties (checked on every input):
 *  - Accepted exactly when an independent reading of the rules accepts:
 *    the W3C version-00 shape (lowercase hex, ids not all zero, nothing
 *    after the flags), at most 16 tags, keys of 1..64 of [A-Za-z0-9_.-],
 *    unique, not "traceparent", values of at most 256 bytes.
 *  - A refusal names a part that is wrong and gives a reason.
 *  - An accepted comment is "\n/\*" entries "*\/": its length is strlen (no
 *    NUL), only printable ASCII after the newline, no "*\/" but its own end
 *    and no "/\*" but its own start, every quote one of the two around a
 *    value; its entries are the tags plus traceparent, keys strictly
 *    ascending, and every value percent-decodes to the input's value.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define VALID_TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define MAX_FIELDS (1 + 2 * 20)

static void check(bool ok, const char *what, const char *out)
{
    if (ok)
        return;
    fprintf(stderr, "property failed: %s\n  out: ", what);
    for (const char *p = out ? out : ""; *p; p++)
        fprintf(stderr, (unsigned char)*p >= 0x80 || *p < 0x20 ? "\\x%02x" : "%c",
                (unsigned char)*p);
    fprintf(stderr, "\n");
    abort();
}

/* ---- the rules, read independently ---- */

static bool ref_traceparent_ok(const char *tp)
{
    if (strlen(tp) != 55 || tp[0] != '0' || tp[1] != '0')
        return false;
    bool nonzero_trace = false, nonzero_parent = false;
    for (int i = 0; i < 55; i++) {
        char c = tp[i];
        if (i == 2 || i == 35 || i == 52) {
            if (c != '-')
                return false;
            continue;
        }
        if (!strchr("0123456789abcdef", c) || !c)
            return false;
        if (c != '0' && i > 2 && i < 35)
            nonzero_trace = true;
        if (c != '0' && i > 35 && i < 52)
            nonzero_parent = true;
    }
    return nonzero_trace && nonzero_parent;
}

static bool ref_key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n < 1 || n > 64 || strcmp(k, "traceparent") == 0)
        return false;
    return strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

static bool ref_tags_ok(int ntags, const char *const *tags)
{
    if (ntags > 16 || (ntags > 0 && !tags))
        return false;
    for (int i = 0; i < ntags; i++) {
        if (!ref_key_ok(tags[2 * i]) || strlen(tags[2 * i + 1]) > 256)
            return false;
        for (int j = 0; j < i; j++)
            if (strcmp(tags[2 * i], tags[2 * j]) == 0)
                return false;
    }
    return true;
}

/* ---- the comment, parsed back ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The input value of `key` (the traceparent or a tag's), or NULL. */
static const char *value_of(const char *key, size_t klen, const char *tp, int ntags,
                            const char *const *tags)
{
    if (klen == 11 && memcmp(key, "traceparent", 11) == 0)
        return tp;
    for (int i = 0; i < ntags; i++)
        if (strlen(tags[2 * i]) == klen && memcmp(tags[2 * i], key, klen) == 0)
            return tags[2 * i + 1];
    return NULL;
}

static void check_comment(const char *out, size_t len, const char *tp, int ntags,
                          const char *const *tags)
{
    check(len == strlen(out), "length is strlen (no NUL inside)", out);
    check(len >= 5 && memcmp(out, "\n/*", 3) == 0 && memcmp(out + len - 2, "*/", 2) == 0,
          "\\n/* ... */", out);
    check(strstr(out, "*/") == out + len - 2, "no */ but its own end", out);
    check(strstr(out + 3, "/*") == NULL, "no /* but its own start", out);
    for (size_t i = 1; i < len; i++)
        check(out[i] >= 0x21 && out[i] <= 0x7e, "printable ASCII only", out);
    const char *p = out + 3, *end = out + len - 2;
    const char *prev = NULL;
    size_t prevlen = 0;
    int entries = 0;
    while (p < end) {
        if (entries > 0) {
            check(*p == ',', "entries separated by ','", out);
            p++;
        }
        const char *key = p;
        while (p < end && *p != '=')
            p++;
        size_t klen = (size_t)(p - key);
        check(p + 1 < end && p[1] == '\'', "key='", out);
        p += 2;
        const char *want = value_of(key, klen, tp, ntags, tags);
        check(want != NULL, "every key is an input key", out);
        if (prev) {
            size_t m = prevlen < klen ? prevlen : klen;
            int c = memcmp(prev, key, m);
            check(c < 0 || (c == 0 && prevlen < klen), "keys strictly ascending", out);
        }
        prev = key;
        prevlen = klen;
        /* The value decodes to the input's, and holds no quote. */
        size_t w = 0;
        while (p < end && *p != '\'') {
            unsigned char c = (unsigned char)*p;
            if (c == '%') {
                check(p + 2 < end && hexval(p[1]) >= 0 && hexval(p[2]) >= 0, "%XX", out);
                c = (unsigned char)(hexval(p[1]) * 16 + hexval(p[2]));
                p += 3;
            } else {
                check(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~-",
                             c) != NULL,
                      "unencoded bytes are unreserved", out);
                p++;
            }
            check(want[w] != '\0' && (unsigned char)want[w] == c, "value decodes to the input",
                  out);
            w++;
        }
        check(want[w] == '\0', "the whole value is written", out);
        check(p < end && *p == '\'', "closing quote", out);
        p++;
        entries++;
    }
    check(entries == ntags + 1, "one entry per tag plus the traceparent", out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned flags = data[0];
    data++;
    size--;
    char *fields[MAX_FIELDS];
    int nfields = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && nfields < MAX_FIELDS; i++) {
        if (i == size || data[i] == 0) {
            size_t n = i - start;
            fields[nfields] = malloc(n + 1);
            if (!fields[nfields])
                abort();
            memcpy(fields[nfields], data + start, n);
            fields[nfields][n] = '\0';
            nfields++;
            start = i + 1;
        }
    }
    const char *tp;
    int first_tag;
    if (flags & 1) {
        tp = VALID_TP;
        first_tag = 0;
    } else {
        tp = nfields > 0 ? fields[0] : "";
        first_tag = 1;
    }
    int ntags = nfields > first_tag ? (nfields - first_tag) / 2 : 0;
    const char *const *tags = (flags & 2) ? NULL : (const char *const *)(fields + first_tag);

    /* sr_session_set_trace clears on "" before calling in: not this function's input. */
    if (*tp) {
        char *out = NULL;
        size_t len = 0;
        int bad = 42;
        const char *why = NULL;
        int rc = sr__trace_build(tp, ntags, tags, &out, &len, &bad, &why);
        bool ref = ref_traceparent_ok(tp) && ref_tags_ok(ntags, tags);
        check(rc == SR_OK || rc == SR_EINVAL || rc == SR_ENOMEM, "status", NULL);
        if (rc == SR_OK) {
            check(ref, "accepted only what the rules accept", out);
            check_comment(out, len, tp, ntags, tags);
            free(out);
        } else if (rc == SR_EINVAL) {
            check(!ref, "refused only what the rules refuse", why);
            check(why && *why, "a reason", NULL);
            check(bad == SR_TRACE_BAD_TRACEPARENT ? !ref_traceparent_ok(tp)
                  : bad == SR_TRACE_BAD_TAGS      ? ntags > 16 || !tags
                                                  : bad >= 0 && bad < ntags,
                  "the part named is a bad one", why);
            check(out == NULL && len == 0, "nothing written on refusal", NULL);
        }
    }
    for (int i = 0; i < nfields; i++)
        free(fields[i]);
    return 0;
}
