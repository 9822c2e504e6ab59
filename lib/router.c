/*
 * The router's public face: open/close, key -> shard, and introspection of
 * shards and nodes. The statement path starts in exec.c.
 */
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
    char err[SR_ERRMSG_LEN] = "";
    int rc = sr__topology_build(r, c, err, sizeof err);
    if (rc != SR_OK) {
        sr__topology_free(r);
        free(r);
        return sr__config_fail(c, rc, "%s", err[0] ? err : sr_strerror(rc));
    }
    rc = sr__prober_start(r);
    if (rc != SR_OK) {
        sr__topology_free(r);
        free(r);
        return sr__config_fail(c, rc, "cannot start the health prober thread");
    }
    sr__config_fail(c, SR_OK, "%s", "");
    sr__log(r, SR_LOG_INFO, "router open: %d shards, distribution %s, policy %s", r->nshards,
            sr__option_enum_name("shard.distribution", r->opts.distribution),
            sr__option_enum_name("balance.policy", r->opts.balance_policy));
    *out = r;
    return SR_OK;
}

SR_API void sr_router_close(sr_router *r)
{
    if (!r)
        return;
    sr__prober_stop(r);
    sr__token_index_free(r);
    sr__topology_free(r);
    free(r);
}

SR_API int sr_router_shard_for(const sr_router *r, sr_key key)
{
    if (!r)
        return SR_EINVAL;
    return sr__keymap_lookup(r->keymap, key);
}

SR_API int sr_router_nshards(const sr_router *r) { return r ? r->nshards : SR_EINVAL; }

SR_API const char *sr_router_shard_name(const sr_router *r, int shard)
{
    if (!r || shard < 0 || shard >= r->nshards)
        return NULL;
    return r->shards[shard].name;
}

SR_API int sr_router_nnodes(const sr_router *r, int shard)
{
    if (!r)
        return SR_EINVAL;
    if (shard < 0 || shard >= r->nshards)
        return SR_ENOSHARD;
    return r->shards[shard].nnodes;
}

SR_API int sr_router_node_info(const sr_router *r, int shard, int node, sr_node_info *out)
{
    if (!r || !out || out->version < 1 || out->version > SR_NODE_INFO_VERSION)
        return SR_EINVAL;
    if (shard < 0 || shard >= r->nshards || node < 0 || node >= r->shards[shard].nnodes)
        return SR_ENOSHARD;
    /* Version 1 is every field up to lag_ms; version 2 fields are filled only when the
     * caller's struct has them. */
    sr_node *n = &r->shards[shard].nodes[node];
    sr_pool_stats ps;
    sr__pool_stats(n->pool, &ps);
    out->role = n->role;
    out->uri = n->uri->redacted;
    out->healthy = sr__health_is_up(&n->health);
    out->statements = 0;
    for (int w = 0; w < 2; w++)
        for (int o = 0; o < SR_OUTCOMES; o++)
            out->statements += atomic_load_explicit(&n->outcomes[w][o], memory_order_relaxed);
    out->errors = atomic_load(&n->errors);
    int64_t inflight = atomic_load(&n->bal.in_flight);
    out->in_flight = inflight > 0 ? (uint64_t)inflight : 0;
    out->connections = (uint64_t)ps.open;
    out->ewma_latency_ms = (double)atomic_load(&n->bal.ewma_ns) / 1e6;
    out->role_mismatch = atomic_load(&n->role_mismatch);
    out->ejections = atomic_load(&n->health.ejections);
    out->lag_ms = atomic_load(&n->lag_ms);
    if (out->version >= 2) {
        out->stale_checks = atomic_load(&n->stale_checks);
        out->position_checks = out->stale_checks + atomic_load(&n->applied_checks);
        out->replay_delay_us = atomic_load(&n->replay_delay_ns) / 1000;
    }
    return SR_OK;
}
