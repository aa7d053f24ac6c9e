// See sv_shm.h.
#include "sv_shm.h"
#include <stdatomic.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

uint64_t sv_shm_load(const uint64_t *word) {
    return atomic_load_explicit((const _Atomic uint64_t *)word, memory_order_acquire);
}

void sv_shm_store(uint64_t *word, uint64_t value) {
    atomic_store_explicit((_Atomic uint64_t *)word, value, memory_order_release);
}

int sv_shm_compare_exchange(uint64_t *word, uint64_t expected, uint64_t desired) {
    return atomic_compare_exchange_strong_explicit(
        (_Atomic uint64_t *)word, &expected, desired, memory_order_acq_rel, memory_order_acquire);
}

void sv_shm_relax(void) {
#if defined(__x86_64__)
    _mm_pause();
#endif
}
