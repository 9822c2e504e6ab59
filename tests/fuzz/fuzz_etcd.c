/*
 * libFuzzer target for what shardroute reads from outside through etcd
 * (lib/etcd_proto.c): the gateway's range answers, the topology.etcd URL,
 * and base64. The first byte picks which; the rest is the input.
 *
 * Properties, for every input:
 *  - a range answer that parses and has the key gives a value with no NUL
 *    byte whose length is value_len (it is handed to the configuration
 *    parser as a C string);
 *  - a URL that parses names a key that starts with '/', a port in 1..65535,
 *    and a request URL with no credentials;
 *  - base64 that decodes encodes back to itself (one encoding per value).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_proto.h"
#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    char err[256];
    switch (data[0] % 3) {
    case 0: {
        sr_etcd_value v;
        if (sr__etcd_parse_range(rest, n, &v, err, sizeof err) == SR_OK && v.found) {
            if (!v.value || strlen(v.value) != v.value_len)
                abort();
            free(v.value);
        }
        break;
    }
    case 1: {
        char *text = malloc(n + 1);
        if (!text)
            return 0;
        memcpy(text, rest, n);
        text[n] = '\0';
        sr_etcd_url u;
        if (sr__etcd_url_parse(text, &u, err, sizeof err) == SR_OK) {
            if (u.key[0] != '/' || u.port < 1 || u.port > 65535 || strchr(u.range_url, '@') ||
                strncmp(u.range_url, "http://", 7) != 0)
                abort();
            char *body = sr__etcd_range_body(u.key);
            free(body);
        }
        free(text);
        break;
    }
    default: {
        size_t len = 0;
        unsigned char *raw = sr__base64_decode(rest, n, &len);
        if (raw) {
            char *again = sr__base64_encode(raw, len);
            if (!again || strlen(again) != n || memcmp(again, rest, n) != 0)
                abort();
            free(again);
            free(raw);
        }
        break;
    }
    }
    return 0;
}
