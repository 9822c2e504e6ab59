/*
 * The etcd v3 JSON gateway's range call, for one key: the URL of the
 * option, the request body, the answer. etcd's gateway is grpc-gateway:
 * 64-bit numbers come as JSON strings, keys and values as base64, and an
 * absent field means its zero value (a missing "kvs" is a missing key).
 */
#include "etcd_proto.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int sr__etcd_url_parse(const char *text, sr_etcd_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!text || strncmp(text, "http://", 7) != 0) {
        sr__fmt(err, errlen, "topology.etcd: not an http:// URL (http://HOST:PORT/KEY; https is "
                             "not supported)");
        return SR_EINVAL;
    }
    for (const char *p = text; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '?' || *p == '#') {
            sr__fmt(err, errlen, "topology.etcd: spaces, control characters, queries and "
                                 "fragments are not allowed");
            return SR_EINVAL;
        }
    const char *host = text + 7, *slash = strchr(host, '/');
    if (!slash) {
        sr__fmt(err, errlen, "topology.etcd: no key (http://HOST:PORT/KEY)");
        return SR_EINVAL;
    }
    size_t authority = (size_t)(slash - host);
    if (memchr(host, '@', authority)) {
        sr__fmt(err, errlen, "topology.etcd: credentials in the URL are not supported");
        return SR_EINVAL;
    }
    const char *port = NULL, *host_end = slash;
    if (host[0] == '[') { /* an IPv6 literal */
        const char *close = memchr(host, ']', authority);
        if (!close || close == host + 1) {
            sr__fmt(err, errlen, "topology.etcd: a bad IPv6 literal");
            return SR_EINVAL;
        }
        if (close + 1 < slash && close[1] != ':') {
            sr__fmt(err, errlen, "topology.etcd: a bad host");
            return SR_EINVAL;
        }
        port = close + 1 < slash ? close + 2 : NULL;
        host++;
        host_end = close;
    } else {
        const char *colon = memchr(host, ':', authority);
        if (colon) {
            port = colon + 1;
            host_end = colon;
        }
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= sizeof out->host) {
        sr__fmt(err, errlen, "topology.etcd: no host, or one too long");
        return SR_EINVAL;
    }
    memcpy(out->host, host, hlen);
    out->port = 2379;
    if (port) {
        long v = 0;
        const char *p = port;
        for (; p < slash && *p >= '0' && *p <= '9' && v <= 65535; p++)
            v = v * 10 + (*p - '0');
        if (p != slash || p == port || v < 1 || v > 65535) {
            sr__fmt(err, errlen, "topology.etcd: a bad port");
            return SR_EINVAL;
        }
        out->port = (int)v;
    }
    if (!slash[1] || strlen(slash) >= sizeof out->key) {
        sr__fmt(err, errlen, "topology.etcd: the key is empty or longer than %d bytes",
                SR_ETCD_KEY_MAX - 1);
        return SR_EINVAL;
    }
    memcpy(out->key, slash, strlen(slash) + 1);
    bool v6 = strchr(out->host, ':') != NULL;
    sr__fmt(out->range_url, sizeof out->range_url, "http://%s%s%s:%d/v3/kv/range", v6 ? "[" : "",
            out->host, v6 ? "]" : "", out->port);
    return SR_OK;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *sr__base64_encode(const unsigned char *d, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < len ? (uint32_t)d[i + 1] << 8 : 0) |
                     (i + 2 < len ? d[i + 2] : 0);
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = i + 1 < len ? b64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? b64[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

static int b64_value(char c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

unsigned char *sr__base64_decode(const char *t, size_t len, size_t *out_len)
{
    if (len % 4 != 0)
        return NULL;
    unsigned char *out = malloc(len / 4 * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int pad = (t[i + 2] == '=') + (t[i + 3] == '=');
        bool last = i + 4 == len;
        int a = b64_value(t[i]), b = b64_value(t[i + 1]);
        int c = t[i + 2] == '=' ? 0 : b64_value(t[i + 2]);
        int d = t[i + 3] == '=' ? 0 : b64_value(t[i + 3]);
        /* Strict: padding only at the end, and the bits it leaves over are zero, so that
         * one value has one encoding. */
        if (a < 0 || b < 0 || c < 0 || d < 0 || (pad && !last) ||
            (t[i + 2] == '=' && t[i + 3] != '=') || (pad == 2 && (b & 15)) ||
            (pad == 1 && (c & 3))) {
            free(out);
            return NULL;
        }
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        out[o++] = (unsigned char)(v >> 16);
        if (pad < 2)
            out[o++] = (unsigned char)(v >> 8);
        if (pad < 1)
            out[o++] = (unsigned char)v;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

char *sr__etcd_range_body(const char *key)
{
    char *k = sr__base64_encode((const unsigned char *)key, strlen(key));
    if (!k)
        return NULL;
    size_t n = strlen(k) + 16;
    char *body = malloc(n);
    if (body)
        sr__fmt(body, n, "{\"key\":\"%s\"}", k);
    free(k);
    return body;
}

/* A grpc-gateway int64: a JSON string of digits (or a number); 0 when absent. */
static bool int64_field(json_object *o, const char *name, int64_t *out)
{
    json_object *v;
    *out = 0;
    if (!json_object_object_get_ex(o, name, &v))
        return true;
    if (json_object_is_type(v, json_type_int)) {
        *out = json_object_get_int64(v);
        return *out >= 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return false;
    const char *s = json_object_get_string(v);
    int64_t n = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || n > (INT64_MAX - 9) / 10)
            return false;
        n = n * 10 + (*s - '0');
    }
    *out = n;
    return true;
}

int sr__etcd_parse_range(const char *json, size_t len, sr_etcd_value *out, char *err,
                         size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (len > INT32_MAX) {
        sr__fmt(err, errlen, "etcd: an answer of %zu bytes", len);
        return SR_EQUERY;
    }
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return SR_ENOMEM;
    json_object *root = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    json_tokener_free(tok);
    int rc = SR_EQUERY;
    json_object *v, *kvs, *kv, *header;
    if (!root || jerr != json_tokener_success || !json_object_is_type(root, json_type_object)) {
        sr__fmt(err, errlen, "etcd: the answer is not a JSON object");
        goto out;
    }
    if (json_object_object_get_ex(root, "error", &v) ||
        json_object_object_get_ex(root, "message", &v)) {
        sr__fmt(err, errlen, "etcd: %.200s",
                json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                          : "an error answer");
        goto out;
    }
    if (!json_object_object_get_ex(root, "header", &header) ||
        !json_object_is_type(header, json_type_object) ||
        !int64_field(header, "revision", &out->revision)) {
        sr__fmt(err, errlen, "etcd: the answer has no header revision");
        goto out;
    }
    if (!json_object_object_get_ex(root, "kvs", &kvs)) {
        rc = SR_OK; /* no such key */
        goto out;
    }
    if (!json_object_is_type(kvs, json_type_array) || json_object_array_length(kvs) != 1 ||
        !json_object_is_type(kv = json_object_array_get_idx(kvs, 0), json_type_object) ||
        !int64_field(kv, "mod_revision", &out->mod_revision)) {
        sr__fmt(err, errlen, "etcd: the answer's kvs is not one key-value");
        goto out;
    }
    const char *text = "";
    if (json_object_object_get_ex(kv, "value", &v)) { /* absent: an empty value */
        if (!json_object_is_type(v, json_type_string)) {
            sr__fmt(err, errlen, "etcd: the value is not a string");
            goto out;
        }
        text = json_object_get_string(v);
    }
    size_t n = 0;
    unsigned char *value = sr__base64_decode(text, strlen(text), &n);
    if (!value) {
        sr__fmt(err, errlen, "etcd: the value is not base64");
        goto out;
    }
    if (memchr(value, '\0', n)) {
        free(value);
        sr__fmt(err, errlen, "etcd: the value holds a NUL byte: not a configuration text");
        goto out;
    }
    out->found = 1;
    out->value = (char *)value;
    out->value_len = n;
    rc = SR_OK;
out:
    json_object_put(root);
    return rc;
}
