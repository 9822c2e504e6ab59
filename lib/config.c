/*
 * The configuration builder (sr_config) and its file syntax.
 *
 * Every builder call validates fully before it changes anything, so a failed
 * call leaves the configuration as it was and says why in errmsg; the router
 * can then trust what it copies at open. Node URIs are stored as given (the
 * driver needs the password) and only ever shown redacted.
 */
#include "config.h"

#include "keymap/keymap.h"
#include "uri.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SHARDS 65536
#define MAX_SHARD_NAME 64
#define MAX_WEIGHT 1000
#define MAX_FILE_SIZE (64 * 1024 * 1024) /* room for 65,536 shards and their nodes */

int sr__config_fail(sr_config *c, int status, const char *fmt, ...)
{
    if (!c)
        return status;
    char msg[SR_ERRMSG_LEN]; /* fmt's arguments may point into errmsg itself */
    va_list ap;
    va_start(ap, fmt);
    sr__vfmt(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(c->errmsg, msg, sizeof msg);
    return status;
}

static int succeed(sr_config *c)
{
    c->errmsg[0] = '\0';
    return SR_OK;
}

static uint64_t name_hash(const char *name) { return sr__hash_key(sr_key_text(name)); }

int sr__config_find_shard(const sr_config *c, const char *name)
{
    if (!c || !name || !c->name_slots)
        return -1;
    for (size_t at = (size_t)name_hash(name) & c->name_mask;; at = (at + 1) & c->name_mask) {
        int32_t slot = c->name_slots[at];
        if (slot == 0)
            return -1;
        if (strcmp(c->shards[slot - 1].name, name) == 0)
            return slot - 1;
    }
}

static void index_put(int32_t *slots, size_t mask, const char *name, int index)
{
    size_t at = (size_t)name_hash(name) & mask;
    while (slots[at] != 0)
        at = (at + 1) & mask;
    slots[at] = index + 1;
}

/* Makes room in the name index for `n` shards (rebuilding it when it grows). */
static int index_reserve(sr_config *c, int n)
{
    size_t need = 16;
    while (need < (size_t)n * 2)
        need *= 2;
    if (c->name_slots && need <= c->name_mask + 1)
        return SR_OK;
    int32_t *slots = calloc(need, sizeof *slots);
    if (!slots)
        return SR_ENOMEM;
    for (int i = 0; i < c->nshards; i++)
        index_put(slots, need - 1, c->shards[i].name, i);
    free(c->name_slots);
    c->name_slots = slots;
    c->name_mask = need - 1;
    return SR_OK;
}

/* Room for one more element; *cap doubles. The array is untouched on failure. */
static int reserve(void **arr, int *cap, int used, size_t elem)
{
    if (used < *cap)
        return SR_OK;
    int ncap = *cap ? *cap * 2 : 4;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p)
        return SR_ENOMEM;
    *arr = p;
    *cap = ncap;
    return SR_OK;
}

/* Strict decimal int64 (sr__parse_int64) that also refuses overflow. */
static bool parse_int64(const char *s, long long *out)
{
    bool overflow;
    return sr__parse_int64(s, out, &overflow) && !overflow;
}

/*
 * Text from the caller or a file as messages may echo it: bounded, and
 * redacted as if it were a URI (sr__uri_redact), because a node URI typed
 * on the wrong line or in the wrong argument must not put its password in a
 * message.
 */
static const char *excerpt(const char *v, char *buf, size_t len)
{
    char red[256];
    sr__uri_redact(v, red, sizeof red);
    sr__fmt(buf, len, "%.64s%s", red, strlen(red) > 64 ? "..." : "");
    return buf;
}

/* ------------------------------------------------------------ lifecycle */

SR_API sr_config *sr_config_new(void)
{
    sr_config *c = calloc(1, sizeof *c);
    if (c)
        sr__options_init(&c->opts);
    return c;
}

static void free_shard(sr_config_shard *s)
{
    free(s->name);
    free(s->keyrange);
    free(s->range);
    for (int j = 0; j < s->nnodes; j++)
        free(s->nodes[j].uri);
    free(s->nodes);
}

SR_API void sr_config_free(sr_config *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->nshards; i++)
        free_shard(&c->shards[i]);
    free(c->shards);
    free(c->name_slots);
    for (int i = 0; i < c->npins; i++)
        free(c->pins[i].bytes);
    free(c->pins);
    free(c);
}

/* A copy of `src` (or NULL when memory runs out): NULL-safe strdup of optional strings. */
static bool dup_opt(char **dst, const char *src)
{
    *dst = src ? sr_strdup(src) : NULL;
    return !src || *dst;
}

sr_config *sr__config_clone(const sr_config *src)
{
    sr_config *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->opts = src->opts;
    c->keymap_fn = src->keymap_fn;
    c->keymap_ud = src->keymap_ud;
    c->log_fn = src->log_fn;
    c->log_ud = src->log_ud;
    c->event_fn = src->event_fn;
    c->event_ud = src->event_ud;
    bool ok = true;
    if (src->nshards > 0) {
        c->shards = calloc((size_t)src->nshards, sizeof *c->shards);
        ok = c->shards != NULL;
        c->shards_cap = ok ? src->nshards : 0;
    }
    for (int i = 0; ok && i < src->nshards; i++) {
        const sr_config_shard *from = &src->shards[i];
        sr_config_shard *to = &c->shards[i];
        c->nshards = i + 1; /* what sr_config_free must free from here on */
        ok = dup_opt(&to->name, from->name) && dup_opt(&to->keyrange, from->keyrange) &&
             dup_opt(&to->range, from->range);
        if (ok && from->nnodes > 0) {
            to->nodes = calloc((size_t)from->nnodes, sizeof *to->nodes);
            ok = to->nodes != NULL;
            to->cap = ok ? from->nnodes : 0;
        }
        for (int j = 0; ok && j < from->nnodes; j++) {
            to->nodes[j] = from->nodes[j];
            to->nodes[j].uri = NULL;
            to->nnodes = j + 1;
            ok = dup_opt(&to->nodes[j].uri, from->nodes[j].uri);
        }
    }
    if (ok && src->name_slots) {
        size_t bytes = (src->name_mask + 1) * sizeof *c->name_slots;
        c->name_slots = malloc(bytes);
        ok = c->name_slots != NULL;
        if (ok) {
            memcpy(c->name_slots, src->name_slots, bytes);
            c->name_mask = src->name_mask;
        }
    }
    if (ok && src->npins > 0) {
        c->pins = calloc((size_t)src->npins, sizeof *c->pins);
        ok = c->pins != NULL;
        c->pins_cap = ok ? src->npins : 0;
    }
    for (int i = 0; ok && i < src->npins; i++) {
        c->pins[i] = src->pins[i];
        c->pins[i].bytes = NULL;
        c->npins = i + 1;
        if (src->pins[i].bytes) {
            c->pins[i].bytes = malloc(src->pins[i].len ? src->pins[i].len : 1);
            ok = c->pins[i].bytes != NULL;
            if (ok)
                memcpy(c->pins[i].bytes, src->pins[i].bytes, src->pins[i].len);
        }
    }
    if (!ok) {
        sr_config_free(c);
        return NULL;
    }
    return c;
}

SR_API const char *sr_config_errmsg(const sr_config *c)
{
    return c ? c->errmsg : "no configuration (NULL)";
}

/* --------------------------------------------------------------- shards */

/* Why a shard name cannot be used, or NULL. Names appear in file sections
 * ("[shard NAME]") and messages, so the characters that would break either
 * are refused. */
static const char *bad_shard_name(const char *name)
{
    if (!*name)
        return "a shard name must not be empty";
    if (strlen(name) > MAX_SHARD_NAME)
        return "a shard name is at most 64 characters";
    for (const char *p = name; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (isspace(ch) || ch < 0x20 || ch == 0x7f)
            return "a shard name must not contain whitespace or control characters";
        if (strchr("=[]#", ch))
            return "a shard name must not contain '=', '[', ']' or '#'";
    }
    return NULL;
}

static int add_shard(sr_config *c, const char *name)
{
    const char *why = bad_shard_name(name);
    char buf[80];
    if (why)
        return sr__config_fail(c, SR_EINVAL, "shard '%s': %s", excerpt(name, buf, sizeof buf), why);
    if (sr__config_find_shard(c, name) >= 0)
        return sr__config_fail(c, SR_EINVAL, "shard '%s' is already declared", name);
    if (c->nshards >= MAX_SHARDS)
        return sr__config_fail(c, SR_EINVAL, "too many shards (at most %d)", MAX_SHARDS);
    char *copy = sr_strdup(name);
    if (!copy || reserve((void **)&c->shards, &c->shards_cap, c->nshards, sizeof *c->shards) != SR_OK ||
        index_reserve(c, c->nshards + 1) != SR_OK) {
        free(copy);
        return sr__config_fail(c, SR_ENOMEM, "out of memory declaring shard '%s'", name);
    }
    sr_config_shard *s = &c->shards[c->nshards];
    memset(s, 0, sizeof *s);
    s->name = copy;
    index_put(c->name_slots, c->name_mask, copy, c->nshards);
    c->nshards++;
    return SR_OK;
}

SR_API int sr_config_add_shard(sr_config *c, const char *shard)
{
    if (!c)
        return SR_EINVAL;
    if (!shard)
        return sr__config_fail(c, SR_EINVAL, "sr_config_add_shard: the shard name is NULL");
    int rc = add_shard(c, shard);
    return rc == SR_OK ? succeed(c) : rc;
}

/* `shards = N`: N shards at once, named as the distribution expects them. */
static int declare_shards(sr_config *c, const char *value)
{
    long long n;
    char buf[80];
    if (!parse_int64(value, &n) || n < 1 || n > MAX_SHARDS)
        return sr__config_fail(c, SR_EINVAL, "shards: '%s' is not a shard count (1..%d)",
                               excerpt(value, buf, sizeof buf), MAX_SHARDS);
    if (c->nshards > 0)
        return sr__config_fail(c, SR_EINVAL,
                               "shards: %d shard%s already declared (shards = N declares them all at once)",
                               c->nshards, c->nshards == 1 ? " is" : "s are");
    sr_config_shard *arr = calloc((size_t)n, sizeof *arr);
    if (!arr)
        return sr__config_fail(c, SR_ENOMEM, "out of memory declaring %lld shards", n);
    for (int i = 0; i < (int)n; i++) {
        char name[48];
        if (c->opts.distribution == SR_DIST_KEYRANGE)
            sr__keyrange_name(i, (int)n, name, sizeof name);
        else
            sr__fmt(name, sizeof name, "%d", i);
        if (!(arr[i].name = sr_strdup(name))) {
            for (int j = 0; j < i; j++)
                free(arr[j].name);
            free(arr);
            return sr__config_fail(c, SR_ENOMEM, "out of memory declaring %lld shards", n);
        }
    }
    /* The index is rebuilt for the new shards (nshards is 0 here, so it starts empty). */
    free(c->name_slots);
    c->name_slots = NULL;
    if (index_reserve(c, (int)n) != SR_OK) {
        for (int j = 0; j < (int)n; j++)
            free(arr[j].name);
        free(arr);
        return sr__config_fail(c, SR_ENOMEM, "out of memory declaring %lld shards", n);
    }
    for (int i = 0; i < (int)n; i++)
        index_put(c->name_slots, c->name_mask, arr[i].name, i);
    free(c->shards);
    c->shards = arr;
    c->nshards = c->shards_cap = (int)n;
    return SR_OK;
}

static int shard_or_fail(sr_config *c, const char *shard)
{
    int i = sr__config_find_shard(c, shard);
    char buf[80];
    if (i < 0)
        sr__config_fail(c, SR_EINVAL, "unknown shard '%s' (declare it first)", excerpt(shard, buf, sizeof buf));
    return i;
}

SR_API int sr_config_shard_set(sr_config *c, const char *shard, const char *attr, const char *value)
{
    if (!c)
        return SR_EINVAL;
    if (!shard || !attr || !value)
        return sr__config_fail(c, SR_EINVAL, "sr_config_shard_set: shard, attr and value must not be NULL");
    int i = shard_or_fail(c, shard);
    if (i < 0)
        return SR_EINVAL;
    char **slot;
    char buf[80];
    if (strcmp(attr, "keyrange") == 0) {
        uint64_t start, end;
        int end_is_max;
        if (sr__keyrange_parse(value, &start, &end, &end_is_max) != 0)
            return sr__config_fail(c, SR_EINVAL,
                                   "shard '%s': keyrange '%s' is malformed (expected hex bounds of whole "
                                   "bytes, start below end: \"-40\", \"40-80\", \"c0-\")",
                                   shard, excerpt(value, buf, sizeof buf));
        slot = &c->shards[i].keyrange;
    } else if (strcmp(attr, "range") == 0) {
        int64_t lo, hi;
        if (sr__range_parse(value, &lo, &hi) != 0)
            return sr__config_fail(c, SR_EINVAL,
                                   "shard '%s': range '%.64s' is malformed (expected LO..HI with int64 "
                                   "bounds, LO < HI, an empty bound unbounded: \"..1000\", \"1000..2000\", "
                                   "\"2000..\")",
                                   shard, excerpt(value, buf, sizeof buf));
        slot = &c->shards[i].range;
    } else {
        return sr__config_fail(c, SR_EINVAL, "shard '%s': unknown attribute '%s' (expected keyrange or range)",
                               shard, excerpt(attr, buf, sizeof buf));
    }
    char *copy = sr_strdup(value);
    if (!copy)
        return sr__config_fail(c, SR_ENOMEM, "out of memory setting %s of shard '%s'", attr, shard);
    free(*slot);
    *slot = copy;
    return succeed(c);
}

/* ---------------------------------------------------------------- nodes */

SR_API int sr_config_add_node(sr_config *c, const char *shard, sr_role role, const char *uri, int weight)
{
    if (!c)
        return SR_EINVAL;
    if (!shard || !uri)
        return sr__config_fail(c, SR_EINVAL, "sr_config_add_node: shard and uri must not be NULL");
    int i = shard_or_fail(c, shard);
    if (i < 0)
        return SR_EINVAL;
    if (role != SR_PRIMARY && role != SR_REPLICA)
        return sr__config_fail(c, SR_EINVAL, "shard '%s': invalid role %d (expected SR_PRIMARY or SR_REPLICA)",
                               shard, (int)role);
    if (weight == 0)
        weight = 1;
    if (weight < 1 || weight > MAX_WEIGHT)
        return sr__config_fail(c, SR_EINVAL, "shard '%s': weight %d is out of range (1..%d; 0 means 1)", shard,
                               weight, MAX_WEIGHT);
    char err[SR_ERRMSG_LEN - 80];
    sr_uri *u;
    int rc = sr__uri_parse(uri, &u, err, sizeof err);
    if (rc != SR_OK)
        return sr__config_fail(c, rc, "shard '%s': %s", shard, err);
    sr_config_shard *s = &c->shards[i];
    if (role == SR_PRIMARY) {
        for (int j = 0; j < s->nnodes; j++) {
            if (s->nodes[j].role == SR_PRIMARY) {
                sr__config_fail(c, SR_EINVAL, "shard '%s' already has a primary; cannot add a second one (%.400s)",
                                shard, u->redacted);
                sr__uri_free(u);
                return SR_EINVAL;
            }
        }
    }
    char *copy = sr_strdup(uri);
    if (!copy || reserve((void **)&s->nodes, &s->cap, s->nnodes, sizeof *s->nodes) != SR_OK) {
        free(copy);
        sr__config_fail(c, SR_ENOMEM, "out of memory adding node %.400s to shard '%s'", u->redacted, shard);
        sr__uri_free(u);
        return SR_ENOMEM;
    }
    sr__uri_free(u);
    s->nodes[s->nnodes++] = (sr_config_node){role, copy, weight};
    return succeed(c);
}

/* ----------------------------------------------------------------- pins */

/* A key as messages show it: digits, short printable text, or a byte count. */
static void describe_key(sr_key k, char *buf, size_t len)
{
    if (k.kind == SR_KEY_INT) {
        sr__fmt(buf, len, "%lld", (long long)k.i);
        return;
    }
    const unsigned char *p = k.ptr;
    for (size_t i = 0; i < k.len; i++) {
        if (p[i] < 0x20 || p[i] > 0x7e) {
            sr__fmt(buf, len, "<%zu bytes>", k.len);
            return;
        }
    }
    sr__fmt(buf, len, "'%.*s%s'", (int)(k.len > 48 ? 48 : k.len), (const char *)k.ptr,
            k.len > 48 ? "..." : "");
}

static bool pin_matches(const sr_config_pin *p, sr_key k)
{
    if (p->kind != k.kind)
        return false;
    if (k.kind == SR_KEY_INT)
        return p->i == k.i;
    return p->len == k.len && (k.len == 0 || memcmp(p->bytes, k.ptr, k.len) == 0);
}

SR_API int sr_config_pin_key(sr_config *c, sr_key key, const char *shard)
{
    if (!c)
        return SR_EINVAL;
    if (!shard)
        return sr__config_fail(c, SR_EINVAL, "sr_config_pin_key: the shard name is NULL");
    if (!sr__key_valid(key))
        return sr__config_fail(c, SR_EINVAL, "sr_config_pin_key: invalid key (build it with sr_key_int, "
                                             "sr_key_text or sr_key_bytes)");
    int i = shard_or_fail(c, shard);
    if (i < 0)
        return SR_EINVAL;
    char shown[80];
    for (int j = 0; j < c->npins; j++) {
        if (pin_matches(&c->pins[j], key)) {
            describe_key(key, shown, sizeof shown);
            return sr__config_fail(c, SR_EINVAL, "key %s is already pinned to shard '%s'", shown,
                                   c->shards[c->pins[j].shard].name);
        }
    }
    sr_config_pin pin = {key.kind, key.kind == SR_KEY_INT ? key.i : 0, NULL, 0, i};
    if (key.kind == SR_KEY_BYTES) {
        /* Even an empty key gets a buffer, so bytes == NULL never means "text". */
        pin.bytes = malloc(key.len ? key.len : 1);
        if (!pin.bytes)
            return sr__config_fail(c, SR_ENOMEM, "out of memory pinning a key");
        if (key.len)
            memcpy(pin.bytes, key.ptr, key.len);
        pin.len = key.len;
    }
    if (reserve((void **)&c->pins, &c->pins_cap, c->npins, sizeof *c->pins) != SR_OK) {
        free(pin.bytes);
        return sr__config_fail(c, SR_ENOMEM, "out of memory pinning a key");
    }
    c->pins[c->npins++] = pin;
    return succeed(c);
}

/* ------------------------------------------------------------ callbacks */

SR_API int sr_config_set_keymap_fn(sr_config *c, sr_keymap_fn fn, void *userdata)
{
    if (!c)
        return SR_EINVAL;
    if (!fn)
        return sr__config_fail(c, SR_EINVAL, "sr_config_set_keymap_fn: the function is NULL");
    c->keymap_fn = fn;
    c->keymap_ud = userdata;
    c->opts.distribution = SR_DIST_CALLBACK;
    return succeed(c);
}

SR_API int sr_config_set_log_fn(sr_config *c, sr_log_fn fn, void *userdata)
{
    if (!c)
        return SR_EINVAL;
    c->log_fn = fn;
    c->log_ud = userdata;
    return succeed(c);
}

SR_API int sr_config_set_event_fn(sr_config *c, sr_event_fn fn, void *userdata)
{
    if (!c)
        return SR_EINVAL;
    c->event_fn = fn;
    c->event_ud = userdata;
    return succeed(c);
}

/* -------------------------------------------------------------- options */

SR_API int sr_config_set(sr_config *c, const char *option, const char *value)
{
    if (!c)
        return SR_EINVAL;
    if (!option || !value)
        return sr__config_fail(c, SR_EINVAL, "sr_config_set: option and value must not be NULL");
    int rc;
    if (strcmp(option, "shards") == 0) {
        rc = declare_shards(c, value);
    } else {
        char err[SR_ERRMSG_LEN];
        rc = sr__options_set(&c->opts, option, value, err, sizeof err);
        if (rc != SR_OK)
            sr__config_fail(c, rc, "%s", err);
    }
    return rc == SR_OK ? succeed(c) : rc;
}

/* ---------------------------------------------------------- file syntax */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static bool is_global_key(const char *key)
{
    if (strcmp(key, "shards") == 0)
        return true;
    size_t n;
    const sr_option_def *defs = sr__option_defs(&n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(defs[i].name, key) == 0)
            return true;
    return false;
}

static bool is_shard_key(const char *key)
{
    static const char *const keys[] = {"primary", "replica", "keyrange", "range", "pin_int", "pin_text"};
    for (size_t i = 0; i < SR_ARRAY_LEN(keys); i++)
        if (strcmp(keys[i], key) == 0)
            return true;
    return false;
}

/* "URI [weight=N]". Nothing after the URI is echoed: with a stray space in a
 * password, it would be the password. */
static int parse_node(sr_config *c, int shard, sr_role role, char *value)
{
    char *rest = value + strcspn(value, " \t\r\f\v");
    if (*rest)
        *rest++ = '\0';
    rest = trim(rest);
    long long weight = 0;
    if (*rest) {
        if (strncmp(rest, "weight", 6) != 0)
            return sr__config_fail(c, SR_EINVAL, "only weight=N may follow the URI");
        char *w = trim(rest + 6);
        if (*w != '=')
            return sr__config_fail(c, SR_EINVAL, "only weight=N may follow the URI");
        if (!parse_int64(w + 1, &weight))
            return sr__config_fail(c, SR_EINVAL, "weight must be an integer (1..%d)", MAX_WEIGHT);
        /* The range itself is sr_config_add_node()'s to check (0 means 1 there too). */
        if (weight < INT_MIN || weight > INT_MAX)
            return sr__config_fail(c, SR_EINVAL, "weight %lld is out of range (1..%d)", weight, MAX_WEIGHT);
    }
    return sr_config_add_node(c, c->shards[shard].name, role, value, (int)weight);
}

static int parse_shard_line(sr_config *c, int shard, const char *key, char *value)
{
    const char *name = c->shards[shard].name;
    if (strcmp(key, "primary") == 0)
        return parse_node(c, shard, SR_PRIMARY, value);
    if (strcmp(key, "replica") == 0)
        return parse_node(c, shard, SR_REPLICA, value);
    if (strcmp(key, "keyrange") == 0 || strcmp(key, "range") == 0)
        return sr_config_shard_set(c, name, key, value);
    if (strcmp(key, "pin_int") == 0) {
        long long v;
        char buf[80];
        if (!parse_int64(value, &v))
            return sr__config_fail(c, SR_EINVAL, "pin_int: '%s' is not a 64-bit integer",
                                   excerpt(value, buf, sizeof buf));
        return sr_config_pin_key(c, sr_key_int(v), name);
    }
    if (strcmp(key, "pin_text") == 0) {
        if (!*value)
            return sr__config_fail(c, SR_EINVAL, "pin_text needs a value");
        return sr_config_pin_key(c, sr_key_text(value), name);
    }
    if (is_global_key(key))
        return sr__config_fail(c, SR_EINVAL, "global option '%s' must come before the first [shard] section",
                               key);
    char shown[80];
    return sr__config_fail(c, SR_EINVAL,
                           "unknown key '%s' in [shard %s] (expected primary, replica, keyrange, range, "
                           "pin_int or pin_text)",
                           excerpt(key, shown, sizeof shown), name);
}

/* One line (modified in place). *section is the current shard, -1 before the first. */
static int parse_line(sr_config *c, char *line, int *section)
{
    /* '#' starts a comment at the start of a line or after whitespace, so
     * '#' inside a value (a URI, a text pin) stays part of it. */
    for (char *p = line; *p; p++) {
        if (*p == '#' && (p == line || isspace((unsigned char)p[-1]))) {
            *p = '\0';
            break;
        }
    }
    char *s = trim(line);
    if (!*s)
        return SR_OK;

    if (*s == '[') {
        size_t n = strlen(s);
        if (s[n - 1] != ']')
            return sr__config_fail(c, SR_EINVAL, "a section header must end with ']'");
        s[n - 1] = '\0';
        char *inner = trim(s + 1);
        char buf[80];
        if (strncmp(inner, "shard", 5) != 0 || (inner[5] && !isspace((unsigned char)inner[5])))
            return sr__config_fail(c, SR_EINVAL, "unknown section '[%s]' (expected [shard NAME])",
                                   excerpt(inner, buf, sizeof buf));
        char *name = trim(inner + 5);
        if (!*name)
            return sr__config_fail(c, SR_EINVAL, "[shard] needs a name: [shard NAME]");
        /* A section opens a shard declared earlier (e.g. by `shards = N`) or declares it. */
        int i = sr__config_find_shard(c, name);
        if (i < 0) {
            int rc = add_shard(c, name);
            if (rc != SR_OK)
                return rc;
            i = c->nshards - 1;
        }
        *section = i;
        return SR_OK;
    }

    char *eq = strchr(s, '=');
    if (!eq)
        return sr__config_fail(c, SR_EINVAL, "expected 'key = value' or '[shard NAME]'");
    *eq = '\0';
    char *key = trim(s), *value = trim(eq + 1);
    if (!*key)
        return sr__config_fail(c, SR_EINVAL, "missing key before '='");
    if (*section >= 0)
        return parse_shard_line(c, *section, key, value);
    if (is_shard_key(key))
        return sr__config_fail(c, SR_EINVAL, "'%s' belongs in a [shard NAME] section", key);
    return sr_config_set(c, key, value);
}

/* `origin` (a file name, or NULL) prefixes messages as "origin: line N: ...". */
static int parse_text(sr_config *c, const char *text, const char *origin)
{
    char *line = NULL;
    size_t cap = 0;
    int section = -1, lineno = 0, rc = SR_OK;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        lineno++;
        if (len + 1 > cap) {
            char *grown = realloc(line, len + 1);
            if (!grown) {
                rc = sr__config_fail(c, SR_ENOMEM, "out of memory");
                break;
            }
            line = grown;
            cap = len + 1;
        }
        memcpy(line, p, len);
        line[len] = '\0';
        if ((rc = parse_line(c, line, &section)) != SR_OK)
            break;
        p += len + (nl != NULL);
    }
    free(line);
    if (rc == SR_OK)
        return succeed(c);
    return sr__config_fail(c, rc, "%.200s%sline %d: %s", origin ? origin : "", origin ? ": " : "", lineno,
                           c->errmsg);
}

SR_API int sr_config_parse(sr_config *c, const char *text)
{
    if (!c)
        return SR_EINVAL;
    if (!text)
        return sr__config_fail(c, SR_EINVAL, "sr_config_parse: the text is NULL");
    return parse_text(c, text, NULL);
}

SR_API int sr_config_load_file(sr_config *c, const char *path)
{
    if (!c)
        return SR_EINVAL;
    if (!path)
        return sr__config_fail(c, SR_EINVAL, "sr_config_load_file: the path is NULL");
    /* Non-blocking open and a regular file only: a FIFO (or a device) would
     * block the caller with no bound. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return sr__config_fail(c, SR_EINVAL, "cannot read '%.200s': %s", path, strerror(errno));
    struct stat st;
    const char *why = NULL;
    if (fstat(fd, &st) != 0)
        why = strerror(errno);
    else if (S_ISDIR(st.st_mode))
        why = "it is a directory";
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    if (why) {
        close(fd);
        return sr__config_fail(c, SR_EINVAL, "cannot read '%.200s': %s", path, why);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return sr__config_fail(c, SR_EINVAL, "cannot read '%.200s': %s", path, strerror(e));
    }
    /* Grown as the file is read (a 65,536-shard file is a few MB), up to the
     * limit: one byte past it tells "exactly the limit" from "larger". */
    size_t cap = 64 * 1024, n = 0;
    char *buf = malloc(cap + 1);
    int read_errno = 0;
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (ferror(f)) {
            read_errno = errno ? errno : EIO;
            break;
        }
        if (n < cap || cap > MAX_FILE_SIZE)
            break; /* end of file, or past the limit */
        size_t next = cap * 2 > MAX_FILE_SIZE + 1 ? MAX_FILE_SIZE + 1 : cap * 2;
        char *grown = realloc(buf, next + 1);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap = next;
    }
    fclose(f);
    if (!buf)
        return sr__config_fail(c, SR_ENOMEM, "out of memory reading '%.200s'", path);
    int rc;
    if (read_errno)
        rc = sr__config_fail(c, SR_EINVAL, "cannot read '%.200s': %s", path, strerror(read_errno));
    else if (n > MAX_FILE_SIZE)
        rc = sr__config_fail(c, SR_EINVAL, "cannot read '%.200s': larger than %d MiB", path,
                             MAX_FILE_SIZE / (1024 * 1024));
    else if (memchr(buf, '\0', n))
        rc = sr__config_fail(c, SR_EINVAL, "cannot read '%.200s': it contains a NUL byte (not a text file)",
                             path);
    else {
        buf[n] = '\0';
        rc = parse_text(c, buf, path);
    }
    free(buf);
    return rc;
}
