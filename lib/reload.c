/*
 * Applying a new configuration to a router (sr_router_reload, the watched
 * file): build and check the new version against the current one, swap it
 * in, count and log the outcome. The callers hold the router's reload lock
 * (one reload at a time) and do what is theirs around it: the public call
 * writes the configuration's message; it and the round of health checks
 * (file, etcd, failover) start or wake the prober after a new version, which
 * may turn it on or change its interval.
 */
#include "reload.h"

#include "topology.h"

void sr__log_version(sr_topo *t, const char *what)
{
    sr__log(t, SR_LOG_INFO, "router %s: topology version %llu, %d shards, distribution %s, "
                            "policy %s",
            what, (unsigned long long)t->version, t->nshards,
            sr__option_enum_name("shard.distribution", t->opts.distribution),
            sr__option_enum_name("balance.policy", t->opts.balance_policy));
}

int sr__reload_locked(sr_router *r, const sr_config *c, const char *what, char *err,
                      size_t errlen)
{
    sr_topo *old = sr__topo_acquire(r);
    sr_topo *t = NULL;
    sr_config *keep = sr__config_clone(c); /* what a failover will derive from */
    int rc = keep ? sr__topology_build(r, c, old, old->version + 1, &t, err, errlen) : SR_ENOMEM;
    if (rc == SR_OK) {
        sr__topo_retire(r, old, t);
        sr_config_free(r->applied);
        r->applied = keep;
    } else {
        sr_config_free(keep);
    }
    sr__count(&r->reloads[rc == SR_OK]);
    /* Logged while `t` is still current (the reload lock keeps it so) and `old` referenced;
     * a log callback must not reload (this thread holds the reload lock). */
    if (rc != SR_OK)
        sr__log(old, SR_LOG_WARN, "router reload refused, the topology is unchanged: %s",
                err[0] ? err : sr_strerror(rc));
    else
        sr__log_version(t, what);
    sr__topo_release(old);
    return rc;
}

int sr__reload_from_source(sr_router *r, sr_topo *cur, sr_config *c, const char *what,
                           char *err, size_t errlen)
{
    sr_config_set_log_fn(c, cur->log_fn, cur->log_ud);
    sr_config_set_event_fn(c, cur->event_fn, cur->event_ud);
    pthread_mutex_lock(&r->reload_lock);
    int rc = sr__reload_locked(r, c, what, err, errlen);
    pthread_mutex_unlock(&r->reload_lock);
    return rc;
}
