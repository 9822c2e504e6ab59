/*
 * Building and opening large topologies: how long N shards take to configure
 * through the API (sr_config_add_shard + sr_config_add_node), through the
 * file syntax (sr_config_parse), and to open (sr_router_open) and close. Each
 * shard has one SQLite primary, a file in a directory that does not exist:
 * opening must connect to nothing (pools are lazy), or it would fail; the
 * last column counts open connections over every node (0).
 *
 * It measures; it never asserts a time. Linked like a user's program: the
 * public API only.
 */
#include <shardroute.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Process CPU time: on a shared, loaded machine wall time mostly measures the neighbours. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, sr_config *c)
{
    fprintf(stderr, "bench_config: %s failed: %s\n", what, c ? sr_config_errmsg(c) : "");
    exit(1);
}

static sr_config *build_api(int n)
{
    sr_config *c = sr_config_new();
    if (!c)
        die("sr_config_new", NULL);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "s%d", i);
        if (sr_config_add_shard(c, name) != SR_OK)
            die("sr_config_add_shard", c);
        char uri[96];
        snprintf(uri, sizeof uri, "sqlite:/nonexistent/shardroute-bench/%s.db", name);
        if (sr_config_add_node(c, name, SR_PRIMARY, uri, 0) != SR_OK)
            die("sr_config_add_node", c);
    }
    return c;
}

static char *config_text(int n)
{
    size_t cap = (size_t)n * 96 + 64, len = 0;
    char *t = malloc(cap);
    if (!t)
        die("malloc", NULL);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(t + len, cap - len,
                                "[shard s%d]\nprimary = sqlite:/nonexistent/shardroute-bench/s%d.db\n", i, i);
    return t;
}

int main(void)
{
    static const int sizes[] = {1024, 16384, 65536};
    printf("wall seconds (cpu seconds)\n%8s %18s %18s %18s %18s %12s\n", "shards", "api", "parse", "open",
           "close", "connections");
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int n = sizes[k];

        double t0 = now_s(), c0 = cpu_s();
        sr_config *c = build_api(n);
        double api = now_s() - t0, api_c = cpu_s() - c0;

        char *text = config_text(n);
        sr_config *p = sr_config_new();
        t0 = now_s();
        c0 = cpu_s();
        if (!p || sr_config_parse(p, text) != SR_OK)
            die("sr_config_parse", p);
        double parse = now_s() - t0, parse_c = cpu_s() - c0;
        free(text);
        sr_config_free(p);

        sr_router *r;
        t0 = now_s();
        c0 = cpu_s();
        if (sr_router_open(c, &r) != SR_OK)
            die("sr_router_open", c);
        double open = now_s() - t0, open_c = cpu_s() - c0;
        sr_config_free(c);

        /* Lazy pools: no node may hold a connection after open. */
        uint64_t conns = 0;
        for (int s = 0; s < sr_router_nshards(r); s++) {
            sr_node_info info = SR_NODE_INFO_INIT;
            if (sr_router_node_info(r, s, 0, &info) == SR_OK)
                conns += info.connections;
        }
        t0 = now_s();
        c0 = cpu_s();
        sr_router_close(r);
        double close = now_s() - t0, close_c = cpu_s() - c0;
        printf("%8d %8.4f (%7.4f) %8.4f (%7.4f) %8.4f (%7.4f) %8.4f (%7.4f) %12llu\n", n, api, api_c, parse,
               parse_c, open, open_c, close, close_c, (unsigned long long)conns);
        fflush(stdout);
    }
    return 0;
}
