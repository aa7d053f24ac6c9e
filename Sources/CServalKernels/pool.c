// Persistent thread pool for data-parallel loops. A forward pass issues
// hundreds of short parallel loops per token, so workers spin briefly on a
// generation counter before sleeping on a condition variable: back-to-back
// loops never pay a wake-up, idle pools burn no CPU.
#include "serval_kernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define SV_PAUSE() _mm_pause()
#else
#define SV_PAUSE() ((void)0)
#endif

/// Spin iterations (each a pause, ~10-40 ns) before a worker sleeps.
#define SV_SPIN_LIMIT 20000
/// Spin iterations before the caller, waiting for the last workers, starts to
/// yield its core (sched_yield returns at once when no other thread wants it).
#define SV_WAIT_SPIN_LIMIT 1000

/// One participant's share of a ranged run: [front, back) in grain units, packed
/// into one word (front in the high half) so the owner taking from the front and
/// a thief taking from the back agree with a single compare-and-swap.
typedef struct {
    _Alignas(64) _Atomic uint64_t span;
} sv_share;

#define SV_MAX_SHARES 256

struct sv_pool {
    int threads;
    pthread_t *workers;
    struct sv_worker_arg *args;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    // The job; written by the caller before `generation` is bumped.
    void (*fn)(void *, int64_t);
    void (*range_fn)(void *, int64_t, int64_t);  // set for ranged runs, NULL for item runs
    void *ctx;
    int64_t count;
    int64_t grain;   // ranged runs: items per grain unit
    sv_share *shares;  // ranged runs: one per participant
    _Alignas(64) _Atomic uint64_t generation;
    _Alignas(64) _Atomic int64_t next;
    _Alignas(64) _Atomic int pending;
    _Alignas(64) _Atomic int sleeping;
    _Atomic int stop;
};

struct sv_worker_arg { sv_pool *pool; int index; };

static inline uint64_t span_pack(uint32_t front, uint32_t back) { return ((uint64_t)front << 32) | back; }

/// Takes one grain unit from the front of share `s` (its owner) or the back (a thief);
/// returns the unit or -1 when the share is empty.
static int64_t share_take(sv_share *s, int from_back) {
    uint64_t cur = atomic_load_explicit(&s->span, memory_order_relaxed);
    for (;;) {
        const uint32_t front = (uint32_t)(cur >> 32), back = (uint32_t)cur;
        if (front >= back) return -1;
        const uint64_t next = from_back ? span_pack(front, back - 1) : span_pack(front + 1, back);
        if (atomic_compare_exchange_weak_explicit(&s->span, &cur, next, memory_order_relaxed, memory_order_relaxed))
            return from_back ? (int64_t)back - 1 : (int64_t)front;
    }
}

/// Participant `me` walks its own share front to back (one long sequential stream
/// through the weights, which the hardware prefetcher follows), then steals units
/// from the back of the other shares so a delayed thread never holds up the run.
static void run_ranges(sv_pool *p, int me) {
    const int n = p->threads;
    const int64_t grain = p->grain, count = p->count;
    for (int k = 0; k < n; k++) {  // k = 0: its own share, from the front
        sv_share *s = &p->shares[(me + k) % n];
        for (int64_t u; (u = share_take(s, k != 0)) >= 0;) {
            const int64_t lo = u * grain, hi = lo + grain < count ? lo + grain : count;
            p->range_fn(p->ctx, lo, hi);
        }
    }
}

static void run_items(sv_pool *p) {
    const int64_t count = p->count;
    for (;;) {
        const int64_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= count) break;
        p->fn(p->ctx, i);
    }
}

static void run_job(sv_pool *p, int me) {
    if (p->range_fn) run_ranges(p, me);
    else run_items(p);
}

static void *worker_main(void *arg) {
    const struct sv_worker_arg *wa = arg;
    sv_pool *p = wa->pool;
    const int me = wa->index;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen) {
            if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return NULL;
            if (++spins < SV_SPIN_LIMIT) { SV_PAUSE(); continue; }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleeping, 1);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleeping, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        seen = g;
        if (atomic_load(&p->stop)) return NULL;
        run_job(p, me);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
}

sv_pool *sv_pool_create(int threads) {
    if (threads < 1) threads = 1;
    if (threads > SV_MAX_SHARES) threads = SV_MAX_SHARES;
    sv_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = threads;
    p->shares = aligned_alloc(64, sizeof(sv_share) * (size_t)threads);
    if (!p->shares) { free(p); return NULL; }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (threads > 1) {
        p->workers = calloc((size_t)threads - 1, sizeof(pthread_t));
        p->args = calloc((size_t)threads - 1, sizeof(struct sv_worker_arg));
        if (!p->workers || !p->args) { free(p->workers); free(p->args); free(p->shares); free(p); return NULL; }
        for (int i = 0; i < threads - 1; i++) {
            p->args[i] = (struct sv_worker_arg){p, i + 1};
            if (pthread_create(&p->workers[i], NULL, worker_main, &p->args[i]) != 0) {
                p->threads = i + 1;  // keep the ones that started
                break;
            }
        }
    }
    return p;
}

void sv_pool_destroy(sv_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->threads - 1; i++) pthread_join(p->workers[i], NULL);
    free(p->workers);
    free(p->args);
    free(p->shares);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

int sv_pool_threads(const sv_pool *p) { return p->threads; }

/// Publishes the job, works on it as participant 0, waits for the workers.
static void launch(sv_pool *p) {
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->threads - 1, memory_order_relaxed);
    atomic_fetch_add(&p->generation, 1);  // seq_cst: publishes the job, orders the `sleeping` check
    if (atomic_load(&p->sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    run_job(p, 0);
    // Workers normally finish within microseconds; if one was descheduled (a
    // loaded machine), stop burning the core it may need and yield instead.
    for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
        if (spins < SV_WAIT_SPIN_LIMIT) SV_PAUSE();
        else sched_yield();
    }
}

void sv_pool_run(sv_pool *p, int64_t count, void (*fn)(void *, int64_t), void *ctx) {
    if (count <= 0) return;
    if (p->threads == 1 || count == 1) {
        for (int64_t i = 0; i < count; i++) fn(ctx, i);
        return;
    }
    p->fn = fn;
    p->range_fn = NULL;
    p->ctx = ctx;
    p->count = count;
    launch(p);
}

void sv_pool_run_ranges(sv_pool *p, int64_t count, int64_t grain, void (*fn)(void *, int64_t, int64_t), void *ctx) {
    if (count <= 0) return;
    if (grain < 1) grain = 1;
    int64_t units = (count + grain - 1) / grain;
    if (units > UINT32_MAX) {  // keep unit indices in 32 bits
        grain = (count + UINT32_MAX - 1) / UINT32_MAX;
        units = (count + grain - 1) / grain;
    }
    if (p->threads == 1 || units == 1) {
        fn(ctx, 0, count);
        return;
    }
    const int n = p->threads;
    for (int t = 0; t < n; t++) {
        const uint32_t front = (uint32_t)(units * t / n), back = (uint32_t)(units * (t + 1) / n);
        atomic_store_explicit(&p->shares[t].span, span_pack(front, back), memory_order_relaxed);
    }
    p->fn = NULL;
    p->range_fn = fn;
    p->ctx = ctx;
    p->count = count;
    p->grain = grain;
    launch(p);
}
