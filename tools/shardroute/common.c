/* What every subcommand does the same way: options -c and -s, messages, keys, shards. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void vline(const cli_common *c, const char *fmt, va_list ap, const char *tail)
{
    /* One write of the whole line, so that it is one line even if stderr is shared. */
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* A message that spans lines (a backend's DETAIL) is folded into one. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    fprintf(stderr, "shardroute%s%s: %s%s\n", c && c->cmd ? " " : "", c && c->cmd ? c->cmd : "", msg,
            tail ? tail : "");
}

void cli_error(const cli_common *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(c, fmt, ap, NULL);
    va_end(ap);
}

int cli_usage_error(const cli_common *c, const char *fmt, ...)
{
    char tail[128];
    snprintf(tail, sizeof tail, " (see 'shardroute %s --help')", c && c->cmd ? c->cmd : "");
    va_list ap;
    va_start(ap, fmt);
    vline(c, fmt, ap, tail);
    va_end(ap);
    return CLI_USAGE;
}

bool cli_common_option(cli_common *c, int opt, const char *arg)
{
    if (opt == 'c') {
        c->config = arg;
        return true;
    }
    if (opt == 's') {
        /* argv outlives the subcommand: keep the pointers. */
        const char **grown = realloc(c->sets, (size_t)(c->nsets + 1) * sizeof *grown);
        if (!grown) {
            cli_error(c, "out of memory");
            exit(CLI_FAIL);
        }
        c->sets = grown;
        c->sets[c->nsets++] = arg;
        return true;
    }
    return false;
}

int cli_getopt_error(const cli_common *c, int opt, char *const argv[])
{
    /* getopt has moved optind past the offending element. */
    const char *bad = optind > 0 ? argv[optind - 1] : "?";
    if (opt == ':')
        return cli_usage_error(c, "option '%s' needs a value", bad);
    if (optopt && strncmp(bad, "--", 2) != 0)
        return cli_usage_error(c, "unknown option '-%c' (an argument that begins with '-' goes after '--')",
                               optopt);
    return cli_usage_error(c, "unknown option '%s'", bad);
}

int cli_load_config(const cli_common *c, const char *const *extra, int nextra, sr_config **out)
{
    if (!c->config)
        return cli_usage_error(c, "no configuration: give one with -c FILE");
    sr_config *cfg = sr_config_new();
    if (!cfg) {
        cli_error(c, "out of memory");
        return CLI_FAIL;
    }
    /* The library's message names the file and the line. */
    if (sr_config_load_file(cfg, c->config) != SR_OK) {
        cli_error(c, "%s", sr_config_errmsg(cfg));
        sr_config_free(cfg);
        return CLI_USAGE;
    }
    for (int i = 0; i + 1 < 2 * nextra; i += 2) {
        if (sr_config_set(cfg, extra[i], extra[i + 1]) != SR_OK) {
            cli_error(c, "%s", sr_config_errmsg(cfg));
            sr_config_free(cfg);
            return CLI_USAGE;
        }
    }
    for (int i = 0; i < c->nsets; i++) {
        const char *eq = strchr(c->sets[i], '=');
        if (!eq || eq == c->sets[i]) {
            sr_config_free(cfg);
            return cli_usage_error(c, "-s wants NAME=VALUE (an option of docs/options.md)");
        }
        char name[128];
        size_t n = (size_t)(eq - c->sets[i]);
        if (n >= sizeof name) {
            sr_config_free(cfg);
            return cli_usage_error(c, "-s: option name too long");
        }
        memcpy(name, c->sets[i], n);
        name[n] = '\0';
        if (sr_config_set(cfg, name, eq + 1) != SR_OK) {
            cli_error(c, "-s: %s", sr_config_errmsg(cfg));
            sr_config_free(cfg);
            return CLI_USAGE;
        }
    }
    *out = cfg;
    return CLI_OK;
}

int cli_open_router(const cli_common *c, sr_config *cfg, sr_router **out)
{
    int rc = sr_router_open(cfg, out);
    if (rc != SR_OK) {
        cli_error(c, "%s: %s", c->config, sr_config_errmsg(cfg));
        sr_config_free(cfg);
        return CLI_USAGE;
    }
    sr_config_free(cfg);
    return CLI_OK;
}

bool cli_parse_int64(const char *text, int64_t *out)
{
    if (!text || !*text)
        return false;
    /* Decimal only, an optional '-', no spaces or '+': what a shard key looks like. */
    const char *p = text[0] == '-' ? text + 1 : text;
    if (!*p)
        return false;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            return false;
    errno = 0;
    char *end;
    long long v = strtoll(text, &end, 10);
    if (errno == ERANGE || *end)
        return false;
    *out = (int64_t)v;
    return true;
}

bool cli_parse_key(const char *text, cli_keymode mode, sr_key *out, bool *is_int)
{
    int64_t v;
    if (mode != CLI_KEY_TEXT && cli_parse_int64(text, &v)) {
        *out = sr_key_int(v);
        *is_int = true;
        return true;
    }
    if (mode == CLI_KEY_INT)
        return false;
    *out = sr_key_text(text);
    *is_int = false;
    return true;
}

int cli_find_shard(const sr_router *r, const char *text)
{
    int n = sr_router_nshards(r);
    for (int i = 0; i < n; i++)
        if (strcmp(sr_router_shard_name(r, i), text) == 0)
            return i;
    int64_t v;
    if (cli_parse_int64(text, &v) && v >= 0 && v < n)
        return (int)v;
    return -1;
}

double cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
