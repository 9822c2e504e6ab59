/*
 * Routing events: a statement's route and outcome, or a node's health
 * transition, as an sr_event for the application's callback. The "why each
 * other node was skipped" text is built here, from the masks the read path
 * set (read.h) and the nodes' own state, only for statements that are
 * reported.
 */
#include "events.h"

#include <string.h>

/* Static text: why the statement's node was chosen. */
static const char *chosen_reason(const sr_route_record *rec)
{
    if (rec->in_txn)
        return "transaction";
    if (rec->write)
        return "write";
    if (!rec->node)
        return "";
    if (rec->node->role == SR_REPLICA)
        return rec->tries.checked & ((uint64_t)1 << rec->node->index) ? "replica (position checked)"
                                                                       : "replica";
    switch (rec->tries.primary_why) {
    case SR_PRIMARY_WHY_CONSISTENCY: return "primary: consistency = primary";
    case SR_PRIMARY_WHY_STALE: return "primary: replicas behind the session's position";
    case SR_PRIMARY_WHY_POSITION_UNKNOWN: return "primary: the session's write position is unknown";
    case SR_PRIMARY_WHY_LAG: return "primary: no replica within the lag bound";
    case SR_PRIMARY_WHY_NO_REPLICA: return "primary: no healthy replica";
    case SR_PRIMARY_WHY_BALANCE: return "primary (balance.primary_reads = always)";
    default: return "primary";
    }
}

/* Appends "; " (after the first) and the formatted text to buf. */
static void append(char *buf, size_t len, const char *fmt, const char *uri, const char *more)
{
    size_t used = strlen(buf);
    if (used + 1 >= len)
        return;
    sr__fmt(buf + used, len - used, fmt, used ? "; " : "", uri, more);
}

/* Why each node of the shard other than the chosen one was not used. */
static void describe_skipped(const sr_topo *r, const sr_route_record *rec, char *buf,
                             size_t len)
{
    buf[0] = '\0';
    if (rec->shard < 0 || rec->write || rec->in_txn ||
        rec->tries.primary_why == SR_PRIMARY_WHY_CONSISTENCY)
        return; /* to the primary by rule (writes, transactions, consistency = primary) */
    const sr_shard *sh = &r->shards[rec->shard];
    const sr_read_tries *t = &rec->tries;
    for (int i = 0; i < sh->nnodes; i++) {
        const sr_node *n = &sh->nodes[i];
        uint64_t bit = (uint64_t)1 << i;
        if (n == rec->node)
            continue;
        const char *uri = n->b->uri->redacted;
        char last[256];
        if (t->exclude & bit || t->unreachable & bit) {
            pthread_mutex_lock((pthread_mutex_t *)&n->b->last_error_lock);
            memcpy(last, n->b->last_error, sizeof last);
            pthread_mutex_unlock((pthread_mutex_t *)&n->b->last_error_lock);
            append(buf, len, "%s%s: failed: %s", uri, last[0] ? last : "unknown error");
        } else if (t->busy & bit) {
            append(buf, len, "%s%s: pool busy%s", uri, "");
        } else if (t->ejected & bit) {
            append(buf, len, "%s%s: ejected%s", uri, "");
        } else if (t->lagged & bit) {
            char lag[96];
            int64_t ms = atomic_load_explicit(&((sr_node *)n)->b->lag_ms, memory_order_relaxed);
            sr__fmt(lag, sizeof lag, "lag %lld ms over %d ms", (long long)ms, rec->max_lag_ms);
            append(buf, len, "%s%s: %s", uri, lag);
        } else if (t->lag_unknown & bit) {
            int64_t ms = atomic_load_explicit(&((sr_node *)n)->b->lag_ms, memory_order_relaxed);
            append(buf, len, "%s%s: %s", uri,
                   ms == -1 ? "replication broken" : "lag unknown (not measured)");
        } else if (t->stale & bit) {
            append(buf, len, "%s%s: behind the session's position%s", uri, "");
        } else if (t->passed & bit) {
            append(buf, len, "%s%s: likely behind the session's position (not asked)%s", uri, "");
        } else if (n->role == SR_PRIMARY) {
            continue; /* a read's last resort, not a candidate it passed over */
        } else if (atomic_load_explicit(&((sr_node *)n)->b->role_mismatch, memory_order_relaxed)) {
            append(buf, len, "%s%s: role mismatch%s", uri, "");
        } else {
            append(buf, len, "%s%s: not chosen by the balance policy%s", uri, "");
        }
    }
}

static void fill_location(sr_event *ev, const sr_topo *r, int shard, const sr_node *n)
{
    ev->shard = shard;
    ev->shard_name = shard >= 0 ? r->shards[shard].name : "";
    ev->node = n ? n->index : -1;
    ev->node_uri = n ? n->b->uri->redacted : "";
    ev->role = n ? n->role : SR_PRIMARY;
}

static void init_event(sr_event *ev, sr_event_kind kind)
{
    memset(ev, 0, sizeof *ev);
    ev->version = SR_EVENT_VERSION;
    ev->kind = kind;
    ev->reason = ev->skipped = ev->sqlstate = ev->sql = ev->health = ev->detail = "";
}

void sr__event_statement(sr_topo *r, const sr_route_record *rec, const char *sql, int status,
                         const char *sqlstate)
{
    char skipped[1024];
    describe_skipped(r, rec, skipped, sizeof skipped);
    sr_event ev;
    init_event(&ev, SR_EVENT_STATEMENT);
    fill_location(&ev, r, rec->shard, rec->node);
    ev.intent = rec->write ? SR_WRITE : SR_READ;
    ev.reason = chosen_reason(rec);
    ev.skipped = skipped;
    ev.retries = rec->retries;
    ev.wait_us = rec->tries.wait_ns / 1000;
    ev.duration_us = (sr_clock_ns() - rec->start_ns) / 1000;
    ev.status = status;
    ev.sqlstate = sqlstate ? sqlstate : "";
    ev.sql = sql ? sql : "";
    r->event_fn(r->event_ud, &ev);
}

void sr__event_health(sr_topo *r, const sr_node *n, const char *health, const char *detail)
{
    if (!r->event_fn)
        return;
    sr_event ev;
    init_event(&ev, SR_EVENT_HEALTH);
    fill_location(&ev, r, n->shard, n);
    ev.health = health;
    ev.detail = detail ? detail : "";
    r->event_fn(r->event_ud, &ev);
}
