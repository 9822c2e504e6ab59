/*
 * A latency histogram of fixed buckets (Prometheus style), updated with
 * relaxed atomics only: the statement path observes, the metrics renderer
 * (metrics.c) reads. Buckets are stored non-cumulative (one increment per
 * observation) and summed when rendered.
 */
#ifndef SR_HISTOGRAM_H
#define SR_HISTOGRAM_H

#include <stdatomic.h>
#include <stdint.h>

/* Upper bounds in ns: 100 us .. 10 s, then +Inf. The metrics text prints them in seconds. */
#define SR_HIST_BOUNDS                                                                        \
    {100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 25000000, 50000000,         \
     100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000}
#define SR_HIST_NBOUNDS 16

typedef struct sr_histogram {
    _Atomic uint64_t buckets[SR_HIST_NBOUNDS + 1]; /* the last one is +Inf */
    _Atomic uint64_t sum_ns;
} sr_histogram;

static inline void sr__hist_observe(sr_histogram *h, int64_t ns)
{
    static const int64_t bounds[SR_HIST_NBOUNDS] = SR_HIST_BOUNDS;
    int i = 0;
    if (ns < 0)
        ns = 0;
    while (i < SR_HIST_NBOUNDS && ns > bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    if (ns)
        atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)ns, memory_order_relaxed);
}

/* An observation of zero (a checkout that did not wait): one increment. */
static inline void sr__hist_observe_zero(sr_histogram *h)
{
    atomic_fetch_add_explicit(&h->buckets[0], 1, memory_order_relaxed);
}

#endif
