/*
 * Active health checks: sr_router_maintain() pings every node, re-checks its
 * role and probes ejected nodes whose back-off has passed, feeding the same
 * health state as statements. The background thread that runs it every
 * health.probe_interval_ms is opt-in (no hidden threads by default).
 */
#include "failover.h"
#include "node.h"
#include "watch.h"
#include "etcd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Records a role check; logs only transitions, so a wrong node is reported once, not every round. */
static void note_role(sr_topo *r, sr_node *n, sr_role actual)
{
    int mismatch = actual != n->role;
    int before = atomic_exchange(&n->b->role_mismatch, mismatch);
    if (before == mismatch)
        return;
    const char *shard = r->shards[n->shard].name;
    if (mismatch)
        sr__log(r, SR_LOG_WARN,
                "role change: shard '%s' node %s is configured as %s but reports %s%s", shard,
                n->b->uri->redacted, sr__role_name(n->role), sr__role_name(actual),
                n->role == SR_PRIMARY ? "; writes to this shard fail fast until it is a primary again"
                                      : "");
    else
        sr__log(r, SR_LOG_INFO, "role restored: shard '%s' node %s reports %s again", shard,
                n->b->uri->redacted, sr__role_name(actual));
}

/* Lag and replayed position of a replica, for lag-aware and consistent reads. */
static void refresh_replication(sr_node *n, sr_driver_conn *conn, int64_t deadline)
{
    sr_driver_error e;
    sr__driver_error_clear(&e);
    int64_t lag;
    if (n->b->driver->replica_lag_ms && n->b->driver->replica_lag_ms(conn, deadline, &lag, &e) == SR_OK)
        sr__node_store_lag(n, lag);
    char pos[SR_POSITION_MAX];
    if (sr__driver_has_positions(n->b->driver) &&
        n->b->driver->replay_position(conn, deadline, pos, sizeof pos, &e) == SR_OK)
        sr__node_store_position(n, pos);
}

/* Pings `n`, refreshes its replication caches and role; returns the role the check saw. */
static sr_seen_role check_node(sr_topo *r, sr_node *n)
{
    bool probe = false;
    if (!sr__node_admit(n, &probe)) /* ejected and not yet due */
        return SR_SEEN_DOWN;
    int64_t deadline = sr__statement_deadline(r);
    sr_driver_error e;
    sr__driver_error_clear(&e);
    sr_driver_conn *conn = NULL;
    int crc = sr__node_checkout(r, n, probe, deadline, &conn, &e);
    if (crc != SR_OK) {
        /* A probe's outcome is counted by sr__node_report (node.c); a full pool is no check. */
        if (!probe && crc != SR_EBUSY)
            sr__count(&n->b->probes[0]);
        return crc == SR_EBUSY ? SR_SEEN_UNKNOWN : crc == SR_ETIMEOUT ? SR_SEEN_HUNG : SR_SEEN_DOWN;
    }
    sr_seen_role seen = SR_SEEN_UNKNOWN;
    int rc = n->b->driver->ping(conn, deadline, &e);
    if (rc == SR_OK && n->role == SR_REPLICA)
        refresh_replication(n, conn, deadline);
    if (rc == SR_OK && n->b->driver->server_role) {
        sr_role actual;
        sr_driver_error e2;
        sr__driver_error_clear(&e2);
        int rc2 = n->b->driver->server_role(conn, deadline, &actual, &e2);
        if (rc2 == SR_OK) {
            note_role(r, n, actual);
            seen = actual == SR_PRIMARY ? SR_SEEN_PRIMARY : SR_SEEN_REPLICA;
        } else if (e2.transient) {
            rc = rc2;
            e = e2;
        }
    }
    if (rc != SR_OK)
        seen = !e.transient ? SR_SEEN_UNKNOWN : rc == SR_ETIMEOUT ? SR_SEEN_HUNG : SR_SEEN_DOWN;
    sr__node_release(r, n, conn, rc, &e, probe);
    if (!probe)
        sr__count(&n->b->probes[rc == SR_OK]);
    return seen;
}

/*
 * The replicas whose check could not connect: is any of them a primary now? A promoted
 * replica, or an old primary restarted as a primary after a failover, refuses the
 * connections its pool makes as a replica (drivers check a new connection's role), so the
 * round asks on a connection of its own, made for the other role and closed at once. Not
 * after a time-out (a hung server would cost the round another), and only for failover
 * discovery, which is what uses the answer.
 */
static void ask_unreachable(sr_topo *r, sr_shard *sh, sr_seen_role *seen)
{
    if (!r->opts.failover_discovery || !sh->nodes[0].b->driver->server_role)
        return;
    for (int j = 1; j < sh->nnodes; j++) {
        sr_node *n = &sh->nodes[j];
        if (seen[j] == SR_SEEN_DOWN && sr__node_is_other_role(n, sr__statement_deadline(r))) {
            note_role(r, n, SR_PRIMARY);
            seen[j] = SR_SEEN_PRIMARY;
        }
    }
}

/* After a reload made in this round: the new version may turn the prober thread on (a
 * program calling sr_router_maintain), or change its interval. */
static void follow_new_version(sr_router *h, uint64_t before)
{
    if (atomic_load(&h->version) == before)
        return;
    pthread_mutex_lock(&h->reload_lock);
    sr__prober_follow_locked(h);
    pthread_mutex_unlock(&h->reload_lock);
}

SR_API int sr_router_maintain(sr_router *h)
{
    if (!h)
        return SR_EINVAL;
    uint64_t before = atomic_load(&h->version);
    /* First: a changed file or etcd key decides which nodes the round checks. */
    sr__watch_poll(h);
    sr__etcd_poll(h);
    sr_topo *r = sr__topo_acquire(h); /* a round checks one version's nodes */
    int nnodes = 0;
    for (int i = 0; i < r->nshards; i++)
        nnodes += r->shards[i].nnodes;
    /* What each node's check saw, in node_store order, for failover discovery (without
     * memory the round still checks: every role is then unknown and nothing fails over). */
    sr_seen_role *seen = calloc((size_t)(nnodes > 0 ? nnodes : 1), sizeof *seen);
    for (int i = 0; i < r->nshards; i++)
        for (int j = 0; j < r->shards[i].nnodes; j++) {
            sr_node *n = &r->shards[i].nodes[j];
            sr_seen_role role = check_node(r, n);
            if (seen)
                seen[n - r->node_store] = role;
        }
    if (seen) {
        for (int i = 0; i < r->nshards; i++)
            ask_unreachable(r, &r->shards[i], seen + (r->shards[i].nodes - r->node_store));
        sr__failover_round(h, r, seen);
    }
    free(seen);
    sr__topo_release(r);
    follow_new_version(h, before);
    return SR_OK;
}

/* The current version's probe interval: a reload may change it, or set 0 (no rounds). */
static int probe_interval_ms(sr_router *h)
{
    sr_topo *t = sr__topo_borrow(h);
    int ms = t->opts.health_probe_interval_ms;
    sr__topo_unborrow(h);
    return ms;
}

void sr__prober_wake(sr_router *r)
{
    if (!r->prober_started)
        return;
    pthread_mutex_lock(&r->prober_lock);
    pthread_cond_signal(&r->prober_wake);
    pthread_mutex_unlock(&r->prober_lock);
}

static void *prober_main(void *arg)
{
    sr_router *r = arg;
    pthread_mutex_lock(&r->prober_lock);
    while (!r->prober_stop) {
        pthread_mutex_unlock(&r->prober_lock);
        int every = probe_interval_ms(r);
        if (every > 0) /* a reload may have turned the rounds off: the thread idles */
            sr_router_maintain(r);
        pthread_mutex_lock(&r->prober_lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int64_t ns = until.tv_nsec + (int64_t)(every > 0 ? every : 1000) * 1000000;
        until.tv_sec += (time_t)(ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        /* Until the interval passes, or a reload or close signals. */
        if (!r->prober_stop)
            pthread_cond_timedwait(&r->prober_wake, &r->prober_lock, &until);
    }
    pthread_mutex_unlock(&r->prober_lock);
    return NULL;
}

int sr__prober_start(sr_router *r)
{
    sr_topo *t = atomic_load(&r->current); /* the caller (open, reload) holds it */
    if (r->prober_started || t->opts.health_probe_interval_ms <= 0)
        return SR_OK;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->prober_wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&r->prober_lock, NULL);
    r->prober_stop = 0;
    if (pthread_create(&r->prober, NULL, prober_main, r) != 0) {
        pthread_cond_destroy(&r->prober_wake);
        pthread_mutex_destroy(&r->prober_lock);
        return SR_ENOMEM;
    }
    r->prober_started = 1;
    sr__log(t, SR_LOG_INFO, "health prober started: every %d ms", t->opts.health_probe_interval_ms);
    return SR_OK;
}

void sr__prober_follow_locked(sr_router *r)
{
    if (sr__prober_start(r) != SR_OK)
        sr__log(atomic_load(&r->current), SR_LOG_WARN, "cannot start the health prober thread");
    sr__prober_wake(r);
}

void sr__prober_stop(sr_router *r)
{
    if (!r->prober_started)
        return;
    pthread_mutex_lock(&r->prober_lock);
    r->prober_stop = 1;
    pthread_cond_signal(&r->prober_wake);
    pthread_mutex_unlock(&r->prober_lock);
    pthread_join(r->prober, NULL);
    pthread_cond_destroy(&r->prober_wake);
    pthread_mutex_destroy(&r->prober_lock);
    r->prober_started = 0;
}
