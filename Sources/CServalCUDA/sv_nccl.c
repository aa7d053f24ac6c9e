// dlopen/dlsym loader for NCCL (see sv_nccl.h). The table is filled once under a
// pthread_once and never written again, so the forwarding functions read it without locks.
#define _GNU_SOURCE
#include "sv_nccl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SV_NCCL_NOT_LOADED (-1000)

static struct {
    int status;
    char err[512];
    char path[512];
    int (*ncclGetVersion)(int *);
    int (*ncclGetUniqueId)(sv_nccl_unique_id *);
    int (*ncclCommInitRank)(void **, int, sv_nccl_unique_id, int);
    int (*ncclCommDestroy)(void *);
    int (*ncclCommAbort)(void *);
    int (*ncclCommGetAsyncError)(void *, int *);
    int (*ncclAllReduce)(uint64_t, uint64_t, size_t, int, int, void *, void *);
    int (*ncclAllGather)(uint64_t, uint64_t, size_t, int, void *, void *);
    int (*ncclReduceScatter)(uint64_t, uint64_t, size_t, int, int, void *, void *);
    int (*ncclReduce)(uint64_t, uint64_t, size_t, int, int, int, void *, void *);
    int (*ncclBroadcast)(uint64_t, uint64_t, size_t, int, int, void *, void *);
    int (*ncclSend)(uint64_t, size_t, int, int, void *, void *);
    int (*ncclRecv)(uint64_t, size_t, int, int, void *, void *);
    int (*ncclGroupStart)(void);
    int (*ncclGroupEnd)(void);
    const char *(*ncclGetErrorString)(int);
} nccl = {.status = -1};

static void *try_dir(const char *dir, size_t dir_len) {
    const char *names[] = {"libnccl.so.2", "libnccl.so", NULL};
    for (int n = 0; names[n]; n++) {
        char path[700];
        if (dir_len) snprintf(path, sizeof path, "%.*s/%s", (int)dir_len, dir, names[n]);
        else snprintf(path, sizeof path, "%s", names[n]);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h) {
            snprintf(nccl.path, sizeof nccl.path, "%s", path);
            return h;
        }
    }
    return NULL;
}

static void *try_env(const char *env) {
    void *h = NULL;
    while (env && *env && !h) {
        const char *end = strchr(env, ':');
        size_t len = end ? (size_t)(end - env) : strlen(env);
        if (len) h = try_dir(env, len);
        env = end ? end + 1 : NULL;
    }
    return h;
}

#define NSYM(field, name)                                                                                 \
    do {                                                                                                  \
        *(void **)(&nccl.field) = dlsym(h, name);                                                         \
        if (!nccl.field) {                                                                                \
            snprintf(nccl.err, sizeof nccl.err, "%s is missing %s", nccl.path, name);                     \
            return;                                                                                       \
        }                                                                                                 \
    } while (0)

static void load(void) {
    void *h = try_env(getenv("SERVAL_NCCL_LIB_DIR"));
    if (!h) h = try_env(getenv("SERVAL_CUDA_LIB_DIR"));
    if (!h) h = try_dir("", 0);
    const char *dirs[] = {"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
                          "/usr/lib/x86_64-linux-gnu", "/usr/local/lib", NULL};
    for (int d = 0; dirs[d] && !h; d++) h = try_dir(dirs[d], strlen(dirs[d]));
    if (!h) {
        snprintf(nccl.err, sizeof nccl.err,
                 "NCCL not available: libnccl.so.2 not found (set SERVAL_NCCL_LIB_DIR to the folder holding it)");
        return;
    }
    NSYM(ncclGetVersion, "ncclGetVersion");
    NSYM(ncclGetUniqueId, "ncclGetUniqueId");
    NSYM(ncclCommInitRank, "ncclCommInitRank");
    NSYM(ncclCommDestroy, "ncclCommDestroy");
    NSYM(ncclCommAbort, "ncclCommAbort");
    NSYM(ncclCommGetAsyncError, "ncclCommGetAsyncError");
    NSYM(ncclAllReduce, "ncclAllReduce");
    NSYM(ncclAllGather, "ncclAllGather");
    NSYM(ncclReduceScatter, "ncclReduceScatter");
    NSYM(ncclReduce, "ncclReduce");
    NSYM(ncclBroadcast, "ncclBroadcast");
    NSYM(ncclSend, "ncclSend");
    NSYM(ncclRecv, "ncclRecv");
    NSYM(ncclGroupStart, "ncclGroupStart");
    NSYM(ncclGroupEnd, "ncclGroupEnd");
    NSYM(ncclGetErrorString, "ncclGetErrorString");
    nccl.status = 0;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

int sv_nccl_load(char *err, size_t err_len) {
    pthread_once(&once, load);
    if (nccl.status != 0 && err && err_len) snprintf(err, err_len, "%s", nccl.err);
    return nccl.status == 0 ? 0 : 1;
}

const char *sv_nccl_path(void) { return nccl.status == 0 ? nccl.path : ""; }

#define CALL(field, ...) (nccl.status == 0 ? nccl.field(__VA_ARGS__) : SV_NCCL_NOT_LOADED)

int sv_ncclGetVersion(int *version) { return CALL(ncclGetVersion, version); }
int sv_ncclGetUniqueId(sv_nccl_unique_id *id) { return CALL(ncclGetUniqueId, id); }
int sv_ncclCommInitRank(void **comm, int nranks, const sv_nccl_unique_id *id, int rank) {
    return CALL(ncclCommInitRank, comm, nranks, *id, rank);
}
int sv_ncclCommDestroy(void *comm) { return CALL(ncclCommDestroy, comm); }
int sv_ncclCommAbort(void *comm) { return CALL(ncclCommAbort, comm); }
int sv_ncclCommGetAsyncError(void *comm, int *async_error) { return CALL(ncclCommGetAsyncError, comm, async_error); }
int sv_ncclAllReduce(uint64_t send, uint64_t recv, size_t count, int dtype, int op, void *comm, void *stream) {
    return CALL(ncclAllReduce, send, recv, count, dtype, op, comm, stream);
}
int sv_ncclAllGather(uint64_t send, uint64_t recv, size_t send_count, int dtype, void *comm, void *stream) {
    return CALL(ncclAllGather, send, recv, send_count, dtype, comm, stream);
}
int sv_ncclReduceScatter(uint64_t send, uint64_t recv, size_t recv_count, int dtype, int op, void *comm,
                         void *stream) {
    return CALL(ncclReduceScatter, send, recv, recv_count, dtype, op, comm, stream);
}
int sv_ncclReduce(uint64_t send, uint64_t recv, size_t count, int dtype, int op, int root, void *comm, void *stream) {
    return CALL(ncclReduce, send, recv, count, dtype, op, root, comm, stream);
}
int sv_ncclBroadcast(uint64_t send, uint64_t recv, size_t count, int dtype, int root, void *comm, void *stream) {
    return CALL(ncclBroadcast, send, recv, count, dtype, root, comm, stream);
}
int sv_ncclSend(uint64_t send, size_t count, int dtype, int peer, void *comm, void *stream) {
    return CALL(ncclSend, send, count, dtype, peer, comm, stream);
}
int sv_ncclRecv(uint64_t recv, size_t count, int dtype, int peer, void *comm, void *stream) {
    return CALL(ncclRecv, recv, count, dtype, peer, comm, stream);
}
int sv_ncclGroupStart(void) { return nccl.status == 0 ? nccl.ncclGroupStart() : SV_NCCL_NOT_LOADED; }
int sv_ncclGroupEnd(void) { return nccl.status == 0 ? nccl.ncclGroupEnd() : SV_NCCL_NOT_LOADED; }
const char *sv_nccl_error_string(int result) {
    return nccl.status == 0 && nccl.ncclGetErrorString ? nccl.ncclGetErrorString(result) : "?";
}
