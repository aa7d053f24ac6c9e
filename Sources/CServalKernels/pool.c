// Persistent thread pool for data-parallel loops. A forward pass issues
// hundreds of short parallel loops per token, so workers spin briefly on a
// generation counter before sleeping on a condition variable: back-to-back
// loops never pay a wake-up, idle pools burn no CPU.
#include "serval_kernels.h"
#include <pthread.h>
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

struct sv_pool {
    int threads;
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    // The job; written by the caller before `generation` is bumped.
    void (*fn)(void *, int64_t);
    void *ctx;
    int64_t count;
    _Alignas(64) _Atomic uint64_t generation;
    _Alignas(64) _Atomic int64_t next;
    _Alignas(64) _Atomic int pending;
    _Alignas(64) _Atomic int sleeping;
    _Atomic int stop;
};

static void run_items(sv_pool *p) {
    const int64_t count = p->count;
    for (;;) {
        const int64_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= count) break;
        p->fn(p->ctx, i);
    }
}

static void *worker_main(void *arg) {
    sv_pool *p = arg;
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
        run_items(p);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
}

sv_pool *sv_pool_create(int threads) {
    if (threads < 1) threads = 1;
    sv_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (threads > 1) {
        p->workers = calloc((size_t)threads - 1, sizeof(pthread_t));
        if (!p->workers) { free(p); return NULL; }
        for (int i = 0; i < threads - 1; i++) {
            if (pthread_create(&p->workers[i], NULL, worker_main, p) != 0) {
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
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

int sv_pool_threads(const sv_pool *p) { return p->threads; }

void sv_pool_run(sv_pool *p, int64_t count, void (*fn)(void *, int64_t), void *ctx) {
    if (count <= 0) return;
    if (p->threads == 1 || count == 1) {
        for (int64_t i = 0; i < count; i++) fn(ctx, i);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->count = count;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->threads - 1, memory_order_relaxed);
    atomic_fetch_add(&p->generation, 1);  // seq_cst: publishes the job, orders the `sleeping` check
    if (atomic_load(&p->sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    run_items(p);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) SV_PAUSE();
}
