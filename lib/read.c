/*
 * Where a read goes. Candidates are the shard's replicas (and the primary
 * when balance.primary_reads = always) that are healthy and within the lag
 * bound; the balance policy picks one; under read_your_writes / monotonic
 * the picked replica must also have applied the plan's position: known from
 * its cached position, or checked on the very connection the read will use,
 * in the statement's own exchange when the driver can (exec_at). A read
 * costs at most one round trip more than an `any` read: a replica that
 * likely has not replayed the session's write yet (node.c's replay-delay
 * estimate) is not asked, and after one miss the read goes to the primary.
 * Only a caller who would rather wait (consistency.wait_ms, or primary
 * reads forbidden) waits for a replica to catch up; with primary reads
 * forbidden a read that finds none fails with SR_ESTALE.
 */
#include "read.h"

#include <string.h>

/*
 * Picks a replica (or, under primary_reads = always, possibly the primary)
 * among the healthy, lag-eligible nodes not in `exclude`. An ejected node
 * whose back-off has passed is taken first, as its probe, so recovered nodes
 * come back without waiting for the others to fail. NULL when none. (Nodes
 * known to have applied the plan's position are not preferred: the policy's
 * spread would then collapse onto whichever replica was asked last.)
 */
static sr_node *pick_candidate(sr_topo *r, sr_shard *sh, const sr_read_plan *plan,
                               uint64_t exclude, sr_read_tries *tries, bool *probe)
{
    int64_t now = 0; /* read once, and only when a lag bound needs it */
    sr_balance_stats *cands[SR_MAX_NODES_PER_SHARD];
    sr_node *nodes[SR_MAX_NODES_PER_SHARD];
    int n = 0;
    int last_at = -1; /* plan->last_node's place among the candidates */
    int first = r->opts.primary_reads == SR_PRIMARY_READS_ALWAYS ? 0 : 1;
    int last = sh->nnodes;
    if (plan->sticky >= 0) {
        /* A monotonic read goes on from the node it last read at, or to the primary. */
        first = plan->sticky;
        last = plan->sticky + 1;
    }
    for (int i = first; i < last; i++) {
        sr_node *node = &sh->nodes[i];
        if (exclude & sr__node_bit(node))
            continue;
        if (!sr__node_admit(node, probe)) {
            tries->ejected |= sr__node_bit(node);
            continue;
        }
        if (*probe)
            return node;
        if (node->role == SR_REPLICA) {
            if (plan->max_lag_ms > 0 && !now)
                now = sr_clock_ns();
            if (!sr__node_lag_ok(r, node, plan->max_lag_ms, now)) {
                int64_t lag = atomic_load_explicit(&node->b->lag_ms, memory_order_relaxed);
                if (plan->max_lag_ms > 0 && lag >= 0)
                    tries->lagged |= sr__node_bit(node);
                else
                    tries->lag_unknown |= sr__node_bit(node);
                continue;
            }
        }
        if (i == plan->last_node)
            last_at = n;
        cands[n] = &node->b->bal;
        nodes[n] = node;
        n++;
    }
    if (n == 0)
        return NULL;
    if (n == 1)
        return nodes[0];
    int i = sr__balance_pick((sr_policy_kind)r->opts.balance_policy, cands, n, &sh->rr_counter,
                             plan->affinity, last_at);
    return nodes[i];
}

/* Counts a wait for a replica to catch up that began at t0, and its outcome. */
static void count_wait(sr_shard *sh, sr_read_tries *tries, sr_wait_outcome outcome, int64_t t0)
{
    int64_t waited = sr_clock_ns() - t0;
    tries->wait_ns += waited;
    sr__count(&sh->counters->waits[outcome]);
    atomic_fetch_add_explicit(&sh->counters->wait_ns, (uint64_t)waited, memory_order_relaxed);
}

/* Why a read that found no replica goes to the primary, from what its tries learnt. */
static sr_primary_why fallback_why(const sr_read_plan *plan, const sr_read_tries *tries)
{
    if (plan->need_unknown)
        return SR_PRIMARY_WHY_POSITION_UNKNOWN;
    if (tries->stale || tries->missed || tries->passed)
        return SR_PRIMARY_WHY_STALE;
    if (tries->lagged)
        return SR_PRIMARY_WHY_LAG;
    return SR_PRIMARY_WHY_NO_REPLICA;
}

/* The primary as the read's last resort (or the only choice under consistency = primary). */
static int acquire_primary(sr_topo *r, int shard, int64_t deadline, sr_node **node,
                           sr_driver_conn **conn, bool *probe, sr_reason *why)
{
    int rc = sr__node_acquire_primary(r, shard, false, deadline, conn, probe, why);
    if (rc == SR_OK)
        *node = &r->shards[shard].nodes[0];
    return rc;
}

/*
 * The primary is out of reach too (it is down, or a read on it just failed): a replica whose
 * replication is broken, or whose lag is unknown, has the last data there is, typically
 * while the shard fails over. Still held to the plan's position: a read that needs a write
 * gets a replica that has it, or none.
 */
static int last_resort(sr_topo *r, sr_shard *sh, const sr_read_plan *plan, sr_read_tries *tries,
                       uint64_t exclude, int64_t deadline, sr_node **node, sr_driver_conn **conn,
                       const char **check)
{
    uint64_t left = tries->lag_unknown & ~(exclude | tries->stale);
    for (int i = 1; i < sh->nnodes && left && plan->sticky < 0; i++) {
        sr_node *n = &sh->nodes[i];
        if (!(left & sr__node_bit(n)) || sr_clock_ns() >= deadline)
            continue;
        sr_driver_error e;
        sr__driver_error_clear(&e);
        sr_driver_conn *c = NULL;
        if (sr__node_checkout(r, n, false, deadline, &c, &e) != SR_OK)
            continue;
        const char *need = plan->need;
        if (!need || sr__node_cached_covers(n, need) ||
            (sr__node_has_exec_at(n) && !plan->check_now)) {
            *check = need && !sr__node_cached_covers(n, need) ? need : NULL;
            *node = n;
            *conn = c;
            return SR_OK;
        }
        bool applied = false;
        tries->checked |= sr__node_bit(n);
        int rc = sr__node_has_applied(n, c, need, plan->written_ns, deadline, &applied, &e);
        if (rc == SR_OK && applied) {
            *node = n;
            *conn = c;
            return SR_OK;
        }
        sr__node_release(r, n, c, rc, &e, false);
        if (rc == SR_OK)
            tries->stale |= sr__node_bit(n);
    }
    return SR_EUNAVAILABLE;
}

static int acquire(sr_topo *r, int shard, const sr_read_plan *plan, sr_read_tries *tries,
                   int64_t deadline, sr_node **node, sr_driver_conn **conn, bool *probe,
                   const char **check, sr_reason *why)
{
    sr_shard *sh = &r->shards[shard];
    *check = NULL;
    if (plan->mode == SR_CONSISTENCY_PRIMARY) {
        tries->primary_why = SR_PRIMARY_WHY_CONSISTENCY;
        return acquire_primary(r, shard, deadline, node, conn, probe, why);
    }

    const char *need = plan->need;
    bool primary_up = sr__health_is_up(&sh->nodes[0].b->health);
    int wait_ms = sr__consistency_wait_ms(&r->opts, primary_up);
    /*
     * In a hurry (no wait asked for, the primary allowed), one replica is
     * asked at most, and none whose replay-delay estimate says it has not
     * replayed the session's write yet: each question is a round trip, and
     * the primary answers in one. Not when the primary is down: then every
     * replica is worth asking.
     */
    bool hurry = wait_ms == 0 && r->opts.primary_reads != SR_PRIMARY_READS_NEVER && primary_up;
    const char *why_not = tries->missed ? "no replica has replayed this session's position yet"
                                        : NULL; /* the last reason a replica was passed over */
    uint64_t exclude = tries->exclude;
    uint64_t passed = 0;         /* replicas not asked this time */
    sr_node *unreachable = NULL; /* the last replica that could not be reached; why->err says why */

    if (!plan->need_unknown) {
        int64_t now = 0;
        for (int tried = 0; tried < sh->nnodes; tried++) {
            /* The deadline was set a moment ago: only a second try (or one after a
             * miss in the read's own exchange) can be late. */
            if ((tried > 0 || tries->missed) && sr_clock_ns() >= deadline)
                break;
            sr_node *n = pick_candidate(r, sh, plan, exclude | tries->stale | passed, tries, probe);
            if (!n)
                break;
            bool ready = !need || n->role == SR_PRIMARY || sr__node_cached_covers(n, need);
            if (!ready && hurry) {
                if (!now)
                    now = sr_clock_ns();
                const char *skip = tries->missed ? "no replica has replayed this session's position yet"
                                   : sr__node_likely_behind(n, plan->written_ns, now)
                                       ? "the session's write is younger than replicas take to replay it"
                                       : NULL;
                if (skip) {
                    if (*probe) {
                        /* A node taken as its probe must be reported; this one is not used. */
                        sr__node_unclaim_probe(n);
                        *probe = false;
                    }
                    passed |= sr__node_bit(n);
                    tries->passed |= sr__node_bit(n);
                    why_not = skip;
                    continue;
                }
            }
            sr_driver_error e;
            sr__driver_error_clear(&e);
            sr_driver_conn *c = NULL;
            if (sr__node_checkout(r, n, *probe, deadline, &c, &e) != SR_OK) {
                exclude |= sr__node_bit(n); /* nothing was sent: another node may serve it */
                if (e.status == SR_EBUSY)
                    tries->busy |= sr__node_bit(n);
                else
                    tries->unreachable |= sr__node_bit(n);
                why_not = "a replica could not be reached";
                unreachable = n;
                why->err = e;
                continue;
            }
            if (ready || (sr__node_has_exec_at(n) && !plan->check_now)) {
                /* Ready, or checked in the statement's own exchange by the caller. */
                *check = ready ? NULL : need;
                *node = n;
                *conn = c;
                return SR_OK;
            }
            bool applied = false;
            tries->checked |= sr__node_bit(n);
            int rc = sr__node_has_applied(n, c, need, plan->written_ns, deadline, &applied, &e);
            if (rc == SR_OK && applied) {
                *node = n;
                *conn = c;
                return SR_OK;
            }
            sr__node_release(r, n, c, rc, &e, *probe);
            if (rc != SR_OK) {
                exclude |= sr__node_bit(n);
                tries->unreachable |= sr__node_bit(n);
                why_not = "a replica failed its position check";
            } else {
                tries->stale |= sr__node_bit(n);
                tries->missed = true; /* in a hurry, only a replica known to be ready now */
                why_not = "no replica has replayed this session's position yet";
            }
        }

        /* Behind, but reachable: wait a bounded time for one of them to catch up. */
        int64_t wait_until = sr__deadline_after_ms(wait_ms);
        if (wait_until > deadline)
            wait_until = deadline;
        const sr_driver *drv = sh->nodes[0].b->driver;
        if (need && tries->stale && wait_ms > 0 && drv->abi_version >= 2 && drv->wait_replayed) {
            sr_node *n = pick_candidate(r, sh, plan, exclude, tries, probe);
            if (n && n->role != SR_REPLICA && *probe) {
                /* A node taken as its probe must be reported; this one is not used. */
                sr__node_unclaim_probe(n);
                *probe = false;
            }
            if (n && n->role == SR_REPLICA) {
                sr_driver_error e;
                sr__driver_error_clear(&e);
                sr_driver_conn *c = NULL;
                int64_t t0 = sr_clock_ns();
                sr_wait_outcome outcome = SR_WAIT_FAILED;
                if (sr__node_checkout(r, n, *probe, deadline, &c, &e) == SR_OK) {
                    bool applied = false;
                    int rc = sr__node_wait_applied(n, c, need, wait_until, &applied, &e);
                    outcome = rc != SR_OK ? SR_WAIT_FAILED
                              : applied   ? SR_WAIT_CAUGHT_UP
                                          : SR_WAIT_TIMED_OUT;
                    if (rc == SR_OK && applied) {
                        count_wait(sh, tries, outcome, t0);
                        *node = n;
                        *conn = c;
                        return SR_OK;
                    }
                    sr__node_release(r, n, c, rc, &e, *probe);
                    why_not = "no replica replayed this session's position within consistency.wait_ms";
                }
                count_wait(sh, tries, outcome, t0);
            }
        }
    } else {
        why_not = "this session's last write position is unknown";
    }

    /* Past the deadline no node is tried any more: sending a statement that is
     * already late would fail it and count the failure against a healthy node. */
    if (sr_clock_ns() >= deadline) {
        if (unreachable)
            return sr__reason_driver(why, unreachable, shard, &why->err, " (deadline passed)");
        return sr__reason_shard(why, SR_ETIMEOUT, SR_REASON_LATE, shard,
                                why_not ? why_not : "none was eligible");
    }
    if (r->opts.primary_reads != SR_PRIMARY_READS_NEVER) {
        int rc = SR_EUNAVAILABLE;
        bool primary_failed = exclude & sr__node_bit(&sh->nodes[0]); /* this read, just now */
        if (!primary_failed) {
            tries->primary_why = fallback_why(plan, tries);
            rc = acquire_primary(r, shard, deadline, node, conn, probe, why);
            if (rc == SR_OK || !(tries->lag_unknown & ~(exclude | tries->stale)))
                return rc;
        }
        if (last_resort(r, sh, plan, tries, exclude, deadline, node, conn, check) == SR_OK) {
            tries->primary_why = SR_PRIMARY_WHY_NONE;
            return SR_OK;
        }
        if (primary_failed)
            return sr__reason_shard(why, SR_EUNAVAILABLE, SR_REASON_NO_NODE, shard, NULL);
        return rc;
    }
    if (need || plan->need_unknown) {
        sr__reason_shard(why, SR_ESTALE, SR_REASON_STALE, shard,
                         why_not ? why_not : "no replica qualifies");
        if (need)
            sr__fmt(why->err.message, sizeof why->err.message, "%s", need);
        return SR_ESTALE;
    }
    if (unreachable) /* the most useful reason: why the replica that was tried failed */
        return sr__reason_driver(why, unreachable, shard, &why->err, NULL);
    return sr__reason_shard(why, SR_EUNAVAILABLE, SR_REASON_NO_NODE, shard, NULL);
}

int sr__read_acquire(sr_topo *r, int shard, const sr_read_plan *plan, sr_read_tries *tries,
                     int64_t deadline, sr_node **node, sr_driver_conn **conn, bool *probe,
                     const char **check, sr_reason *why)
{
    tries->primary_why = SR_PRIMARY_WHY_NONE;
    int rc = acquire(r, shard, plan, tries, deadline, node, conn, probe, check, why);
    if (rc == SR_OK && (*node)->role == SR_PRIMARY && tries->primary_why == SR_PRIMARY_WHY_NONE)
        tries->primary_why = SR_PRIMARY_WHY_BALANCE; /* a candidate under primary_reads = always */
    return rc;
}

