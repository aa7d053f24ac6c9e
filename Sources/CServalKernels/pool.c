// Persistent thread pool for data-parallel loops. A forward pass issues
// hundreds of short parallel loops per token, so workers spin briefly on a
// generation counter before sleeping on a condition variable: back-to-back
// loops never pay a wake-up, idle pools burn no CPU.
#include "sv_internal.h"
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
/// Bytes of the next decode matmul each idle participant prefetches (into L2) at most.
#define SV_PREFETCH_BUDGET (256 * 1024)
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

/// A participant's progress through a hint (the pool's own bookkeeping).
typedef struct {
    uint64_t gen;
    const char *start[2 * SV_HINT_TARGETS];
    size_t bytes[2 * SV_HINT_TARGETS];
    int segments, segment;
    size_t offset, left;
} sv_prefetch_cursor;

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
    // The next decode matmul's weights, for idle participants to pull toward their caches
    // (prefetch_hint): written by the caller, then `hint_gen` is bumped.
    _Alignas(64) _Atomic uint64_t hint_gen;
    sv_prefetch_hint hint;
    sv_prefetch_cursor caller_cursor;  // participant 0's progress through the hint
    // sv_pool_note_matmul's record of which decode matmul followed which (keyed by the first
    // matrix's address; open addressing), and the last one seen.
    struct sv_matmul_successor *successors;
    int64_t last_successor;  // index into `successors`, or -1
    size_t prefetch_budget;
};

#define SV_SUCCESSORS 1024
struct sv_matmul_successor {
    const void *key;  // NULL: free
    int known;        // `next` has been seen
    sv_prefetch_hint next;
};

struct sv_worker_arg { sv_pool *pool; int index; };

/// Where one participant stands in prefetching its share of the hinted matmul: up to
/// SV_HINT_TARGETS byte stretches (its rows of each matrix), walked in order.
static void cursor_load(const sv_pool *p, int me, uint64_t gen, sv_prefetch_cursor *c) {
    const sv_prefetch_hint *h = &p->hint;
    c->gen = gen;
    c->segments = 0;
    c->segment = 0;
    c->offset = 0;
    c->left = h->budget;
    int64_t total = 0;
    for (int i = 0; i < h->count; i++) total += h->rows[i];
    if (total <= 0 || h->grain <= 0) return;
    // The share sv_pool_run_ranges gives participant `me`: units [U*me/n, U*(me+1)/n); a worker
    // then takes the caller's share too (the caller is the one busy between matmuls: norms,
    // quantization, RoPE), for the caller to read from the shared cache rather than DRAM.
    const int64_t units = (total + h->grain - 1) / h->grain, n = p->threads;
    for (int pass = 0; pass < (me == 0 ? 1 : 2); pass++) {
        const int64_t who = pass == 0 ? me : 0;
        const int64_t lo = units * who / n * h->grain, hi0 = units * (who + 1) / n * h->grain;
        const int64_t hi = hi0 < total ? hi0 : total;
        int64_t base = 0;
        for (int i = 0; i < h->count && base < hi; i++) {
            const int64_t a = lo > base ? lo : base, b = hi < base + h->rows[i] ? hi : base + h->rows[i];
            if (a < b) {
                c->start[c->segments] = (const char *)h->w[i] + (size_t)(a - base) * h->wstride[i];
                c->bytes[c->segments] = (size_t)(b - a) * h->wstride[i];
                c->segments++;
            }
            base += h->rows[i];
        }
    }
    if (me != 0) c->left = 2 * h->budget;
}

/// One step (1 KB) of participant `me`'s prefetch of the hinted matmul's share, into L2.
/// Returns 0 when there is nothing (left) to prefetch. Reads of a hint being rewritten are
/// caught by the generation check; a prefetch of a stale address cannot fault.
static int prefetch_step(sv_pool *p, int me, sv_prefetch_cursor *c) {
    const uint64_t gen = atomic_load_explicit(&p->hint_gen, memory_order_acquire);
    if (gen == 0) return 0;
    if (gen != c->gen) {
        cursor_load(p, me, gen, c);
        if (atomic_load_explicit(&p->hint_gen, memory_order_acquire) != gen) { c->gen = 0; return 1; }
    }
    while (c->segment < c->segments && c->offset >= c->bytes[c->segment]) { c->segment++; c->offset = 0; }
    if (c->segment >= c->segments || c->left == 0) return 0;
    const char *at = c->start[c->segment] + c->offset;
    size_t step = c->bytes[c->segment] - c->offset;
    if (step > 1024) step = 1024;
    if (step > c->left) step = c->left;
#if defined(__x86_64__)
    for (size_t b = 0; b < step; b += 64) _mm_prefetch(at + b, _MM_HINT_T1);
#else
    (void)at;
#endif
    c->offset += step;
    c->left -= step;
    return 1;
}

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
    sv_prefetch_cursor cursor = {0};
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen) {
            if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return NULL;
            if (prefetch_step(p, me, &cursor)) continue;  // idle: pull the next matmul's share in
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
    p->last_successor = -1;
    p->prefetch_budget = SV_PREFETCH_BUDGET;
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
    free(p->successors);
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
        if (prefetch_step(p, 0, &p->caller_cursor)) { spins = 0; continue; }
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

/// From now on, a participant with nothing to do (a worker waiting for the next job, the
/// caller waiting for the workers) prefetches into L2 the start of its share of `hint`'s
/// rows, so the DRAM stream that decode is bound by does not stop between matmuls. NULL
/// clears it. Only a hint: wrong addresses cost bandwidth, never a fault.
static void prefetch_hint(sv_pool *p, const sv_prefetch_hint *hint) {
    if (p->threads == 1) return;  // a lone caller has no idle time to fill
    if (hint) p->hint = *hint;
    else p->hint.count = 0;
    atomic_fetch_add_explicit(&p->hint_gen, 1, memory_order_release);
}

/// The slot of `key` in the successor table (claiming a free one), or -1 when it is full.
static int64_t successor_slot(sv_pool *p, const void *key) {
    if (!p->successors) {
        p->successors = calloc(SV_SUCCESSORS, sizeof *p->successors);
        if (!p->successors) return -1;
    }
    const uint64_t h = ((uint64_t)(uintptr_t)key >> 6) * 0x9E3779B97F4A7C15ull;
    for (int64_t probe = 0; probe < SV_SUCCESSORS; probe++) {
        const int64_t i = (int64_t)((h >> 40) + (uint64_t)probe) & (SV_SUCCESSORS - 1);
        if (p->successors[i].key == key) return i;
        if (!p->successors[i].key) {
            p->successors[i].key = key;
            return i;
        }
    }
    return -1;
}

void sv_pool_note_matmul(sv_pool *p, const sv_prefetch_hint *matmul) {
    if (p->threads == 1 || p->prefetch_budget == 0 || matmul->count < 1) return;
    const int64_t me = successor_slot(p, matmul->w[0]);
    if (p->last_successor >= 0) {  // learn: this one follows the last one
        struct sv_matmul_successor *prev = &p->successors[p->last_successor];
        prev->next = *matmul;
        prev->next.budget = p->prefetch_budget;
        prev->known = 1;
    }
    p->last_successor = me;
    prefetch_hint(p, me >= 0 && p->successors[me].known ? &p->successors[me].next : NULL);
}

void sv_pool_set_prefetch_budget(sv_pool *p, size_t bytes) {
    p->prefetch_budget = bytes;
    p->last_successor = -1;
    prefetch_hint(p, NULL);
}
