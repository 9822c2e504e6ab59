/* shardroute health: one probe round, then every node's state. */
#include "cli.h"

#include <getopt.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: shardroute health -c CONF [--json | --csv] [--strict]\n"
    "\n"
    "Probes every node once (sr_router_maintain: a ping, the server's role, a replica's\n"
    "lag), then prints for each node: shard, node index, configured role, health, the\n"
    "lag of a replica, the probe's latency and the open connections. A node whose probe\n"
    "failed is 'down' (this command sets health.fail_threshold = 1: one failure ejects);\n"
    "a node whose server reports another role than configured says 'role mismatch'.\n"
    "The error column says why a probe failed (the driver's message, no password).\n"
    "\n"
    "  -c, --config FILE     the configuration file\n"
    "  -s, --set NAME=VALUE  set an option after reading the file (repeatable; e.g.\n"
    "                        -s connect_timeout_ms=2000 bounds each probe's connect)\n"
    "      --json            one JSON object: {\"ok\": bool, \"shards\": [...]}\n"
    "      --csv             CSV with a header line\n"
    "      --strict          exit status 1 also when any replica is down\n"
    "  -h, --help            this text\n"
    "\n"
    "Exit status: 0 every shard has a healthy primary, 1 some shard has none (or, with\n"
    "--strict, some node is down), 2 bad arguments or configuration.\n";

/* A primary that answers and says it is one. */
static bool node_ok(const sr_node_info *i)
{
    return i->healthy && !i->role_mismatch;
}

bool cli_all_primaries_healthy(const sr_router *r)
{
    int n = sr_router_nshards(r);
    for (int s = 0; s < n; s++) {
        sr_node_info i = SR_NODE_INFO_INIT;
        /* Node 0 is the primary (sr_router_nnodes: primary first). */
        if (sr_router_node_info(r, s, 0, &i) != SR_OK || i.role != SR_PRIMARY || !node_ok(&i))
            return false;
    }
    return true;
}

/* Why a node is down: the health events of the probe round (their text is borrowed: copied). */
typedef struct probe_error {
    struct probe_error *next;
    int shard, node;
    char detail[400];
} probe_error;

static void on_event(void *userdata, const sr_event *ev)
{
    /* sr_router_maintain() runs on this thread: no other thread delivers events here. */
    probe_error **list = userdata;
    if (ev->kind != SR_EVENT_HEALTH || !*ev->detail)
        return;
    probe_error *e = calloc(1, sizeof *e);
    if (!e)
        return;
    e->shard = ev->shard;
    e->node = ev->node;
    snprintf(e->detail, sizeof e->detail, "%s", ev->detail);
    for (char *p = e->detail; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    e->next = *list;
    *list = e;
}

static const char *error_of(const probe_error *list, int shard, int node)
{
    for (; list; list = list->next)
        if (list->shard == shard && list->node == node)
            return list->detail;
    return "";
}

static const char *state_text(const sr_node_info *i)
{
    if (!i->healthy)
        return "down";
    return i->role_mismatch ? "role mismatch" : "up";
}

int cli_health(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'J'},         {"csv", no_argument, NULL, 'C'},
        {"strict", no_argument, NULL, 'X'},       {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cli_common common = {.cmd = "health"};
    cli_format fmt = CLI_TABLE;
    bool strict = false;
    int opt, status = CLI_OK;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:s:h", longopts, NULL)) != -1) {
        if (cli_common_option(&common, opt, optarg))
            continue;
        switch (opt) {
        case 'J': fmt = CLI_JSON; break;
        case 'C': fmt = CLI_CSV; break;
        case 'X': strict = true; break;
        case 'h':
            fputs(help, stdout);
            free(common.sets);
            return CLI_OK;
        default:
            status = cli_getopt_error(&common, opt, argv);
            goto out;
        }
    }
    if (optind < argc) {
        status = cli_usage_error(&common, "unexpected argument '%.64s'", argv[optind]);
        goto out;
    }
    /* One probe round decides: a single failure is the answer of a one-shot command. */
    static const char *const extra[] = {"health.fail_threshold", "1"};
    sr_config *cfg = NULL;
    sr_router *r = NULL;
    probe_error *errors = NULL;
    status = cli_load_config(&common, extra, 1, &cfg);
    if (status == CLI_OK && sr_config_set_event_fn(cfg, on_event, &errors) != SR_OK) {
        cli_error(&common, "%s", sr_config_errmsg(cfg));
        sr_config_free(cfg);
        status = CLI_FAIL;
    }
    if (status == CLI_OK)
        status = cli_open_router(&common, cfg, &r);
    if (status != CLI_OK)
        goto out;
    double t0 = cli_now_ms();
    sr_router_maintain(r);
    double ms = cli_now_ms() - t0;

    static const char *headers[] = {"shard", "node", "role", "uri", "health", "lag_ms", "latency_ms", "connections",
                                    "error"};
    cli_table t;
    if (cli_table_init(&t, 9, headers) != 0) {
        cli_error(&common, "out of memory");
        status = CLI_FAIL;
        goto close;
    }
    t.right[1] = t.right[5] = t.right[6] = t.right[7] = true;
    json_object *shards = fmt == CLI_JSON ? json_object_new_array() : NULL;
    bool all_up = true;
    for (int s = 0; s < sr_router_nshards(r); s++) {
        json_object *jshard = NULL, *jnodes = NULL;
        if (shards) {
            jshard = json_object_new_object();
            jnodes = json_object_new_array();
            json_object_object_add(jshard, "shard", json_object_new_int(s));
            json_object_object_add(jshard, "name", json_object_new_string(sr_router_shard_name(r, s)));
        }
        bool primary_ok = false;
        for (int n = 0; n < sr_router_nnodes(r, s); n++) {
            sr_node_info i = SR_NODE_INFO_INIT;
            if (sr_router_node_info(r, s, n, &i) != SR_OK)
                continue;
            if (i.role == SR_PRIMARY && node_ok(&i))
                primary_ok = true;
            if (!node_ok(&i))
                all_up = false;
            const char *role = i.role == SR_PRIMARY ? "primary" : "replica";
            char lag[32] = "", lat[32], conns[32], idx[16];
            /* -2: not measured (a primary, or a backend without lag); -1: replication broken. */
            if (i.lag_ms >= 0)
                snprintf(lag, sizeof lag, "%lld", (long long)i.lag_ms);
            else if (i.lag_ms == -1)
                snprintf(lag, sizeof lag, "broken");
            snprintf(lat, sizeof lat, "%.2f", i.ewma_latency_ms);
            snprintf(conns, sizeof conns, "%llu", (unsigned long long)i.connections);
            snprintf(idx, sizeof idx, "%d", n);
            if (jnodes) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "node", json_object_new_int(n));
                json_object_object_add(o, "role", json_object_new_string(role));
                json_object_object_add(o, "uri", json_object_new_string(i.uri));
                json_object_object_add(o, "healthy", json_object_new_boolean(i.healthy));
                json_object_object_add(o, "role_mismatch", json_object_new_boolean(i.role_mismatch));
                json_object_object_add(o, "lag_ms", i.lag_ms >= -1 ? json_object_new_int64(i.lag_ms) : NULL);
                json_object_object_add(o, "latency_ms", cli_json_ms(i.ewma_latency_ms));
                json_object_object_add(o, "connections", json_object_new_uint64(i.connections));
                json_object_object_add(o, "errors", json_object_new_uint64(i.errors));
                json_object_object_add(o, "ejections", json_object_new_uint64(i.ejections));
                json_object_object_add(o, "error", json_object_new_string(error_of(errors, s, n)));
                json_object_array_add(jnodes, o);
            } else {
                const char *row[] = {sr_router_shard_name(r, s), idx, role, i.uri, state_text(&i), lag, lat, conns,
                                     error_of(errors, s, n)};
                if (cli_table_add(&t, row) != 0)
                    status = CLI_FAIL;
            }
        }
        if (!primary_ok) {
            status = CLI_FAIL;
            if (fmt != CLI_JSON)
                cli_error(&common, "shard %s has no healthy primary", sr_router_shard_name(r, s));
        }
        if (jshard) {
            json_object_object_add(jshard, "primary_ok", json_object_new_boolean(primary_ok));
            json_object_object_add(jshard, "nodes", jnodes);
            json_object_array_add(shards, jshard);
        }
    }
    if (strict && !all_up)
        status = CLI_FAIL;
    if (shards) {
        json_object *doc = json_object_new_object();
        json_object_object_add(doc, "ok", json_object_new_boolean(status == CLI_OK));
        json_object_object_add(doc, "probe_ms", cli_json_ms(ms));
        json_object_object_add(doc, "shards", shards);
        cli_json_print(doc, stdout);
        json_object_put(doc);
    } else if (fmt == CLI_CSV) {
        cli_table_print_csv(&t, stdout);
    } else {
        cli_table_print(&t, stdout, "");
    }
    cli_table_free(&t);
close:
    sr_router_close(r);
    while (errors) {
        probe_error *next = errors->next;
        free(errors);
        errors = next;
    }
out:
    free(common.sets);
    return status;
}
