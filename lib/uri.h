/*
 * Node URI parsing and password redaction.
 */
#ifndef SR_URI_H
#define SR_URI_H

#include "internal.h"

/*
 * Parses a node URI into one allocation (the sr_uri and all its strings).
 * Accepted forms:
 *   sqlite:PATH, sqlite:/abs/path, sqlite:///abs/path, sqlite::memory:
 *     (query parameters after '?' are kept in params)
 *   SCHEME://[user[:password]@]host[:port][/database][?k=v&k=v]
 *     host may be an IPv6 literal in brackets; user, password, database and
 *     parameter values are percent-decoded.
 * The scheme is lower-cased. On error returns SR_EINVAL with a message in
 * err that shows the URI only in redacted form.
 */
int sr__uri_parse(const char *text, sr_uri **out, char *err, size_t errlen);
void sr__uri_free(sr_uri *u);

/*
 * Writes `text` to buf with any password replaced by "***": the part after
 * "user:" in the authority and the value of a "password" query parameter.
 * Works on malformed input too (best effort, never reveals more than it
 * hides).
 */
void sr__uri_redact(const char *text, char *buf, size_t buflen);

#endif
