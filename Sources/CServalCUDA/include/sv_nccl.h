// NCCL entry points Serval calls, loaded at run time with dlopen/dlsym (libnccl.so.2),
// like the CUDA driver in sv_cuda.h: no link-time dependency. Handles are `void *`,
// device buffers `uint64_t` addresses, streams the driver's CUstream; every call returns
// ncclResult_t (0 = ncclSuccess) or SV_NOT_LOADED when the library did not load.
#ifndef SV_NCCL_H
#define SV_NCCL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// ncclUniqueId: 128 opaque bytes made by one rank and sent to the others.
typedef struct {
    char internal[128];
} sv_nccl_unique_id;

// Values of the enums we pass (nccl.h).
enum {
    SV_NCCL_UINT8 = 1,
    SV_NCCL_FLOAT32 = 7,
    SV_NCCL_SUM = 0,
};

/// 0 on success (also when already loaded); else nonzero with `err` set to one line.
/// Looks in $SERVAL_NCCL_LIB_DIR and $SERVAL_CUDA_LIB_DIR (colon-separated), then the
/// loader's search path, then the usual toolkit folders.
int sv_nccl_load(char *err, size_t err_len);
const char *sv_nccl_path(void);

int sv_ncclGetVersion(int *version);
int sv_ncclGetUniqueId(sv_nccl_unique_id *id);
int sv_ncclCommInitRank(void **comm, int nranks, const sv_nccl_unique_id *id, int rank);
int sv_ncclCommDestroy(void *comm);
int sv_ncclCommAbort(void *comm);
int sv_ncclCommGetAsyncError(void *comm, int *async_error);
int sv_ncclAllReduce(uint64_t send, uint64_t recv, size_t count, int dtype, int op, void *comm, void *stream);
int sv_ncclAllGather(uint64_t send, uint64_t recv, size_t send_count, int dtype, void *comm, void *stream);
int sv_ncclReduceScatter(uint64_t send, uint64_t recv, size_t recv_count, int dtype, int op, void *comm,
                         void *stream);
int sv_ncclReduce(uint64_t send, uint64_t recv, size_t count, int dtype, int op, int root, void *comm, void *stream);
int sv_ncclBroadcast(uint64_t send, uint64_t recv, size_t count, int dtype, int root, void *comm, void *stream);
int sv_ncclSend(uint64_t send, size_t count, int dtype, int peer, void *comm, void *stream);
int sv_ncclRecv(uint64_t recv, size_t count, int dtype, int peer, void *comm, void *stream);
int sv_ncclGroupStart(void);
int sv_ncclGroupEnd(void);
/// ncclResult_t's description ("unhandled cuda error ..."); "?" when not loaded.
const char *sv_nccl_error_string(int result);

#ifdef __cplusplus
}
#endif
#endif
