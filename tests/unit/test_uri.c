/*
 * Node URI parsing and password redaction (lib/uri.c), and the config
 * messages that show URIs. The redaction tests build many URIs, valid and
 * malformed, around passwords with awkward characters and assert that no
 * form of the password reaches any output.
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "uri.h"

static sr_uri *parse_ok(const char *text)
{
    sr_uri *u = NULL;
    char err[512] = "";
    int rc = sr__uri_parse(text, &u, err, sizeof err);
    ck_assert_msg(rc == SR_OK, "'%s' should parse, got %d: %s", text, rc, err);
    ck_assert_ptr_nonnull(u);
    return u;
}

/* Parses a URI that must be rejected; returns the message. *out is never written. */
static const char *parse_bad(const char *text)
{
    static char err[512];
    sr_uri *sentinel = (sr_uri *)(void *)&err; /* any non-NULL value to compare against */
    sr_uri *u = sentinel;
    err[0] = '\0';
    int rc = sr__uri_parse(text, &u, err, sizeof err);
    ck_assert_msg(rc == SR_EINVAL, "'%s' should be rejected, got %d", text ? text : "(null)", rc);
    ck_assert_msg(u == sentinel, "out must be untouched on error ('%s')", text ? text : "(null)");
    ck_assert_msg(strncmp(err, "invalid URI", 11) == 0, "message for '%s': %s", text ? text : "(null)", err);
    return err;
}

#define ck_assert_str_or_null(got, want)                                                  \
    do {                                                                                  \
        const char *g_ = (got), *w_ = (want);                                             \
        if (!w_)                                                                          \
            ck_assert_msg(g_ == NULL, "%s: expected NULL, got '%s'", #got, g_ ? g_ : ""); \
        else                                                                              \
            ck_assert_msg(g_ && strcmp(g_, w_) == 0, "%s: expected '%s', got '%s'", #got, \
                          w_, g_ ? g_ : "(null)");                                        \
    } while (0)

/* ------------------------------------------------------------ valid URIs */

typedef struct valid_case {
    const char *text;
    const char *scheme, *user, *password, *host;
    int port;
    const char *database, *path;
    int nparams;
    const char *redacted;
} valid_case;

static const valid_case valid_cases[] = {
    {"postgresql://alice:s3cret@db1.example.com:5432/app?sslmode=require&application_name=sr", "postgresql",
     "alice", "s3cret", "db1.example.com", 5432, "app", NULL, 2,
     "postgresql://alice:***@db1.example.com:5432/app?sslmode=require&application_name=sr"},
    {"POSTGRES://h/db", "postgres", NULL, NULL, "h", 0, "db", NULL, 0, "POSTGRES://h/db"},
    {"postgres://h", "postgres", NULL, NULL, "h", 0, NULL, NULL, 0, "postgres://h"},
    {"postgres://h/", "postgres", NULL, NULL, "h", 0, NULL, NULL, 0, "postgres://h/"},
    {"mysql://root@127.0.0.1:3306/test", "mysql", "root", NULL, "127.0.0.1", 3306, "test", NULL, 0,
     "mysql://root@127.0.0.1:3306/test"},
    {"MariaDB://u:p@[::1]:3307/db", "mariadb", "u", "p", "::1", 3307, "db", NULL, 0, "MariaDB://u:***@[::1]:3307/db"},
    {"postgresql://[2001:db8::1]", "postgresql", NULL, NULL, "2001:db8::1", 0, NULL, NULL, 0,
     "postgresql://[2001:db8::1]"},
    {"postgresql://[::ffff:10.0.0.1]:6432/x", "postgresql", NULL, NULL, "::ffff:10.0.0.1", 6432, "x", NULL, 0,
     "postgresql://[::ffff:10.0.0.1]:6432/x"},
    {"postgresql://[fe80::1%25eth0]/db", "postgresql", NULL, NULL, "fe80::1%eth0", 0, "db", NULL, 0,
     "postgresql://[fe80::1%25eth0]/db"},
    {"postgresql:///db", "postgresql", NULL, NULL, NULL, 0, "db", NULL, 0, "postgresql:///db"},
    {"postgresql://", "postgresql", NULL, NULL, NULL, 0, NULL, NULL, 0, "postgresql://"},
    {"postgresql://:5433/db", "postgresql", NULL, NULL, NULL, 5433, "db", NULL, 0, "postgresql://:5433/db"},
    {"postgresql://%2Fvar%2Frun%2Fpostgresql/db", "postgresql", NULL, NULL, "/var/run/postgresql", 0, "db", NULL,
     0, "postgresql://%2Fvar%2Frun%2Fpostgresql/db"},
    {"postgresql://us%40er:p%40ss%3Aw%2Frd@h/d%20b", "postgresql", "us@er", "p@ss:w/rd", "h", 0, "d b", NULL, 0,
     "postgresql://us%40er:***@h/d%20b"},
    {"postgresql://u:p@ss@h/db", "postgresql", "u", "p@ss", "h", 0, "db", NULL, 0, "postgresql://u:***@h/db"},
    {"postgresql://u:pa:ss@h", "postgresql", "u", "pa:ss", "h", 0, NULL, NULL, 0, "postgresql://u:***@h"},
    {"postgresql://u:@h", "postgresql", "u", "", "h", 0, NULL, NULL, 0, "postgresql://u:***@h"},
    {"postgresql://u:p#w@h/db", "postgresql", "u", "p#w", "h", 0, "db", NULL, 0, "postgresql://u:***@h/db"},
    {"postgresql://:pw@h", "postgresql", NULL, "pw", "h", 0, NULL, NULL, 0, "postgresql://:***@h"},
    {"postgresql://@h", "postgresql", NULL, NULL, "h", 0, NULL, NULL, 0, "postgresql://@h"},
    {"postgresql://h:1/db", "postgresql", NULL, NULL, "h", 1, "db", NULL, 0, "postgresql://h:1/db"},
    {"postgresql://h:65535/db", "postgresql", NULL, NULL, "h", 65535, "db", NULL, 0, "postgresql://h:65535/db"},
    {"postgresql://h:05432/db", "postgresql", NULL, NULL, "h", 5432, "db", NULL, 0, "postgresql://h:05432/db"},
    {"postgresql://h/db/with/slashes", "postgresql", NULL, NULL, "h", 0, "db/with/slashes", NULL, 0,
     "postgresql://h/db/with/slashes"},
    {"postgresql://h/db?password=x%26y&sslmode=disable", "postgresql", NULL, NULL, "h", 0, "db", NULL, 2,
     "postgresql://h/db?password=***&sslmode=disable"},
    {"postgresql://h/db?sslpassword=k&PassWord=z", "postgresql", NULL, NULL, "h", 0, "db", NULL, 2,
     "postgresql://h/db?sslpassword=***&PassWord=***"},
    {"postgresql://h/db?", "postgresql", NULL, NULL, "h", 0, "db", NULL, 0, "postgresql://h/db?"},
    {"postgresql://h?a=&&b=1&", "postgresql", NULL, NULL, "h", 0, NULL, NULL, 2, "postgresql://h?a=&&b=1&"},
    {"x-db+tls.v2://h:1/d", "x-db+tls.v2", NULL, NULL, "h", 1, "d", NULL, 0, "x-db+tls.v2://h:1/d"},
    {"sqlite:/tmp/a.db", "sqlite", NULL, NULL, NULL, 0, NULL, "/tmp/a.db", 0, "sqlite:/tmp/a.db"},
    {"sqlite:///tmp/a.db", "sqlite", NULL, NULL, NULL, 0, NULL, "/tmp/a.db", 0, "sqlite:///tmp/a.db"},
    {"sqlite:rel/a.db", "sqlite", NULL, NULL, NULL, 0, NULL, "rel/a.db", 0, "sqlite:rel/a.db"},
    {"sqlite::memory:", "sqlite", NULL, NULL, NULL, 0, NULL, ":memory:", 0, "sqlite::memory:"},
    {"SQLite:a%20b%3F.db", "sqlite", NULL, NULL, NULL, 0, NULL, "a b?.db", 0, "SQLite:a%20b%3F.db"},
    {"sqlite:/tmp/a.db?mode=ro&cache=shared", "sqlite", NULL, NULL, NULL, 0, NULL, "/tmp/a.db", 2,
     "sqlite:/tmp/a.db?mode=ro&cache=shared"},
    {"sqlite:/tmp/a:b@c.db", "sqlite", NULL, NULL, NULL, 0, NULL, "/tmp/a:b@c.db", 0, "sqlite:/tmp/a:b@c.db"},
};

START_TEST(test_valid)
{
    const valid_case *c = &valid_cases[_i];
    sr_uri *u = parse_ok(c->text);
    ck_assert_str_or_null(u->scheme, c->scheme);
    ck_assert_str_or_null(u->user, c->user);
    ck_assert_str_or_null(u->password, c->password);
    ck_assert_str_or_null(u->host, c->host);
    ck_assert_int_eq(u->port, c->port);
    ck_assert_str_or_null(u->database, c->database);
    ck_assert_str_or_null(u->path, c->path);
    ck_assert_int_eq(u->nparams, c->nparams);
    if (c->nparams == 0)
        ck_assert_ptr_null(u->params);
    ck_assert_str_or_null(u->redacted, c->redacted);
    /* The public redactor agrees with the parser on valid input. */
    char buf[512];
    sr__uri_redact(c->text, buf, sizeof buf);
    ck_assert_str_eq(buf, c->redacted);
    sr__uri_free(u);
}
END_TEST

START_TEST(test_params_decoded)
{
    sr_uri *u = parse_ok("postgresql://h/db?application_name=my%20app&opt%3Dion=a%2Bb&empty=&k=v=w");
    ck_assert_int_eq(u->nparams, 4);
    ck_assert_str_eq(u->params[0].key, "application_name");
    ck_assert_str_eq(u->params[0].value, "my app");
    ck_assert_str_eq(u->params[1].key, "opt=ion");
    ck_assert_str_eq(u->params[1].value, "a+b");
    ck_assert_str_eq(u->params[2].key, "empty");
    ck_assert_str_eq(u->params[2].value, "");
    ck_assert_str_eq(u->params[3].key, "k");
    ck_assert_str_eq(u->params[3].value, "v=w"); /* only the first '=' splits */
    sr__uri_free(u);

    u = parse_ok("postgresql://h/db?password=p%40ss&sslmode=require");
    ck_assert_str_eq(u->params[0].value, "p@ss"); /* the driver gets the real value */
    ck_assert_str_eq(u->redacted, "postgresql://h/db?password=***&sslmode=require");
    sr__uri_free(u);

    /* A parameter name too long to judge is hidden rather than guessed at. */
    char longkey[256];
    snprintf(longkey, sizeof longkey, "postgresql://h/db?%s=v&k=w", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxpassword");
    u = parse_ok(longkey);
    ck_assert_ptr_nonnull(strstr(u->redacted, "password=***&k=w"));
    sr__uri_free(u);

    u = parse_ok("sqlite:/x.db?mode=ro");
    ck_assert_int_eq(u->nparams, 1);
    ck_assert_str_eq(u->params[0].key, "mode");
    ck_assert_str_eq(u->params[0].value, "ro");
    sr__uri_free(u);
}
END_TEST

START_TEST(test_long_uri)
{
    /* Many parameters and long strings: the single allocation must hold them all. */
    size_t n = 20000;
    char *text = malloc(n + 64);
    strcpy(text, "postgresql://u:pw@h/db?");
    size_t len = strlen(text);
    int k = 0;
    while (len + 8 < n) {
        len += (size_t)sprintf(text + len, "%sa=%%41", k ? "&" : "");
        k++;
    }
    sr_uri *u = parse_ok(text);
    ck_assert_int_eq(u->nparams, k);
    ck_assert_str_eq(u->params[k - 1].value, "A");
    ck_assert_str_eq(u->password, "pw");
    ck_assert_ptr_null(strstr(u->redacted, ":pw@"));
    ck_assert_uint_eq(strlen(u->redacted), strlen(text) + 1); /* "pw" -> "***" */
    sr__uri_free(u);
    free(text);
}
END_TEST

/* ---------------------------------------------------------- invalid URIs */

typedef struct invalid_case {
    const char *text;
    const char *reason; /* a fragment the message must contain */
} invalid_case;

static const invalid_case invalid_cases[] = {
    {"", "empty"},
    {"postgresql", "scheme"},
    {"://h/db", "scheme"},
    {"1pg://h", "scheme"},
    {"pg_sql://h", "scheme"},
    {"pg sql://h", "whitespace"},
    {"postgresql://h/db\n", "whitespace"},
    {"postgresql://h/d\tb", "whitespace"},
    {"postgresql:h/db", "'//'"},
    {"mysql:/h/db", "'//'"},
    {"postgresql://h:0/db", "out of range"},
    {"postgresql://h:65536/db", "out of range"},
    {"postgresql://h:99999999999999999999999/db", "out of range"},
    {"postgresql://h:/db", "empty port"},
    {"postgresql://h:54a/db", "not a number"},
    {"postgresql://h:+5/db", "not a number"},
    {"postgresql://h:-1/db", "not a number"},
    {"postgresql://h:1:2/db", "more than one ':'"},
    {"postgresql://::1/db", "more than one ':'"},
    {"postgresql://[::1/db", "unterminated"},
    {"postgresql://[zz::1]/db", "IPv6"},
    {"postgresql://[1234]/db", "IPv6"},
    {"postgresql://[]/db", "IPv6"},
    {"postgresql://[fe80::1%eth0]/db", "IPv6"},
    {"postgresql://[::1]x/db", "after the IPv6"},
    {"postgresql://[::1]:0/db", "out of range"},
    {"postgresql://h1,h2/db", "list of hosts"},
    {"postgresql://h<x>/db", "invalid character"},
    {"postgresql://h/db?x", "no '='"},
    {"postgresql://h/db?=v", "empty name"},
    {"postgresql://h/d%zz", "percent"},
    {"postgresql://h/d%4", "percent"},
    {"postgresql://h/d%", "percent"},
    {"postgresql://h/d%00b", "NUL"},
    {"postgresql://u%zz@h/db", "percent"},
    {"postgresql://h%2/db", "percent"},
    {"postgresql://h/db?k=%g0", "percent"},
    {"postgresql://h/db?k%=v", "percent"},
    {"postgresql://h/db#frag", "'#'"},
    {"postgresql://u:p@h/db?x=#", "'#'"},
    {"postgresql://h:5432#x/db", "'#'"},
    {"sqlite:/a#b.db", "'#'"},
    {"sqlite:", "empty"},
    {"sqlite:?mode=ro", "empty"},
    {"sqlite://", "no host"},
    {"sqlite://host/x.db", "no host"},
    {"sqlite://x.db", "no host"},
    {"sqlite:a%zz.db", "percent"},
};

START_TEST(test_invalid)
{
    const invalid_case *c = &invalid_cases[_i];
    const char *err = parse_bad(c->text);
    ck_assert_msg(strstr(err, c->reason) != NULL, "'%s': message '%s' should mention '%s'", c->text, err,
                  c->reason);
}
END_TEST

START_TEST(test_null_args)
{
    char err[128] = "";
    sr_uri *u = NULL;
    ck_assert_int_eq(sr__uri_parse(NULL, &u, err, sizeof err), SR_EINVAL);
    ck_assert_ptr_null(u);
    ck_assert_str_ne(err, "");
    ck_assert_int_eq(sr__uri_parse("sqlite::memory:", NULL, err, sizeof err), SR_EINVAL);
    /* A NULL or zero-size message buffer is allowed. */
    ck_assert_int_eq(sr__uri_parse("bad", &u, NULL, 0), SR_EINVAL);
    ck_assert_int_eq(sr__uri_parse("bad", &u, err, 0), SR_EINVAL);
    sr__uri_free(NULL);

    char buf[16];
    sr__uri_redact(NULL, buf, sizeof buf);
    ck_assert_str_eq(buf, "(null)");
    sr__uri_redact("postgresql://u:p@h", NULL, 10); /* no crash */
    buf[0] = 'x';
    sr__uri_redact("postgresql://u:p@h", buf, 0);
    ck_assert_int_eq(buf[0], 'x'); /* nothing written to a zero-size buffer */
}
END_TEST

START_TEST(test_redact_truncates_safely)
{
    /* A buffer too small for the whole URI gets a prefix of the redacted form. */
    const char *text = "postgresql://someone:topsecret@db.example.com:5432/app";
    for (size_t len = 1; len < 64; len++) {
        char buf[64];
        memset(buf, 'Z', sizeof buf);
        sr__uri_redact(text, buf, len);
        ck_assert_uint_lt(strlen(buf), len);
        ck_assert_ptr_null(strstr(buf, "top"));
        ck_assert_ptr_null(strstr(buf, "secret"));
        ck_assert(strncmp(buf, "postgresql://someone:***@db.example.com:5432/app", strlen(buf)) == 0);
    }
}
END_TEST

/* ------------------------------------------------------------- redaction */

/*
 * Passwords as written in the URI, and the password they decode to. Every
 * one starts with "ZQ" and ends with "QZ", which appear nowhere else in the
 * templates, so that a leak of either end of the password is found too.
 */
typedef struct secret {
    const char *written;
    const char *decoded;
} secret;

static const secret secrets[] = {
    {"ZQp@ssQZ", "ZQp@ssQZ"},           {"ZQpa:ssQZ", "ZQpa:ssQZ"},     {"ZQpa/ssQZ", "ZQpa/ssQZ"},
    {"ZQp%40ssQZ", "ZQp@ssQZ"},         {"ZQx***yQZ", "ZQx***yQZ"},     {"***ZQ***QZ", "***ZQ***QZ"},
    {"ZQs3cr?tQZ", "ZQs3cr?tQZ"},       {"ZQhash#pwQZ", "ZQhash#pwQZ"}, {"ZQsp aceQZ", "ZQsp aceQZ"},
    {"ZQpct%zzQZ", "ZQpct%zzQZ"},       {"ZQ%2F%3A%40QZ", "ZQ/:@QZ"},   {"ZQa&b=cQZ", "ZQa&b=cQZ"},
    {"ZQ[::1]QZ", "ZQ[::1]QZ"},         {"ZQ:5432QZ", "ZQ:5432QZ"},     {"ZQ%QZ", "ZQ%QZ"},
    {"ZQ@@@QZ", "ZQ@@@QZ"},             {"ZQ'\"\\QZ", "ZQ'\"\\QZ"}, {"ZQ\tnl\nQZ", "ZQ\tnl\nQZ"},
    {"ZQ?password=xQZ", "ZQ?password=xQZ"}, {"ZQ/db?a=1&QZ", "ZQ/db?a=1&QZ"},
};

/* Templates: %s is the password. Valid and malformed, every part of the grammar. */
static const char *const templates[] = {
    "postgresql://bob:%s@db.example.com:5432/app",
    "postgresql://bob:%s@db.example.com:5432/app?sslmode=require",
    "postgresql://bob:%s@db.example.com:99999/app",
    "postgresql://bob:%s@db.example.com:54x/app",
    "postgresql://bob:%s@db.example.com:/app",
    "postgresql://bob:%s@[::1/app",
    "postgresql://bob:%s@[::1]x/app",
    "postgresql://bob:%s@h1,h2/app",
    "postgresql://bob:%s@h/a%%zzpp",
    "postgresql://bob:%s@h/app#frag",
    "postgresql://bob:%s@h/app?x",
    "postgresql://bob:%s@h/app?x=%%zz",
    "postgresql://bob:%s@",
    "postgresql://bob:%s",
    "postgresql://bob:%s/app",
    "postgresql://:%s@h",
    "postgresql:/bob:%s@h/app",
    "postgresql:bob:%s@h/app",
    "bob:%s@h/app",
    "1sql://bob:%s@h",
    "my sql://bob:%s@h",
    "mysql://bob:%s@h:3306/app",
    "mysql://bob:%s@h:3306/app?password=other",
    "postgresql://bob@h/app?password=%s",
    "postgresql://bob@h/app?password=%s&sslmode=require",
    "postgresql://bob@h/app?sslmode=require&password=%s",
    "postgresql://bob@h/app?PASSWORD=%s",
    "postgresql://bob@h/app?pass%%77ord=%s",
    "postgresql://bob@h/app?password=%s&x",
    "postgresql://bob@h/app?password=%s&x=%%zz",
    "postgresql://bob@h:bad/app?password=%s",
    "sqlite:/tmp/a.db?password=%s",
    "sqlite://h/a.db?password=%s",
};

/*
 * `whole`: the text is not a valid URI, so all of the password must be
 * hidden, both ends included. A URI that does parse may give the password a
 * different extent than the template meant ("bob:ZQp@ssQZ" is password "ZQp"
 * at host "ssQZ"); then what the parser calls the password must be hidden.
 */
static void assert_hidden(const char *what, const char *uri, const char *out, const secret *s, bool whole)
{
    ck_assert_msg(strstr(out, s->written) == NULL, "%s of '%s' shows the password: %s", what, uri, out);
    ck_assert_msg(strstr(out, s->decoded) == NULL, "%s of '%s' shows the decoded password: %s", what, uri, out);
    ck_assert_msg(strstr(out, "ZQ") == NULL, "%s of '%s' shows the start of the password: %s", what, uri, out);
    if (whole)
        ck_assert_msg(strstr(out, "QZ") == NULL, "%s of '%s' shows the end of the password: %s", what, uri,
                      out);
}

static void assert_parsed_password_hidden(const char *uri, const sr_uri *u)
{
    if (u->password && strlen(u->password) >= 2)
        ck_assert_msg(strstr(u->redacted, u->password) == NULL, "'%s' shows its password '%s': %s", uri,
                      u->password, u->redacted);
    for (int i = 0; i < u->nparams; i++)
        if (strstr(u->params[i].key, "ass") && strlen(u->params[i].value) >= 2)
            ck_assert_msg(strstr(u->redacted, u->params[i].value) == NULL, "'%s' shows %s: %s", uri,
                          u->params[i].key, u->redacted);
}

START_TEST(test_redaction_never_leaks)
{
    size_t nt = SR_ARRAY_LEN(templates);
    const secret *s = &secrets[_i];
    for (size_t t = 0; t < nt; t++) {
        char uri[512];
        snprintf(uri, sizeof uri, templates[t], s->written);

        sr_uri *u = NULL;
        char err[1024] = "";
        bool valid = sr__uri_parse(uri, &u, err, sizeof err) == SR_OK;
        if (valid) {
            assert_hidden("redacted", uri, u->redacted, s, false);
            assert_parsed_password_hidden(uri, u);
        } else {
            assert_hidden("error message", uri, err, s, true);
        }

        char buf[512];
        sr__uri_redact(uri, buf, sizeof buf);
        assert_hidden("sr__uri_redact", uri, buf, s, !valid);
        ck_assert_msg(strstr(buf, "***") != NULL, "nothing hidden in '%s': %s", uri, buf);
        if (valid) {
            ck_assert_str_eq(buf, u->redacted);
            sr__uri_free(u);
        }

        /* The config builder's messages (bad URI, second primary) as well. */
        sr_config *c = sr_config_new();
        ck_assert_int_eq(sr_config_add_shard(c, "s0"), SR_OK);
        ck_assert_int_eq(sr_config_add_node(c, "s0", SR_PRIMARY, "sqlite::memory:", 1), SR_OK);
        int rc = sr_config_add_node(c, "s0", SR_PRIMARY, uri, 1);
        ck_assert_int_eq(rc, SR_EINVAL); /* second primary or bad URI: either way a message */
        ck_assert_str_ne(sr_config_errmsg(c), "");
        assert_hidden("sr_config_errmsg", uri, sr_config_errmsg(c), s, !valid);
        sr_config_free(c);
    }
}
END_TEST

START_TEST(test_redaction_in_config_file_errors)
{
    /* A password with a space splits the URI on a config line; neither half
     * may be echoed. */
    static const char *const files[] = {
        "[shard a]\nprimary = postgresql://u:ZQmy secret@h/db\n",
        "[shard a]\nprimary = postgresql://u:ZQpw@h/db weight=ZQpw\n",
        "[shard a]\nprimary postgresql://u:ZQpw@h/db\n",
        "[shard a]\nprimary: postgresql://u:ZQpw@h/db = 1\n",
        "primary = postgresql://u:ZQpw@h/db\n",
        "pool.max_size = postgresql://u:ZQpw@h/db\n",
        "shard.distribution = postgresql://u:ZQpw@h/db\n",
        "postgresql://u:ZQpw@h/db = 1\n",
        "[shard a]\nprimary = sqlite::memory:\nprimary = mysql://u:ZQpw@h/db\n",
        "[shard a]\nreplica = mysql://u:ZQpw@h:0/db\n",
    };
    for (size_t i = 0; i < SR_ARRAY_LEN(files); i++) {
        sr_config *c = sr_config_new();
        ck_assert_int_eq(sr_config_parse(c, files[i]), SR_EINVAL);
        const char *m = sr_config_errmsg(c);
        ck_assert_msg(strncmp(m, "line ", 5) == 0, "file %zu: %s", i, m);
        ck_assert_msg(strstr(m, "ZQ") == NULL, "file %zu leaks: %s", i, m);
        sr_config_free(c);
    }
}
END_TEST

START_TEST(test_stored_uri_keeps_password)
{
    /* Redaction is for messages only: the driver needs the real URI. */
    sr_config *c = sr_config_new();
    ck_assert_int_eq(sr_config_add_shard(c, "s0"), SR_OK);
    const char *uri = "postgresql://bob:p%40ss@h:5432/db?password=x";
    ck_assert_int_eq(sr_config_add_node(c, "s0", SR_PRIMARY, uri, 0), SR_OK);
    ck_assert_str_eq(c->shards[0].nodes[0].uri, uri);
    ck_assert_ptr_ne(c->shards[0].nodes[0].uri, uri); /* a copy */
    sr_config_free(c);
}
END_TEST

/* ------------------------------------------------- malformed URIs (audit) */

/* The messages a malformed URI can reach: the parser's, the redactor's and the config builder's. */
static void collect_messages(const char *uri, char msgs[][1100], int *n)
{
    *n = 0;
    sr_uri *u = NULL;
    if (sr__uri_parse(uri, &u, msgs[*n], 1100) == SR_OK)
        sr__uri_free(u);
    (*n)++;
    sr__uri_redact(uri, msgs[(*n)++], 1100);

    sr_config *c = sr_config_new();
    sr_config_add_shard(c, "s0");
    sr_config_add_node(c, "s0", SR_PRIMARY, uri, 1);
    snprintf(msgs[(*n)++], 1100, "%s", sr_config_errmsg(c));
    sr_config_set(c, "pool.max_size", uri);
    snprintf(msgs[(*n)++], 1100, "%s", sr_config_errmsg(c));
    sr_config_shard_set(c, "s0", "keyrange", uri);
    snprintf(msgs[(*n)++], 1100, "%s", sr_config_errmsg(c));
    sr_config_add_shard(c, uri);
    snprintf(msgs[(*n)++], 1100, "%s", sr_config_errmsg(c));
    sr_config_free(c);

    /* The same URI on the lines of a file: as a node, an option, a section. */
    static const char *const files[] = {"[shard a]\nprimary = %s\n", "pool.max_size = %s\n", "[shard %s]\n",
                                        "[%s]\n", "[shard a]\n%s = 1\n", "[shard a]\nkeyrange = %s\n",
                                        "[shard a]\npin_int = %s\n"};
    for (size_t i = 0; i < SR_ARRAY_LEN(files); i++) {
        char text[1200];
        snprintf(text, sizeof text, files[i], uri);
        c = sr_config_new();
        sr_config_parse(c, text);
        snprintf(msgs[(*n)++], 1100, "%s", sr_config_errmsg(c));
        sr_config_free(c);
    }
}

#define MAX_MSGS 16

/* No `len`-byte piece of `secret` in any message about `uri`. */
static void assert_no_piece(const char *uri, const char *secret, size_t len)
{
    char msgs[MAX_MSGS][1100];
    int n;
    collect_messages(uri, msgs, &n);
    size_t sl = strlen(secret);
    for (int m = 0; m < n; m++) {
        for (size_t i = 0; i + len <= sl; i++) {
            char piece[8] = "";
            memcpy(piece, secret + i, len);
            ck_assert_msg(strstr(msgs[m], piece) == NULL, "message %d about '%s' shows '%s' of '%s': %s", m, uri,
                          piece, secret, msgs[m]);
        }
    }
}

START_TEST(test_audit_inputs)
{
    /* The audit's reproducers: no ':' in the authority, "password=x:y@z" in the query. */
    static const char *const audit[] = {
        "postgresql://db.example.com/app?password=hunter2:x@y#",
        "postgresql://db.example.com/app?password=hunter2:x@y%zz",
        "postgresql://db.example.com/app?password=hunter2:x@y ",
        "postgresql://db.example.com/app?password=hunter2%:x@y",
        "postgresql://db.example.com/app?password=hunter2 :x@y",
        "mysql://db.example.com/app?sslmode=x&password=hunter2:x@y#",
    };
    for (size_t i = 0; i < SR_ARRAY_LEN(audit); i++) {
        const char *err = parse_bad(audit[i]);
        ck_assert_msg(strstr(err, "invalid URI 'postgresql://***'") == err ||
                          strstr(err, "invalid URI 'mysql://***'") == err,
                      "%s", err);
        /* 4 bytes: "ter" of "hunter2" is in the word "after" of a reason. */
        assert_no_piece(audit[i], "hunter2", 4);
    }
}
END_TEST

/*
 * Secrets for the sweep: their 3-byte pieces occur in no template and in no
 * message text, so any piece found in a message came from the secret.
 */
static const char *const sweep_secrets[] = {
    "ZQJXKV",        "ZQ:JX@KV",     "ZQ@JX:KV",    "ZQ%JX%KV",       "ZQ%zzJXKV",  "ZQJ#X#KV",
    "ZQ?JX=KV",      "ZQJ&X&KV",     "ZQ/JX/KV",    "ZQJX KV",        "ZQ[JX]KV",   "ZQ%40JX%3AKV",
    "ZQ**JX*KV",     "ZQJ,XKV",      "ZQJX\tKV",    "ZQ'JX\"KV",      "ZQJ%0X0KV",  "ZQ::JX@@KV",
    "ZQpAsSwOrD=JX", "ZQJX@h:5q/KV", "ZQJX?a=b#KV", "ZQ%%JX%2%KV",   "ZQJ\\X\\KV", "ZQJX;KV",
};

/* Malformed templates (%s is the secret): every way the audit found, and more. */
static const char *const sweep_templates[] = {
    "postgresql://db.example.com/app?password=%s#",
    "postgresql://db.example.com/app?password=%s:x@y#",
    "postgresql://db.example.com/app?password=%s:x@y%%zz",
    "postgresql://db.example.com/app?password=%s:x@y ",
    "postgresql://db.example.com/app?password=%s%%",
    "postgresql://db.example.com/app?password=%s&x",
    "postgresql://db.example.com/app?x&password=%s",
    "postgresql://db.example.com/app?=v&password=%s",
    "postgresql://db.example.com:0/app?password=%s",
    "postgresql://db.example.com/app?pwd=%s:x@y#",
    "postgresql://db.example.com/app?sslpassword=%s#",
    "postgresql://u:%s",
    "postgresql://u:%s/app",
    "postgresql://u:%s@",
    "postgresql://u:%s@h:0/app",
    "postgresql://u:%s@h/app#f",
    "postgresql://u:%s@h/a%%zz",
    "postgresql://u:%s@[::1/app",
    "postgresql://u:%s@h1,h2/app",
    "postgresql://u:%s@h/app?x",
    "postgresql://u:%s@h/app ",
    "postgresql://u:%s@h/app\n",
    "postgresql://u:%s%%@h/app",
    "postgresql:u:%s@h/app",
    "postgresql:/u:%s@h/app",
    "u:%s@h/app",
    ":%s@h",
    "1pg://u:%s@h",
    "my sql://u:%s@h",
    "sqlite://h/a.db?password=%s",
    "sqlite:/a#b.db?password=%s",
    "sqlite:/a.db?password=%s%%zz",
    "mysql://u:%s@h:99999/db",
    "mysql://u@h/db?password=%s&password_env=X",
    "postgresql://u:%s@h/db?password_file=/x",
    "postgresql://u@h/db?password=%s&password_file=/x",
};

START_TEST(test_malformed_sweep)
{
    const char *secret = sweep_secrets[_i];
    int checked = 0;
    for (size_t t = 0; t < SR_ARRAY_LEN(sweep_templates); t++) {
        char uri[512];
        snprintf(uri, sizeof uri, sweep_templates[t], secret);
        sr_uri *u = NULL;
        if (sr__uri_parse(uri, &u, NULL, 0) == SR_OK) {
            sr__uri_free(u); /* the secret made it valid: the parsed cases test that */
            continue;
        }
        assert_no_piece(uri, secret, 3);
        checked++;
    }
    ck_assert_int_ge(checked, (int)SR_ARRAY_LEN(sweep_templates) - 6);
}
END_TEST

START_TEST(test_unparsed_shown_by_scheme)
{
    /* Only the scheme, the reason and (outside passwords) an offset. */
    ck_assert_str_eq(parse_bad("postgresql://h:54a/db"),
                     "invalid URI 'postgresql://***' at offset 15: the port is not a number");
    ck_assert_str_eq(parse_bad("postgresql://u:p%zz@h/db"),
                     "invalid URI 'postgresql://***': invalid percent-encoding in the password (expected %XX)");
    ck_assert_str_eq(parse_bad("postgresql://h/db?password=a%zz"),
                     "invalid URI 'postgresql://***': invalid percent-encoding in the parameter values "
                     "(expected %XX)");
    ck_assert_str_eq(parse_bad("postgresql://h/db?app=a%zz"),
                     "invalid URI 'postgresql://***' at offset 23: invalid percent-encoding in the parameter "
                     "values (expected %XX)");
    ck_assert_str_eq(parse_bad("sqlite:a%zz.db"),
                     "invalid URI 'sqlite:***' at offset 8: invalid percent-encoding in the path (expected %XX)");
    /* An '@' anywhere: no offset (it would count a password's bytes). */
    ck_assert_str_eq(parse_bad("bob:pw@h/db"), "invalid URI '***': expected '//' after the scheme "
                                               "(SCHEME://[user[:password]@]host[:port][/database])");
    ck_assert_str_eq(parse_bad("postgresql://bob:my pass@h/db"),
                     "invalid URI 'postgresql://***': whitespace or a control character (percent-encode it)");
    /* A password with a raw '/' or '?' once parsed as host:port and showed the rest
     * as the database or the query (the review's find): refused, shown by scheme only. */
    static const char *const raw_slash[] = {"postgresql://bob:1234/x@db/app", "postgresql://:1234/x@h",
                                            "postgresql://bob:1234?a=b@h", "mysql://bo/b:pw@db/app"};
    for (size_t i = 0; i < sizeof raw_slash / sizeof raw_slash[0]; i++) {
        const char *m = parse_bad(raw_slash[i]);
        ck_assert_msg(strstr(m, "an '@' after the host") && !strstr(m, "1234") && !strstr(m, "pw@"),
                      "%s -> %s", raw_slash[i], m);
    }
    ck_assert_str_eq(parse_bad("pg sql://h"),
                     "invalid URI '***' at offset 2: whitespace or a control character (percent-encode it)");

    /* The redactor: text with no ':', '@' or '=' holds no URI password and is shown. */
    char buf[128];
    sr__uri_redact("16x", buf, sizeof buf);
    ck_assert_str_eq(buf, "16x");
    sr__uri_redact("postgresql://u:pw@h:0/db", buf, sizeof buf);
    ck_assert_str_eq(buf, "postgresql://***");
    sr__uri_redact("u:pw@h", buf, sizeof buf);
    ck_assert_str_eq(buf, "***");
    sr__uri_redact("a=b", buf, sizeof buf);
    ck_assert_str_eq(buf, "***");
}
END_TEST

/* ------------------------------------------------------- password sources */

START_TEST(test_source_parse)
{
    sr_uri *u = parse_ok("postgresql://bob@h/db?password_file=/run/secrets/pw&sslmode=disable");
    /* The path is not a secret: messages may name it. */
    ck_assert_str_eq(u->redacted, "postgresql://bob@h/db?password_file=/run/secrets/pw&sslmode=disable");
    ck_assert_ptr_null(u->password);
    sr__uri_free(u);
    u = parse_ok("mysql://bob@h/db?password_env=DB_PW");
    ck_assert_str_eq(u->redacted, "mysql://bob@h/db?password_env=DB_PW");
    sr__uri_free(u);

    static const invalid_case bad[] = {
        {"postgresql://bob:pw@h/db?password_file=/x", "password_file and a password"},
        {"postgresql://bob:@h/db?password_env=X", "password_env and a password"},
        {"postgresql://bob@h/db?password=pw&password_file=/x", "password_file and a password"},
        {"postgresql://bob@h/db?password_file=/x&password_env=X", "more than one"},
        {"postgresql://bob@h/db?password_file=/x&password_file=/y", "more than one"},
        {"postgresql://bob@h/db?password_file=", "password_file is empty"},
        {"postgresql://bob@h/db?password_env=", "password_env is empty"},
        {"postgresql://bob@h/db?password_env=1X", "not an environment variable name"},
        {"postgresql://bob@h/db?password_env=A-B", "not an environment variable name"},
    };
    for (size_t i = 0; i < SR_ARRAY_LEN(bad); i++) {
        const char *err = parse_bad(bad[i].text);
        ck_assert_msg(strstr(err, bad[i].reason), "'%s': %s", bad[i].text, err);
        ck_assert_msg(!strstr(err, "pw"), "'%s': %s", bad[i].text, err);
    }
}
END_TEST

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sr_uri_test_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void write_file(const char *path, const char *content, mode_t mode)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(content, f);
    fclose(f);
    ck_assert_int_eq(chmod(path, mode), 0);
}

/* Resolves `text`; returns the status, and the password (or the message) in out. */
static int resolve(const char *text, char *out, size_t len)
{
    sr_uri *u = parse_ok(text), *r = NULL;
    char err[1024] = "";
    int rc = sr__uri_resolve_password(u, &r, err, sizeof err);
    if (rc == SR_OK) {
        ck_assert_ptr_nonnull(r);
        snprintf(out, len, "%s", r->password);
        /* The source is gone from what drivers see; the redacted form still names it. */
        for (int i = 0; i < r->nparams; i++)
            ck_assert(strncmp(r->params[i].key, "password_", 9) != 0);
        ck_assert_int_eq(r->nparams, u->nparams - 1);
        ck_assert_str_eq(r->redacted, u->redacted);
        ck_assert_str_eq(r->host, u->host);
        ck_assert_str_eq(r->user, u->user);
        sr__uri_free(r);
    } else {
        ck_assert_ptr_null(r);
        snprintf(out, len, "%s", err);
    }
    sr__uri_free(u);
    return rc;
}

START_TEST(test_source_file)
{
    make_tmpdir();
    char path[128], uri[256], out[1100];
    snprintf(path, sizeof path, "%s/pw", tmpdir);
    snprintf(uri, sizeof uri, "postgresql://bob@h/db?sslmode=disable&password_file=%s", path);

    write_file(path, "Zs3cr3t-file\n", 0600);
    ck_assert_int_eq(resolve(uri, out, sizeof out), SR_OK);
    ck_assert_str_eq(out, "Zs3cr3t-file"); /* one trailing newline dropped */
    write_file(path, "Zs3cr3t-file\r\n", 0400);
    ck_assert_int_eq(resolve(uri, out, sizeof out), SR_OK);
    ck_assert_str_eq(out, "Zs3cr3t-file");
    write_file(path, "Zs3 cr3t \n\n", 0600);
    ck_assert_int_eq(resolve(uri, out, sizeof out), SR_OK);
    ck_assert_str_eq(out, "Zs3 cr3t \n"); /* only one line end: the rest is the password */

    /* Errors name the file and never show its content. */
    write_file(path, "Zs3cr3t-file\n", 0640);
    ck_assert_int_eq(resolve(uri, out, sizeof out), SR_EINVAL);
    ck_assert_msg(strstr(out, path) && strstr(out, "group or others") && strstr(out, "640"), "%s", out);
    ck_assert_msg(!strstr(out, "Zs3"), "%s", out);
    write_file(path, "Zs3cr3t-file\n", 0604);
    ck_assert_int_eq(resolve(uri, out, sizeof out), SR_EINVAL);
    ck_assert_msg(!strstr(out, "Zs3"), "%s", out);
    write_file(path, "", 0600);
    ck_assert_int_eq(resolve(uri, out, sizeof out), SR_EINVAL);
    ck_assert_msg(strstr(out, "is empty"), "%s", out);
    write_file(path, "\n", 0600);
    ck_assert_int_eq(resolve(uri, out, sizeof out), SR_EINVAL);
    ck_assert_msg(strstr(out, "is empty"), "%s", out);
    char big[1100];
    memset(big, 'Z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    write_file(path, big, 0600);
    ck_assert_int_eq(resolve(uri, out, sizeof out), SR_EINVAL);
    ck_assert_msg(strstr(out, "larger than 1024 bytes") && !strstr(out, "ZZZ"), "%s", out);
    unlink(path);
    ck_assert_int_eq(resolve(uri, out, sizeof out), SR_EINVAL);
    ck_assert_msg(strstr(out, path) && strstr(out, strerror(ENOENT)), "%s", out);

    /* A directory, and a FIFO (opening it must not wait for a writer). */
    snprintf(uri, sizeof uri, "postgresql://bob@h/db?password_file=%s", tmpdir);
    ck_assert_int_eq(resolve(uri, out, sizeof out), SR_EINVAL);
    ck_assert_msg(strstr(out, "not a regular file"), "%s", out);
    char fifo[128];
    snprintf(fifo, sizeof fifo, "%s/fifo", tmpdir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    snprintf(uri, sizeof uri, "postgresql://bob@h/db?password_file=%s", fifo);
    ck_assert_int_eq(resolve(uri, out, sizeof out), SR_EINVAL);
    ck_assert_msg(strstr(out, "not a regular file"), "%s", out);
    unlink(fifo);
    rmdir(tmpdir);

    /* No source: nothing to do, the URI is used as is. */
    sr_uri *u = parse_ok("postgresql://bob:pw@h/db"), *r = (sr_uri *)1;
    ck_assert_int_eq(sr__uri_resolve_password(u, &r, out, sizeof out), SR_OK);
    ck_assert_ptr_null(r);
    sr__uri_free(u);
}
END_TEST

START_TEST(test_source_env)
{
    char out[1100];
    setenv("SR_TEST_PW", "Zenv-s3cr3t", 1);
    ck_assert_int_eq(resolve("mysql://bob@h/db?password_env=SR_TEST_PW&charset=utf8mb4", out, sizeof out), SR_OK);
    ck_assert_str_eq(out, "Zenv-s3cr3t");
    setenv("SR_TEST_PW", "", 1);
    ck_assert_int_eq(resolve("mysql://bob@h/db?password_env=SR_TEST_PW", out, sizeof out), SR_EINVAL);
    ck_assert_msg(strstr(out, "SR_TEST_PW is empty"), "%s", out);
    unsetenv("SR_TEST_PW");
    ck_assert_int_eq(resolve("mysql://bob@h/db?password_env=SR_TEST_PW", out, sizeof out), SR_EINVAL);
    ck_assert_msg(strstr(out, "SR_TEST_PW is not set"), "%s", out);
}
END_TEST

static Suite *uri_suite(void)
{
    Suite *s = suite_create("uri");
    TCase *tc = tcase_create("parse");
    tcase_add_loop_test(tc, test_valid, 0, (int)SR_ARRAY_LEN(valid_cases));
    tcase_add_test(tc, test_params_decoded);
    tcase_add_test(tc, test_long_uri);
    tcase_add_loop_test(tc, test_invalid, 0, (int)SR_ARRAY_LEN(invalid_cases));
    tcase_add_test(tc, test_null_args);
    suite_add_tcase(s, tc);

    tc = tcase_create("redact");
    tcase_add_test(tc, test_redact_truncates_safely);
    tcase_add_loop_test(tc, test_redaction_never_leaks, 0, (int)SR_ARRAY_LEN(secrets));
    tcase_add_test(tc, test_redaction_in_config_file_errors);
    tcase_add_test(tc, test_stored_uri_keeps_password);
    tcase_add_test(tc, test_audit_inputs);
    tcase_add_loop_test(tc, test_malformed_sweep, 0, (int)SR_ARRAY_LEN(sweep_secrets));
    tcase_add_test(tc, test_unparsed_shown_by_scheme);
    suite_add_tcase(s, tc);

    tc = tcase_create("sources");
    tcase_add_test(tc, test_source_parse);
    tcase_add_test(tc, test_source_file);
    tcase_add_test(tc, test_source_env);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(uri_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
