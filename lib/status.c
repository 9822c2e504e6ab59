/*
 * Status codes: static text for each (like sqlite3_errstr / uv_strerror).
 */
#include "internal.h"

SR_API const char *sr_version(void) { return SR_VERSION_STRING; }

SR_API const char *sr_strerror(int status)
{
    switch (status) {
    case SR_OK: return "ok";
    case SR_EINVAL: return "invalid argument";
    case SR_ENOMEM: return "out of memory";
    case SR_ENOSHARD: return "no shard for that key or index";
    case SR_EUNAVAILABLE: return "no eligible node";
    case SR_ETIMEOUT: return "timed out";
    case SR_ECONNECT: return "connection failed";
    case SR_EQUERY: return "statement failed";
    case SR_ESTALE: return "no node fresh enough";
    case SR_EDRIVER: return "driver not available";
    case SR_ETXN: return "transaction misuse";
    case SR_EBUSY: return "connection pool exhausted";
    case SR_EPARTIAL: return "statement failed on some shards";
    case SR_EMISUSE: return "session used by two threads at once";
    default: return "unknown status";
    }
}
