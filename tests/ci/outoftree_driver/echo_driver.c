/*
 * A driver written outside shardroute's tree (CI proof, .ci/run): it is
 * compiled with only the installed headers (pkg-config --cflags shardroute),
 * linked against the installed library, registered with sr_driver_register()
 * and reached by a router through its URI scheme, "echo".
 *
 * The backend is an in-memory echo: a statement returns one row holding the
 * SQL text, the number of parameters, the first parameter and the host the
 * connection was opened for. main() prints what came back through the
 * router; .ci/run compares it with the expected line, so a driver that was
 * not called (or a router that went elsewhere) fails the stage.
 */
#include <shardroute.h>
#include <shardroute/driver.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sr_driver_conn {
    char host[64]; /* copied: the connect args are borrowed for the call only */
};

static int connects;

static int echo_connect(const sr_driver_connect_args *args, sr_driver_conn **out,
                        sr_driver_error *err)
{
    if (!args->uri->host || strlen(args->uri->host) >= sizeof((*out)->host))
        return sr_driver_error_set(err, SR_ECONNECT, 0, NULL, 0, "echo: bad host in %s",
                                   args->uri->redacted);
    sr_driver_conn *c = calloc(1, sizeof *c);
    if (!c)
        return sr_driver_error_set(err, SR_ENOMEM, 1, NULL, 0, "echo: out of memory");
    strcpy(c->host, args->uri->host);
    connects++;
    *out = c;
    return SR_OK;
}

static void echo_close(sr_driver_conn *conn) { free(conn); }

static int echo_exec(sr_driver_conn *conn, const char *sql, int nparams, const char *const *params,
                     int64_t deadline_ns, sr_result_builder *rb, sr_driver_error *err)
{
    (void)deadline_ns;
    static const char *const cols[] = {"sql", "nparams", "param1", "host"};
    char n[16];
    snprintf(n, sizeof n, "%d", nparams);
    const char *p1 = nparams > 0 ? params[0] : NULL;
    int rc = sr_result_builder_columns(rb, 4, cols);
    if (rc == SR_OK)
        rc = sr_result_builder_value(rb, sql, strlen(sql));
    if (rc == SR_OK)
        rc = sr_result_builder_value(rb, n, strlen(n));
    if (rc == SR_OK)
        rc = sr_result_builder_value(rb, p1, p1 ? strlen(p1) : 0);
    if (rc == SR_OK)
        rc = sr_result_builder_value(rb, conn->host, strlen(conn->host));
    if (rc != SR_OK)
        return sr_driver_error_set(err, rc, 0, NULL, 0, "echo: cannot build the result");
    return SR_OK;
}

static int echo_begin(sr_driver_conn *conn, int read_only, int64_t deadline_ns, sr_driver_error *err)
{
    (void)conn, (void)read_only, (void)deadline_ns, (void)err;
    return SR_OK;
}

static int echo_end(sr_driver_conn *conn, int64_t deadline_ns, sr_driver_error *err)
{
    (void)conn, (void)deadline_ns, (void)err;
    return SR_OK;
}

static const char *const echo_schemes[] = {"echo", NULL};

static const sr_driver echo_driver = {
    .abi_version = SR_DRIVER_ABI_VERSION,
    .name = "echo",
    .schemes = echo_schemes,
    .dialect = SR_SQL_GENERIC,
    .connect = echo_connect,
    .close = echo_close,
    .exec = echo_exec,
    .begin = echo_begin,
    .commit = echo_end,
    .rollback = echo_end,
    .ping = echo_end,
};

int main(void)
{
    int rc = sr_driver_register(&echo_driver);
    if (rc != SR_OK || sr_driver_find("echo") != &echo_driver) {
        fprintf(stderr, "echo_driver: register: %s\n", sr_strerror(rc));
        return 1;
    }
    sr_config *cfg = sr_config_new();
    if (!cfg)
        return 1;
    rc = sr_config_add_shard(cfg, "only");
    if (rc == SR_OK)
        rc = sr_config_add_node(cfg, "only", SR_PRIMARY, "echo://127.0.0.1/db", 1);
    sr_router *router = NULL;
    if (rc == SR_OK)
        rc = sr_router_open(cfg, &router);
    if (rc != SR_OK) {
        fprintf(stderr, "echo_driver: configuration: %s: %s\n", sr_strerror(rc),
                sr_config_errmsg(cfg));
        sr_config_free(cfg);
        return 1;
    }
    sr_config_free(cfg);

    sr_session *s = NULL;
    sr_result *res = NULL;
    const char *params[] = {"hello"};
    rc = sr_session_new(router, &s);
    if (rc == SR_OK)
        rc = sr_exec(s, sr_key_int(42), SR_WRITE, "SELECT ?", 1, params, &res);
    if (rc != SR_OK) {
        fprintf(stderr, "echo_driver: exec: %s: %s\n", sr_strerror(rc),
                s ? sr_session_errmsg(s) : "");
        sr_session_free(s);
        sr_router_close(router);
        return 1;
    }
    if (sr_result_nrows(res) != 1 || sr_result_ncols(res) != 4) {
        fprintf(stderr, "echo_driver: %d rows, %d columns\n", sr_result_nrows(res),
                sr_result_ncols(res));
        return 1;
    }
    /* Prints e.g. "echo (driver ABI 5, shardroute 0.3.0): SELECT ? | 1 | hello | 127.0.0.1 | 1 connect". */
    printf("echo (driver ABI %d, shardroute %s): %s | %s | %s | %s | %d connect\n",
           SR_DRIVER_ABI_VERSION, sr_version(), sr_result_value(res, 0, 0), sr_result_value(res, 0, 1),
           sr_result_value(res, 0, 2), sr_result_value(res, 0, 3), connects);
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(router);
    return 0;
}
