/* shardroute metrics: the router's Prometheus text, once. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: shardroute metrics -c CONF [--no-probe]\n"
    "\n"
    "Prints the router's metrics once on stdout, in the Prometheus text exposition format\n"
    "0.0.4 (sr_router_metrics; docs/observability.md lists them). First it probes every\n"
    "node once (sr_router_maintain), so health, role, lag and probe series have values;\n"
    "a fresh router has run no statement, so statement counters are zero. For metrics\n"
    "that move, run 'shardroute serve' and let Prometheus scrape it.\n"
    "\n"
    "  -c, --config FILE     the configuration file\n"
    "  -s, --set NAME=VALUE  set an option after reading the file (repeatable)\n"
    "      --no-probe        no probe round: print the metrics of a router that did nothing\n"
    "  -h, --help            this text\n"
    "\n"
    "Exit status: 0, 1 the metrics could not be rendered or written, 2 bad arguments or\n"
    "configuration.\n";

static int write_out(void *userdata, const char *data, size_t len)
{
    return fwrite(data, 1, len, (FILE *)userdata) == len ? 0 : 1;
}

int cli_metrics(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"no-probe", no_argument, NULL, 'N'},     {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cli_common common = {.cmd = "metrics"};
    bool probe = true;
    int opt, status = CLI_OK;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:s:h", longopts, NULL)) != -1) {
        if (cli_common_option(&common, opt, optarg))
            continue;
        switch (opt) {
        case 'N': probe = false; break;
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
    sr_config *cfg = NULL;
    sr_router *r = NULL;
    status = cli_load_config(&common, NULL, 0, &cfg);
    if (status == CLI_OK)
        status = cli_open_router(&common, cfg, &r);
    if (status != CLI_OK)
        goto out;
    if (probe)
        sr_router_maintain(r);
    int rc = sr_router_metrics(r, write_out, stdout);
    if (rc == SR_OK && fflush(stdout) != 0)
        rc = SR_EINVAL;
    if (rc != SR_OK) {
        cli_error(&common, "could not render or write the metrics: %s", sr_strerror(rc));
        status = CLI_FAIL;
    }
    sr_router_close(r);
out:
    free(common.sets);
    return status;
}
