/*
 * Topology versions: building one from a configuration (shards, nodes, key
 * map; everything is checked here, once, so that statements never meet a
 * half-valid topology), sharing the backends of unchanged nodes with the
 * version before, and the references that decide when an old version and
 * its backends are freed.
 */
#include "topology.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "uri.h"

/* ---- strings valid until the router closes ---- */

enum { GRAVE_STRING = 0, GRAVE_URI = 1 };

/* Keeps `p` (a string, or an sr_uri) until the router closes; frees it at once if even
 * that fails (the caller's string is then gone: only under memory exhaustion). */
static void bury(sr_router *h, void *p, int kind)
{
    if (!p)
        return;
    pthread_mutex_lock(&h->registry_lock);
    if (h->ngraveyard + 2 > h->graveyard_cap) {
        size_t cap = h->graveyard_cap ? h->graveyard_cap * 2 : 32;
        void **g = realloc(h->graveyard, cap * sizeof *g);
        if (!g) {
            pthread_mutex_unlock(&h->registry_lock);
            if (kind == GRAVE_URI)
                sr__uri_free(p);
            else
                free(p);
            return;
        }
        h->graveyard = g;
        h->graveyard_cap = cap;
    }
    h->graveyard[h->ngraveyard++] = (void *)(uintptr_t)kind;
    h->graveyard[h->ngraveyard++] = p;
    pthread_mutex_unlock(&h->registry_lock);
}

/* ---- backends ---- */

static void backend_free(sr_router *h, sr_backend *b)
{
    if (!b)
        return;
    if (b->pool)
        sr__pool_free(b->pool);
    pthread_mutex_destroy(&b->last_error_lock);
    pthread_mutex_destroy(&b->pos_lock);
    if (b->published)
        bury(h, b->uri, GRAVE_URI); /* its redacted text was handed out (sr_node_info.uri) */
    else
        sr__uri_free(b->uri);
    free(b->config_uri);
    free(b);
}

static void backend_release(sr_router *h, sr_backend *b)
{
    if (b && atomic_fetch_sub(&b->refs, 1) == 1)
        backend_free(h, b);
}

/* Whether `b` serves a node configured as `cn` under options `o`: same URI text, role and
 * connection options (the pool's connections were made with them). */
static bool backend_matches(const sr_backend *b, const sr_config_node *cn, const sr_options *o)
{
    const sr_driver_connect_args *a = &b->connect_args;
    return strcmp(b->config_uri, cn->uri) == 0 && a->role == cn->role &&
           a->connect_timeout_ms == o->connect_timeout_ms &&
           a->statement_timeout_ms == o->statement_timeout_ms &&
           a->stmt_cache_size == o->stmt_cache_size &&
           a->stmt_cache_bytes == (size_t)o->stmt_cache_bytes &&
           sr__pool_max_size(b->pool) == o->pool_max_size;
}

/* A backend of `prev` that a node configured as `cn` may share, or NULL. Each backend goes
 * to one node of the version being built (`version`): two nodes with one URI keep two. */
static sr_backend *reusable_backend(const sr_topo *prev, const sr_config_node *cn,
                                    const sr_options *o, uint64_t version)
{
    for (int i = 0; prev && i < prev->nshards; i++)
        for (int j = 0; j < prev->shards[i].nnodes; j++) {
            sr_backend *b = prev->shards[i].nodes[j].b;
            if (b->claimed_by != version && backend_matches(b, cn, o)) {
                b->claimed_by = version; /* builds are serialised by the reload lock */
                return b;
            }
        }
    return NULL;
}

/*
 * The drivers' log sink for every backend: the current version's log callback, so that a
 * backend kept by a reload logs where the new configuration says (never to a callback, or
 * userdata, that the application replaced and may have freed).
 */
static void driver_log(void *ud, sr_log_level level, const char *msg)
{
    sr_router *h = ud;
    sr_topo *t = sr__topo_borrow(h);
    if (t && t->log_fn)
        t->log_fn(t->log_ud, level, msg);
    sr__topo_unborrow(h);
}

static int backend_new(sr_topo *t, const sr_config_node *cn, const char *shard_name, int index,
                       sr_backend **out, char *err, size_t errlen)
{
    char uerr[512];
    sr_backend *b = calloc(1, sizeof *b);
    if (!b)
        return SR_ENOMEM;
    atomic_init(&b->refs, 1);
    sr__health_init(&b->health);
    atomic_init(&b->lag_ms, -2);
    pthread_mutex_init(&b->pos_lock, NULL);
    pthread_mutex_init(&b->last_error_lock, NULL);
    *out = b; /* freed by the caller's cleanup on failure */

    b->config_uri = sr_strdup(cn->uri);
    if (!b->config_uri)
        return SR_ENOMEM;
    int rc = sr__uri_parse(cn->uri, &b->uri, uerr, sizeof uerr);
    if (rc != SR_OK) {
        sr__fmt(err, errlen, "shard '%s': %s", shard_name, uerr);
        return rc;
    }
    /* password_file / password_env are read here, once: a missing or
     * unsafe file is an error of sr_router_open(), not of the first statement. */
    sr_uri *resolved;
    rc = sr__uri_resolve_password(b->uri, &resolved, uerr, sizeof uerr);
    if (rc != SR_OK) {
        sr__fmt(err, errlen, "shard '%s' node %s: %s", shard_name, b->uri->redacted, uerr);
        return rc;
    }
    if (resolved) {
        sr__uri_free(b->uri);
        b->uri = resolved;
    }
    rc = sr__driver_lookup(b->uri->scheme, &b->driver, uerr, sizeof uerr);
    if (rc != SR_OK) {
        sr__fmt(err, errlen, "shard '%s' node %s: %s", shard_name, b->uri->redacted, uerr);
        return rc;
    }
    b->connect_args.uri = b->uri;
    b->connect_args.role = cn->role;
    b->connect_args.connect_timeout_ms = t->opts.connect_timeout_ms;
    b->connect_args.statement_timeout_ms = t->opts.statement_timeout_ms;
    b->connect_args.stmt_cache_size = t->opts.stmt_cache_size;
    b->connect_args.stmt_cache_bytes = (size_t)t->opts.stmt_cache_bytes;
    if (b->driver->abi_version >= 4) { /* an older driver's struct ends before app_data */
        b->connect_args.driver = b->driver;
        b->connect_args.app_data = b->driver->app_data;
        b->connect_args.log = (sr_driver_logger){driver_log, t->router};
    }

    /* A stable per-node identity for affinity hashing: same topology, same sticking. */
    char id[600];
    sr__fmt(id, sizeof id, "%s/%d/%s", shard_name, index, b->uri->redacted);
    sr__balance_init(&b->bal, cn->weight > 0 ? cn->weight : 1, sr__hash_key(sr_key_text(id)));

    rc = sr__pool_new(b->driver, &b->connect_args, t->opts.pool_max_size, &b->pool);
    if (rc != SR_OK)
        sr__fmt(err, errlen, "shard '%s' node %s: cannot create its pool: %s", shard_name,
                b->uri->redacted, sr_strerror(rc));
    return rc;
}

static int build_node(sr_topo *t, const sr_topo *prev, sr_node *n, int shard, int index,
                      const sr_config_node *cn, const char *shard_name, char *err, size_t errlen)
{
    n->shard = shard;
    n->index = index;
    n->role = cn->role;
    sr_backend *b = reusable_backend(prev, cn, &t->opts, t->version);
    if (b) {
        atomic_fetch_add(&b->refs, 1);
        /* The weight may change with a reload; the rest of the balance state stays. */
        atomic_store_explicit(&b->bal.weight, cn->weight > 0 ? cn->weight : 1,
                              memory_order_relaxed);
        n->b = b;
        return SR_OK;
    }
    return backend_new(t, cn, shard_name, index, &n->b, err, errlen);
}

/* ---- shards ---- */

/* The router's entry for a shard name (its counters and its interned name), created on first
 * sight. A linear search: the registry holds every shard name the router ever had; a build
 * looks up each of its shards once (open and reload, not the statement path). */
static sr_named_counters *shard_entry(sr_router *h, const char *name)
{
    pthread_mutex_lock(&h->registry_lock);
    sr_named_counters *c = h->shard_counters;
    while (c && strcmp(c->name, name) != 0)
        c = c->next;
    if (!c) {
        size_t len = strlen(name);
        c = calloc(1, sizeof *c + len + 1);
        if (c) {
            memcpy(c->name, name, len + 1);
            c->next = h->shard_counters;
            h->shard_counters = c;
        }
    }
    pthread_mutex_unlock(&h->registry_lock);
    return c;
}

/* The node of `sh` configured with URI `uri`, or -1. */
static int node_with_uri(const sr_shard *sh, const char *uri)
{
    for (int i = 0; i < sh->nnodes; i++)
        if (strcmp(sh->nodes[i].b->config_uri, uri) == 0)
            return i;
    return -1;
}

/*
 * A split brain seen on the shard of the same name in `prev` stays in force in the new
 * version while both nodes are still in it (whatever their configured roles): a reload does
 * not make two writable primaries safe, only one stepping down (the next round of role
 * checks clears it) or the configuration dropping one of them does.
 */
static void carry_split_brain(const sr_topo *prev, sr_shard *sh)
{
    for (int i = 0; prev && i < prev->nshards; i++) {
        const sr_shard *old = &prev->shards[i];
        if (old->name != sh->name) /* interned: one pointer per name */
            continue;
        uint32_t sb = atomic_load(&((sr_shard *)old)->split_brain);
        if (!sb)
            return;
        int a = node_with_uri(sh, old->nodes[sb & 0xff].b->config_uri);
        int b = node_with_uri(sh, old->nodes[(sb >> 8) & 0xff].b->config_uri);
        if (a >= 0 && b >= 0)
            atomic_store(&sh->split_brain, SR_SPLIT_BRAIN_FLAG | (uint32_t)a | (uint32_t)b << 8);
        return;
    }
}

static int build_shard(sr_topo *t, const sr_topo *prev, int si, const sr_config_shard *cs,
                       sr_node *slots, char *err, size_t errlen)
{
    sr_shard *sh = &t->shards[si];
    atomic_init(&sh->rr_counter, 0);
    sr_named_counters *entry = shard_entry(t->router, cs->name);
    if (!entry)
        return SR_ENOMEM;
    sh->name = entry->name; /* valid until the router closes, whatever reloads do */
    atomic_init(&sh->split_brain, 0);
    sh->counters = &entry->counters;

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
    int rc = build_node(t, prev, &sh->nodes[0], si, 0, &cs->nodes[primary], cs->name, err, errlen);
    sh->nnodes = 1;
    for (int i = 0; rc == SR_OK && i < cs->nnodes; i++) {
        if (i == primary)
            continue;
        rc = build_node(t, prev, &sh->nodes[sh->nnodes], si, sh->nnodes, &cs->nodes[i], cs->name,
                        err, errlen);
        sh->nnodes++;
    }
    if (rc == SR_OK && t->opts.failover_discovery)
        carry_split_brain(prev, sh);
    return rc;
}

static int build_keymap(sr_topo *t, const sr_config *c, char *err, size_t errlen)
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
    int rc = sr__keymap_build(&spec, &t->keymap, err, errlen);
    free(shards);
    free(pins);
    return rc;
}

/* Frees a version: its shards' names go to the graveyard, its backends lose a reference. */
static void topo_free(sr_topo *t)
{
    sr_router *h = t->router;
    for (int i = 0; t->shards && i < t->nshards; i++) {
        sr_shard *sh = &t->shards[i];
        for (int j = 0; sh->nodes && j < sh->nnodes; j++)
            backend_release(h, sh->nodes[j].b);
    }
    free(t->shards);
    free(t->node_store);
    sr__keymap_free(t->keymap);
    free(atomic_load(&t->token_index)); /* one block (token.c) */
    free(t);
}

static int build(sr_topo *t, const sr_config *c, const sr_topo *prev, char *err, size_t errlen)
{
    t->opts = c->opts;
    t->health_policy.fail_threshold = c->opts.health_fail_threshold;
    t->health_policy.retry_ms = c->opts.health_retry_ms;
    t->health_policy.retry_max_ms = c->opts.health_retry_max_ms > c->opts.health_retry_ms
                                        ? c->opts.health_retry_max_ms
                                        : c->opts.health_retry_ms;
    t->log_fn = c->log_fn;
    t->log_ud = c->log_ud;
    t->event_fn = c->event_fn;
    t->event_ud = c->event_ud;
    if (c->nshards <= 0) {
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
    t->shards = calloc((size_t)c->nshards, sizeof *t->shards);
    t->node_store = calloc(total ? total : 1, sizeof *t->node_store);
    if (!t->shards || !t->node_store)
        return SR_ENOMEM;
    t->nshards = c->nshards;
    size_t used = 0;
    for (int i = 0; i < c->nshards; i++) {
        int rc = build_shard(t, prev, i, &c->shards[i], t->node_store + used, err, errlen);
        used += (size_t)c->shards[i].nnodes;
        if (rc != SR_OK) {
            if (rc == SR_ENOMEM && !err[0])
                sr__fmt(err, errlen, "out of memory building shard '%s'", c->shards[i].name);
            t->nshards = i + 1; /* what topo_free must look at */
            return rc;
        }
    }
    int rc = build_keymap(t, c, err, errlen);
    if (rc == SR_ENOMEM && !err[0])
        sr__fmt(err, errlen, "out of memory building the key map");
    return rc;
}

int sr__topology_build(sr_router *h, const sr_config *c, const sr_topo *prev, uint64_t version,
                       sr_topo **out, char *err, size_t errlen)
{
    sr_topo *t = calloc(1, sizeof *t);
    if (!t)
        return SR_ENOMEM;
    atomic_init(&t->refs, 1);
    t->version = version;
    t->router = h;
    t->scatter = &h->scatter;
    t->event_tick = &h->event_tick;
    int rc = build(t, c, prev, err, errlen);
    if (rc != SR_OK)
        topo_free(t);
    if (rc == SR_OK)
        *out = t;
    return rc;
}

/* ---- references ---- */

sr_topo *sr__topo_acquire(sr_router *h)
{
    pthread_mutex_lock(&h->lock);
    sr_topo *t = atomic_load(&h->current);
    atomic_fetch_add(&t->refs, 1);
    pthread_mutex_unlock(&h->lock);
    return t;
}

/*
 * Unlinks the retired versions nobody holds, once no router-level call may be reading one
 * (under h->lock), and returns them for the caller to free after unlocking: freeing closes
 * connections (network I/O, drivers' log lines) and must not hold up every session behind
 * the lock. While a borrower is inside, reclaim_pending asks the last one to come back.
 */
static sr_topo *reclaim_locked(sr_router *h)
{
    sr_topo *freed = NULL;
    if (atomic_load(&h->borrowers) != 0) {
        atomic_store(&h->reclaim_pending, 1);
        return NULL;
    }
    atomic_store(&h->reclaim_pending, 0);
    for (sr_topo **p = &h->retired; *p;) {
        sr_topo *t = *p;
        if (atomic_load(&t->refs) == 0) {
            *p = t->next_retired;
            t->next_retired = freed;
            freed = t;
        } else {
            p = &t->next_retired;
        }
    }
    return freed;
}

static void free_list(sr_topo *t)
{
    while (t) {
        sr_topo *next = t->next_retired;
        topo_free(t);
        t = next;
    }
}

void sr__topo_reclaim_pending(sr_router *h)
{
    pthread_mutex_lock(&h->lock);
    sr_topo *freed = reclaim_locked(h);
    pthread_mutex_unlock(&h->lock);
    free_list(freed);
}

void sr__topo_release(sr_topo *t)
{
    if (!t)
        return;
    sr_router *h = t->router;
    pthread_mutex_lock(&h->lock);
    sr_topo *freed = NULL;
    if (atomic_fetch_sub(&t->refs, 1) == 1)
        freed = reclaim_locked(h); /* the current version always holds the router's reference */
    pthread_mutex_unlock(&h->lock);
    free_list(freed);
}

void sr__topo_publish(sr_topo *t)
{
    for (int i = 0; i < t->nshards; i++)
        for (int j = 0; j < t->shards[i].nnodes; j++)
            t->shards[i].nodes[j].b->published = true;
}

void sr__topo_retire(sr_router *h, sr_topo *old, sr_topo *now)
{
    sr__topo_publish(now);
    pthread_mutex_lock(&h->lock);
    atomic_store(&h->current, now);
    atomic_store(&h->version, now->version); /* sessions move at their next call */
    old->next_retired = h->retired;
    h->retired = old;
    atomic_fetch_sub(&old->refs, 1); /* the router's reference */
    sr_topo *freed = reclaim_locked(h); /* it, and older ones that waited for the borrowers */
    pthread_mutex_unlock(&h->lock);
    free_list(freed);
}

void sr__topology_free_all(sr_router *h)
{
    pthread_mutex_lock(&h->lock);
    while (h->retired) {
        sr_topo *t = h->retired;
        h->retired = t->next_retired;
        topo_free(t);
    }
    sr_topo *t = atomic_load(&h->current);
    atomic_store(&h->current, NULL);
    if (t)
        topo_free(t);
    for (size_t i = 0; i + 1 < h->ngraveyard; i += 2) {
        if ((uintptr_t)h->graveyard[i] == GRAVE_URI)
            sr__uri_free(h->graveyard[i + 1]);
        else
            free(h->graveyard[i + 1]);
    }
    free(h->graveyard);
    h->graveyard = NULL;
    h->ngraveyard = h->graveyard_cap = 0;
    while (h->shard_counters) {
        sr_named_counters *c = h->shard_counters;
        h->shard_counters = c->next;
        free(c);
    }
    pthread_mutex_unlock(&h->lock);
}
