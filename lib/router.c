/*
 * The router's public face: open/close, reload, key -> shard, and
 * introspection of shards and nodes, each on the current topology version.
 * The statement path starts in exec.c.
 */
#include "reload.h"
#include "watch.h"
#include "etcd.h"
#include "token.h"

#include <stdlib.h>
#include <string.h>


SR_API int sr_router_open(sr_config *c, sr_router **out)
{
    if (!c || !out) {
        if (c)
            sr__config_fail(c, SR_EINVAL, "sr_router_open: NULL output pointer");
        return SR_EINVAL;
    }
    sr_router *r = calloc(1, sizeof *r);
    if (!r)
        return sr__config_fail(c, SR_ENOMEM, "out of memory opening the router");
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->reload_lock, NULL);
    pthread_mutex_init(&r->registry_lock, NULL);
    pthread_mutex_init(&r->watch_lock, NULL);
    char err[SR_ERRMSG_LEN] = "";
    sr_topo *t = NULL;
    r->applied = sr__config_clone(c);
    int rc = r->applied ? sr__topology_build(r, c, NULL, 1, &t, err, sizeof err) : SR_ENOMEM;
    if (rc == SR_OK) {
        sr__topo_publish(t);
        atomic_store(&r->current, t);
        atomic_store(&r->version, 1);
        sr__watch_init(r);
        rc = sr__etcd_open(r, err, sizeof err); /* may reload: the shared topology */
        if (rc == SR_OK && (rc = sr__prober_start(r)) != SR_OK)
            sr__fmt(err, sizeof err, "cannot start the health prober thread");
    }
    if (rc != SR_OK) {
        sr__prober_stop(r); /* a reload from etcd may have started it */
        sr__etcd_close(r);
        sr__topology_free_all(r);
        sr_config_free(r->applied);
        pthread_mutex_destroy(&r->lock);
        pthread_mutex_destroy(&r->reload_lock);
        pthread_mutex_destroy(&r->registry_lock);
        pthread_mutex_destroy(&r->watch_lock);
        free(r);
        return sr__config_fail(c, rc, "%s", err[0] ? err : sr_strerror(rc));
    }
    sr__config_fail(c, SR_OK, "%s", "");
    sr__log_version(atomic_load(&r->current), "open"); /* etcd may have replaced t */
    *out = r;
    return SR_OK;
}

SR_API int sr_router_reload(sr_router *r, sr_config *c)
{
    if (!r || !c) {
        if (c)
            sr__config_fail(c, SR_EINVAL, "sr_router_reload: NULL router");
        return SR_EINVAL;
    }
    char err[SR_ERRMSG_LEN] = "";
    /* One reload at a time; statements go on meanwhile (they never take this lock). */
    pthread_mutex_lock(&r->reload_lock);
    int rc = sr__reload_locked(r, c, "reloaded", err, sizeof err);
    if (rc == SR_OK)
        sr__prober_follow_locked(r); /* the new options may ask for it, or another interval */
    pthread_mutex_unlock(&r->reload_lock);
    if (rc != SR_OK)
        return sr__config_fail(c, rc, "%s", err[0] ? err : sr_strerror(rc));
    sr__config_fail(c, SR_OK, "%s", "");
    return SR_OK;
}

SR_API void sr_router_close(sr_router *r)
{
    if (!r)
        return;
    sr__prober_stop(r);
    sr__etcd_close(r);
    sr__topology_free_all(r);
    sr_config_free(r->applied);
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->reload_lock);
    pthread_mutex_destroy(&r->registry_lock);
    pthread_mutex_destroy(&r->watch_lock);
    free(r);
}

SR_API int64_t sr_router_version(const sr_router *r)
{
    return r ? (int64_t)atomic_load(&((sr_router *)r)->version) : SR_EINVAL;
}

SR_API int sr_router_shard_for(const sr_router *r, sr_key key)
{
    if (!r)
        return SR_EINVAL;
    sr_topo *t = sr__topo_borrow(r);
    int rc = sr__keymap_lookup(t->keymap, key);
    sr__topo_unborrow(r);
    return rc;
}

SR_API int sr_router_nshards(const sr_router *r)
{
    if (!r)
        return SR_EINVAL;
    sr_topo *t = sr__topo_borrow(r);
    int n = t->nshards;
    sr__topo_unborrow(r);
    return n;
}

SR_API const char *sr_router_shard_name(const sr_router *r, int shard)
{
    if (!r)
        return NULL;
    sr_topo *t = sr__topo_borrow(r);
    /* Shard names outlive their version (the graveyard, topology.c): valid until close. */
    const char *name = shard >= 0 && shard < t->nshards ? t->shards[shard].name : NULL;
    sr__topo_unborrow(r);
    return name;
}

SR_API int sr_router_nnodes(const sr_router *r, int shard)
{
    if (!r)
        return SR_EINVAL;
    sr_topo *t = sr__topo_borrow(r);
    int n = shard >= 0 && shard < t->nshards ? t->shards[shard].nnodes : SR_ENOSHARD;
    sr__topo_unborrow(r);
    return n;
}

static int node_info(const sr_topo *r, int shard, int node, sr_node_info *out)
{
    if (shard < 0 || shard >= r->nshards || node < 0 || node >= r->shards[shard].nnodes)
        return SR_ENOSHARD;
    /* Version 1 is every field up to lag_ms; version 2 fields are filled only when the
     * caller's struct has them. */
    sr_node *n = &r->shards[shard].nodes[node];
    sr_pool_stats ps;
    sr__pool_stats(n->b->pool, &ps);
    out->role = n->role;
    out->uri = n->b->uri->redacted;
    out->healthy = sr__health_is_up(&n->b->health);
    out->statements = 0;
    for (int w = 0; w < 2; w++)
        for (int o = 0; o < SR_OUTCOMES; o++)
            out->statements += atomic_load_explicit(&n->b->outcomes[w][o], memory_order_relaxed);
    out->errors = atomic_load(&n->b->errors);
    int64_t inflight = atomic_load(&n->b->bal.in_flight);
    out->in_flight = inflight > 0 ? (uint64_t)inflight : 0;
    out->connections = (uint64_t)ps.open;
    out->ewma_latency_ms = (double)atomic_load(&n->b->bal.ewma_ns) / 1e6;
    out->role_mismatch = atomic_load(&n->b->role_mismatch);
    out->ejections = atomic_load(&n->b->health.ejections);
    out->lag_ms = atomic_load(&n->b->lag_ms);
    if (out->version >= 2) {
        out->stale_checks = atomic_load(&n->b->stale_checks);
        out->position_checks = out->stale_checks + atomic_load(&n->b->applied_checks);
        out->replay_delay_us = atomic_load(&n->b->replay_delay_ns) / 1000;
    }
    return SR_OK;
}

SR_API int sr_router_node_info(const sr_router *r, int shard, int node, sr_node_info *out)
{
    if (!r || !out || out->version < 1 || out->version > SR_NODE_INFO_VERSION)
        return SR_EINVAL;
    sr_topo *t = sr__topo_borrow(r);
    int rc = node_info(t, shard, node, out);
    sr__topo_unborrow(r);
    return rc;
}
