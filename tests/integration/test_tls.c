/*
 * TLS between shardroute and its backends (issue 9), against the real servers
 * of tests/env/ (pg_cluster.sh and mariadb_cluster.sh turn TLS on with a
 * throw-away CA from make_certs.sh; the server certificate names IP 127.0.0.1
 * and DNS localhost). Everything goes through the public API; that a
 * connection really is encrypted is asked of the server itself
 * (pg_stat_ssl, Ssl_cipher), on the connection the router used.
 *
 * Environment: SR_PG_PRIMARY, SR_PG_REPLICA1, SR_PG_PW_USER,
 * SR_PG_PW_PASSWORD, SR_PG_TLS_CA, SR_PG_TLS_WRONG_CA (pg_cluster.sh) and
 * SR_MY_PRIMARY, SR_MY_REPLICA, SR_MY_TLS_CA, SR_MY_TLS_WRONG_CA
 * (mariadb_cluster.sh). A backend whose driver is not built
 * (SR_TEST_TLS_POSTGRES / SR_TEST_TLS_MYSQL = 0) is left out; one whose
 * servers are not in the environment is skipped, unless CI is set, where
 * that is a failure. With neither, the suite exits 77.
 *
 * To see which modes check the server's name, a connection names a host the
 * certificate does not: for libpq host=not-this-server.invalid with
 * hostaddr=127.0.0.1 (the name is only verified, never looked up); for
 * Connector/C 127.1, 127.0.0.1 spelled so that OpenSSL's IP match fails
 * (libpq reads it as the certificate's address). The modes that check the
 * name must refuse it, those that check only the chain must not.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <shardroute.h>

#include "testutil.h"

#ifndef SR_TEST_TLS_POSTGRES
#define SR_TEST_TLS_POSTGRES 1
#endif
#ifndef SR_TEST_TLS_MYSQL
#define SR_TEST_TLS_MYSQL 1
#endif

/* ---- helpers ------------------------------------------------------------- */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v && *v, "%s is not set (run under tests/env/with_servers.sh)", name);
    return v;
}

/* "scheme://user[:pw]@127.0.0.1:PORT" (the scripts' form) with its host
 * replaced by `host`, then "/db" and `query` appended. */
static char *uri_on(const char *base, const char *host, const char *db, const char *query)
{
    const char *at = strrchr(base, '@');
    ck_assert_ptr_nonnull(at);
    const char *port = strrchr(at, ':');
    ck_assert_ptr_nonnull(port);
    return xfmt("%.*s%s%s/%s%s", (int)(at + 1 - base), base, host, port, db, query);
}

/* A router with one shard "s0": `primary`, and `replica` when not NULL.
 * Bounded connects and statements: a TLS handshake that stalls fails the
 * test instead of hanging it. */
static sr_router *open_router(const char *primary, const char *replica)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sr_config_set(c, "connect_timeout_ms", "10000"), SR_OK);
    ck_assert_int_eq(sr_config_set(c, "statement_timeout_ms", "20000"), SR_OK);
    ck_assert_int_eq(sr_config_add_shard(c, "s0"), SR_OK);
    ck_assert_msg(sr_config_add_node(c, "s0", SR_PRIMARY, primary, 1) == SR_OK, "%s",
                  sr_config_errmsg(c));
    if (replica)
        ck_assert_msg(sr_config_add_node(c, "s0", SR_REPLICA, replica, 1) == SR_OK, "%s",
                      sr_config_errmsg(c));
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

/* Reads go to the replica whatever this session wrote (routing, not
 * consistency, is under test here). */
static sr_session *session(sr_router *r)
{
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    ck_assert_int_eq(sr_session_set(s, "consistency", "any"), SR_OK);
    return s;
}

/* Row 0 of a statement that must succeed, column `col`, as a new string ("" for NULL). */
static char *value(sr_session *s, sr_intent intent, const char *sql, int col)
{
    sr_result *res = NULL;
    int rc = sr_exec(s, sr_key_int(1), intent, sql, 0, NULL, &res);
    ck_assert_msg(rc == SR_OK, "%s: %s (%s)", sql, sr_strerror(rc), sr_session_errmsg(s));
    ck_assert_msg(sr_result_nrows(res) >= 1, "%s: no row", sql);
    const char *v = sr_result_value(res, 0, col);
    char *copy = strdup(v ? v : "");
    sr_result_free(res);
    return copy;
}

/* A statement that must fail to connect: the message names the node (its
 * redacted URI contains `node`), contains `why`, and never `password`. The
 * session stays usable: the caller goes on with it. */
static void expect_refused(sr_session *s, int want, const char *node, const char *why,
                           const char *password)
{
    int rc = sr_exec(s, sr_key_int(1), SR_WRITE, "SELECT 1", 0, NULL, NULL);
    const char *msg = sr_session_errmsg(s);
    ck_assert_msg(rc == want, "got %s, want %s (%s)", sr_strerror(rc), sr_strerror(want), msg);
    ck_assert_msg(strstr(msg, node), "message does not name the node %s: %s", node, msg);
    ck_assert_msg(strstr(msg, why), "message does not say '%s': %s", why, msg);
    ck_assert_msg(!password || !strstr(msg, password), "the password leaked: %s", msg);
}

/* ---- PostgreSQL ------------------------------------------------------------ */

/* The primary (and replica1) as shard0 with query string `q`, on `host`. */
static sr_router *pg_router(const char *host, const char *q, int with_replica)
{
    char *p = uri_on(env("SR_PG_PRIMARY"), host, "shard0", q);
    char *r = with_replica ? uri_on(env("SR_PG_REPLICA1"), host, "shard0", q) : NULL;
    sr_router *rt = open_router(p, r);
    free(p);
    free(r);
    return rt;
}

START_TEST(pg_verify_full_encrypts_routed_writes_and_reads)
{
    char *q = xfmt("?sslmode=verify-full&sslrootcert=%s", env("SR_PG_TLS_CA"));
    sr_router *r = pg_router("127.0.0.1", q, 1);
    sr_session *s = session(r);
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE,
                             "DROP TABLE IF EXISTS sr_tls; CREATE TABLE sr_tls (k int, tls bool)",
                             0, NULL, NULL),
                     SR_OK);
    /* The write records whether its own connection is encrypted. */
    char *w = value(s, SR_WRITE,
                    "INSERT INTO sr_tls SELECT 1, ssl FROM pg_stat_ssl "
                    "WHERE pid = pg_backend_pid() RETURNING tls, pg_is_in_recovery()",
                    0);
    ck_assert_str_eq(w, "1"); /* a bool: "1" / "0" (SR_TYPE_BOOL) */
    free(w);
    w = value(s, SR_WRITE,
              "SELECT pg_is_in_recovery(), version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
              0);
    ck_assert_str_eq(w, "0"); /* the write path is the primary */
    free(w);
    char *read_node = value(s, SR_READ,
                            "SELECT pg_is_in_recovery() FROM pg_stat_ssl "
                            "WHERE pid = pg_backend_pid() AND ssl",
                            0);
    ck_assert_str_eq(read_node, "1"); /* a replica, over TLS */
    free(read_node);
    char *version = value(s, SR_READ,
                          "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()", 0);
    ck_assert_msg(strncmp(version, "TLSv1", 5) == 0, "protocol '%s'", version);
    free(version);
    sr_session_free(s);
    sr_router_close(r);
    free(q);
}
END_TEST

START_TEST(pg_wrong_ca_is_refused_clearly)
{
    const char *user = env("SR_PG_PW_USER"), *pw = env("SR_PG_PW_PASSWORD");
    const char *base = env("SR_PG_PRIMARY");
    const char *port = strrchr(base, ':') + 1;
    char *uri = xfmt("postgresql://%s:%s@127.0.0.1:%s/shard0?sslmode=verify-full&sslrootcert=%s",
                     user, pw, port, env("SR_PG_TLS_WRONG_CA"));
    sr_router *r = open_router(uri, NULL);
    sr_session *s = session(r);
    char *node = xfmt("%s:***@127.0.0.1:%s", user, port);
    expect_refused(s, SR_ECONNECT, node, "certificate verify failed", pw);
    sr_session_free(s);
    sr_router_close(r);
    free(uri);

    /* verify-ca trusts the same wrong CA no more. */
    uri = xfmt("postgresql://%s:%s@127.0.0.1:%s/shard0?sslmode=verify-ca&sslrootcert=%s", user,
               pw, port, env("SR_PG_TLS_WRONG_CA"));
    r = open_router(uri, NULL);
    s = session(r);
    expect_refused(s, SR_ECONNECT, node, "certificate verify failed", pw);
    sr_session_free(s);
    sr_router_close(r);
    free(uri);
    free(node);
}
END_TEST

START_TEST(pg_verify_full_checks_the_host_name_verify_ca_does_not)
{
    const char *other = "host=not-this-server.invalid&hostaddr=127.0.0.1";
    char *q = xfmt("?sslmode=verify-full&sslrootcert=%s&%s", env("SR_PG_TLS_CA"), other);
    sr_router *r = pg_router("127.0.0.1", q, 0);
    sr_session *s = session(r);
    expect_refused(s, SR_ECONNECT, "@127.0.0.1:", "does not match host name", NULL);
    sr_session_free(s);
    sr_router_close(r);
    free(q);

    q = xfmt("?sslmode=verify-ca&sslrootcert=%s&%s", env("SR_PG_TLS_CA"), other);
    r = pg_router("127.0.0.1", q, 0);
    s = session(r);
    char *v = value(s, SR_WRITE, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", 0);
    ck_assert_str_eq(v, "1");
    free(v);
    sr_session_free(s);
    sr_router_close(r);
    free(q);
}
END_TEST

START_TEST(pg_sslmode_disable_and_require_do_what_they_say)
{
    sr_router *r = pg_router("127.0.0.1", "?sslmode=disable", 0);
    sr_session *s = session(r);
    char *v = value(s, SR_WRITE, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", 0);
    ck_assert_str_eq(v, "0");
    free(v);
    sr_session_free(s);
    sr_router_close(r);

    /* require: encrypted, nothing verified (libpq was given no CA). */
    r = pg_router("127.0.0.1", "?sslmode=require&host=not-this-server.invalid&hostaddr=127.0.0.1",
                  0);
    s = session(r);
    v = value(s, SR_WRITE, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", 0);
    ck_assert_str_eq(v, "1");
    free(v);
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* Results larger than a TLS record (16 kB) arrive whole and in time: the
 * driver's own poll() loop must not wait on a socket while libpq's TLS layer
 * still holds decrypted data. */
START_TEST(pg_large_results_arrive_over_tls)
{
    char *q = xfmt("?sslmode=verify-full&sslrootcert=%s", env("SR_PG_TLS_CA"));
    sr_router *r = pg_router("127.0.0.1", q, 1);
    sr_session *s = session(r);
    for (int round = 0; round < 3; round++) {
        sr_intent intent = round == 1 ? SR_WRITE : SR_READ;
        sr_result *res = NULL;
        int rc = sr_exec(s, sr_key_int(1), intent,
                         "SELECT repeat('x', 1000000 + g), g FROM generate_series(1, 20) g", 0,
                         NULL, &res);
        ck_assert_msg(rc == SR_OK, "%s (%s)", sr_strerror(rc), sr_session_errmsg(s));
        ck_assert_int_eq(sr_result_nrows(res), 20);
        for (int i = 0; i < 20; i++)
            ck_assert_uint_eq(sr_result_length(res, i, 0), (size_t)(1000000 + i + 1));
        sr_result_free(res);
        char *n = value(s, intent, "SELECT count(*) FROM generate_series(1, 100000)", 0);
        ck_assert_str_eq(n, "100000");
        free(n);
    }
    sr_session_free(s);
    sr_router_close(r);
    free(q);
}
END_TEST

/* ---- MariaDB ------------------------------------------------------------------ */

static const char *my_password(void)
{
    /* mysql://user:PASSWORD@...: the scripts' URIs carry one. */
    static char pw[128];
    const char *u = env("SR_MY_PRIMARY");
    const char *colon = strchr(strstr(u, "://") + 3, ':');
    const char *at = strrchr(u, '@');
    ck_assert(colon && at && colon < at);
    snprintf(pw, sizeof pw, "%.*s", (int)(at - colon - 1), colon + 1);
    return pw;
}

static sr_router *my_router(const char *host, const char *q, int with_replica)
{
    char *p = uri_on(env("SR_MY_PRIMARY"), host, "shard0", q);
    char *r = with_replica ? uri_on(env("SR_MY_REPLICA"), host, "shard0", q) : NULL;
    sr_router *rt = open_router(p, r);
    free(p);
    free(r);
    return rt;
}

/* The Ssl_cipher of the connection an `intent` statement is routed to ("" in clear text). */
static char *my_cipher(sr_session *s, sr_intent intent)
{
    return value(s, intent, "SHOW SESSION STATUS LIKE 'Ssl_cipher'", 1);
}

START_TEST(my_verify_identity_encrypts_routed_writes_and_reads)
{
    char *q = xfmt("?ssl-mode=VERIFY_IDENTITY&ssl-ca=%s", env("SR_MY_TLS_CA"));
    sr_router *r = my_router("127.0.0.1", q, 1);
    sr_session *s = session(r);
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE, "DROP TABLE IF EXISTS sr_tls", 0, NULL,
                             NULL),
                     SR_OK);
    ck_assert_int_eq(sr_exec(s, sr_key_int(1), SR_WRITE,
                             "CREATE TABLE sr_tls (k INT PRIMARY KEY, v TEXT)", 0, NULL, NULL),
                     SR_OK);
    const char *p[] = {"1", "over tls"};
    sr_result *res = NULL;
    ck_assert_int_eq(
        sr_exec(s, sr_key_int(1), SR_WRITE, "INSERT INTO sr_tls VALUES (?, ?)", 2, p, &res), SR_OK);
    ck_assert_int_eq(sr_result_affected(res), 1);
    sr_result_free(res);

    char *ro = value(s, SR_WRITE, "SELECT @@read_only", 0);
    ck_assert_str_eq(ro, "0"); /* the write path is the primary */
    free(ro);
    char *c = my_cipher(s, SR_WRITE);
    ck_assert_msg(c[0] != '\0', "the primary connection is not encrypted");
    free(c);

    ro = value(s, SR_READ, "SELECT @@read_only", 0);
    ck_assert_str_eq(ro, "1"); /* the read path is the replica */
    free(ro);
    c = my_cipher(s, SR_READ);
    ck_assert_msg(c[0] != '\0', "the replica connection is not encrypted");
    free(c);
    sr_session_free(s);
    sr_router_close(r);
    free(q);
}
END_TEST

START_TEST(my_wrong_ca_is_refused_clearly)
{
    const char *modes[] = {"VERIFY_IDENTITY", "VERIFY_CA", "REQUIRED", "PREFERRED"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        /* Connector/C verifies the chain whenever it is given a CA: even
         * PREFERRED does not fall back to clear text on a bad certificate. */
        char *q = xfmt("?ssl-mode=%s&ssl-ca=%s", modes[i], env("SR_MY_TLS_WRONG_CA"));
        sr_router *r = my_router("127.0.0.1", q, 0);
        sr_session *s = session(r);
        const char *port = strrchr(env("SR_MY_PRIMARY"), ':') + 1;
        char *node = xfmt(":***@127.0.0.1:%s/shard0", port);
        expect_refused(s, SR_ECONNECT, node, "TLS failed", my_password());
        ck_assert_msg(strstr(sr_session_errmsg(s), "certificate"), "%s: %s", modes[i],
                      sr_session_errmsg(s));
        free(node);
        sr_session_free(s);
        sr_router_close(r);
        free(q);
    }
}
END_TEST

START_TEST(my_verify_identity_checks_the_host_name_verify_ca_does_not)
{
    char *q = xfmt("?ssl-mode=VERIFY_IDENTITY&ssl-ca=%s", env("SR_MY_TLS_CA"));
    sr_router *r = my_router("127.1", q, 0);
    sr_session *s = session(r);
    expect_refused(s, SR_ECONNECT, "@127.1:", "TLS failed", my_password());
    sr_session_free(s);
    sr_router_close(r);
    free(q);

    q = xfmt("?ssl-mode=VERIFY_CA&ssl-ca=%s", env("SR_MY_TLS_CA"));
    r = my_router("127.1", q, 0);
    s = session(r);
    char *c = my_cipher(s, SR_WRITE);
    ck_assert_msg(c[0] != '\0', "VERIFY_CA connected in clear text");
    free(c);
    sr_session_free(s);
    sr_router_close(r);
    free(q);

    /* Connector/C has no chain-only check without a CA: refused, and said why. */
    r = my_router("127.0.0.1", "?ssl-mode=VERIFY_CA", 0);
    s = session(r);
    int rc = sr_exec(s, sr_key_int(1), SR_WRITE, "SELECT 1", 0, NULL, NULL);
    ck_assert_msg(rc == SR_EINVAL, "%s (%s)", sr_strerror(rc), sr_session_errmsg(s));
    ck_assert_msg(strstr(sr_session_errmsg(s), "needs ssl-ca"), "%s", sr_session_errmsg(s));
    sr_session_free(s);
    sr_router_close(r);
}
END_TEST

/* Each ssl-mode, asked of the server: encrypted or not. */
START_TEST(my_ssl_modes_do_what_they_say)
{
    char *with_ca = xfmt("&ssl-ca=%s", env("SR_MY_TLS_CA"));
    const struct {
        const char *query;
        int encrypted;
    } cases[] = {
        {"?ssl-mode=PREFERRED", 1}, /* before issue 9 this connected in clear text */
        {"?ssl_mode=preferred", 1},
        {"?ssl-mode=REQUIRED", 1},
        {"?ssl-mode=DISABLED", 0},
        {"", 0}, /* no ssl-mode and no ssl-* file: Connector/C's default, clear text */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int ca = 0; ca < 2; ca++) {
            /* A CA turns TLS on by itself (Connector/C), except under DISABLED. */
            int want = cases[i].encrypted || (ca && strstr(cases[i].query, "DISABLED") == NULL);
            char *q = ca ? xfmt("%s%s", cases[i].query[0] ? cases[i].query : "?",
                                with_ca + (cases[i].query[0] ? 0 : 1))
                         : strdup(cases[i].query);
            sr_router *r = my_router("127.0.0.1", q, 0);
            sr_session *s = session(r);
            char *c = my_cipher(s, SR_WRITE);
            ck_assert_msg((c[0] != '\0') == want, "'%s': Ssl_cipher '%s'", q, c);
            free(c);
            sr_session_free(s);
            sr_router_close(r);
            free(q);
        }
    }
    free(with_ca);
}
END_TEST

START_TEST(my_large_results_arrive_over_tls)
{
    char *q = xfmt("?ssl-mode=VERIFY_IDENTITY&ssl-ca=%s", env("SR_MY_TLS_CA"));
    sr_router *r = my_router("127.0.0.1", q, 1);
    sr_session *s = session(r);
    for (int round = 0; round < 3; round++) {
        sr_intent intent = round == 1 ? SR_WRITE : SR_READ;
        sr_result *res = NULL;
        int rc = sr_exec(s, sr_key_int(1), intent,
                         "SELECT REPEAT('x', 1000000 + seq), seq FROM seq_1_to_20", 0, NULL, &res);
        ck_assert_msg(rc == SR_OK, "%s (%s)", sr_strerror(rc), sr_session_errmsg(s));
        ck_assert_int_eq(sr_result_nrows(res), 20);
        for (int i = 0; i < 20; i++)
            ck_assert_uint_eq(sr_result_length(res, i, 0), (size_t)(1000000 + i + 1));
        sr_result_free(res);
    }
    sr_session_free(s);
    sr_router_close(r);
    free(q);
}
END_TEST

/*
 * A stand-in for a MySQL server without TLS (the real ones offer it): it
 * greets every connection with a protocol-10 handshake that lacks
 * CLIENT_SSL, accepts whatever login comes back (an OK packet), then waits
 * for the client to hang up. Every wait is bounded.
 */
typedef struct plain_server {
    int fd;
    int port;
    atomic_int stop;
    atomic_int logins; /* handshake responses answered with OK */
    pthread_t thread;
} plain_server;

/* Waits up to 2 s for fd to be readable; 1 if it is. */
static int readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 2000) > 0;
}

static void serve_one(plain_server *srv, int c)
{
    static const char version[] = "5.7.99-no-tls";
    unsigned char g[128];
    size_t n = 4;
    g[n++] = 10; /* protocol version */
    memcpy(g + n, version, sizeof version);
    n += sizeof version;
    memcpy(g + n, "\1\0\0\0", 4); /* connection id */
    n += 4;
    memcpy(g + n, "abcdefgh", 8); /* scramble, first part */
    n += 8;
    g[n++] = 0;
    /* LONG_PASSWORD FOUND_ROWS LONG_FLAG CONNECT_WITH_DB PROTOCOL_41
     * TRANSACTIONS SECURE_CONNECTION, and no SSL (0x0800) */
    g[n++] = 0x0f;
    g[n++] = 0xa2;
    g[n++] = 45; /* utf8mb4_general_ci */
    g[n++] = 2;  /* status: autocommit */
    g[n++] = 0;
    g[n++] = 0x0f; /* MULTI_STATEMENTS MULTI_RESULTS PS_MULTI_RESULTS PLUGIN_AUTH */
    g[n++] = 0;
    g[n++] = 21; /* scramble length */
    memset(g + n, 0, 10);
    n += 10;
    memcpy(g + n, "ijklmnopqrst", 13); /* scramble, second part, NUL-terminated */
    n += 13;
    memcpy(g + n, "mysql_native_password", 22);
    n += 22;
    size_t len = n - 4;
    g[0] = (unsigned char)len;
    g[1] = (unsigned char)(len >> 8);
    g[2] = 0;
    g[3] = 0; /* sequence id */
    if (write(c, g, n) != (ssize_t)n)
        return;
    unsigned char buf[4096];
    if (!readable(c) || read(c, buf, sizeof buf) < 4)
        return; /* the client gave up before logging in */
    static const unsigned char ok[] = {7, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0};
    if (write(c, ok, sizeof ok) != (ssize_t)sizeof ok)
        return;
    atomic_fetch_add(&srv->logins, 1);
    while (!atomic_load(&srv->stop) && readable(c) && read(c, buf, sizeof buf) > 0)
        ; /* COM_QUIT, then the close */
}

static void *plain_server_run(void *arg)
{
    plain_server *srv = arg;
    while (!atomic_load(&srv->stop)) {
        struct pollfd p = {.fd = srv->fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int c = accept(srv->fd, NULL, NULL);
        if (c < 0)
            continue;
        serve_one(srv, c);
        close(c);
    }
    return NULL;
}

static void plain_server_start(plain_server *srv)
{
    memset(srv, 0, sizeof *srv);
    srv->fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(srv->fd, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(srv->fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(srv->fd, 8), 0);
    socklen_t alen = sizeof a;
    ck_assert_int_eq(getsockname(srv->fd, (struct sockaddr *)&a, &alen), 0);
    srv->port = ntohs(a.sin_port);
    ck_assert_int_eq(pthread_create(&srv->thread, NULL, plain_server_run, srv), 0);
}

static void plain_server_stop(plain_server *srv)
{
    atomic_store(&srv->stop, 1);
    pthread_join(srv->thread, NULL);
    close(srv->fd);
}

/* REQUIRED and VERIFY_CA are enforced by the driver (Connector/C would go on
 * in clear text), VERIFY_IDENTITY by Connector/C itself: all three refuse a
 * server that does not offer TLS, and the password is not in the message. */
START_TEST(my_required_modes_refuse_a_server_without_tls)
{
    plain_server srv;
    plain_server_start(&srv);
    const struct {
        const char *query;
        const char *why;
    } cases[] = {
        {"?ssl-mode=REQUIRED", "does not offer it"},
        {"?ssl-mode=VERIFY_CA&ssl-ca=%s", "does not offer it"},
        {"?ssl-mode=VERIFY_IDENTITY&ssl-ca=%s", "TLS failed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *q = xfmt(cases[i].query, env("SR_MY_TLS_CA"));
        char *uri = xfmt("mysql://sr:not-sent-4711@127.0.0.1:%d/shard0%s", srv.port, q);
        sr_router *r = open_router(uri, NULL);
        sr_session *s = session(r);
        char *node = xfmt("sr:***@127.0.0.1:%d/shard0", srv.port);
        expect_refused(s, SR_ECONNECT, node, cases[i].why, "not-sent-4711");
        free(node);
        sr_session_free(s);
        sr_router_close(r);
        free(uri);
        free(q);
    }
    /* The stand-in does log clients in: the refusals above are the TLS checks. */
    ck_assert_int_ge(atomic_load(&srv.logins), 1);
    plain_server_stop(&srv);
}
END_TEST

/* ---- suite ------------------------------------------------------------------- */

static int have(const char *const *names)
{
    for (; *names; names++)
        if (!getenv(*names) || !*getenv(*names))
            return 0;
    return 1;
}

int main(void)
{
    static const char *const pg_env[] = {"SR_PG_PRIMARY",      "SR_PG_REPLICA1",
                                         "SR_PG_PW_USER",      "SR_PG_PW_PASSWORD",
                                         "SR_PG_TLS_CA",       "SR_PG_TLS_WRONG_CA",
                                         NULL};
    static const char *const my_env[] = {"SR_MY_PRIMARY", "SR_MY_REPLICA", "SR_MY_TLS_CA",
                                         "SR_MY_TLS_WRONG_CA", NULL};
    int ci = getenv("CI") != NULL;
    int pg = SR_TEST_TLS_POSTGRES && have(pg_env);
    int my = SR_TEST_TLS_MYSQL && have(my_env);
    if ((SR_TEST_TLS_POSTGRES && !pg) || (SR_TEST_TLS_MYSQL && !my)) {
        fprintf(stderr, "test_tls: %s%s not in the environment; run it through "
                        "tests/env/with_servers.sh\n",
                SR_TEST_TLS_POSTGRES && !pg ? "PostgreSQL (SR_PG_*, SR_PG_TLS_*) " : "",
                SR_TEST_TLS_MYSQL && !my ? "MariaDB (SR_MY_*, SR_MY_TLS_*) " : "");
        if (ci)
            return 1;
    }
    if (!pg && !my)
        return 77;

    Suite *suite = suite_create("tls");
    if (pg) {
        TCase *t = tcase_create("postgres");
        tcase_add_test(t, pg_verify_full_encrypts_routed_writes_and_reads);
        tcase_add_test(t, pg_wrong_ca_is_refused_clearly);
        tcase_add_test(t, pg_verify_full_checks_the_host_name_verify_ca_does_not);
        tcase_add_test(t, pg_sslmode_disable_and_require_do_what_they_say);
        tcase_add_test(t, pg_large_results_arrive_over_tls);
        tcase_set_timeout(t, 120); /* connects and statements are bounded well below this */
        suite_add_tcase(suite, t);
    }
    if (my) {
        TCase *t = tcase_create("mariadb");
        tcase_add_test(t, my_verify_identity_encrypts_routed_writes_and_reads);
        tcase_add_test(t, my_wrong_ca_is_refused_clearly);
        tcase_add_test(t, my_verify_identity_checks_the_host_name_verify_ca_does_not);
        tcase_add_test(t, my_ssl_modes_do_what_they_say);
        tcase_add_test(t, my_large_results_arrive_over_tls);
        tcase_add_test(t, my_required_modes_refuse_a_server_without_tls);
        tcase_set_timeout(t, 120);
        suite_add_tcase(suite, t);
    }
    int failed = run_suite(suite);
    return failed == 0 ? 0 : 1;
}
