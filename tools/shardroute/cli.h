/*
 * The `shardroute` command: what the subcommands share. The command is a
 * user program like any other: it includes only <shardroute.h> and calls only
 * the public API.
 */
#ifndef SHARDROUTE_CLI_H
#define SHARDROUTE_CLI_H

#include <shardroute.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses, the same for every subcommand (docs/cli.md). */
enum {
    CLI_OK = 0,
    CLI_FAIL = 1,  /* the database said no, a shard has no healthy primary, a key has no shard */
    CLI_USAGE = 2  /* bad arguments, an unreadable or invalid configuration */
};

typedef enum cli_format { CLI_TABLE, CLI_CSV, CLI_JSON } cli_format;
typedef enum cli_keymode { CLI_KEY_AUTO, CLI_KEY_INT, CLI_KEY_TEXT } cli_keymode;

/* The options every subcommand takes: -c CONF and any number of -s NAME=VALUE. */
typedef struct cli_common {
    const char *cmd;        /* the subcommand, for messages: "shardroute CMD: ..." */
    const char *config;     /* -c */
    const char **sets;      /* -s NAME=VALUE, in order (argv's strings) */
    int nsets;
} cli_common;

/* "shardroute CMD: " + the message + "\n" on stderr: the one line of every failure. */
void cli_error(const cli_common *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A usage error: cli_error() plus a pointer to --help; returns CLI_USAGE. */
int cli_usage_error(const cli_common *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Handles -c and -s for a subcommand's getopt loop (opt 'c' or 's'); false for others. */
bool cli_common_option(cli_common *c, int opt, const char *arg);
/* Reports getopt's '?' and ':' as one-line usage errors (returns CLI_USAGE). */
int cli_getopt_error(const cli_common *c, int opt, char *const argv[]);

/*
 * Reads the configuration (-c) and applies the -s options after it, then
 * `extra` (NAME, VALUE pairs a subcommand sets before -s, e.g. health's
 * fail threshold; -s still overrides them). CLI_OK with *out set, or
 * CLI_USAGE after one line on stderr.
 */
int cli_load_config(const cli_common *c, const char *const *extra, int nextra, sr_config **out);
/* Opens the router and frees the configuration; CLI_OK, or CLI_USAGE after one line. */
int cli_open_router(const cli_common *c, sr_config *cfg, sr_router **out);

/*
 * A key from the command line: CLI_KEY_INT needs a decimal int64,
 * CLI_KEY_TEXT takes the bytes as they are, CLI_KEY_AUTO is an integer when
 * the whole text is a decimal int64, else text. The key borrows `text`.
 * *is_int says which it became. false for an --int key that is not one.
 */
bool cli_parse_key(const char *text, cli_keymode mode, sr_key *out, bool *is_int);
bool cli_parse_int64(const char *text, int64_t *out);

/* A shard given by name, or else by index; -1 when neither. */
int cli_find_shard(const sr_router *r, const char *text);

/* Milliseconds on the monotonic clock. */
double cli_now_ms(void);

/* ---- output.c ---- */

/* A table of text cells, rendered aligned, as CSV or as JSON by the callers. */
typedef struct cli_table {
    int ncols;
    const char **headers;   /* borrowed */
    bool *right;            /* per column: right-aligned (numbers) */
    int nrows;
    int cap;
    char **cells;           /* nrows * ncols, owned; NULL is SQL NULL */
} cli_table;

int cli_table_init(cli_table *t, int ncols, const char **headers);
/* Appends a row of ncols cells, copied (NULL stays NULL). 0, or -1 out of memory. */
int cli_table_add(cli_table *t, const char *const *cells);
/* Like cli_table_add, taking ownership of the cells (malloc'ed). */
int cli_table_add_owned(cli_table *t, char **cells);
void cli_table_free(cli_table *t);
/* psql-like: " a | b " with a rule under the headers; NULL shows as `null`. */
void cli_table_print(const cli_table *t, FILE *f, const char *null);
/* RFC 4180: a header line, fields quoted when they need it; NULL is an empty field. */
void cli_table_print_csv(const cli_table *t, FILE *f);
void cli_csv_field(FILE *f, const char *s);

/*
 * A result's value as display text for table and CSV: text as it is, BYTES
 * as "\x" and hex digits (PostgreSQL's bytea output). NULL for SQL NULL.
 * The caller frees it.
 */
char *cli_value_text(const sr_result *res, int row, int col);
/* The portable type's name: "int", "float", "numeric", "text", "bytes", "bool", "datetime", "unknown". */
const char *cli_type_name(sr_type t);
bool cli_type_is_number(sr_type t);

struct json_object;
/* A result's value as JSON: numbers, booleans, null, strings (bytes as "\x..." hex). */
struct json_object *cli_value_json(const sr_result *res, int row, int col);
/* Milliseconds as a JSON number with three decimals (microseconds). */
struct json_object *cli_json_ms(double ms);
/* Writes one JSON document and a line end; -1 when it could not be written. */
int cli_json_print(struct json_object *o, FILE *f);

/* ---- the subcommands ---- */
int cli_route(int argc, char **argv);
int cli_exec(int argc, char **argv);
int cli_health(int argc, char **argv);
int cli_metrics(int argc, char **argv);
int cli_serve(int argc, char **argv);

/* ---- health.c, shared with serve ---- */
/* 1 when every shard's primary is healthy and reports the primary role. */
bool cli_all_primaries_healthy(const sr_router *r);

#endif
