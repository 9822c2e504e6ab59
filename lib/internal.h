/*
 * Internal declarations shared across lib/ files (prefix sr__). Not installed.
 */
#ifndef SR_INTERNAL_H
#define SR_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardroute.h"
#include "shardroute/driver.h"

#define SR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Length of the message buffers of configs and sessions. */
#define SR_ERRMSG_LEN 1024

/* snprintf into a fixed buffer that never fails and always terminates. */
void sr__fmt(char *buf, size_t len, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void sr__vfmt(char *buf, size_t len, const char *fmt, va_list ap);

/* Value of a hexadecimal digit, -1 for anything else. */
int sr__hexval(int c);


/* Deadline helpers: a deadline is an absolute sr_clock_ns() time. */
static inline int64_t sr__deadline_after_ms(int ms) { return sr_clock_ns() + (int64_t)ms * 1000000; }

/*
 * Resets a driver error without zeroing its 512-byte message: on the hot path
 * an error struct is prepared for every statement and almost never used.
 */
static inline void sr__driver_error_clear(sr_driver_error *e)
{
    e->status = SR_OK;
    e->transient = 0;
    e->native_code = 0;
    e->sqlstate[0] = '\0';
    e->message[0] = '\0';
}

/* Whether a driver was built against the ABI that has the position methods. */
static inline bool sr__driver_has_positions(const sr_driver *d)
{
    return d->abi_version >= 2 && d->replay_position && d->position_covers && d->position_merge;
}

/* 64-bit hash of a key (XXH3-64 of the 8-byte little-endian integer, or of the bytes). */
uint64_t sr__hash_key(sr_key key);

/* true when the key is well-formed (inline: every statement checks its key). */
static inline bool sr__key_valid(sr_key key)
{
    if (key.kind == SR_KEY_INT)
        return true;
    return key.kind == SR_KEY_BYTES && (key.ptr != NULL || key.len == 0);
}

#endif
