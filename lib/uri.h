/*
 * Node URI parsing and password redaction.
 */
#ifndef SR_URI_H
#define SR_URI_H

#include "internal.h"

/*
 * Parses a node URI into one allocation (the sr_uri and all its strings).
 * Accepted forms:
 *   SCHEME:PATH, SCHEME:/abs/path, SCHEME:///abs/path, SCHEME::memory:
 *     for a path-form scheme (SR_DRIVER_URI_PATH: sqlite, or a registered
 *     driver's; see sr__scheme_path_uri) (query parameters after '?' are
 *     kept in params)
 *   SCHEME://[user[:password]@]host[:port][/database][?k=v&k=v]
 *     host may be an IPv6 literal in brackets; user, password, database and
 *     parameter values are percent-decoded.
 * The scheme is lower-cased. A password_file or password_env parameter is
 * checked for form (one of them, no password beside it, a plausible value)
 * but not read: see sr__uri_resolve_password().
 * On error returns SR_EINVAL with a message in err (err may be NULL) that
 * shows nothing of the text but its scheme: "invalid URI", the scheme with
 * "//" and "***" quoted, then "at offset N: reason" (no offset when the
 * problem is inside a password, where it would tell the password's length).
 */
int sr__uri_parse(const char *text, sr_uri **out, char *err, size_t errlen);

/* Frees a parsed URI (wiping its password). NULL is a no-op. */
void sr__uri_free(sr_uri *u);

/*
 * Writes `text` to buf in a form safe for messages: a URI that parses as
 * its redacted form (password and password-like query values as "***");
 * text that holds no ':', '@' or '=' (so no URI password) as is; anything
 * else as the scheme, "//" and "***" (or "***" without a recognisable scheme). Always
 * terminates buf (when buflen > 0), truncating.
 */
void sr__uri_redact(const char *text, char *buf, size_t buflen);

/*
 * Resolves a URI's password source. Without password_file / password_env,
 * *out = NULL and SR_OK: use `u` as is. With one, reads the password (the
 * file: a regular file with no group or other access, at most 1024 bytes
 * after one trailing "\n" or "\r\n" is dropped; the variable: set and not
 * empty) and returns in *out a new URI (free with sr__uri_free) with that
 * password and without the source parameter, so drivers see a plain
 * password; its `redacted` is u's (it names the source, not the password).
 * Errors: SR_EINVAL with a message naming the file or variable, never its
 * content; SR_ENOMEM. Reads the environment: not safe against a concurrent
 * setenv().
 */
int sr__uri_resolve_password(const sr_uri *u, sr_uri **out, char *err, size_t errlen);

#endif
