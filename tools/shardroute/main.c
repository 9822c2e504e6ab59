/* shardroute COMMAND ...: the subcommands of docs/cli.md. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: shardroute COMMAND [OPTIONS] [ARGS...]\n"
    "\n"
    "Commands (each takes -c CONF, the configuration file of sr_config_load_file):\n"
    "  route    the shard and nodes of each key, without connecting to any database\n"
    "  exec     run one statement on a key's shard, a shard, or every shard; print the rows\n"
    "  health   probe every node once; exit status 1 when a shard has no healthy primary\n"
    "  metrics  print the router's metrics once, in the Prometheus text format\n"
    "  serve    an HTTP endpoint: /metrics (Prometheus) and /healthz, probing on an interval\n"
    "\n"
    "'shardroute COMMAND --help' describes a command; docs/cli.md describes them all.\n"
    "Exit status: 0 success, 1 the databases said no (or a shard is down), 2 bad arguments\n"
    "or configuration.\n";

#ifndef SR_CLI_SERVE
int cli_serve(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fputs("shardroute serve: this build has no HTTP server (libmicrohttpd was not found when it "
          "was configured: apt-get install libmicrohttpd-dev, then build again)\n",
          stderr);
    return CLI_USAGE;
}
#endif

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } cmds[] = {
        {"route", cli_route},     {"exec", cli_exec},   {"health", cli_health},
        {"metrics", cli_metrics}, {"serve", cli_serve},
    };
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        if (!strcmp(cmd, "help") && argc > 2) {
            /* shardroute help COMMAND is shardroute COMMAND --help */
            char *help_argv[] = {argv[2], "--help", NULL};
            for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
                if (!strcmp(argv[2], cmds[i].name))
                    return cmds[i].run(2, help_argv);
            fprintf(stderr, "shardroute: unknown command '%s' (see 'shardroute --help')\n", argv[2]);
            return CLI_USAGE;
        }
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        printf("shardroute %s\n", sr_version());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(cmd, cmds[i].name))
            return cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "shardroute: unknown command '%s' (see 'shardroute --help')\n", cmd);
    return CLI_USAGE;
}
