/*
 * The node health state machine (see health.h). Transitions that several
 * threads could race for (eject, take the probe) are compare-and-swap on the
 * state, so exactly one thread performs each and reports the event.
 */
#include "health.h"

void sr__health_init(sr_health *h)
{
    atomic_init(&h->state, SR_HEALTH_UP);
    atomic_init(&h->failures, 0);
    atomic_init(&h->retry_at_ns, 0);
    atomic_init(&h->backoff_ms, 0);
    atomic_init(&h->ejections, 0);
    atomic_init(&h->readmissions, 0);
}

bool sr__health_try_probe(sr_health *h, int64_t now_ns)
{
    if (atomic_load(&h->state) != SR_HEALTH_EJECTED || now_ns < atomic_load(&h->retry_at_ns))
        return false;
    int expected = SR_HEALTH_EJECTED;
    return atomic_compare_exchange_strong(&h->state, &expected, SR_HEALTH_PROBING);
}

int64_t sr__health_retry_in_ms(const sr_health *h, int64_t now_ns)
{
    if (atomic_load(&h->state) == SR_HEALTH_UP)
        return 0;
    int64_t left = atomic_load(&h->retry_at_ns) - now_ns;
    return left > 0 ? (left + 999999) / 1000000 : 0;
}

static void schedule_retry(sr_health *h, int backoff_ms, int64_t now_ns)
{
    atomic_store(&h->backoff_ms, backoff_ms);
    atomic_store(&h->retry_at_ns, now_ns + (int64_t)backoff_ms * 1000000);
}

sr_health_event sr__health_report(sr_health *h, const sr_health_policy *p, bool failed,
                                  bool was_probe, int64_t now_ns)
{
    if (was_probe) {
        if (!failed) {
            atomic_store(&h->failures, 0);
            atomic_store(&h->state, SR_HEALTH_UP);
            atomic_fetch_add(&h->readmissions, 1);
            return SR_HEALTH_READMITTED;
        }
        int backoff = atomic_load(&h->backoff_ms);
        backoff = backoff > p->retry_max_ms / 2 ? p->retry_max_ms : backoff * 2;
        if (backoff < p->retry_ms)
            backoff = p->retry_ms;
        schedule_retry(h, backoff, now_ns);
        atomic_store(&h->state, SR_HEALTH_EJECTED);
        return SR_HEALTH_PROBE_FAILED;
    }
    if (!failed) {
        sr__health_note_success(h);
        return SR_HEALTH_NO_CHANGE;
    }
    int f = atomic_fetch_add(&h->failures, 1) + 1;
    if (f < p->fail_threshold)
        return SR_HEALTH_NO_CHANGE;
    /*
     * Statements already in flight when the node went down report late: only
     * the thread that wins UP -> PROBING ejects. PROBING doubles as a lock
     * here, so no one can take a probe before the back-off is in place.
     */
    int expected = SR_HEALTH_UP;
    if (!atomic_compare_exchange_strong(&h->state, &expected, SR_HEALTH_PROBING))
        return SR_HEALTH_NO_CHANGE;
    /* Counted as soon as the node stops being up, so a reader that sees it
     * unhealthy rarely sees the count lag behind (node info reads each atomic
     * on its own: it is no snapshot). */
    atomic_fetch_add(&h->ejections, 1);
    schedule_retry(h, p->retry_ms, now_ns);
    atomic_store(&h->state, SR_HEALTH_EJECTED);
    return SR_HEALTH_EJECTED_NOW;
}

void sr__health_abandon_probe(sr_health *h)
{
    int expected = SR_HEALTH_PROBING;
    atomic_compare_exchange_strong(&h->state, &expected, SR_HEALTH_EJECTED);
}
