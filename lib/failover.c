/*
 * Failover discovery. The servers know who their primary is (PostgreSQL:
 * pg_is_in_recovery(); MariaDB/MySQL: @@read_only); the configuration only
 * says who it was. After each round of health checks the router compares the
 * two per shard: when the configured primary is gone or has become a replica
 * and exactly one other node says it is the primary, the next topology
 * version names that node (a reload of the applied configuration with the
 * two roles exchanged: sessions, positions and transactions follow it as
 * they follow any reload). Two nodes claiming to be primary is a split
 * brain: the shard's writes fail until one of them steps down, because a
 * write accepted by the wrong one would be lost or diverge.
 */
#include "failover.h"

#include <stdlib.h>
#include <string.h>

#include "reload.h"

sr_failover_verdict sr__failover_decide(const sr_seen_role *seen, int n)
{
    sr_failover_verdict v = {SR_FAILOVER_CLEAR, -1, -1};
    int claims = 0, unknown = 0;
    for (int i = 0; i < n; i++) {
        if (seen[i] == SR_SEEN_PRIMARY) {
            if (claims == 0)
                v.a = i;
            else if (claims == 1)
                v.b = i;
            claims++;
        } else if (seen[i] == SR_SEEN_UNKNOWN) {
            unknown++;
        }
    }
    if (claims >= 2) {
        v.kind = SR_FAILOVER_SPLIT;
        return v;
    }
    if (claims == 1 && v.a != 0 &&
        (seen[0] == SR_SEEN_DOWN || seen[0] == SR_SEEN_HUNG || seen[0] == SR_SEEN_REPLICA)) {
        v.kind = SR_FAILOVER_PROMOTE;
        return v;
    }
    v.kind = unknown ? SR_FAILOVER_KEEP : SR_FAILOVER_CLEAR;
    return v;
}

static void set_split_brain(sr_topo *t, int shard, sr_failover_verdict v)
{
    sr_shard *sh = &t->shards[shard];
    uint32_t want = v.kind == SR_FAILOVER_SPLIT
                        ? SR_SPLIT_BRAIN_FLAG | (uint32_t)v.a | (uint32_t)v.b << 8
                        : 0;
    uint32_t was = atomic_exchange(&sh->split_brain, want);
    if (want && !was)
        sr__log(t, SR_LOG_ERROR,
                "split brain on shard '%s': %s and %s both report themselves primary; writes to "
                "the shard are refused until one of them steps down",
                sh->name, sh->nodes[v.a].b->uri->redacted, sh->nodes[v.b].b->uri->redacted);
    else if (!want && was)
        sr__log(t, SR_LOG_INFO, "split brain over on shard '%s': writes go to %s again", sh->name,
                sh->nodes[0].b->uri->redacted);
}

/* The index of the config node of shard `cs` configured as `uri` with role `role`, or -1. */
static int config_node(const sr_config_shard *cs, const char *uri, sr_role role)
{
    for (int i = 0; i < cs->nnodes; i++)
        if (cs->nodes[i].role == role && strcmp(cs->nodes[i].uri, uri) == 0)
            return i;
    return -1;
}

/* Exchanges the roles of shard `shard`'s primary and node `node` in `c`; false when `c`
 * does not describe them (it is the applied configuration of `t`: it always does). */
static bool exchange_roles(sr_config *c, const sr_topo *t, int shard, int node)
{
    const sr_shard *sh = &t->shards[shard];
    int cs = sr__config_find_shard(c, sh->name);
    if (cs < 0)
        return false;
    sr_config_shard *cfg = &c->shards[cs];
    int was = config_node(cfg, sh->nodes[0].b->config_uri, SR_PRIMARY);
    int now = config_node(cfg, sh->nodes[node].b->config_uri, SR_REPLICA);
    if (was < 0 || now < 0)
        return false;
    cfg->nodes[was].role = SR_REPLICA;
    cfg->nodes[now].role = SR_PRIMARY;
    return true;
}

/* One new version for every shard whose verdict is a promotion (v[i].kind). */
static void promote(sr_router *h, sr_topo *t, const sr_failover_verdict *v,
                    const sr_seen_role *seen)
{
    pthread_mutex_lock(&h->reload_lock);
    if (atomic_load(&h->current) != t) { /* a reload came first: the next round decides */
        pthread_mutex_unlock(&h->reload_lock);
        return;
    }
    char err[SR_ERRMSG_LEN] = "";
    int rc = SR_ENOMEM;
    sr_config *c = h->applied ? sr__config_clone(h->applied) : NULL;
    if (c) {
        rc = SR_OK;
        for (int i = 0; rc == SR_OK && i < t->nshards; i++)
            if (v[i].kind == SR_FAILOVER_PROMOTE && !exchange_roles(c, t, i, v[i].a)) {
                rc = SR_EINVAL;
                sr__fmt(err, sizeof err, "shard '%s': the applied configuration does not "
                        "match the topology", t->shards[i].name);
            }
        if (rc == SR_OK)
            rc = sr__reload_locked(h, c, "failover", err, sizeof err);
    }
    for (int i = 0; i < t->nshards; i++) {
        if (v[i].kind != SR_FAILOVER_PROMOTE)
            continue;
        const sr_shard *sh = &t->shards[i];
        const char *old = sh->nodes[0].b->uri->redacted, *new = sh->nodes[v[i].a].b->uri->redacted;
        if (rc == SR_OK) {
            sr__count(&sh->counters->failovers);
            sr__log(t, SR_LOG_WARN,
                    "failover on shard '%s': its primary %s %s and %s reports itself primary: "
                    "writes go to %s from topology version %llu; %s serves reads once it is a "
                    "replica",
                    sh->name, old,
                    seen[sh->nodes - t->node_store] != SR_SEEN_REPLICA ? "is unreachable"
                                                                   : "reports itself a replica",
                    new, new, (unsigned long long)atomic_load(&h->version), old);
        } else {
            sr__log(t, SR_LOG_ERROR,
                    "failover on shard '%s' to %s failed, the topology is unchanged: %s", sh->name,
                    new, err[0] ? err : sr_strerror(rc));
        }
    }
    sr_config_free(c);
    pthread_mutex_unlock(&h->reload_lock);
}

void sr__failover_round(sr_router *h, sr_topo *t, const sr_seen_role *seen)
{
    if (!t->opts.failover_discovery || t->nshards <= 0)
        return;
    sr_failover_verdict *v = malloc((size_t)t->nshards * sizeof *v);
    if (!v)
        return; /* the next round tries again */
    bool promotions = false;
    for (int i = 0; i < t->nshards; i++) {
        const sr_shard *sh = &t->shards[i];
        v[i] = sr__failover_decide(seen + (sh->nodes - t->node_store), sh->nnodes);
        if (v[i].kind == SR_FAILOVER_PROMOTE) {
            promotions = true;
            set_split_brain(t, i, (sr_failover_verdict){SR_FAILOVER_CLEAR, -1, -1});
        } else if (v[i].kind != SR_FAILOVER_KEEP) {
            set_split_brain(t, i, v[i]);
        }
    }
    /* After the split brains: the new version carries them over (topology.c). */
    if (promotions)
        promote(h, t, v, seen);
    free(v);
}
