/*
 * Where a read goes. Candidates are the shard's replicas (and the primary
 * when balance.primary_reads = always) that are healthy and within the lag
 * bound; the balance policy picks one; under read_your_writes / monotonic
 * the picked replica must also have applied the session's position, checked
 * on the very connection the read will use. When no replica qualifies the
 * read waits up to consistency.wait_ms for one to catch up, then goes to the
 * primary, or fails with SR_ESTALE when primary reads are forbidden.
 */
#include "session.h"

#include <string.h>

#define NODE_BIT(n) ((uint64_t)1 << (n)->index)

sr_read_plan sr__read_plan(const sr_session *s, const sr_read_opts *ropts)
{
    sr_read_plan p;
    p.mode = ropts && ropts->consistency >= 0 ? ropts->consistency : s->mode;
    if (ropts && ropts->max_lag_ms >= 0)
        p.max_lag_ms = ropts->max_lag_ms;
    else if (s->max_lag_ms >= 0)
        p.max_lag_ms = s->max_lag_ms;
    else
        p.max_lag_ms = s->router->opts.replica_max_lag_ms;
    return p;
}

/*
 * Picks a replica (or, under primary_reads = always, possibly the primary)
 * among the healthy, lag-eligible nodes not in `exclude`. An ejected node
 * whose back-off has passed is taken first, as its probe, so recovered nodes
 * come back without waiting for the others to fail. NULL when none.
 */
static sr_node *pick_candidate(sr_session *s, sr_shard *sh, const sr_read_plan *plan,
                               uint64_t exclude, bool *probe)
{
    const sr_router *r = s->router;
    sr_balance_stats *cands[64];
    sr_node *nodes[64];
    int n = 0;
    int64_t now = 0;
    *probe = false;
    int first = r->opts.primary_reads == SR_PRIMARY_READS_ALWAYS ? 0 : 1;
    for (int i = first; i < sh->nnodes && n < 64; i++) {
        sr_node *node = &sh->nodes[i];
        if (exclude & NODE_BIT(node))
            continue;
        if (!sr__health_is_up(&node->health)) {
            if (!now)
                now = sr_clock_ns();
            if (sr__health_try_probe(&node->health, now)) {
                *probe = true;
                return node;
            }
            continue;
        }
        if (node->role == SR_REPLICA && !sr__node_lag_ok(s, node, plan->max_lag_ms))
            continue;
        cands[n] = &node->bal;
        nodes[n] = node;
        n++;
    }
    if (n == 0)
        return NULL;
    if (n == 1)
        return nodes[0];
    int i = sr__balance_pick((sr_policy_kind)r->opts.balance_policy, cands, n, &sh->rr_counter,
                             s->affinity);
    return nodes[i];
}

/* The primary as the read's last resort (or the only choice under consistency = primary). */
static int acquire_primary(sr_session *s, sr_shard *sh, int64_t deadline, sr_node **node,
                           sr_driver_conn **conn, bool *probe)
{
    sr_node *primary = &sh->nodes[0];
    if (!sr__node_admit(primary, sr_clock_ns(), probe))
        return sr__fail_unavailable(s, sh, "read");
    sr_driver_error e = {0};
    int rc = sr__node_checkout(s, primary, *probe, deadline, conn, &e);
    if (rc != SR_OK)
        return sr__fail_on_node(s, primary, "read", &e);
    *node = primary;
    return SR_OK;
}

int sr__read_acquire(sr_session *s, int shard, const sr_read_plan *plan, uint64_t exclude,
                     int64_t deadline, sr_node **node, sr_driver_conn **conn, bool *probe)
{
    sr_router *r = s->router;
    sr_shard *sh = &r->shards[shard];
    if (plan->mode == SR_CONSISTENCY_PRIMARY)
        return acquire_primary(s, sh, deadline, node, conn, probe);

    char needbuf[SR_POSITION_MAX];
    const char *need = sr__required_position(s, shard, plan->mode, needbuf, sizeof needbuf);
    const char *why_not = NULL; /* the last reason a replica was passed over */
    uint64_t stale = 0;         /* replicas that were reachable but behind `need` */
    sr_node *unreachable = NULL; /* the last replica that could not be reached, and why */
    sr_driver_error unreachable_e;

    if (need != sr__position_unknown) {
        for (int tries = 0; tries < sh->nnodes; tries++) {
            /* The deadline was set a moment ago: only a second try can be late. */
            if (tries > 0 && sr_clock_ns() >= deadline)
                break;
            sr_node *n = pick_candidate(s, sh, plan, exclude | stale, probe);
            if (!n)
                break;
            sr_driver_error e;
            sr__driver_error_clear(&e);
            sr_driver_conn *c = NULL;
            if (sr__node_checkout(s, n, *probe, deadline, &c, &e) != SR_OK) {
                exclude |= NODE_BIT(n); /* nothing was sent: another node may serve it */
                why_not = "a replica could not be reached";
                unreachable = n;
                unreachable_e = e;
                continue;
            }
            if (!need || n->role == SR_PRIMARY) {
                *node = n;
                *conn = c;
                return SR_OK;
            }
            bool applied = false;
            int rc = sr__node_has_applied(n, c, need, deadline, &applied, &e);
            if (rc == SR_OK && applied) {
                *node = n;
                *conn = c;
                return SR_OK;
            }
            sr__node_release(s, n, c, rc, &e, *probe);
            if (rc != SR_OK) {
                exclude |= NODE_BIT(n);
                why_not = "a replica failed its position check";
            } else {
                stale |= NODE_BIT(n);
                why_not = "no replica has replayed this session's position yet";
            }
        }

        /* Behind, but reachable: wait a bounded time for one of them to catch up. */
        int64_t wait_until = sr__deadline_after_ms(r->opts.consistency_wait_ms);
        if (wait_until > deadline)
            wait_until = deadline;
        const sr_driver *drv = sh->nodes[0].driver;
        if (need && stale && r->opts.consistency_wait_ms > 0 && drv->abi_version >= 2 &&
            drv->wait_replayed) {
            sr_node *n = pick_candidate(s, sh, plan, exclude, probe);
            if (n && n->role == SR_REPLICA) {
                sr_driver_error e = {0};
                sr_driver_conn *c = NULL;
                if (sr__node_checkout(s, n, *probe, deadline, &c, &e) == SR_OK) {
                    int applied = 0;
                    int rc = n->driver->wait_replayed(c, need, wait_until, &applied, &e);
                    if (rc == SR_OK && applied) {
                        sr__node_store_position(n, need);
                        *node = n;
                        *conn = c;
                        return SR_OK;
                    }
                    sr__node_release(s, n, c, rc, &e, *probe);
                    why_not = "no replica replayed this session's position within consistency.wait_ms";
                }
            }
        }
    } else {
        why_not = "this session's last write position is unknown";
    }

    /* Past the deadline no node is tried any more: sending a statement that is
     * already late would fail it and count the failure against a healthy node. */
    if (sr_clock_ns() >= deadline) {
        if (unreachable)
            return sr__fail_on_node(s, unreachable, "read (deadline passed)", &unreachable_e);
        return sr__session_fail(s, SR_ETIMEOUT, "read on shard '%s': the statement deadline "
                                "(statement_timeout_ms = %d) passed while looking for a node: %s",
                                sh->name, r->opts.statement_timeout_ms,
                                why_not ? why_not : "none was eligible");
    }
    if (r->opts.primary_reads != SR_PRIMARY_READS_NEVER)
        return acquire_primary(s, sh, deadline, node, conn, probe);
    if (need)
        return sr__session_fail(s, SR_ESTALE,
                                "read on shard '%s': %s (needed %s, waited up to %d ms) and "
                                "balance.primary_reads is never",
                                sh->name, why_not ? why_not : "no replica qualifies",
                                need == sr__position_unknown ? "the primary" : need,
                                r->opts.consistency_wait_ms);
    if (unreachable) /* the most useful reason: why the replica that was tried failed */
        return sr__fail_on_node(s, unreachable, "read", &unreachable_e);
    return sr__fail_unavailable(s, sh, "read");
}

int sr__read_on_shard(sr_session *s, int shard, const sr_read_plan *plan, const char *sql,
                      int nparams, const char *const *params, sr_result **out)
{
    sr_router *r = s->router;
    int64_t deadline = sr__statement_deadline(r);
    uint64_t exclude = 0;
    for (int attempt = 0;; attempt++) {
        sr_node *n = NULL;
        sr_driver_conn *c = NULL;
        bool probe = false;
        int rc = sr__read_acquire(s, shard, plan, exclude, deadline, &n, &c, &probe);
        if (rc != SR_OK)
            return rc;
        sr_driver_error e;
        sr__driver_error_clear(&e);
        rc = sr__node_exec(s, n, c, sql, nparams, params, deadline, out, &e);
        if (rc == SR_OK && plan->mode == SR_CONSISTENCY_MONOTONIC)
            sr__record_observed(s, n, c, deadline);
        sr__node_release(s, n, c, rc, &e, probe);
        if (rc == SR_OK)
            return SR_OK;
        /*
         * A read that failed because its node became unreachable is retried
         * once on another node within the same deadline; an SQL error would
         * fail the same way anywhere, and a timeout has used the deadline up.
         */
        if (!e.transient || rc == SR_ETIMEOUT || attempt > 0 || n->role == SR_PRIMARY ||
            sr_clock_ns() >= deadline)
            return sr__fail_on_node(s, n, attempt ? "read (retried)" : "read", &e);
        sr__log(r, SR_LOG_INFO, "read on shard '%s' node %s failed (%s); retrying elsewhere",
                r->shards[shard].name, n->uri->redacted, e.message);
        exclude |= NODE_BIT(n);
    }
}
