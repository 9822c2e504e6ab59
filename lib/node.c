/*
 * The glue between the statement path and a node's health state machine:
 * admission (including the half-open probe), outcome reports, and the
 * "why was this node skipped" text that SR_EUNAVAILABLE messages carry.
 */
#include "topology.h"

#include <string.h>

static const char *role_name(sr_role role) { return role == SR_PRIMARY ? "primary" : "replica"; }

bool sr__node_admit(sr_node *n, int64_t now_ns, bool *probe)
{
    *probe = false;
    if (sr__health_is_up(&n->health))
        return true;
    if (sr__health_try_probe(&n->health, now_ns)) {
        *probe = true;
        return true;
    }
    return false;
}

void sr__node_report(sr_router *r, sr_node *n, int status, const sr_driver_error *err, bool probe)
{
    bool failed = status != SR_OK && err && err->transient;
    if (status == SR_EBUSY && probe) {
        /* A full pool says nothing about the node: let the next caller probe. */
        sr__health_abandon_probe(&n->health);
        return;
    }
    if (failed) {
        pthread_mutex_lock(&n->last_error_lock);
        sr__fmt(n->last_error, sizeof n->last_error, "%s: %s", sr_strerror(status), err->message);
        pthread_mutex_unlock(&n->last_error_lock);
    }
    int64_t now = sr_clock_ns();
    sr_health_event ev = sr__health_report(&n->health, &r->health_policy, failed, probe, now);
    const char *shard = r->shards[n->shard].name;
    switch (ev) {
    case SR_HEALTH_EJECTED_NOW:
        /* Idle connections to a node that just failed are likely dead too. */
        sr__pool_drain_idle(n->pool);
        sr__log(r, SR_LOG_WARN,
                "node ejected: shard '%s' %s %s after %d consecutive failures (%s); probe in %d ms",
                shard, role_name(n->role), n->uri->redacted, r->health_policy.fail_threshold,
                err ? err->message : "?", r->health_policy.retry_ms);
        break;
    case SR_HEALTH_READMITTED:
        sr__log(r, SR_LOG_INFO, "node re-admitted: shard '%s' %s %s answered its probe", shard,
                role_name(n->role), n->uri->redacted);
        break;
    case SR_HEALTH_PROBE_FAILED:
        sr__pool_drain_idle(n->pool);
        sr__log(r, SR_LOG_WARN, "node still down: shard '%s' %s %s failed its probe (%s); next in %d ms",
                shard, role_name(n->role), n->uri->redacted, err ? err->message : "?",
                atomic_load(&n->health.backoff_ms));
        break;
    case SR_HEALTH_NO_CHANGE:
        break;
    }
}

void sr__node_describe(sr_node *n, int64_t now_ns, char *buf, size_t len)
{
    size_t used = strlen(buf);
    if (used >= len - 1)
        return;
    char last[256];
    pthread_mutex_lock(&n->last_error_lock);
    memcpy(last, n->last_error, sizeof last);
    pthread_mutex_unlock(&n->last_error_lock);
    if (sr__health_is_up(&n->health))
        sr__fmt(buf + used, len - used, "%s%s %s: up", used ? "; " : "", role_name(n->role),
                n->uri->redacted);
    else
        sr__fmt(buf + used, len - used, "%s%s %s: ejected, next probe in %lld ms (last error: %s)",
                used ? "; " : "", role_name(n->role), n->uri->redacted,
                (long long)sr__health_retry_in_ms(&n->health, now_ns), last[0] ? last : "none");
}
