/*
 * Trace context (trace.c): a W3C traceparent and application tags checked
 * and written as an sqlcommenter comment, the text sr_session_set_trace
 * appends to each statement. A pure leaf: it knows nothing of routers or
 * sessions, and returns a reason that the session turns into its message.
 */
#ifndef SR_TRACE_H
#define SR_TRACE_H

#include "internal.h"

#define SR_TRACE_MAX_TAGS 16
#define SR_TRACE_KEY_MAX 64
#define SR_TRACE_VALUE_MAX 256
/* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define SR_TRACEPARENT_LEN 55

/* What *bad names when the input is refused (a tag is named by its index, 0 or more). */
#define SR_TRACE_BAD_TRACEPARENT (-1)
#define SR_TRACE_BAD_TAGS (-2) /* ntags or the tags array itself */

/*
 * Checks `traceparent` (not NULL, not "") and the `ntags` key/value pairs of
 * `tags` as sr_session_set_trace documents, then writes the comment
 *
 *     "\n/\*k1='v1',k2='v2',traceparent='00-...-01'*\/"
 *
 * (every key sorted by its bytes, values percent-encoded except
 * [A-Za-z0-9_.~-]) into a new string: *out (the caller frees it) and *len.
 * Everything is checked before anything is allocated. Returns SR_OK;
 * SR_EINVAL with *bad (SR_TRACE_BAD_TRACEPARENT, SR_TRACE_BAD_TAGS or the
 * index of the tag) and *why (static text: what is wrong with it); or
 * SR_ENOMEM. *out and *len are written only on success.
 */
int sr__trace_build(const char *traceparent, int ntags, const char *const *tags, char **out,
                    size_t *len, int *bad, const char **why);

#endif
