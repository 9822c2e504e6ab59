/*
 * The etcd v3 JSON gateway as shardroute speaks it (etcd_proto.c): the
 * topology.etcd URL, the body of a range request for one key, and what its
 * answer says. Pure: no I/O, no router; fuzzed (tests/fuzz/fuzz_etcd.c).
 * The I/O is etcd.c's.
 */
#ifndef SR_ETCD_PROTO_H
#define SR_ETCD_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* Longest key kept (etcd allows 1.5 MiB of key and value; a topology's key is a path). */
#define SR_ETCD_KEY_MAX 512

typedef struct sr_etcd_url {
    char host[256]; /* an IPv4 or IPv6 literal or a name, without brackets */
    int port;
    char key[SR_ETCD_KEY_MAX]; /* the key, from the URL's path (with its leading '/') */
    char range_url[320];       /* http://HOST:PORT/v3/kv/range */
} sr_etcd_url;

/*
 * Parses "http://HOST[:PORT]/KEY" (port 2379 by default). Refused, with the
 * reason in err: another scheme (https is not supported: the gateway over
 * TLS needs certificates the option has no room for), credentials
 * ("user:password@": a password never goes in an option that is logged),
 * a query or fragment, an empty key, control characters, anything too long.
 */
int sr__etcd_url_parse(const char *text, sr_etcd_url *out, char *err, size_t errlen);

/* The JSON body of a range request for `key`: {"key":"BASE64"}. A new string (free()), or
 * NULL when out of memory. */
char *sr__etcd_range_body(const char *key);

/* What a range answer says of the key. */
typedef struct sr_etcd_value {
    int64_t revision;     /* the store's revision when it answered (header.revision) */
    int found;            /* the key exists */
    int64_t mod_revision; /* the key's last change (0 when not found) */
    char *value;          /* its value, decoded, NUL-terminated (free()); NULL when not found */
    size_t value_len;
} sr_etcd_value;

/*
 * Parses a range answer's JSON (`len` bytes, not necessarily NUL-terminated).
 * SR_OK; SR_EQUERY when it is not such an answer (the reason in err: not
 * JSON, an etcd error, a bad base64 value, a value with a NUL byte);
 * SR_ENOMEM. On error `out` holds nothing to free.
 */
int sr__etcd_parse_range(const char *json, size_t len, sr_etcd_value *out, char *err,
                         size_t errlen);

/* Base64 (RFC 4648, with padding), as etcd's JSON carries keys and values. A new
 * NUL-terminated string (free()), NULL when out of memory or, decoding, malformed. */
char *sr__base64_encode(const unsigned char *data, size_t len);
unsigned char *sr__base64_decode(const char *text, size_t len, size_t *out_len);

#endif
