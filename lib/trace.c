/*
 * Trace context as an sqlcommenter comment (trace.h). The text ends up in
 * SQL that servers parse, so nothing here is lenient: the traceparent has
 * exactly the W3C version-00 shape, keys are a small alphabet that needs no
 * quoting, and every value byte outside [A-Za-z0-9_.~-] is percent-encoded,
 * so no quote, backslash, '*' or '/' of a value reaches the SQL and nothing
 * can end the comment early or open a nested one (PostgreSQL nests them).
 */
#include "trace.h"

#include <stdlib.h>
#include <string.h>

static bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

static bool all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != '0')
            return false;
    return true;
}

/* NULL when `tp` is a valid version-00 traceparent, else what is wrong with it. */
static const char *traceparent_problem(const char *tp)
{
    for (size_t i = 0; i < SR_TRACEPARENT_LEN; i++) {
        if (!tp[i])
            return "is shorter than 55 characters (00-<32 hex digits>-<16 hex digits>-<2 hex "
                   "digits>)";
        if (i == 2 || i == 35 || i == 52) {
            if (tp[i] != '-')
                return "is not 00-<32 hex digits>-<16 hex digits>-<2 hex digits> (a '-' is "
                       "missing or misplaced)";
        } else if (!is_lower_hex(tp[i])) {
            return "has a character that is not a lowercase hex digit (0-9, a-f)";
        }
    }
    if (tp[SR_TRACEPARENT_LEN])
        return "has characters after its 2-digit flags (it is 55 characters long)";
    if (tp[0] == 'f' && tp[1] == 'f')
        return "has version ff, which W3C trace context forbids";
    if (tp[0] != '0' || tp[1] != '0')
        return "has a version other than 00 (the one this library writes)";
    if (all_zero(tp + 3, 32))
        return "has an all-zero trace-id";
    if (all_zero(tp + 36, 16))
        return "has an all-zero parent-id";
    return NULL;
}

static bool key_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* Bytes a value is written as they are; every other byte becomes %XX. */
static bool unreserved(unsigned char c) { return key_char(c) || c == '~'; }

/* NULL when tag i is acceptable (given the tags before it), else what is wrong with it. */
static const char *tag_problem(const char *const *tags, int i)
{
    const char *key = tags[2 * i], *value = tags[2 * i + 1];
    if (!key)
        return "has a NULL key";
    if (!value)
        return "has a NULL value (use \"\" for an empty one)";
    size_t n = 0;
    for (; key[n]; n++) {
        if (n == SR_TRACE_KEY_MAX)
            return "has a key longer than 64 characters";
        if (!key_char((unsigned char)key[n]))
            return "has a key with a character outside [A-Za-z0-9_.-]";
    }
    if (n == 0)
        return "has an empty key";
    if (strcmp(key, "traceparent") == 0)
        return "has the key \"traceparent\" (the traceparent argument sets it)";
    for (int j = 0; j < i; j++)
        if (strcmp(key, tags[2 * j]) == 0)
            return "repeats the key of an earlier tag";
    for (size_t v = 0; value[v]; v++)
        if (v == SR_TRACE_VALUE_MAX)
            return "has a value longer than 256 bytes";
    return NULL;
}

static size_t encoded_len(const char *v)
{
    size_t n = 0;
    for (; *v; v++)
        n += unreserved((unsigned char)*v) ? 1 : 3;
    return n;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static char *put_encoded(char *p, const char *v)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        if (unreserved(c)) {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    return p;
}

int sr__trace_build(const char *traceparent, int ntags, const char *const *tags, char **out,
                    size_t *len, int *bad, const char **why)
{
    const char *problem = traceparent ? traceparent_problem(traceparent) : "is NULL";
    if (problem) {
        *bad = SR_TRACE_BAD_TRACEPARENT;
        *why = problem;
        return SR_EINVAL;
    }
    if (ntags < 0 || ntags > SR_TRACE_MAX_TAGS || (ntags > 0 && !tags)) {
        *bad = SR_TRACE_BAD_TAGS;
        *why = ntags < 0 ? "ntags is negative"
               : ntags > SR_TRACE_MAX_TAGS ? "ntags is more than 16"
                                             : "tags is NULL but ntags is not 0";
        return SR_EINVAL;
    }
    for (int i = 0; i < ntags; i++) {
        if ((problem = tag_problem(tags, i))) {
            *bad = i;
            *why = problem;
            return SR_EINVAL;
        }
    }

    /* Entries in key order, traceparent among them (sqlcommenter sorts every key). */
    const char *keys[SR_TRACE_MAX_TAGS + 1], *values[SR_TRACE_MAX_TAGS + 1];
    int n = 0;
    keys[n] = "traceparent";
    values[n++] = traceparent;
    for (int i = 0; i < ntags; i++) {
        int j = n++;
        for (; j > 0 && strcmp(keys[j - 1], tags[2 * i]) > 0; j--) {
            keys[j] = keys[j - 1];
            values[j] = values[j - 1];
        }
        keys[j] = tags[2 * i];
        values[j] = tags[2 * i + 1];
    }
    size_t total = strlen("\n/**/");
    for (int i = 0; i < n; i++)
        total += (i ? 1 : 0) + strlen(keys[i]) + 3 + encoded_len(values[i]);
    char *text = malloc(total + 1);
    if (!text)
        return SR_ENOMEM;
    char *p = put(text, "\n/*", 3);
    for (int i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        p = put(p, keys[i], strlen(keys[i]));
        p = put(p, "='", 2);
        p = put_encoded(p, values[i]);
        *p++ = '\'';
    }
    p = put(p, "*/", 2);
    *p = '\0';
    *out = text;
    *len = total;
    return SR_OK;
}
