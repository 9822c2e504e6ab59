/* shardroute exec: one statement on a key's shard, a shard, or every shard. */
#include "cli.h"

#include <getopt.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: shardroute exec -c CONF (--key K | --shard N | --all) [--read | --write]\n"
    "                       [--csv | --json] SQL [PARAMS...]\n"
    "\n"
    "Runs SQL through the router and prints its rows: an aligned table (default), CSV or\n"
    "JSON. PARAMS are text values for the statement's '?' placeholders, in order. Then a\n"
    "line on stderr says which shard and node answered, why that node (the routing\n"
    "event's reason), and how long the call took: \"shard -80 replica URI (replica) in\n"
    "1.2 ms\" (for --all: \"all N shards in T ms\", each row naming its shard).\n"
    "\n"
    "Where it runs (one is needed unless the configuration has a single shard):\n"
    "  -k, --key K           the shard that owns key K\n"
    "  -i, --int / -t, --text  how K is read: an integer or text (default: an integer\n"
    "                        when K is a decimal int64, else text; 42 and \"42\" are\n"
    "                        different keys)\n"
    "  -S, --shard N         shard N, by name or else by index (0 = the first declared)\n"
    "  -a, --all             every shard at once (scatter); rows are merged as the SQL\n"
    "                        says (docs/scatter.md), and a first column 'shard' names the\n"
    "                        shard of each row (NULL for a row combined from several)\n"
    "Which node:\n"
    "  -r, --read            a read: a replica (balance.policy), the primary as fallback\n"
    "  -w, --write           a write: the primary\n"
    "                        (default: the SQL lexer decides; read only when it is sure)\n"
    "Output:\n"
    "      --csv             RFC 4180 CSV with a header line (NULL is an empty field)\n"
    "      --json            {\"columns\": [{\"name\", \"type\"}], \"rows\": [[...]],\n"
    "                        \"affected\": N, \"elapsed_ms\": T, ...}: typed values\n"
    "  -n, --null TEXT       a parameter equal to TEXT is sent as SQL NULL\n"
    "  -q, --quiet           no line on stderr about where it ran\n"
    "  -c, --config FILE     the configuration file\n"
    "  -s, --set NAME=VALUE  set an option after reading the file (repeatable)\n"
    "  -h, --help            this text\n"
    "\n"
    "Options come before SQL: everything after SQL is a parameter, '-5' included. An SQL\n"
    "that begins with '-' goes after '--'. Bytes are shown as \\x and hex digits.\n"
    "Exit status: 0, 1 the statement failed (the library's message on stderr), 2 bad\n"
    "arguments or configuration.\n";

typedef struct exec_args {
    const char *key, *shard;
    bool all;
    cli_keymode mode;
    sr_intent intent;
    cli_format fmt;
    const char *null;
    bool quiet;
} exec_args;

/* Where the statement ran, from its routing event (the event's strings are borrowed: copied). */
typedef struct exec_route {
    bool seen;
    int shard, node;
    sr_role role;
    char uri[512];
    char reason[160];
} exec_route;

static void on_event(void *userdata, const sr_event *ev)
{
    /* A single statement on the caller's thread: one event (the last one wins after a retry). */
    exec_route *rt = userdata;
    if (ev->kind != SR_EVENT_STATEMENT)
        return;
    rt->seen = true;
    rt->shard = ev->shard;
    rt->node = ev->node;
    rt->role = ev->role;
    snprintf(rt->uri, sizeof rt->uri, "%s", ev->node_uri);
    snprintf(rt->reason, sizeof rt->reason, "%s", ev->reason);
}

static json_object *route_json(const exec_route *rt, const sr_router *r)
{
    if (!rt->seen || rt->shard < 0)
        return NULL;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "shard", json_object_new_int(rt->shard));
    json_object_object_add(o, "name", json_object_new_string(sr_router_shard_name(r, rt->shard)));
    if (rt->node >= 0) {
        json_object_object_add(o, "node", json_object_new_int(rt->node));
        json_object_object_add(o, "uri", json_object_new_string(rt->uri));
        json_object_object_add(o, "role", json_object_new_string(rt->role == SR_PRIMARY ? "primary" : "replica"));
        json_object_object_add(o, "reason", json_object_new_string(rt->reason));
    }
    return o;
}

static int print_result(const sr_result *res, const sr_router *r, const exec_args *a, double ms,
                        const exec_route *rt)
{
    int ncols = sr_result_ncols(res), nrows = sr_result_nrows(res);
    int extra = a->all ? 1 : 0;
    if (a->fmt == CLI_JSON) {
        json_object *doc = json_object_new_object(), *cols = json_object_new_array(),
                    *rows = json_object_new_array();
        if (a->all) {
            json_object *c = json_object_new_object();
            json_object_object_add(c, "name", json_object_new_string("shard"));
            json_object_object_add(c, "type", json_object_new_string("text"));
            json_object_array_add(cols, c);
        }
        for (int c = 0; c < ncols; c++) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "name", json_object_new_string(sr_result_colname(res, c)));
            json_object_object_add(o, "type", json_object_new_string(cli_type_name(sr_result_coltype(res, c))));
            json_object_array_add(cols, o);
        }
        for (int i = 0; i < nrows; i++) {
            json_object *row = json_object_new_array();
            if (a->all) {
                const char *name = sr_router_shard_name(r, sr_result_shard(res, i));
                json_object_array_add(row, name ? json_object_new_string(name) : NULL);
            }
            for (int c = 0; c < ncols; c++)
                json_object_array_add(row, cli_value_json(res, i, c));
            json_object_array_add(rows, row);
        }
        json_object_object_add(doc, "columns", cols);
        json_object_object_add(doc, "rows", rows);
        json_object_object_add(doc, "affected", json_object_new_int64(sr_result_affected(res)));
        json_object_object_add(doc, "elapsed_ms", cli_json_ms(ms));
        if (!a->all)
            json_object_object_add(doc, "route", route_json(rt, r));
        else
            json_object_object_add(doc, "shards", json_object_new_int(sr_router_nshards(r)));
        int rc = cli_json_print(doc, stdout);
        json_object_put(doc);
        return rc;
    }
    if (ncols == 0) {
        /* A statement without rows: what it changed. */
        if (a->fmt == CLI_TABLE)
            printf("%lld row%s affected\n", (long long)sr_result_affected(res),
                   sr_result_affected(res) == 1 ? "" : "s");
        return 0;
    }
    const char **headers = calloc((size_t)(ncols + extra), sizeof *headers);
    cli_table t;
    if (!headers || cli_table_init(&t, ncols + extra, headers) != 0) {
        free(headers);
        return -1;
    }
    if (a->all)
        headers[0] = "shard";
    for (int c = 0; c < ncols; c++) {
        headers[c + extra] = sr_result_colname(res, c);
        t.right[c + extra] = cli_type_is_number(sr_result_coltype(res, c));
    }
    int rc = 0;
    for (int i = 0; i < nrows && rc == 0; i++) {
        char **cells = calloc((size_t)(ncols + extra), sizeof *cells);
        if (!cells) {
            rc = -1;
            break;
        }
        if (a->all) {
            const char *name = sr_router_shard_name(r, sr_result_shard(res, i));
            cells[0] = name ? strdup(name) : NULL;
        }
        for (int c = 0; c < ncols; c++)
            cells[c + extra] = cli_value_text(res, i, c);
        if (cli_table_add_owned(&t, cells) != 0) {
            for (int c = 0; c < ncols + extra; c++)
                free(cells[c]);
            rc = -1;
        }
        free(cells);
    }
    if (rc == 0 && a->fmt == CLI_CSV) {
        cli_table_print_csv(&t, stdout);
    } else if (rc == 0) {
        cli_table_print(&t, stdout, "NULL");
        printf("(%d row%s)\n", nrows, nrows == 1 ? "" : "s");
    }
    cli_table_free(&t);
    free(headers);
    return rc;
}

int cli_exec(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"key", required_argument, NULL, 'k'},    {"shard", required_argument, NULL, 'S'},
        {"all", no_argument, NULL, 'a'},          {"int", no_argument, NULL, 'i'},
        {"text", no_argument, NULL, 't'},         {"read", no_argument, NULL, 'r'},
        {"write", no_argument, NULL, 'w'},        {"csv", no_argument, NULL, 'C'},
        {"json", no_argument, NULL, 'J'},         {"null", required_argument, NULL, 'n'},
        {"quiet", no_argument, NULL, 'q'},        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cli_common common = {.cmd = "exec"};
    exec_args a = {.mode = CLI_KEY_AUTO, .intent = SR_AUTO, .fmt = CLI_TABLE};
    int opt, status = CLI_OK, where = 0;
    /* '+': options end at SQL, so a parameter such as -5 is never taken for one. */
    bool intent_set = false, mode_set = false;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+:c:s:k:S:aitrwn:qh", longopts, NULL)) != -1) {
        if (cli_common_option(&common, opt, optarg))
            continue;
        switch (opt) {
        case 'k': a.key = optarg, where++; break;
        case 'S': a.shard = optarg, where++; break;
        case 'a': a.all = true, where++; break;
        case 'i':
        case 't':
            if (mode_set)
                status = cli_usage_error(&common, "--int and --text exclude each other");
            a.mode = opt == 'i' ? CLI_KEY_INT : CLI_KEY_TEXT;
            mode_set = true;
            break;
        case 'r':
        case 'w':
            if (intent_set)
                status = cli_usage_error(&common, "--read and --write exclude each other");
            a.intent = opt == 'r' ? SR_READ : SR_WRITE;
            intent_set = true;
            break;
        case 'C': a.fmt = CLI_CSV; break;
        case 'J': a.fmt = CLI_JSON; break;
        case 'n': a.null = optarg; break;
        case 'q': a.quiet = true; break;
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
    if (where > 1) {
        status = cli_usage_error(&common, "give one of --key, --shard and --all");
        goto out;
    }
    if (mode_set && !a.key) {
        status = cli_usage_error(&common, "--int and --text say how --key is read: no --key given");
        goto out;
    }
    if (optind >= argc) {
        status = cli_usage_error(&common, "no SQL given");
        goto out;
    }
    const char *sql = argv[optind];
    int nparams = argc - optind - 1;
    const char **params = calloc((size_t)nparams + 1, sizeof *params);
    if (!params) {
        cli_error(&common, "out of memory");
        status = CLI_FAIL;
        goto out;
    }
    for (int i = 0; i < nparams; i++) {
        const char *p = argv[optind + 1 + i];
        params[i] = a.null && !strcmp(p, a.null) ? NULL : p;
    }
    sr_key key;
    bool key_int;
    if (a.key && !cli_parse_key(a.key, a.mode, &key, &key_int)) {
        status = cli_usage_error(&common, "--int: '%.64s' is not a 64-bit decimal integer", a.key);
        free(params);
        goto out;
    }

    sr_config *cfg = NULL;
    sr_router *r = NULL;
    sr_session *s = NULL;
    exec_route rt = {.shard = -1, .node = -1};
    /* Every statement event, so that the one statement's is delivered. */
    static const char *const extra[] = {"events.sample", "1"};
    status = cli_load_config(&common, extra, 1, &cfg);
    if (status == CLI_OK && sr_config_set_event_fn(cfg, on_event, &rt) != SR_OK) {
        cli_error(&common, "%s", sr_config_errmsg(cfg));
        sr_config_free(cfg);
        status = CLI_FAIL;
    }
    if (status == CLI_OK)
        status = cli_open_router(&common, cfg, &r);
    if (status != CLI_OK) {
        free(params);
        goto out;
    }
    int shard = -1;
    if (a.shard) {
        shard = cli_find_shard(r, a.shard);
        if (shard < 0) {
            status = cli_usage_error(&common, "--shard: no shard '%.64s' (a name, or an index below %d)",
                                     a.shard, sr_router_nshards(r));
            goto done;
        }
    } else if (!where) {
        if (sr_router_nshards(r) != 1) {
            status = cli_usage_error(&common, "give --key, --shard or --all: the configuration has %d shards",
                                     sr_router_nshards(r));
            goto done;
        }
        shard = 0;
    }
    if (sr_session_new(r, &s) != SR_OK) {
        cli_error(&common, "out of memory");
        status = CLI_FAIL;
        goto done;
    }

    sr_result *res = NULL;
    double t0 = cli_now_ms();
    int rc;
    if (a.all)
        rc = sr_exec_all(s, a.intent, sql, nparams, params, &res);
    else if (a.key)
        rc = sr_exec(s, key, a.intent, sql, nparams, params, &res);
    else
        rc = sr_exec_shard(s, shard, a.intent, sql, nparams, params, &res);
    double ms = cli_now_ms() - t0;
    if (rc != SR_OK) {
        const char *state = sr_session_sqlstate(s);
        /* The message says what failed, where and why; the status text only when it is empty. */
        const char *msg = sr_session_errmsg(s);
        cli_error(&common, "%s%s%s%s", *msg ? msg : sr_strerror(rc), *state && !strstr(msg, state) ? " (SQLSTATE " : "",
                  *state && !strstr(msg, state) ? state : "", *state && !strstr(msg, state) ? ")" : "");
        status = CLI_FAIL;
        goto done;
    }
    if (a.key)
        shard = sr_router_shard_for(r, key);
    if (print_result(res, r, &a, ms, &rt) != 0) {
        cli_error(&common, "out of memory while printing the result");
        status = CLI_FAIL;
    }
    if (fflush(stdout) != 0) {
        cli_error(&common, "could not write the output");
        status = CLI_FAIL;
    }
    if (!a.quiet && a.fmt != CLI_JSON) {
        /* A scatter statement gives no per-shard events: the shards are in the rows. */
        if (a.all)
            fprintf(stderr, "all %d shards in %.1f ms\n", sr_router_nshards(r), ms);
        else if (rt.seen && rt.node >= 0)
            fprintf(stderr, "shard %s %s %s (%s) in %.1f ms\n", sr_router_shard_name(r, rt.shard),
                    rt.role == SR_PRIMARY ? "primary" : "replica", rt.uri, rt.reason, ms);
        else
            fprintf(stderr, "shard %s in %.1f ms\n", sr_router_shard_name(r, shard), ms);
    }
    sr_result_free(res);
done:
    free(params);
    sr_session_free(s);
    sr_router_close(r);
out:
    free(common.sets);
    return status;
}
