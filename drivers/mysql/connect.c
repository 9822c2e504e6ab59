/*
 * Opening and closing Connector/C handles: URI parameters to options, the
 * non-blocking connect against a deadline, the KILL QUERY side connection,
 * and a close that cannot block on a server that stopped answering.
 */
#include "my_internal.h"

#include <errmsg.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* URI parameters understood, in the spelling shown in messages; '_' is
 * accepted for '-'. */
static const char *const known_params =
    "ssl-mode, ssl-ca, ssl-capath, ssl-cert, ssl-key, ssl-cipher, ssl-crl, ssl-crlpath, "
    "tls-version, charset, socket";

/* Compares a parameter name with `want`, treating '_' and '-' alike and
 * ignoring case. */
static int param_is(const char *key, const char *want)
{
    for (; *key && *want; key++, want++) {
        char a = *key == '_' ? '-' : (char)tolower((unsigned char)*key);
        if (a != *want)
            return 0;
    }
    return *key == '\0' && *want == '\0';
}

/* ssl-mode's values, any case, '_' or '-'; SR_MY_SSL_UNSET for anything else. */
static sr_my_ssl_mode ssl_mode_of(const char *v)
{
    static const struct {
        const char *name;
        sr_my_ssl_mode mode;
    } modes[] = {{"disabled", SR_MY_SSL_DISABLED},   {"preferred", SR_MY_SSL_PREFERRED},
                 {"required", SR_MY_SSL_REQUIRED},   {"verify-ca", SR_MY_SSL_VERIFY_CA},
                 {"verify-identity", SR_MY_SSL_VERIFY_IDENTITY}};
    for (size_t i = 0; i < SR_MY_ARRAY_LEN(modes); i++)
        if (param_is(v, modes[i].name))
            return modes[i].mode;
    return SR_MY_SSL_UNSET;
}

void sr__my_params_free(sr_my_params *p)
{
    if (!p)
        return;
    char **strs[] = {&p->host,       &p->user,      &p->password,   &p->database, &p->unix_socket,
                     &p->ssl_ca,     &p->ssl_capath, &p->ssl_cert,  &p->ssl_key,  &p->ssl_cipher,
                     &p->ssl_crl,    &p->ssl_crlpath, &p->tls_version, &p->charset, &p->redacted};
    for (size_t i = 0; i < SR_MY_ARRAY_LEN(strs); i++) {
        if (*strs[i] == p->password && *strs[i]) {
            /* Do not leave the password in freed memory. */
            volatile char *v = *strs[i];
            while (*v)
                *v++ = '\0';
        }
        free(*strs[i]);
        *strs[i] = NULL;
    }
}

/* Copies src into *dst (NULL stays NULL). Returns 0, or -1 out of memory. */
static int dup_into(char **dst, const char *src)
{
    free(*dst);
    *dst = NULL;
    if (!src)
        return 0;
    *dst = sr_strdup(src);
    return *dst ? 0 : -1;
}

int sr__my_params_from_uri(const sr_uri *uri, sr_my_params *p, sr_driver_error *err)
{
    memset(p, 0, sizeof *p);
    const char *redacted = uri->redacted ? uri->redacted : "mysql://";
    int nomem = 0;
    nomem |= dup_into(&p->redacted, redacted);
    nomem |= dup_into(&p->host, uri->host && *uri->host ? uri->host : "localhost");
    nomem |= dup_into(&p->user, uri->user);
    nomem |= dup_into(&p->password, uri->password);
    nomem |= dup_into(&p->database, uri->database && *uri->database ? uri->database : NULL);
    nomem |= dup_into(&p->charset, "utf8mb4");
    p->port = uri->port > 0 ? (unsigned)uri->port : 3306;

    for (int i = 0; i < uri->nparams && !nomem; i++) {
        const char *k = uri->params[i].key ? uri->params[i].key : "";
        const char *v = uri->params[i].value ? uri->params[i].value : "";
        if (param_is(k, "ssl-mode")) {
            p->ssl_mode = ssl_mode_of(v);
            if (p->ssl_mode == SR_MY_SSL_UNSET) {
                sr_driver_error_set(err, SR_EINVAL, 0, "", 0,
                                    "bad ssl-mode '%s' in %s (DISABLED, PREFERRED, REQUIRED, "
                                    "VERIFY_CA or VERIFY_IDENTITY)",
                                    v, redacted);
                sr__my_params_free(p);
                return SR_EINVAL;
            }
        } else if (param_is(k, "ssl-ca")) {
            nomem |= dup_into(&p->ssl_ca, v);
        } else if (param_is(k, "ssl-capath")) {
            nomem |= dup_into(&p->ssl_capath, v);
        } else if (param_is(k, "ssl-cert")) {
            nomem |= dup_into(&p->ssl_cert, v);
        } else if (param_is(k, "ssl-key")) {
            nomem |= dup_into(&p->ssl_key, v);
        } else if (param_is(k, "ssl-cipher")) {
            nomem |= dup_into(&p->ssl_cipher, v);
        } else if (param_is(k, "ssl-crl")) {
            nomem |= dup_into(&p->ssl_crl, v);
        } else if (param_is(k, "ssl-crlpath")) {
            nomem |= dup_into(&p->ssl_crlpath, v);
        } else if (param_is(k, "tls-version")) {
            nomem |= dup_into(&p->tls_version, v);
        } else if (param_is(k, "charset")) {
            if (!*v) {
                sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "empty charset in %s", redacted);
                sr__my_params_free(p);
                return SR_EINVAL;
            }
            nomem |= dup_into(&p->charset, v);
        } else if (param_is(k, "socket")) {
            nomem |= dup_into(&p->unix_socket, v);
        } else {
            sr_driver_error_set(err, SR_EINVAL, 0, "", 0,
                                "unknown parameter '%s' in %s (the mysql driver knows: %s)", k,
                                redacted, known_params);
            sr__my_params_free(p);
            return SR_EINVAL;
        }
    }
    if (nomem) {
        sr__my_params_free(p);
        return sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory");
    }
    /* Connector/C verifies a chain only against a CA it was given (see set_options). */
    if (p->ssl_mode == SR_MY_SSL_VERIFY_CA && !p->ssl_ca && !p->ssl_capath) {
        sr_driver_error_set(err, SR_EINVAL, 0, "", 0,
                            "ssl-mode=VERIFY_CA needs ssl-ca or ssl-capath (the CA to verify the "
                            "server against) in %s",
                            redacted);
        sr__my_params_free(p);
        return SR_EINVAL;
    }
    return SR_OK;
}

static int set_options(MYSQL *my, const sr_my_params *p)
{
    int bad = 0;
    bad |= mysql_optionsv(my, MYSQL_OPT_NONBLOCK, 0);
    bad |= mysql_optionsv(my, MYSQL_SET_CHARSET_NAME, p->charset);
    /* A bound for the few blocking writes (COM_QUIT at close, COM_STMT_CLOSE
     * at eviction), which must never hang on a server that stopped reading.
     * Non-blocking writes see it too: a send stalled for a whole second ends
     * as a lost connection, usually before the caller's deadline would. */
    unsigned write_timeout_s = 1;
    bad |= mysql_optionsv(my, MYSQL_OPT_WRITE_TIMEOUT, &write_timeout_s);
    /* LOAD DATA LOCAL would let a server read client files. */
    unsigned no_local_infile = 0;
    bad |= mysql_optionsv(my, MYSQL_OPT_LOCAL_INFILE, &no_local_infile);
    /*
     * ssl-mode to Connector/C 3.3 options. What the library does with them
     * (libmariadb/secure/openssl.c, plugins/auth/my_auth.c):
     * - any of ssl-ca/-capath/-cert/-key/-cipher turns TLS on (use_ssl), and a
     *   CA (ssl-ca/-capath) makes the handshake verify the chain against it;
     * - MYSQL_OPT_SSL_ENFORCE only turns TLS on: it is "try TLS", and the
     *   connection goes on in clear text when the server does not offer it;
     * - MYSQL_OPT_SSL_VERIFY_SERVER_CERT checks the chain (against the system
     *   store when no CA was given) AND the host name or IP against the
     *   certificate, and refuses a server without TLS. There is no chain-only
     *   switch, so VERIFY_CA is ENFORCE with a CA (required at parse time).
     * REQUIRED and VERIFY_CA are enforced after the handshake (sr__my_open).
     */
    if (p->ssl_mode == SR_MY_SSL_DISABLED)
        return bad ? -1 : 0; /* any ssl-* file option would turn TLS back on */
    if (p->ssl_ca)
        bad |= mysql_optionsv(my, MYSQL_OPT_SSL_CA, p->ssl_ca);
    if (p->ssl_capath)
        bad |= mysql_optionsv(my, MYSQL_OPT_SSL_CAPATH, p->ssl_capath);
    if (p->ssl_cert)
        bad |= mysql_optionsv(my, MYSQL_OPT_SSL_CERT, p->ssl_cert);
    if (p->ssl_key)
        bad |= mysql_optionsv(my, MYSQL_OPT_SSL_KEY, p->ssl_key);
    if (p->ssl_cipher)
        bad |= mysql_optionsv(my, MYSQL_OPT_SSL_CIPHER, p->ssl_cipher);
    if (p->ssl_crl)
        bad |= mysql_optionsv(my, MYSQL_OPT_SSL_CRL, p->ssl_crl);
    if (p->ssl_crlpath)
        bad |= mysql_optionsv(my, MYSQL_OPT_SSL_CRLPATH, p->ssl_crlpath);
    if (p->tls_version)
        bad |= mysql_optionsv(my, MARIADB_OPT_TLS_VERSION, p->tls_version);
    my_bool on = 1;
    if (p->ssl_mode >= SR_MY_SSL_PREFERRED)
        bad |= mysql_optionsv(my, MYSQL_OPT_SSL_ENFORCE, &on);
    if (p->ssl_mode == SR_MY_SSL_VERIFY_IDENTITY)
        bad |= mysql_optionsv(my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on);
    return bad ? -1 : 0;
}

void sr__my_close_handle(MYSQL *my, int hard)
{
    if (!my)
        return;
    /* After a timeout the handle may be suspended mid-operation and the
     * server may not answer: shut the socket down first, so mysql_close()'s
     * COM_QUIT fails at once instead of waiting. */
    if (hard)
        mariadb_cancel(my);
    mysql_close(my);
}

int sr__my_open(const sr_my_params *p, int64_t deadline_ns, MYSQL **out, sr_driver_error *err)
{
    MYSQL *my = mysql_init(NULL);
    if (!my)
        return sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory (mysql_init)");
    if (set_options(my, p) != 0) {
        int rc = sr_driver_error_set(err, SR_ECONNECT, 1, "", (int)mysql_errno(my),
                                     "cannot connect to %s: bad client option: %s", p->redacted,
                                     mysql_error(my));
        mysql_close(my);
        return rc;
    }
    MYSQL *ret = NULL;
    /* CLIENT_FOUND_ROWS: an UPDATE reports the rows it matched, as the
     * PostgreSQL and SQLite drivers do, not only those whose value changed. */
    int st = mysql_real_connect_start(&ret, my, p->host, p->user, p->password, p->database, p->port,
                                      p->unix_socket, CLIENT_MULTI_RESULTS | CLIENT_FOUND_ROWS);
    SR_MY_AWAIT(my, deadline_ns, st, &ret, my, mysql_real_connect_cont);
    if (st != 0) {
        sr__my_close_handle(my, 1);
        return sr_driver_error_set(err, SR_ETIMEOUT, 1, "", 0,
                                   "cannot connect to %s: connect timed out", p->redacted);
    }
    if (!ret) {
        const char *state = mysql_sqlstate(my);
        /* CR_SSL_CONNECTION_ERROR: say it is TLS, Connector/C's text may not. */
        int tls = mysql_errno(my) == CR_SSL_CONNECTION_ERROR;
        int rc = sr_driver_error_set(err, SR_ECONNECT, 1, state, (int)mysql_errno(my),
                                     "cannot connect to %s: %sERROR %u (%s): %s", p->redacted,
                                     tls ? "TLS failed (check ssl-mode, ssl-ca and the host "
                                           "name against the server's certificate): "
                                         : "",
                                     mysql_errno(my), state, mysql_error(my));
        sr__my_close_handle(my, 1);
        return rc;
    }
    /* Connector/C 3.3 asks for TLS under MYSQL_OPT_SSL_ENFORCE but, without
     * MYSQL_OPT_SSL_VERIFY_SERVER_CERT, goes on in clear text when the server
     * does not offer it: REQUIRED and VERIFY_CA are enforced here. */
    if (p->ssl_mode >= SR_MY_SSL_REQUIRED && !mysql_get_ssl_cipher(my)) {
        sr__my_close_handle(my, 1);
        return sr_driver_error_set(err, SR_ECONNECT, 1, "", 0,
                                   "cannot connect to %s: ssl-mode requires TLS (SSL) but the "
                                   "server does not offer it",
                                   p->redacted);
    }
    *out = my;
    return SR_OK;
}

int sr__my_kill_query(const sr_my_params *p, unsigned long thread_id, int64_t deadline_ns)
{
    MYSQL *k = NULL;
    sr_driver_error ignored;
    if (sr__my_open(p, deadline_ns, &k, &ignored) != SR_OK)
        return 0;
    char sql[48];
    snprintf(sql, sizeof sql, "KILL QUERY %lu", thread_id);
    int qrc = 1;
    int st = mysql_real_query_start(&qrc, k, sql, strlen(sql));
    SR_MY_AWAIT(k, deadline_ns, st, &qrc, k, mysql_real_query_cont);
    sr__my_close_handle(k, st != 0);
    return st == 0 && qrc == 0;
}
