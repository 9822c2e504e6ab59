/*
 * Node URIs: parsing into an sr_uri (one allocation) and password redaction.
 *
 * The rule that matters most here is that a password never reaches a
 * message. Valid URIs are redacted exactly (the parsed password span and the
 * values of password-like query parameters). Text that does not parse is
 * redacted by a heuristic that errs towards hiding too much: everything
 * between the first ':' of the authority and the last '@' of the text, or,
 * without '@', anything after a ':' that is not a port number.
 */
#include "uri.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define HIDDEN "***"
#define HIDDEN_LEN 3

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
        key[k++] = (char)tolower(c);
    }
    key[k] = '\0';
    return strstr(key, "pass") || strstr(key, "pwd") || strstr(key, "secret");
}

/*
 * Copies a query string, hiding the values of sensitive keys. In a URI that
 * parsed, '&' ends every value. In malformed text (`greedy`) a raw '&' may
 * be part of a password, so everything after a sensitive key is hidden.
 */
static void put_query_redacted(out_buf *o, const char *q, size_t n, bool greedy)
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
            if (greedy)
                return;
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

/* Best-effort redaction of text that may not be a valid URI (see the top comment). */
static void redact_loose(const char *text, char *buf, size_t buflen)
{
    out_buf o = {buf, buflen, 0};
    if (buflen == 0)
        return;
    buf[0] = '\0';
    size_t n = strlen(text);
    const char *sep = strstr(text, "://");
    size_t start = sep ? (size_t)(sep - text) + 3 : 0; /* where an authority would begin */
    size_t pos = 0;                                    /* copied (or hidden) up to here */
    const char *at = strrchr(text, '@');
    if (at) {
        /* Without "://" (or with the '@' before it) the scheme may be missing
         * and "user:password@" begin the text: search from the start. */
        if (!sep || (size_t)(at - text) < start)
            start = 0;
        const char *colon = memchr(text + start, ':', (size_t)(at - (text + start)));
        if (colon) {
            out_put(&o, text, (size_t)(colon + 1 - text));
            out_put(&o, HIDDEN, HIDDEN_LEN);
            /* A '?' in the hidden part means the '@' may sit inside a query
             * value (a password parameter): then hide everything. */
            if (memchr(colon, '?', (size_t)(at - colon)))
                return;
            pos = (size_t)(at - text);
        }
    } else {
        if (!sep) {
            const char *colon = strchr(text, ':');
            start = colon ? (size_t)(colon - text) + 1 : 0;
            while (text[start] == '/')
                start++;
        }
        size_t end = start + strcspn(text + start, "/?#");
        size_t i = start;
        if (text[i] == '[') {
            const char *close = memchr(text + i, ']', end - i);
            i = close ? (size_t)(close - text) + 1 : end;
        }
        const char *colon = memchr(text + i, ':', end - i);
        if (colon && !all_digits(colon + 1, (size_t)(text + end - (colon + 1)))) {
            /* Not a port: maybe "user:password" with the "@host" forgotten. */
            out_put(&o, text, (size_t)(colon + 1 - text));
            out_put(&o, HIDDEN, HIDDEN_LEN);
            return;
        }
    }
    const char *q = memchr(text + pos, '?', n - pos);
    if (!q) {
        out_put(&o, text + pos, n - pos);
        return;
    }
    /* The query runs to the end: '#' is invalid here anyway, and treating it
     * as a fragment could show the rest of a password that contained it. */
    out_put(&o, text + pos, (size_t)(q + 1 - (text + pos)));
    put_query_redacted(&o, q + 1, strlen(q + 1), true);
}

/* ---------------------------------------------------------------- parsing */

typedef struct parser {
    const char *text;
    char *err;
    size_t errlen;
    char *pool; /* string storage inside the single allocation */
    size_t used, cap;
} parser;

static int fail(parser *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static int fail(parser *p, const char *fmt, ...)
{
    char shown[256];
    redact_loose(p->text, shown, sizeof shown);
    char reason[200];
    va_list ap;
    va_start(ap, fmt);
    sr__vfmt(reason, sizeof reason, fmt, ap);
    va_end(ap);
    sr__fmt(p->err, p->errlen, "invalid URI '%s': %s", shown, reason);
    return SR_EINVAL;
}

/* Copies [s, s+n) into the pool, percent-decoded when `decode`; NULL on a bad escape. */
static const char *pool_put(parser *p, const char *s, size_t n, bool decode, const char *what, int *rc)
{
    char *d = p->pool + p->used;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (decode && c == '%') {
            if (i + 2 >= n || sr__hexval(s[i + 1]) < 0 || sr__hexval(s[i + 2]) < 0) {
                *rc = fail(p, "invalid percent-encoding in the %s (expected %%XX)", what);
                return NULL;
            }
            c = (char)(sr__hexval(s[i + 1]) * 16 + sr__hexval(s[i + 2]));
            if (c == '\0') {
                *rc = fail(p, "a percent-encoded NUL (%%00) in the %s", what);
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

static bool is_scheme_char(int c) { return isalnum(c) || c == '+' || c == '.' || c == '-'; }

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
                return fail(p, "a query parameter has no '=' (expected key=value)");
            if (eq == q + i)
                return fail(p, "a query parameter has an empty name");
            sr_uri_param *pr = &params[u->nparams];
            if (!(pr->key = pool_put(p, q + i, (size_t)(eq - (q + i)), true, "parameter names", &rc)))
                return rc;
            if (!(pr->value = pool_put(p, eq + 1, (size_t)(q + j - (eq + 1)), true, "parameter values", &rc)))
                return rc;
            u->nparams++;
        }
        i = j + 1;
    }
    return SR_OK;
}

/* host[:port] or [ipv6][:port]; `stray_at` adds a hint when an '@' sits outside the authority. */
static int parse_hostport(parser *p, sr_uri *u, const char *s, size_t n, bool stray_at)
{
    const char *hint = stray_at ? " (percent-encode '@', ':', '/' and '?' in user names and passwords)" : "";
    int rc = SR_EINVAL;
    span host = {s, 0}, port = {NULL, 0};
    bool has_port = false;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return fail(p, "unterminated IPv6 literal (missing ']')%s", hint);
        host.p = s + 1;
        host.n = (size_t)(close - host.p);
        if (!valid_ipv6(host.p, host.n))
            return fail(p, "malformed IPv6 literal%s", hint);
        size_t after = (size_t)(close + 1 - s);
        if (after < n) {
            if (s[after] != ':')
                return fail(p, "unexpected text after the IPv6 literal (expected ':port')%s", hint);
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
                return fail(p, "more than one ':' in the host (write IPv6 addresses in brackets, "
                               "e.g. [::1])%s", hint);
        }
        for (size_t i = 0; i < host.n; i++) {
            int c = (unsigned char)host.p[i];
            if (c == ',')
                return fail(p, "a list of hosts is not supported (one node per URI)");
            if (!is_host_char(c))
                return fail(p, "invalid character in the host name%s", hint);
        }
    }
    if (host.n > 0 && !(u->host = pool_put(p, host.p, host.n, true, "host", &rc)))
        return rc;
    if (has_port) {
        if (port.n == 0)
            return fail(p, "empty port after ':'%s", hint);
        if (!all_digits(port.p, port.n))
            return fail(p, "the port is not a number%s", hint);
        long v = 0;
        for (size_t i = 0; i < port.n && v <= 65535; i++)
            v = v * 10 + (port.p[i] - '0');
        if (v < 1 || v > 65535)
            return fail(p, "the port is out of range (1..65535)");
        u->port = (int)v;
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
        put_query_redacted(&o, query, qn, false);
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
    parser p = {text, err, errlen, mem + head, 0, pool_cap};
    int rc = SR_EINVAL;

    if (n == 0) {
        rc = fail(&p, "empty");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c <= ' ' || c == 0x7f) {
            rc = fail(&p, "whitespace or a control character (percent-encode it)");
            goto fail;
        }
    }

    size_t sl = 0;
    if (isalpha((unsigned char)text[0]))
        while (is_scheme_char((unsigned char)text[sl]))
            sl++;
    if (sl == 0 || text[sl] != ':') {
        rc = fail(&p, "missing or malformed scheme (expected e.g. postgresql://host/db, "
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

    if (strcmp(scheme, "sqlite") == 0) {
        /* sqlite:PATH with PATH as SQLite takes it (relative, /absolute or
         * :memory:); sqlite:///abs is the same file as sqlite:/abs. A host
         * (sqlite://x/...) has no meaning for a local file, so it is refused
         * rather than guessed at. */
        const char *path = rest;
        if (strncmp(rest, "//", 2) == 0) {
            if (rest[2] != '/') {
                rc = fail(&p, "a sqlite URI takes no host: write sqlite:relative.db, "
                             "sqlite:/abs/path.db or sqlite:///abs/path.db");
                goto fail;
            }
            path = rest + 2;
        }
        if (strchr(rest, '#')) {
            rc = fail(&p, "'#' is not allowed (percent-encode it as %%23)");
            goto fail;
        }
        size_t pl = query ? (size_t)(query - path) : strlen(path);
        if (pl == 0) {
            rc = fail(&p, "the sqlite path is empty");
            goto fail;
        }
        if (!(u->path = pool_put(&p, path, pl, true, "path", &rc)))
            goto fail;
    } else {
        if (strncmp(rest, "//", 2) != 0) {
            rc = fail(&p, "expected '//' after the scheme (SCHEME://[user[:password]@]host[:port][/database])");
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
            if (ul > 0 && !(u->user = pool_put(&p, auth, ul, true, "user name", &rc)))
                goto fail;
            if (colon) {
                pw.p = colon + 1;
                pw.n = (size_t)(at - pw.p);
                if (!(u->password = pool_put(&p, pw.p, pw.n, true, "password", &rc)))
                    goto fail;
            }
            hp = at + 1;
        }
        /* A raw '#' is tolerated in a password (libpq does too), nowhere else. */
        if (strchr(hp, '#')) {
            rc = fail(&p, "'#' is not allowed after the user name and password (percent-encode it as %%23)");
            goto fail;
        }
        bool stray_at = !at && strchr(auth_end, '@') != NULL;
        if ((rc = parse_hostport(&p, u, hp, (size_t)(auth_end - hp), stray_at)) != SR_OK)
            goto fail;
        if (*auth_end == '/') {
            const char *db = auth_end + 1;
            size_t dl = query ? (size_t)(query - db) : strlen(db);
            if (dl > 0 && !(u->database = pool_put(&p, db, dl, true, "database name", &rc)))
                goto fail;
        }
    }
    if (query && (rc = parse_query(&p, u, params, query + 1, qn)) != SR_OK)
        goto fail;
    u->params = u->nparams ? params : NULL;
    build_redacted(&p, u, pw, query ? query + 1 : NULL, qn);
    *out = u;
    return SR_OK;

fail:
    free(mem);
    return rc;
}

void sr__uri_free(sr_uri *u) { free(u); }

void sr__uri_redact(const char *text, char *buf, size_t buflen)
{
    if (!buf || buflen == 0)
        return;
    if (!text) {
        sr__fmt(buf, buflen, "(null)");
        return;
    }
    sr_uri *u;
    char err[8];
    if (sr__uri_parse(text, &u, err, sizeof err) == SR_OK) {
        sr__fmt(buf, buflen, "%s", u->redacted);
        sr__uri_free(u);
        return;
    }
    redact_loose(text, buf, buflen);
}
