/*
 * Building the live topology from a configuration: shards, nodes (parsed
 * URI, driver, pool, balance state) and the key map. Everything is checked
 * here, once, so that statements never meet a half-valid topology.
 */
#include "topology.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "uri.h"

static int build_node(sr_router *r, sr_node *n, int shard, int index, const sr_config_node *cn,
                      const char *shard_name, char *err, size_t errlen)
{
    char uerr[512];
    n->shard = shard;
    n->index = index;
    n->role = cn->role;
    atomic_init(&n->errors, 0);
    sr__health_init(&n->health);
    atomic_init(&n->role_mismatch, 0);
    atomic_init(&n->lag_ms, -2);
    atomic_init(&n->lag_stamp_ns, 0);
    pthread_mutex_init(&n->pos_lock, NULL);
    pthread_mutex_init(&n->last_error_lock, NULL);

    int rc = sr__uri_parse(cn->uri, &n->uri, uerr, sizeof uerr);
    if (rc != SR_OK) {
        sr__fmt(err, errlen, "shard '%s': %s", shard_name, uerr);
        return rc;
    }
    /* password_file / password_env are read here, once: a missing or
     * unsafe file is an error of sr_router_open(), not of the first statement. */
    sr_uri *resolved;
    rc = sr__uri_resolve_password(n->uri, &resolved, uerr, sizeof uerr);
    if (rc != SR_OK) {
        sr__fmt(err, errlen, "shard '%s' node %s: %s", shard_name, n->uri->redacted, uerr);
        return rc;
    }
    if (resolved) {
        sr__uri_free(n->uri);
        n->uri = resolved;
    }
    rc = sr__driver_lookup(n->uri->scheme, &n->driver, uerr, sizeof uerr);
    if (rc != SR_OK) {
        sr__fmt(err, errlen, "shard '%s' node %s: %s", shard_name, n->uri->redacted, uerr);
        return rc;
    }
    n->connect_args.uri = n->uri;
    n->connect_args.role = n->role;
    n->connect_args.connect_timeout_ms = r->opts.connect_timeout_ms;
    n->connect_args.statement_timeout_ms = r->opts.statement_timeout_ms;
    n->connect_args.stmt_cache_size = r->opts.stmt_cache_size;
    n->connect_args.stmt_cache_bytes = (size_t)r->opts.stmt_cache_bytes;
    if (n->driver->abi_version >= 4) { /* an older driver's struct ends before app_data */
        n->connect_args.driver = n->driver;
        n->connect_args.app_data = n->driver->app_data;
        n->connect_args.log = (sr_driver_logger){r->log_fn, r->log_ud};
    }

    /* A stable per-node identity for affinity hashing: same topology, same sticking. */
    char id[600];
    sr__fmt(id, sizeof id, "%s/%d/%s", shard_name, index, n->uri->redacted);
    sr__balance_init(&n->bal, cn->weight > 0 ? cn->weight : 1, sr__hash_key(sr_key_text(id)));

    rc = sr__pool_new(n->driver, &n->connect_args, r->opts.pool_max_size, &n->pool);
    if (rc != SR_OK) {
        sr__fmt(err, errlen, "shard '%s' node %s: cannot create its pool: %s", shard_name,
                n->uri->redacted, sr_strerror(rc));
        return rc;
    }
    return SR_OK;
}

static int build_shard(sr_router *r, int si, const sr_config_shard *cs, sr_node *slots, char *err,
                       size_t errlen)
{
    sr_shard *sh = &r->shards[si];
    atomic_init(&sh->rr_counter, 0);
    sh->name = sr_strdup(cs->name);
    if (!sh->name)
        return SR_ENOMEM;

    int primary = -1;
    for (int i = 0; i < cs->nnodes; i++) {
        if (cs->nodes[i].role != SR_PRIMARY)
            continue;
        if (primary >= 0) {
            sr__fmt(err, errlen, "shard '%s' has more than one primary", cs->name);
            return SR_EINVAL;
        }
        primary = i;
    }
    if (primary < 0) {
        sr__fmt(err, errlen, "shard '%s' has no primary (add one with sr_config_add_node)",
                cs->name);
        return SR_EINVAL;
    }
    if (cs->nnodes > SR_MAX_NODES_PER_SHARD) {
        sr__fmt(err, errlen, "shard '%s' has %d nodes; at most %d are supported", cs->name,
                cs->nnodes, SR_MAX_NODES_PER_SHARD);
        return SR_EINVAL;
    }
    sh->nodes = slots;

    /* The primary is node 0, then the replicas in configuration order. */
    int rc = build_node(r, &sh->nodes[0], si, 0, &cs->nodes[primary], cs->name, err, errlen);
    sh->nnodes = 1;
    for (int i = 0; rc == SR_OK && i < cs->nnodes; i++) {
        if (i == primary)
            continue;
        rc = build_node(r, &sh->nodes[sh->nnodes], si, sh->nnodes, &cs->nodes[i], cs->name, err,
                        errlen);
        sh->nnodes++;
    }
    return rc;
}

static int build_keymap(sr_router *r, const sr_config *c, char *err, size_t errlen)
{
    sr_keymap_shard_spec *shards = calloc((size_t)c->nshards, sizeof *shards);
    sr_keymap_pin_spec *pins = c->npins ? calloc((size_t)c->npins, sizeof *pins) : NULL;
    if (!shards || (c->npins && !pins)) {
        free(shards);
        free(pins);
        return SR_ENOMEM;
    }
    for (int i = 0; i < c->nshards; i++) {
        shards[i].name = c->shards[i].name;
        shards[i].keyrange = c->shards[i].keyrange;
        shards[i].range = c->shards[i].range;
    }
    for (int i = 0; i < c->npins; i++) {
        const sr_config_pin *p = &c->pins[i];
        pins[i].key = p->kind == SR_KEY_INT ? sr_key_int(p->i) : sr_key_bytes(p->bytes, p->len);
        pins[i].shard = p->shard;
    }
    sr_keymap_spec spec = {
        .kind = (sr_dist_kind)c->opts.distribution,
        .shards = shards,
        .nshards = c->nshards,
        .pins = pins,
        .npins = c->npins,
        .fn = c->keymap_fn,
        .fn_ud = c->keymap_ud,
    };
    int rc = sr__keymap_build(&spec, &r->keymap, err, errlen);
    free(shards);
    free(pins);
    return rc;
}

int sr__topology_build(sr_router *r, const sr_config *c, char *err, size_t errlen)
{
    r->opts = c->opts;
    r->health_policy.fail_threshold = c->opts.health_fail_threshold;
    r->health_policy.retry_ms = c->opts.health_retry_ms;
    r->health_policy.retry_max_ms = c->opts.health_retry_max_ms > c->opts.health_retry_ms
                                        ? c->opts.health_retry_max_ms
                                        : c->opts.health_retry_ms;
    r->log_fn = c->log_fn;
    r->log_ud = c->log_ud;
    r->event_fn = c->event_fn;
    r->event_ud = c->event_ud;
    if (c->nshards == 0) {
        sr__fmt(err, errlen, "no shards declared (sr_config_add_shard or the 'shards' option)");
        return SR_EINVAL;
    }
    if (c->opts.distribution == SR_DIST_CALLBACK && !c->keymap_fn) {
        sr__fmt(err, errlen, "shard.distribution is 'callback' but no function was set "
                             "(sr_config_set_keymap_fn)");
        return SR_EINVAL;
    }
    /* Every node in one block: with tens of thousands of shards, one
     * allocation per shard was most of the cost of opening. */
    size_t total = 0;
    for (int i = 0; i < c->nshards; i++)
        total += (size_t)c->shards[i].nnodes;
    r->shards = calloc((size_t)c->nshards, sizeof *r->shards);
    r->node_store = calloc(total ? total : 1, sizeof *r->node_store);
    if (!r->shards || !r->node_store)
        return SR_ENOMEM;
    r->nshards = c->nshards;
    size_t used = 0;
    for (int i = 0; i < c->nshards; i++) {
        int rc = build_shard(r, i, &c->shards[i], r->node_store + used, err, errlen);
        used += (size_t)c->shards[i].nnodes;
        if (rc != SR_OK) {
            if (rc == SR_ENOMEM && !err[0])
                sr__fmt(err, errlen, "out of memory building shard '%s'", c->shards[i].name);
            return rc;
        }
    }
    int rc = build_keymap(r, c, err, errlen);
    if (rc == SR_ENOMEM && !err[0])
        sr__fmt(err, errlen, "out of memory building the key map");
    return rc;
}

void sr__topology_free(sr_router *r)
{
    for (int i = 0; r->shards && i < r->nshards; i++) {
        sr_shard *sh = &r->shards[i];
        for (int j = 0; sh->nodes && j < sh->nnodes; j++) {
            if (sh->nodes[j].pool)
                sr__pool_free(sh->nodes[j].pool);
            pthread_mutex_destroy(&sh->nodes[j].last_error_lock);
            pthread_mutex_destroy(&sh->nodes[j].pos_lock);
            sr__uri_free(sh->nodes[j].uri);
        }
        free(sh->name);
    }
    free(r->shards);
    free(r->node_store);
    r->shards = NULL;
    r->node_store = NULL;
    r->nshards = 0;
    sr__keymap_free(r->keymap);
    r->keymap = NULL;
}
