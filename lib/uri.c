/*
 * Node URIs: parsing into an sr_uri (one allocation), password redaction,
 * and the password sources (password_file, password_env) read at open.
 *
 * The rule that matters most here is that a password never reaches a
 * message. A URI that parses is redacted exactly (the parsed password span
 * and the values of password-like query parameters). Text that does not
 * parse is never echoed beyond its scheme: any guess at where a password
 * starts and ends in malformed text can be wrong (an audit found such guesses
 * showing "hunter2" of "?password=hunter2:x@y#"), and a message that names
 * the scheme, the reason and an offset is enough to find the mistake.
 */
#include "uri.h"

#include "schemes.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HIDDEN "***"
#define HIDDEN_LEN 3
#define MAX_SHOWN_SCHEME 32

/* A bounded writer: appends what fits and always terminates. */
typedef struct out_buf {
    char *buf;
    size_t cap, len;
} out_buf;

static void out_put(out_buf *o, const char *p, size_t n)
{
    if (o->cap == 0)
        return;
    size_t room = o->cap - 1 - o->len;
    if (n > room)
        n = room;
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

/* The core's own password sources: their values are a path and a variable
 * name, not secrets, and messages about them must be able to name them. */
static bool source_key(const char *p, size_t n)
{
    return (n == 13 && memcmp(p, "password_file", 13) == 0) || (n == 12 && memcmp(p, "password_env", 12) == 0);
}

/*
 * A query key that may carry a secret. Matched loosely (case-insensitive
 * substring of the leniently decoded key) because missing one leaks it,
 * while over-matching only hides a harmless value.
 */
static bool sensitive_key(const char *p, size_t n)
{
    char key[64];
    if (n >= sizeof key)
        return true; /* too long to be a real parameter name: hide rather than guess */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '%' && i + 2 < n && sr__hexval(p[i + 1]) >= 0 && sr__hexval(p[i + 2]) >= 0) {
            c = sr__hexval(p[i + 1]) * 16 + sr__hexval(p[i + 2]);
            i += 2;
        }
        key[k++] = (char)c;
    }
    key[k] = '\0';
    /* Exactly the names check_password_source() takes as sources (so case-sensitive). */
    if (source_key(key, k))
        return false;
    for (size_t i = 0; i < k; i++)
        key[i] = (char)tolower((unsigned char)key[i]);
    return strstr(key, "pass") || strstr(key, "pwd") || strstr(key, "secret");
}

/* Copies the query of a URI that parsed, hiding the values of sensitive keys ('&' ends every value). */
static void put_query_redacted(out_buf *o, const char *q, size_t n)
{
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && q[j] != '&')
            j++;
        const char *eq = memchr(q + i, '=', j - i);
        if (eq && sensitive_key(q + i, (size_t)(eq - (q + i)))) {
            out_put(o, q + i, (size_t)(eq + 1 - (q + i)));
            out_put(o, HIDDEN, HIDDEN_LEN);
        } else {
            out_put(o, q + i, j - i);
        }
        if (j < n)
            out_put(o, "&", 1);
        i = j + 1;
    }
}

static bool all_digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)p[i]))
            return false;
    return true;
}

static bool is_scheme_char(int c) { return isalnum(c) || c == '+' || c == '.' || c == '-'; }

/* Length of the scheme `text` starts with (letters, then scheme characters, then ':'), else 0. */
static size_t scheme_len(const char *text)
{
    size_t sl = 0;
    if (isalpha((unsigned char)text[0]))
        while (is_scheme_char((unsigned char)text[sl]))
            sl++;
    return text[sl] == ':' ? sl : 0;
}

/* Whether the scheme of `sl` bytes at `text` takes the path form (SCHEME:PATH). */
static bool scheme_text_is_path(const char *text, size_t sl)
{
    char lower[MAX_SHOWN_SCHEME + 1];
    if (sl > MAX_SHOWN_SCHEME)
        return false;
    for (size_t i = 0; i < sl; i++)
        lower[i] = (char)tolower((unsigned char)text[i]);
    lower[sl] = '\0';
    return sr__scheme_path_uri(lower);
}

/*
 * What a message shows of text that did not parse: the scheme, "//" and
 * "***" (or "sqlite:***" for a path-form scheme), else just "***". A scheme is shown only when
 * "//" follows it (or it is a path-form one): in "bob:pw@h" the would-be scheme is a user name.
 */
static void put_unparsed(out_buf *o, const char *text)
{
    size_t sl = scheme_len(text);
    if (sl > 0 && sl <= MAX_SHOWN_SCHEME) {
        if (strncmp(text + sl + 1, "//", 2) == 0) {
            out_put(o, text, sl + 3);
        } else if (scheme_text_is_path(text, sl)) {
            out_put(o, text, sl + 1);
        }
    }
    out_put(o, HIDDEN, HIDDEN_LEN);
}

/* ---------------------------------------------------------------- parsing */

typedef struct parser {
    const char *text;
    char *err;
    size_t errlen;
    char *pool; /* string storage inside the single allocation */
    size_t used, cap;
    bool hide_offsets; /* the text has an '@': an offset could tell a password's length */
} parser;

static int fail_at(parser *p, const char *at, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/*
 * Writes "invalid URI 'S' at offset N: reason", S as put_unparsed() shows
 * it. `at` is where in the text the problem is, or NULL when it lies
 * inside a password (an offset there would tell the password's length).
 */
static int fail_at(parser *p, const char *at, const char *fmt, ...)
{
    char shown[MAX_SHOWN_SCHEME + 8];
    out_buf o = {shown, sizeof shown, 0};
    put_unparsed(&o, p->text);
    char reason[200];
    va_list ap;
    va_start(ap, fmt);
    sr__vfmt(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (at && !p->hide_offsets)
        sr__fmt(p->err, p->errlen, "invalid URI '%s' at offset %zu: %s", shown, (size_t)(at - p->text), reason);
    else
        sr__fmt(p->err, p->errlen, "invalid URI '%s': %s", shown, reason);
    return SR_EINVAL;
}

/*
 * Copies [s, s+n) into the pool, percent-decoded when `decode`; NULL on a bad
 * escape. `secret`: the span is a password, so an error gives no offset.
 */
static const char *pool_put(parser *p, const char *s, size_t n, bool decode, bool secret, const char *what,
                            int *rc)
{
    char *d = p->pool + p->used;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (decode && c == '%') {
            if (i + 2 >= n || sr__hexval(s[i + 1]) < 0 || sr__hexval(s[i + 2]) < 0) {
                *rc = fail_at(p, secret ? NULL : s + i, "invalid percent-encoding in the %s (expected %%XX)",
                              what);
                return NULL;
            }
            c = (char)(sr__hexval(s[i + 1]) * 16 + sr__hexval(s[i + 2]));
            if (c == '\0') {
                *rc = fail_at(p, secret ? NULL : s + i, "a percent-encoded NUL (%%00) in the %s", what);
                return NULL;
            }
            i += 2;
        }
        d[k++] = c;
    }
    d[k] = '\0';
    p->used += k + 1;
    return d;
}

/* RFC 3986 reg-name characters plus '%' (decoded later, e.g. a socket path). */
static bool is_host_char(int c)
{
    return isalnum(c) || (c && strchr("-._~!$&'()*+;=%", c) != NULL);
}

static bool valid_ipv6(const char *s, size_t n)
{
    bool colon = false;
    size_t i = 0;
    for (; i < n && s[i] != '%'; i++) {
        if (s[i] == ':')
            colon = true;
        else if (!isxdigit((unsigned char)s[i]) && s[i] != '.')
            return false;
    }
    if (!colon || i < 2)
        return false;
    if (i == n)
        return true;
    /* A zone id: "%25" then unreserved characters, as RFC 6874 writes it. */
    if (n - i < 4 || strncmp(s + i, "%25", 3) != 0)
        return false;
    for (i += 3; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("-._~", s[i]))
            return false;
    return true;
}

typedef struct span {
    const char *p;
    size_t n;
} span;

static size_t count_char(const char *s, int c)
{
    size_t k = 0;
    for (; *s; s++)
        k += *s == c;
    return k;
}

static int parse_query(parser *p, sr_uri *u, sr_uri_param *params, const char *q, size_t n)
{
    int rc = SR_EINVAL;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && q[j] != '&')
            j++;
        if (j > i) {
            const char *eq = memchr(q + i, '=', j - i);
            if (!eq)
                return fail_at(p, q + i, "a query parameter has no '=' (expected key=value)");
            if (eq == q + i)
                return fail_at(p, q + i, "a query parameter has an empty name");
            sr_uri_param *pr = &params[u->nparams];
            size_t kn = (size_t)(eq - (q + i));
            if (!(pr->key = pool_put(p, q + i, kn, true, false, "parameter names", &rc)))
                return rc;
            if (!(pr->value = pool_put(p, eq + 1, (size_t)(q + j - (eq + 1)), true, sensitive_key(q + i, kn),
                                       "parameter values", &rc)))
                return rc;
            u->nparams++;
        }
        i = j + 1;
    }
    return SR_OK;
}

/* host[:port] or [ipv6][:port]. */
static int parse_hostport(parser *p, sr_uri *u, const char *s, size_t n)
{
    int rc = SR_EINVAL;
    span host = {s, 0}, port = {NULL, 0};
    bool has_port = false;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return fail_at(p, s, "unterminated IPv6 literal (missing ']')");
        host.p = s + 1;
        host.n = (size_t)(close - host.p);
        if (!valid_ipv6(host.p, host.n))
            return fail_at(p, s, "malformed IPv6 literal");
        size_t after = (size_t)(close + 1 - s);
        if (after < n) {
            if (s[after] != ':')
                return fail_at(p, s + after, "unexpected text after the IPv6 literal (expected ':port')");
            has_port = true;
            port.p = s + after + 1;
            port.n = n - after - 1;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        host.n = colon ? (size_t)(colon - s) : n;
        if (colon) {
            has_port = true;
            port.p = colon + 1;
            port.n = n - host.n - 1;
            if (memchr(port.p, ':', port.n))
                return fail_at(p, colon, "more than one ':' in the host (write IPv6 addresses in brackets, "
                               "e.g. [::1])");
        }
        for (size_t i = 0; i < host.n; i++) {
            int c = (unsigned char)host.p[i];
            if (c == ',')
                return fail_at(p, host.p + i, "a list of hosts is not supported (one node per URI)");
            if (!is_host_char(c))
                return fail_at(p, host.p + i, "invalid character in the host name");
        }
    }
    if (host.n > 0 && !(u->host = pool_put(p, host.p, host.n, true, false, "host", &rc)))
        return rc;
    if (has_port) {
        if (port.n == 0)
            return fail_at(p, port.p, "empty port after ':'");
        if (!all_digits(port.p, port.n))
            return fail_at(p, port.p, "the port is not a number");
        long v = 0;
        for (size_t i = 0; i < port.n && v <= 65535; i++)
            v = v * 10 + (port.p[i] - '0');
        if (v < 1 || v > 65535)
            return fail_at(p, port.p, "the port is out of range (1..65535)");
        u->port = (int)v;
    }
    return SR_OK;
}

/* The password_file or password_env parameter of a parsed URI, or NULL. */
static const sr_uri_param *password_source(const sr_uri *u)
{
    for (int i = 0; i < u->nparams; i++)
        if (source_key(u->params[i].key, strlen(u->params[i].key)))
            return &u->params[i];
    return NULL;
}

/*
 * What can be checked of password_file / password_env without reading them:
 * at most one source, no password written in the URI beside it (which one
 * would win?), a plausible value.
 */
static int check_password_source(parser *p, sr_uri *u)
{
    const sr_uri_param *src = NULL;
    bool other = u->password != NULL;
    for (int i = 0; i < u->nparams; i++) {
        const char *k = u->params[i].key;
        if (source_key(k, strlen(k))) {
            if (src)
                return fail_at(p, NULL, "more than one of password_file and password_env (give one)");
            src = &u->params[i];
        } else if (strcmp(k, "password") == 0) {
            other = true;
        }
    }
    if (!src)
        return SR_OK;
    if (other)
        return fail_at(p, NULL, "%s and a password in the URI are given together (give one)", src->key);
    size_t n = strlen(src->value);
    if (n == 0)
        return fail_at(p, NULL, "%s is empty", src->key);
    if (strcmp(src->key, "password_env") == 0) {
        bool ok = n <= 128 && (isalpha((unsigned char)src->value[0]) || src->value[0] == '_');
        for (size_t i = 0; ok && i < n; i++)
            ok = isalnum((unsigned char)src->value[i]) || src->value[i] == '_';
        if (!ok)
            return fail_at(p, NULL, "password_env is not an environment variable name "
                                    "(letters, digits and '_', not starting with a digit, at most 128)");
    } else if (n > 4096) {
        return fail_at(p, NULL, "password_file is longer than 4096 bytes");
    }
    return SR_OK;
}

/* The exact redaction of a parsed URI: only the password span and sensitive query values change. */
static void build_redacted(parser *p, sr_uri *u, span pw, const char *query, size_t qn)
{
    char *d = p->pool + p->used;
    out_buf o = {d, p->cap - p->used, 0};
    const char *t = p->text;
    size_t n = strlen(t);
    size_t upto = query ? (size_t)(query - t) : n;
    if (pw.p) {
        out_put(&o, t, (size_t)(pw.p - t));
        out_put(&o, HIDDEN, HIDDEN_LEN);
        out_put(&o, pw.p + pw.n, upto - (size_t)(pw.p + pw.n - t));
    } else {
        out_put(&o, t, upto);
    }
    if (query)
        put_query_redacted(&o, query, qn);
    p->used += o.len + 1;
    u->redacted = d;
}

int sr__uri_parse(const char *text, sr_uri **out, char *err, size_t errlen)
{
    if (!text || !out) {
        sr__fmt(err, errlen, "invalid URI: NULL");
        return SR_EINVAL;
    }
    size_t n = strlen(text);
    size_t maxparams = count_char(text, '&') + 1;
    size_t pool_cap = 3 * n + 8 * maxparams + 32;
    size_t head = sizeof(sr_uri) + maxparams * sizeof(sr_uri_param);
    char *mem = calloc(1, head + pool_cap);
    if (!mem) {
        sr__fmt(err, errlen, "out of memory parsing a URI");
        return SR_ENOMEM;
    }
    sr_uri *u = (sr_uri *)(void *)mem;
    sr_uri_param *params = (sr_uri_param *)(void *)(mem + sizeof(sr_uri));
    /* Where a URI holds user information, any offset past its start counts the
     * password's bytes (or, in a password with a space, points into it): such
     * errors say what, not where. */
    parser p = {text, err, errlen, mem + head, 0, pool_cap, strchr(text, '@') != NULL};
    int rc = SR_EINVAL;

    if (n == 0) {
        rc = fail_at(&p, NULL, "empty");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c <= ' ' || c == 0x7f) {
            rc = fail_at(&p, text + i, "whitespace or a control character (percent-encode it)");
            goto fail;
        }
    }

    size_t sl = 0;
    if (isalpha((unsigned char)text[0]))
        while (is_scheme_char((unsigned char)text[sl]))
            sl++;
    if (sl == 0 || text[sl] != ':') {
        rc = fail_at(&p, text, "missing or malformed scheme (expected e.g. postgresql://host/db, "
                     "mysql://host/db or sqlite:/path/file.db)");
        goto fail;
    }
    char *scheme = p.pool;
    for (size_t i = 0; i < sl; i++)
        scheme[i] = (char)tolower((unsigned char)text[i]);
    scheme[sl] = '\0';
    p.used = sl + 1;
    u->scheme = scheme;

    const char *rest = text + sl + 1;
    const char *query = strchr(rest, '?');
    size_t qn = query ? strlen(query + 1) : 0;
    span pw = {NULL, 0};

    if (sr__scheme_path_uri(scheme)) {
        /* The path form (SR_DRIVER_URI_PATH, e.g. sqlite:PATH) with PATH as
         * the driver takes it (relative, /absolute or :memory:);
         * sqlite:///abs is the same file as sqlite:/abs. A host
         * (sqlite://x/...) has no meaning for a local file, so it is refused
         * rather than guessed at. */
        const char *path = rest;
        if (strncmp(rest, "//", 2) == 0) {
            if (rest[2] != '/') {
                rc = fail_at(&p, rest, "a %s URI takes no host: write %s:relative.db, "
                             "%s:/abs/path.db or %s:///abs/path.db", scheme, scheme, scheme, scheme);
                goto fail;
            }
            path = rest + 2;
        }
        if (strchr(rest, '#')) {
            rc = fail_at(&p, strchr(rest, '#'), "'#' is not allowed (percent-encode it as %%23)");
            goto fail;
        }
        size_t pl = query ? (size_t)(query - path) : strlen(path);
        if (pl == 0) {
            rc = fail_at(&p, path, "the %s path is empty", scheme);
            goto fail;
        }
        if (!(u->path = pool_put(&p, path, pl, true, false, "path", &rc)))
            goto fail;
    } else {
        if (strncmp(rest, "//", 2) != 0) {
            rc = fail_at(&p, rest, "expected '//' after the scheme (SCHEME://[user[:password]@]host[:port][/database])");
            goto fail;
        }
        const char *auth = rest + 2;
        size_t an = strcspn(auth, "/?");
        const char *auth_end = auth + an;
        const char *at = NULL;
        for (const char *s = auth; s < auth_end; s++)
            if (*s == '@')
                at = s;
        const char *hp = auth;
        if (at) {
            const char *colon = memchr(auth, ':', (size_t)(at - auth));
            size_t ul = colon ? (size_t)(colon - auth) : (size_t)(at - auth);
            if (ul > 0 && !(u->user = pool_put(&p, auth, ul, true, false, "user name", &rc)))
                goto fail;
            if (colon) {
                pw.p = colon + 1;
                pw.n = (size_t)(at - pw.p);
                if (!(u->password = pool_put(&p, pw.p, pw.n, true, true, "password", &rc)))
                    goto fail;
            }
            hp = at + 1;
        }
        /* A raw '#' is tolerated in a password (libpq does too), nowhere else. */
        if (strchr(hp, '#')) {
            rc = fail_at(&p, strchr(hp, '#'), "'#' is not allowed after the user name and password (percent-encode it as %%23)");
            goto fail;
        }
        /* An '@' after the authority with none in it is a password that held a
         * raw '/' or '?' (bob:1234/x@db would parse as host bob, port 1234 and
         * show the rest as the database): refused, since what looks like a host
         * and a database could be a password shown in every message. */
        if (!at && strchr(auth_end, '@')) {
            rc = fail_at(&p, NULL, "an '@' after the host (percent-encode '/' and '?' in a user "
                         "name or password, and '@' in a database name or parameter)");
            goto fail;
        }
        if ((rc = parse_hostport(&p, u, hp, (size_t)(auth_end - hp))) != SR_OK)
            goto fail;
        if (*auth_end == '/') {
            const char *db = auth_end + 1;
            size_t dl = query ? (size_t)(query - db) : strlen(db);
            if (dl > 0 && !(u->database = pool_put(&p, db, dl, true, false, "database name", &rc)))
                goto fail;
        }
    }
    if (query && (rc = parse_query(&p, u, params, query + 1, qn)) != SR_OK)
        goto fail;
    u->params = u->nparams ? params : NULL;
    if ((rc = check_password_source(&p, u)) != SR_OK)
        goto fail;
    build_redacted(&p, u, pw, query ? query + 1 : NULL, qn);
    *out = u;
    return SR_OK;

fail:
    free(mem);
    return rc;
}

void sr__uri_free(sr_uri *u)
{
    if (!u)
        return;
    /* Wipe the password before the memory goes back to the allocator. */
    if (u->password) {
        volatile char *pw = (volatile char *)(uintptr_t)u->password;
        while (*pw)
            *pw++ = '\0';
    }
    free(u);
}

void sr__uri_redact(const char *text, char *buf, size_t buflen)
{
    if (!buf || buflen == 0)
        return;
    if (!text) {
        sr__fmt(buf, buflen, "(null)");
        return;
    }
    sr_uri *u;
    if (sr__uri_parse(text, &u, NULL, 0) == SR_OK) {
        sr__fmt(buf, buflen, "%s", u->redacted);
        sr__uri_free(u);
        return;
    }
    /* A password needs a ':' (user:password@) or an '=' (password=): text
     * with neither holds none and may be shown, e.g. an option's bad value. */
    if (!strpbrk(text, ":@=")) {
        sr__fmt(buf, buflen, "%s", text);
        return;
    }
    out_buf o = {buf, buflen, 0};
    buf[0] = '\0';
    put_unparsed(&o, text);
}

/* ------------------------------------------------------ password sources */

#define MAX_SECRET 1024

static void wipe(char *p, size_t n)
{
    volatile char *v = p;
    while (n--)
        *v++ = '\0';
}

/*
 * Reads the password file into buf (NUL-terminated). Like libpq's passfile
 * it must be private to its owner; unlike it, a file that is not is an error
 * rather than a warning, since there is no other password to fall back on.
 * Messages name the file, never its content.
 */
static int read_password_file(const char *path, char *buf, size_t cap, char *err, size_t errlen)
{
    /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
    int fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        sr__fmt(err, errlen, "cannot read password_file '%.300s': %s", path, strerror(errno));
        return SR_EINVAL;
    }
    struct stat st;
    int rc = SR_EINVAL;
    if (fstat(fd, &st) != 0) {
        sr__fmt(err, errlen, "cannot read password_file '%.300s': %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        sr__fmt(err, errlen, "password_file '%.300s' is not a regular file", path);
    } else if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        sr__fmt(err, errlen,
                "password_file '%.300s' is accessible by group or others (mode %03o); "
                "make it private to its owner (chmod 600)",
                path, (unsigned)(st.st_mode & 0777));
    } else {
        size_t n = 0;
        bool failed = false;
        while (n < cap) {
            ssize_t k = read(fd, buf + n, cap - n);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0) {
                sr__fmt(err, errlen, "cannot read password_file '%.300s': %s", path, strerror(errno));
                failed = true;
                break;
            }
            if (k == 0)
                break;
            n += (size_t)k;
        }
        /* One trailing line end, as editors and `echo` leave it. */
        if (!failed && n > 0 && n <= cap - 1 && buf[n - 1] == '\n') {
            n--;
            if (n > 0 && buf[n - 1] == '\r')
                n--;
        }
        if (failed) {
            /* err is written */
        } else if (n > MAX_SECRET) {
            sr__fmt(err, errlen, "password_file '%.300s' is larger than %d bytes", path, MAX_SECRET);
        } else if (n == 0) {
            sr__fmt(err, errlen, "password_file '%.300s' is empty", path);
        } else if (memchr(buf, '\0', n)) {
            sr__fmt(err, errlen, "password_file '%.300s' contains a NUL byte", path);
        } else {
            buf[n] = '\0';
            rc = SR_OK;
        }
    }
    close(fd);
    return rc;
}

static int read_password_env(const char *name, char *buf, size_t cap, char *err, size_t errlen)
{
    const char *v = getenv(name);
    if (!v) {
        sr__fmt(err, errlen, "password_env: the environment variable %s is not set", name);
        return SR_EINVAL;
    }
    size_t n = strlen(v);
    if (n == 0) {
        sr__fmt(err, errlen, "password_env: the environment variable %s is empty", name);
        return SR_EINVAL;
    }
    if (n > MAX_SECRET || n >= cap) {
        sr__fmt(err, errlen, "password_env: the environment variable %s is longer than %d bytes", name,
                MAX_SECRET);
        return SR_EINVAL;
    }
    memcpy(buf, v, n + 1);
    return SR_OK;
}

/* Room for one string in a clone's pool. */
static const char *clone_str(char **pool, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*pool, s, n);
    const char *d = *pool;
    *pool += n;
    return d;
}

int sr__uri_resolve_password(const sr_uri *u, sr_uri **out, char *err, size_t errlen)
{
    if (!u || !out) {
        sr__fmt(err, errlen, "invalid URI: NULL");
        return SR_EINVAL;
    }
    *out = NULL;
    const sr_uri_param *src = password_source(u);
    if (!src)
        return SR_OK;
    char secret[MAX_SECRET + 2];
    bool file = strcmp(src->key, "password_file") == 0;
    int rc = file ? read_password_file(src->value, secret, sizeof secret, err, errlen)
                  : read_password_env(src->value, secret, sizeof secret, err, errlen);
    if (rc != SR_OK) {
        wipe(secret, sizeof secret);
        return rc;
    }
    /* One allocation as sr__uri_parse makes, without the source parameter. */
    const char *strs[] = {u->scheme, u->user, secret, u->host, u->database, u->path, u->redacted};
    size_t bytes = sizeof(sr_uri) + (size_t)u->nparams * sizeof(sr_uri_param);
    for (size_t i = 0; i < SR_ARRAY_LEN(strs); i++)
        bytes += strs[i] ? strlen(strs[i]) + 1 : 0;
    for (int i = 0; i < u->nparams; i++)
        bytes += strlen(u->params[i].key) + strlen(u->params[i].value) + 2;
    char *mem = calloc(1, bytes);
    if (!mem) {
        wipe(secret, sizeof secret);
        sr__fmt(err, errlen, "out of memory");
        return SR_ENOMEM;
    }
    sr_uri *c = (sr_uri *)(void *)mem;
    sr_uri_param *params = (sr_uri_param *)(void *)(mem + sizeof(sr_uri));
    char *pool = (char *)(params + u->nparams);
    c->scheme = clone_str(&pool, u->scheme);
    c->user = clone_str(&pool, u->user);
    c->password = clone_str(&pool, secret);
    c->host = clone_str(&pool, u->host);
    c->port = u->port;
    c->database = clone_str(&pool, u->database);
    c->path = clone_str(&pool, u->path);
    c->redacted = clone_str(&pool, u->redacted);
    for (int i = 0; i < u->nparams; i++) {
        if (&u->params[i] == src)
            continue;
        params[c->nparams].key = clone_str(&pool, u->params[i].key);
        params[c->nparams].value = clone_str(&pool, u->params[i].value);
        c->nparams++;
    }
    c->params = c->nparams ? params : NULL;
    wipe(secret, sizeof secret);
    *out = c;
    return SR_OK;
}
