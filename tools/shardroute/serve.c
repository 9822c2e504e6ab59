/*
 * shardroute serve: /metrics and /healthz over HTTP (libmicrohttpd), one
 * router for the process's life, probed on an interval from the main thread.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <microhttpd.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static const char help[] =
    "usage: shardroute serve -c CONF --listen ADDRESS:PORT [--interval MS] [--max-seconds N]\n"
    "\n"
    "Serves, until SIGINT or SIGTERM:\n"
    "  GET /metrics   the router's metrics, Prometheus text format 0.0.4\n"
    "  GET /healthz   200 \"ok\" when every shard has a healthy primary, else 503 naming\n"
    "                 the shards without one\n"
    "Anything else is 404 (405 for a method other than GET and HEAD). One router lives\n"
    "as long as the server; its nodes are probed (sr_router_maintain) every --interval.\n"
    "\n"
    "  -c, --config FILE     the configuration file\n"
    "  -s, --set NAME=VALUE  set an option after reading the file (repeatable)\n"
    "  -l, --listen ADDR:PORT  the address to listen on, and only that one: 127.0.0.1:9187,\n"
    "                        [::1]:9187, localhost:9187; port 0 picks a free port. The\n"
    "                        first line on stdout says where it listens:\n"
    "                        \"listening on http://ADDR:PORT\"\n"
    "  -i, --interval MS     probe every MS milliseconds (default 1000; 0: no probes of\n"
    "                        this command's own, e.g. when the configuration sets\n"
    "                        health.probe_interval_ms)\n"
    "      --max-seconds N   stop by itself after N seconds (default: never)\n"
    "  -h, --help            this text\n"
    "\n"
    "Exit status: 0 stopped by a signal or --max-seconds, 1 could not listen, 2 bad\n"
    "arguments or configuration.\n";

typedef struct serve_ctx {
    sr_router *router;
} serve_ctx;

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static int buf_write(void *userdata, const char *data, size_t len)
{
    buf *b = userdata;
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *grown = realloc(b->p, cap);
        if (!grown)
            return 1;
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *type, char *body,
                             size_t len)
{
    /* body is malloc'ed: the response frees it. */
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned code, const char *text)
{
    char *body = strdup(text);
    if (!body)
        return MHD_NO;
    return reply(conn, code, "text/plain; charset=utf-8", body, strlen(body));
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **con_cls)
{
    (void)version;
    (void)upload_data;
    serve_ctx *ctx = cls;
    /* The first call for a request only announces it (its headers are in). */
    static int announced;
    if (!*con_cls) {
        *con_cls = &announced;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* a body is read and ignored */
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (!strcmp(url, "/metrics")) {
        buf b = {0};
        if (sr_router_metrics(ctx->router, buf_write, &b) != SR_OK) {
            free(b.p);
            return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "could not render the metrics\n");
        }
        if (!b.p && !(b.p = malloc(1)))
            return MHD_NO;
        return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
    }
    if (!strcmp(url, "/healthz")) {
        if (cli_all_primaries_healthy(ctx->router))
            return reply_text(conn, MHD_HTTP_OK, "ok\n");
        buf b = {0};
        const char *head = "no healthy primary:";
        int fail = buf_write(&b, head, strlen(head));
        for (int s = 0; s < sr_router_nshards(ctx->router); s++) {
            sr_node_info i = SR_NODE_INFO_INIT;
            if (sr_router_node_info(ctx->router, s, 0, &i) == SR_OK && i.healthy && !i.role_mismatch)
                continue;
            const char *name = sr_router_shard_name(ctx->router, s);
            fail |= buf_write(&b, " ", 1) | buf_write(&b, name, strlen(name));
        }
        fail |= buf_write(&b, "\n", 1);
        if (fail) {
            free(b.p);
            return MHD_NO;
        }
        return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", b.p, b.len);
    }
    return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics or /healthz\n");
}

/* ADDR:PORT, [V6]:PORT or NAME:PORT into a socket address of the first matching family. */
static int parse_listen(const char *text, struct sockaddr_storage *ss, socklen_t *sslen, char *err,
                        size_t errlen)
{
    char host[256];
    const char *port;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "'%.64s' is not [ADDRESS]:PORT", text);
            return -1;
        }
        size_t n = (size_t)(close - text - 1);
        if (n >= sizeof host)
            n = sizeof host - 1;
        memcpy(host, text + 1, n);
        host[n] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon || colon == text) {
            snprintf(err, errlen, "'%.64s' is not ADDRESS:PORT (the address is required)", text);
            return -1;
        }
        size_t n = (size_t)(colon - text);
        if (n >= sizeof host)
            n = sizeof host - 1;
        memcpy(host, text, n);
        host[n] = '\0';
        port = colon + 1;
    }
    int64_t p;
    if (!cli_parse_int64(port, &p) || p < 0 || p > 65535) {
        snprintf(err, errlen, "'%.64s': the port is not 0..65535", text);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0 || !ai) {
        snprintf(err, errlen, "'%.64s': %s", host, rc ? gai_strerror(rc) : "no address");
        return -1;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *sslen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int cli_serve(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},   {"set", required_argument, NULL, 's'},
        {"listen", required_argument, NULL, 'l'},   {"interval", required_argument, NULL, 'i'},
        {"max-seconds", required_argument, NULL, 'M'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cli_common common = {.cmd = "serve"};
    const char *listen = NULL;
    int64_t interval = 1000, max_seconds = 0;
    int opt, status = CLI_OK;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:s:l:i:h", longopts, NULL)) != -1) {
        if (cli_common_option(&common, opt, optarg))
            continue;
        switch (opt) {
        case 'l': listen = optarg; break;
        case 'i':
            if (!cli_parse_int64(optarg, &interval) || interval < 0 || interval > 3600000)
                status = cli_usage_error(&common, "--interval: '%.32s' is not 0..3600000 (ms)", optarg);
            break;
        case 'M':
            if (!cli_parse_int64(optarg, &max_seconds) || max_seconds < 1 || max_seconds > 100000000)
                status = cli_usage_error(&common, "--max-seconds: '%.32s' is not a positive number", optarg);
            break;
        case 'h':
            fputs(help, stdout);
            free(common.sets);
            return CLI_OK;
        default:
            status = cli_getopt_error(&common, opt, argv);
        }
        if (status != CLI_OK)
            goto out;
    }
    if (optind < argc) {
        status = cli_usage_error(&common, "unexpected argument '%.64s'", argv[optind]);
        goto out;
    }
    if (!listen) {
        status = cli_usage_error(&common, "--listen ADDRESS:PORT is required");
        goto out;
    }
    struct sockaddr_storage ss;
    socklen_t sslen;
    char err[256];
    if (parse_listen(listen, &ss, &sslen, err, sizeof err) != 0) {
        status = cli_usage_error(&common, "--listen: %s", err);
        goto out;
    }
    sr_config *cfg = NULL;
    serve_ctx ctx = {0};
    status = cli_load_config(&common, NULL, 0, &cfg);
    if (status == CLI_OK)
        status = cli_open_router(&common, cfg, &ctx.router);
    if (status != CLI_OK)
        goto out;

    /*
     * The signals that stop the server are blocked before the HTTP thread
     * starts (it inherits the mask), so only the main thread takes them, in
     * sigtimedwait between probe rounds.
     */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(flags, 0, NULL, NULL, handle, &ctx,
                                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                                            MHD_OPTION_END);
    if (!d) {
        cli_error(&common, "could not listen on %s: %s", listen, strerror(errno));
        status = CLI_FAIL;
        goto close;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char host[128] = "";
    getnameinfo((struct sockaddr *)&ss, sslen, host, sizeof host, NULL, 0, NI_NUMERICHOST);
    printf("listening on http://%s%s%s:%u\n", ss.ss_family == AF_INET6 ? "[" : "", host,
           ss.ss_family == AF_INET6 ? "]" : "", info ? (unsigned)info->port : 0u);
    fflush(stdout);

    double start = cli_now_ms();
    for (;;) {
        if (interval > 0)
            sr_router_maintain(ctx.router);
        double now = cli_now_ms();
        double wait_ms = interval > 0 ? (double)interval : 1000.0;
        if (max_seconds > 0) {
            double left = start + (double)max_seconds * 1000.0 - now;
            if (left <= 0)
                break;
            if (left < wait_ms)
                wait_ms = left;
        }
        struct timespec ts = {.tv_sec = (time_t)(wait_ms / 1000.0),
                              .tv_nsec = (long)((wait_ms - (double)(time_t)(wait_ms / 1000.0) * 1000.0) * 1e6)};
        int sig = sigtimedwait(&stop, NULL, &ts);
        if (sig > 0)
            break;
    }
    MHD_stop_daemon(d);
close:
    sr_router_close(ctx.router);
out:
    free(common.sets);
    return status;
}
