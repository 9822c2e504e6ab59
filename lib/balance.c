/*
 * Replica policies: pick one node among the eligible candidates of a shard,
 * and fold each statement's outcome back into the node's statistics.
 *
 * Picks run on every read, from every thread, so they take no lock and
 * allocate nothing: all shared state lives in the _Atomic fields of
 * sr_balance_stats (and the shard's round-robin counter), and randomness
 * comes from a per-thread generator.
 */
#include "balance.h"

#include <math.h>

/* ---- per-thread random numbers ---------------------------------------- */

/*
 * xoshiro256** (Blackman & Vigna): fast, 256 bits of state, good enough for
 * load balancing (not for anything secret). Each thread seeds its own copy
 * lazily through splitmix64, mixing the clock, the address of its state
 * (distinct per thread) and a global counter, so two threads started in the
 * same nanosecond still diverge.
 */
static _Thread_local uint64_t rng_state[4];
static _Thread_local int rng_seeded;
static _Atomic uint64_t rng_seed_counter;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static void rng_seed(void)
{
    uint64_t s = (uint64_t)sr_clock_ns();
    s ^= rotl64((uint64_t)(uintptr_t)&rng_state, 32);
    s ^= atomic_fetch_add_explicit(&rng_seed_counter, 0x632BE59BD9B4E019ULL, memory_order_relaxed);
    for (int i = 0; i < 4; i++)
        rng_state[i] = splitmix64(&s);
    /* xoshiro must not start from the all-zero state. */
    if (!(rng_state[0] | rng_state[1] | rng_state[2] | rng_state[3]))
        rng_state[0] = 1;
    rng_seeded = 1;
}

uint64_t sr__rand64(void)
{
    if (!rng_seeded)
        rng_seed();
    uint64_t *s = rng_state;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/*
 * Uniform in [0, n). The modulo bias is at most n / 2^64, far below anything
 * a load balancer could notice, so no rejection loop.
 */
static int rand_below(int n) { return (int)(sr__rand64() % (uint64_t)n); }

/* ---- statistics ------------------------------------------------------- */

void sr__balance_init(sr_balance_stats *st, int weight, uint64_t id_hash)
{
    atomic_init(&st->weight, weight >= 1 ? weight : 1);
    st->id_hash = id_hash;
    atomic_init(&st->in_flight, 0);
    atomic_init(&st->ewma_ns, 0);
    atomic_init(&st->ewma_stamp_ns, 0);
}

void sr__balance_begin(sr_balance_stats *st)
{
    atomic_fetch_add_explicit(&st->in_flight, 1, memory_order_relaxed);
}

/*
 * Peak EWMA (Finagle / Linkerd): a latency above the estimate replaces it at
 * once, so a node that turns slow is avoided immediately; lower latencies pull
 * the estimate down with weight 1 - exp(-elapsed / decay), so a node recovers
 * over roughly `decay_ms` of traffic rather than after one lucky response.
 *
 * The estimate and its time stamp are two separate atomics: the estimate is
 * updated with a CAS loop so it is always derived from a value some thread
 * stored, but two ends racing may both read the same stamp and decay by the
 * same interval. That lost precision is harmless for a heuristic and keeps
 * the hot path lock-free.
 */
void sr__balance_end(sr_balance_stats *st, int64_t latency_ns, int decay_ms)
{
    sr__balance_end_at(st, latency_ns, decay_ms, sr_clock_ns());
}

void sr__balance_end_untimed(sr_balance_stats *st)
{
    /* Never below zero, even if a caller ends more statements than it began. */
    int64_t cur = atomic_load_explicit(&st->in_flight, memory_order_relaxed);
    while (cur > 0 && !atomic_compare_exchange_weak_explicit(&st->in_flight, &cur, cur - 1,
                                                             memory_order_relaxed,
                                                             memory_order_relaxed))
        ;
}

void sr__balance_end_at(sr_balance_stats *st, int64_t latency_ns, int decay_ms, int64_t now)
{
    sr__balance_end_untimed(st);

    if (latency_ns < 0)
        latency_ns = 0;
    int64_t stamp = atomic_exchange_explicit(&st->ewma_stamp_ns, now, memory_order_relaxed);
    int64_t elapsed = now > stamp ? now - stamp : 0;
    double w = 0.0;
    if (decay_ms > 0) {
        double x = (double)elapsed / ((double)decay_ms * 1e6);
        /* Statements are usually microseconds apart against a decay of seconds: a
         * second-order Taylor term is exact to 1e-10 there and far cheaper than exp(). */
        w = x < 1e-3 ? 1.0 - x + 0.5 * x * x : exp(-x);
    }

    int64_t old = atomic_load_explicit(&st->ewma_ns, memory_order_relaxed);
    for (;;) {
        int64_t next;
        if (old == 0 || latency_ns >= old)
            next = latency_ns; /* first measurement, or a peak */
        else
            next = (int64_t)((double)old * w + (double)latency_ns * (1.0 - w));
        /* Rounding must not push a decaying estimate below what was observed. */
        if (next < latency_ns)
            next = latency_ns;
        if (atomic_compare_exchange_weak_explicit(&st->ewma_ns, &old, next, memory_order_relaxed,
                                                  memory_order_relaxed))
            break;
    }
}

/* ---- policies --------------------------------------------------------- */

static int pick_round_robin(int n, _Atomic uint64_t *rr_counter)
{
    if (!rr_counter)
        return rand_below(n);
    uint64_t c = atomic_fetch_add_explicit(rr_counter, 1, memory_order_relaxed);
    return (int)(c % (uint64_t)n);
}

static uint64_t gcd_u64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static inline uint64_t weight_of(sr_balance_stats *st)
{
    int w = atomic_load_explicit(&st->weight, memory_order_relaxed);
    return (uint64_t)(w >= 1 ? w : 1);
}

/* Walks the weights to the candidate owning slot `slot` of [0, total). */
static int weighted_slot(sr_balance_stats *const *cands, int n, uint64_t slot)
{
    for (int i = 0; i < n; i++) {
        uint64_t w = weight_of(cands[i]);
        if (slot < w)
            return i;
        slot -= w;
    }
    return n - 1;
}

/*
 * With the shard's counter, the c-th pick takes slot (c * stride) mod total,
 * where stride is coprime with the total weight and close to total / phi.
 * Every run of `total` consecutive picks then visits each slot exactly once:
 * exact proportions with the heavy node's picks spread out rather than in a
 * burst (the effect nginx's smooth weighted round robin gets with per-node
 * state). Without a counter, an independent weighted draw.
 */
static int pick_weighted(sr_balance_stats *const *cands, int n, _Atomic uint64_t *rr_counter)
{
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += weight_of(cands[i]);
    /* Past 2^32 the product below could overflow; such weights are not realistic. */
    if (!rr_counter || total > UINT32_MAX)
        return weighted_slot(cands, n, sr__rand64() % total);

    uint64_t stride = (uint64_t)((double)total * 0.6180339887498949);
    if (stride == 0)
        stride = 1;
    while (gcd_u64(stride, total) != 1)
        stride++;
    uint64_t c = atomic_fetch_add_explicit(rr_counter, 1, memory_order_relaxed) % total;
    return weighted_slot(cands, n, (c * stride) % total);
}

/* Reservoir sampling over the ties so equal nodes share the load evenly. */
static int pick_least_outstanding(sr_balance_stats *const *cands, int n)
{
    int best = 0;
    int64_t min = INT64_MAX;
    int ties = 0;
    for (int i = 0; i < n; i++) {
        int64_t v = atomic_load_explicit(&cands[i]->in_flight, memory_order_relaxed);
        if (v < min) {
            min = v;
            best = i;
            ties = 1;
        } else if (v == min) {
            ties++;
            if (rand_below(ties) == 0)
                best = i;
        }
    }
    return best;
}

/*
 * A node that has never answered has no latency estimate. While idle it costs
 * nothing, so it is tried; once it has statements outstanding but still no
 * answer it must not keep looking free, or a node that hangs would absorb all
 * traffic. Finagle uses the same penalty.
 */
#define P2C_PENALTY ((double)(INT64_MAX >> 16))

static double p2c_cost(const sr_balance_stats *st)
{
    int64_t ewma = atomic_load_explicit(&st->ewma_ns, memory_order_relaxed);
    int64_t in_flight = atomic_load_explicit(&st->in_flight, memory_order_relaxed);
    if (in_flight < 0)
        in_flight = 0;
    if (ewma == 0)
        return in_flight == 0 ? 0.0 : P2C_PENALTY + (double)in_flight;
    return (double)ewma * (double)(in_flight + 1);
}

/*
 * Power of two choices: comparing two random nodes avoids both the herd effect
 * of always taking the global minimum and the O(n) scan. Ties keep the first
 * draw, which is itself uniform.
 *
 * The caller's last node, when it is a candidate, is the first draw, and the
 * other one wins only when it costs less than 1/SR_P2C_STAY of it. A session
 * that hops between replicas on every small difference of cost makes each of
 * its statements wake a different server process, most likely on another
 * CPU: with two threads on two CPUs that cost a third of the throughput of
 * two threads that each keep one connection (bench_mixed --only 2/0, not
 * pinned: 0.68x; round_robin 0.78x, affinity 0.97x). A clearly busier or
 * slower node (a statement in flight doubles its cost) is still left.
 */
#define SR_P2C_STAY 1.5

static int pick_p2c_ewma(sr_balance_stats *const *cands, int n, int last)
{
    int a = last >= 0 && last < n ? last : rand_below(n);
    int b = rand_below(n - 1);
    if (b >= a)
        b++;
    double stay = last == a ? SR_P2C_STAY : 1.0;
    return p2c_cost(cands[b]) * stay < p2c_cost(cands[a]) ? b : a;
}

/* The splitmix64 finaliser: a bijective 64-bit mix. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/*
 * Rendezvous (highest random weight) hashing: each (session, node) pair gets
 * a pseudo-random score and the session goes to its highest-scoring node.
 * Removing a node only moves the sessions whose top score was that node;
 * everyone else's maximum is unchanged. Scores depend on the node's stable
 * id_hash, never on its position in the candidate list.
 */
static int pick_affinity(sr_balance_stats *const *cands, int n, uint64_t affinity)
{
    int best = 0;
    uint64_t best_score = 0;
    for (int i = 0; i < n; i++) {
        uint64_t score = mix64(affinity ^ mix64(cands[i]->id_hash + 0x9E3779B97F4A7C15ULL));
        if (i == 0 || score > best_score) {
            best = i;
            best_score = score;
        }
    }
    return best;
}

int sr__balance_pick(sr_policy_kind policy, sr_balance_stats *const *cands, int n,
                     _Atomic uint64_t *rr_counter, uint64_t affinity, int last)
{
    if (!cands || n < 1)
        return SR_EINVAL;
    if (n == 1)
        return 0;
    switch (policy) {
    case SR_POLICY_ROUND_ROBIN: return pick_round_robin(n, rr_counter);
    case SR_POLICY_RANDOM: return rand_below(n);
    case SR_POLICY_WEIGHTED: return pick_weighted(cands, n, rr_counter);
    case SR_POLICY_LEAST_OUTSTANDING: return pick_least_outstanding(cands, n);
    case SR_POLICY_AFFINITY: return pick_affinity(cands, n, affinity);
    case SR_POLICY_P2C_EWMA:
    default: return pick_p2c_ewma(cands, n, last);
    }
}
