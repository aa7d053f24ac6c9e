// Atomics on words in memory shared between processes (the shared-memory
// communicator's generation counters and flags), which Swift cannot declare
// at a raw address itself. Plain C11 atomics: lock-free on 64-bit words, so
// they work across processes that map the same pages.
#ifndef SERVAL_SHM_H
#define SERVAL_SHM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Load with acquire ordering.
uint64_t sv_shm_load(const uint64_t *word);
/// Store with release ordering.
void sv_shm_store(uint64_t *word, uint64_t value);
/// Stores `desired` if the word holds `expected`; returns whether it did (acq_rel).
int sv_shm_compare_exchange(uint64_t *word, uint64_t expected, uint64_t desired);
/// A spin-wait hint (pause on x86).
void sv_shm_relax(void);

#ifdef __cplusplus
}
#endif

#endif
