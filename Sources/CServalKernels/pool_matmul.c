// Decode matmuls over the thread pool without a callback into Swift per range: the
// ranges of sv_pool_run_ranges map straight onto sv_matmul calls over the targets'
// output rows laid end to end (kept in C so a range costs a function call, not a
// closure call with reference counting).
#include "sv_internal.h"

typedef struct {
    int isa, wtype;
    int64_t k, nx;
    const sv_matmul_target *targets;
    int count;
    const void *xq;
    size_t xstride;
} pool_matmul_job;

/// Output rows [lo, hi) of the targets laid end to end.
static void pool_matmul_range(void *ctx, int64_t lo, int64_t hi) {
    const pool_matmul_job *j = ctx;
    int64_t base = 0;
    for (int i = 0; i < j->count && base < hi; i++) {
        const sv_matmul_target *t = &j->targets[i];
        const int64_t a = lo > base ? lo : base, b = hi < base + t->rows ? hi : base + t->rows;
        if (a < b)
            sv_matmul(j->isa, j->wtype, t->w, t->wstride, j->k, a - base, b - base, j->xq, j->xstride, j->nx, t->y,
                      t->ldy);
        base += t->rows;
    }
}

int sv_pool_matmul(sv_pool *pool, int64_t grain, int isa, int wtype, int64_t k, const sv_matmul_target *targets,
                   int count, const void *xq, size_t xstride, int64_t nx) {
    const int be = sv_block_elems(wtype);
    if (be == 0 || k <= 0 || k % be != 0 || count < 0 || nx < 0) return -1;
    int64_t total = 0;
    for (int i = 0; i < count; i++) {
        if (targets[i].rows < 0) return -1;
        total += targets[i].rows;
    }
    if (total == 0 || nx == 0) return 0;
    if (count <= SV_HINT_TARGETS) {
        sv_prefetch_hint self = {.count = count, .grain = grain};
        for (int i = 0; i < count; i++) {
            self.w[i] = targets[i].w;
            self.wstride[i] = targets[i].wstride;
            self.rows[i] = targets[i].rows;
        }
        sv_pool_note_matmul(pool, &self);
    }
    pool_matmul_job job = {isa, wtype, k, nx, targets, count, xq, xstride};
    sv_pool_run_ranges(pool, total, grain, pool_matmul_range, &job);
    return 0;
}
