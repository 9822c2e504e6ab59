/* shardroute route: which shard and which nodes a key goes to, without any I/O. */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: shardroute route -c CONF [--int | --text] [--json | --csv] KEY...\n"
    "\n"
    "Prints, for each KEY, the shard that owns it (index and name) and that shard's nodes\n"
    "(primary first, URIs without passwords). Computed from the configuration alone: no\n"
    "database is contacted.\n"
    "\n"
    "  -c, --config FILE     the configuration file (docs/options.md, 'File syntax')\n"
    "  -s, --set NAME=VALUE  set an option after reading the file (repeatable)\n"
    "  -i, --int             every KEY is a 64-bit integer (an error if one is not)\n"
    "  -t, --text            every KEY is text, even when it is made of digits\n"
    "                        (default: a KEY that is a decimal int64 is an integer key,\n"
    "                        anything else a text key; 42 and \"42\" are different keys)\n"
    "      --json            one JSON array of objects\n"
    "      --csv             CSV with a header line\n"
    "  -h, --help            this text\n"
    "\n"
    "A KEY that begins with '-' goes after '--': shardroute route -c CONF -- -5\n"
    "Exit status: 0, 1 when a key has no shard (range distribution), 2 bad arguments.\n";

int cli_route(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"int", no_argument, NULL, 'i'},          {"text", no_argument, NULL, 't'},
        {"json", no_argument, NULL, 'J'},         {"csv", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    cli_common common = {.cmd = "route"};
    cli_keymode mode = CLI_KEY_AUTO;
    cli_format fmt = CLI_TABLE;
    int opt, status = CLI_OK;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:s:ith", longopts, NULL)) != -1) {
        if (cli_common_option(&common, opt, optarg))
            continue;
        switch (opt) {
        case 'i':
            if (mode == CLI_KEY_TEXT)
                status = cli_usage_error(&common, "--int and --text exclude each other");
            mode = CLI_KEY_INT;
            break;
        case 't':
            if (mode == CLI_KEY_INT)
                status = cli_usage_error(&common, "--int and --text exclude each other");
            mode = CLI_KEY_TEXT;
            break;
        case 'J': fmt = CLI_JSON; break;
        case 'C': fmt = CLI_CSV; break;
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
    if (optind >= argc) {
        status = cli_usage_error(&common, "no KEY given");
        goto out;
    }
    int nkeys = argc - optind;
    char **keys = argv + optind;
    sr_key *parsed = calloc((size_t)nkeys, sizeof *parsed);
    bool *is_int = calloc((size_t)nkeys, sizeof *is_int);
    if (!parsed || !is_int) {
        free(parsed);
        free(is_int);
        cli_error(&common, "out of memory");
        status = CLI_FAIL;
        goto out;
    }
    /* Every key is checked before the configuration is read: a usage error is a usage error. */
    for (int k = 0; k < nkeys; k++)
        if (!cli_parse_key(keys[k], mode, &parsed[k], &is_int[k])) {
            status = cli_usage_error(&common, "--int: '%.64s' is not a 64-bit decimal integer", keys[k]);
            break;
        }
    sr_config *cfg = NULL;
    sr_router *r = NULL;
    if (status == CLI_OK)
        status = cli_load_config(&common, NULL, 0, &cfg);
    if (status == CLI_OK)
        status = cli_open_router(&common, cfg, &r);
    if (status != CLI_OK) {
        free(parsed);
        free(is_int);
        goto out;
    }

    static const char *headers[] = {"key", "type", "shard", "name", "primary", "replicas"};
    cli_table t;
    json_object *arr = fmt == CLI_JSON ? json_object_new_array() : NULL;
    if (cli_table_init(&t, 6, headers) != 0) {
        cli_error(&common, "out of memory");
        status = CLI_FAIL;
    }
    t.right[2] = true;
    for (int k = 0; k < nkeys && status != CLI_FAIL; k++) {
        int shard = sr_router_shard_for(r, parsed[k]);
        if (shard < 0) {
            /* Reported, and the other keys still shown. */
            cli_error(&common, "key '%.64s': %s", keys[k], sr_strerror(shard));
            status = CLI_FAIL;
            continue;
        }
        char idx[16];
        snprintf(idx, sizeof idx, "%d", shard);
        char *primary = NULL, *replicas = NULL;
        size_t rlen = 0;
        json_object *nodes = arr ? json_object_new_array() : NULL;
        for (int n = 0; n < sr_router_nnodes(r, shard); n++) {
            sr_node_info info = SR_NODE_INFO_INIT;
            if (sr_router_node_info(r, shard, n, &info) != SR_OK)
                continue;
            if (nodes) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "role", json_object_new_string(info.role == SR_PRIMARY ? "primary" : "replica"));
                json_object_object_add(o, "uri", json_object_new_string(info.uri));
                json_object_array_add(nodes, o);
            }
            if (info.role == SR_PRIMARY) {
                free(primary);
                primary = strdup(info.uri);
            } else {
                size_t ul = strlen(info.uri);
                char *grown = realloc(replicas, rlen + ul + 3);
                if (grown) {
                    replicas = grown;
                    if (rlen)
                        memcpy(replicas + rlen, ", ", 2), rlen += 2;
                    memcpy(replicas + rlen, info.uri, ul + 1);
                    rlen += ul;
                }
            }
        }
        if (arr) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "key", json_object_new_string(keys[k]));
            json_object_object_add(o, "type", json_object_new_string(is_int[k] ? "int" : "text"));
            json_object_object_add(o, "shard", json_object_new_int(shard));
            json_object_object_add(o, "name", json_object_new_string(sr_router_shard_name(r, shard)));
            json_object_object_add(o, "nodes", nodes);
            json_object_array_add(arr, o);
        } else {
            const char *row[] = {keys[k], is_int[k] ? "int" : "text", idx, sr_router_shard_name(r, shard),
                                 primary ? primary : "", replicas ? replicas : ""};
            if (cli_table_add(&t, row) != 0) {
                cli_error(&common, "out of memory");
                status = CLI_FAIL;
            }
        }
        free(primary);
        free(replicas);
    }
    if (arr)
        cli_json_print(arr, stdout);
    else if (fmt == CLI_CSV)
        cli_table_print_csv(&t, stdout);
    else
        cli_table_print(&t, stdout, "");
    json_object_put(arr);
    cli_table_free(&t);
    free(parsed);
    free(is_int);
    sr_router_close(r);
out:
    free(common.sets);
    return status;
}
