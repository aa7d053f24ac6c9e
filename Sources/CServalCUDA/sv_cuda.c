// dlopen/dlsym loader for the CUDA driver, NVRTC and cuBLASLt (see sv_cuda.h).
//
// Each library's table is filled once under a pthread_once and never written
// again, so the forwarding functions read it without locks.
#define _GNU_SOURCE
#include "sv_cuda.h"

#include <dlfcn.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------- tables

static struct {
    int status;  // 0 loaded, else failed
    char err[512];
    char path[512];
    int (*cuInit)(unsigned);
    int (*cuDriverGetVersion)(int *);
    int (*cuDeviceGetCount)(int *);
    int (*cuDeviceGet)(int *, int);
    int (*cuDeviceGetName)(char *, int, int);
    int (*cuDeviceGetAttribute)(int *, int, int);
    int (*cuDeviceTotalMem)(size_t *, int);
    int (*cuDevicePrimaryCtxRetain)(void **, int);
    int (*cuDevicePrimaryCtxRelease)(int);
    int (*cuCtxSetCurrent)(void *);
    int (*cuCtxSynchronize)(void);
    int (*cuMemGetInfo)(size_t *, size_t *);
    int (*cuMemAlloc)(uint64_t *, size_t);
    int (*cuMemFree)(uint64_t);
    int (*cuMemAllocHost)(void **, size_t);
    int (*cuMemFreeHost)(void *);
    int (*cuMemcpyHtoDAsync)(uint64_t, const void *, size_t, void *);
    int (*cuMemcpyDtoHAsync)(void *, uint64_t, size_t, void *);
    int (*cuMemcpyDtoDAsync)(uint64_t, uint64_t, size_t, void *);
    int (*cuMemsetD8Async)(uint64_t, unsigned char, size_t, void *);
    int (*cuMemsetD32Async)(uint64_t, unsigned, size_t, void *);
    int (*cuStreamCreate)(void **, unsigned);
    int (*cuStreamDestroy)(void *);
    int (*cuStreamSynchronize)(void *);
    int (*cuStreamQuery)(void *);
    int (*cuEventCreate)(void **, unsigned);
    int (*cuEventDestroy)(void *);
    int (*cuEventRecord)(void *, void *);
    int (*cuEventSynchronize)(void *);
    int (*cuEventElapsedTime)(float *, void *, void *);
    int (*cuModuleLoadData)(void **, const void *);
    int (*cuModuleUnload)(void *);
    int (*cuModuleGetFunction)(void **, void *, const char *);
    int (*cuFuncSetAttribute)(void *, int, int);
    int (*cuLaunchKernel)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *,
                          void **, void **);
    int (*cuLaunchKernelEx)(const void *, void *, void **, void **);  // optional (CUDA 11.8+)
    int (*cuStreamBeginCapture)(void *, int);
    int (*cuStreamEndCapture)(void *, void **);
    int (*cuGraphInstantiate)(void **, void *, unsigned long long);
    int (*cuGraphLaunch)(void *, void *);
    int (*cuGraphExecDestroy)(void *);
    int (*cuGraphDestroy)(void *);
    int (*cuGetErrorName)(int, const char **);
    int (*cuGetErrorString)(int, const char **);
} drv = {.status = -1};

static struct {
    int status;
    char err[512];
    char path[512];
    int (*nvrtcVersion)(int *, int *);
    int (*nvrtcCreateProgram)(void **, const char *, const char *, int, const char *const *, const char *const *);
    int (*nvrtcCompileProgram)(void *, int, const char *const *);
    int (*nvrtcGetProgramLogSize)(void *, size_t *);
    int (*nvrtcGetProgramLog)(void *, char *);
    int (*nvrtcGetCUBINSize)(void *, size_t *);
    int (*nvrtcGetCUBIN)(void *, char *);
    int (*nvrtcDestroyProgram)(void **);
    const char *(*nvrtcGetErrorString)(int);
} rtc = {.status = -1};

static struct {
    int status;
    char err[512];
    char path[512];
    size_t (*cublasLtGetVersion)(void);
    int (*cublasLtCreate)(void **);
    int (*cublasLtDestroy)(void *);
    int (*cublasLtMatmulDescCreate)(void **, int, int);
    int (*cublasLtMatmulDescDestroy)(void *);
    int (*cublasLtMatmulDescSetAttribute)(void *, int, const void *, size_t);
    int (*cublasLtMatrixLayoutCreate)(void **, int, uint64_t, uint64_t, int64_t);
    int (*cublasLtMatrixLayoutDestroy)(void *);
    int (*cublasLtMatmulPreferenceCreate)(void **);
    int (*cublasLtMatmulPreferenceDestroy)(void *);
    int (*cublasLtMatmulPreferenceSetAttribute)(void *, int, const void *, size_t);
    int (*cublasLtMatmulAlgoGetHeuristic)(void *, void *, void *, void *, void *, void *, void *, int,
                                          sv_cublaslt_heuristic *, int *);
    int (*cublasLtMatmul)(void *, void *, const void *, uint64_t, void *, uint64_t, void *, const void *, uint64_t,
                          void *, uint64_t, void *, const void *, uint64_t, size_t, void *);
} blt = {.status = -1};

// ---------------------------------------------------------------- loading

/// Tries `names` in each directory of $SERVAL_CUDA_LIB_DIR (colon-separated), then the
/// loader's own search path, then $CUDA_HOME/lib64 and the usual toolkit folders.
static void *try_dir(const char *dir, size_t dir_len, const char *const *names, char *found, size_t found_len) {
    for (int n = 0; names[n]; n++) {
        char path[700];
        if (dir_len) snprintf(path, sizeof path, "%.*s/%s", (int)dir_len, dir, names[n]);
        else snprintf(path, sizeof path, "%s", names[n]);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h) {
            snprintf(found, found_len, "%s", path);
            return h;
        }
    }
    return NULL;
}

static void *open_first(const char *const *names, char *found, size_t found_len) {
    const char *env = getenv("SERVAL_CUDA_LIB_DIR");
    void *h = NULL;
    while (env && *env && !h) {
        const char *end = strchr(env, ':');
        size_t len = end ? (size_t)(end - env) : strlen(env);
        if (len) h = try_dir(env, len, names, found, found_len);
        env = end ? end + 1 : NULL;
    }
    if (!h) h = try_dir("", 0, names, found, found_len);
    const char *cuda_home = getenv("CUDA_HOME");
    char home_lib[400] = "";
    if (cuda_home && *cuda_home) snprintf(home_lib, sizeof home_lib, "%s/lib64", cuda_home);
    const char *dirs[] = {home_lib, "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
                          "/usr/lib/x86_64-linux-gnu", NULL};
    for (int d = 0; dirs[d] && !h; d++) {
        if (*dirs[d]) h = try_dir(dirs[d], strlen(dirs[d]), names, found, found_len);
    }
    return h;
}

#define SYM(table, lib, field, name)                                                                     \
    do {                                                                                                 \
        *(void **)(&table.field) = dlsym(lib, name);                                                     \
        if (!table.field) {                                                                              \
            snprintf(table.err, sizeof table.err, "%s is missing %s", table.path, name);                 \
            return;                                                                                      \
        }                                                                                                \
    } while (0)

static void load_driver(void) {
    const char *names[] = {"libcuda.so.1", "libcuda.so", NULL};
    void *h = open_first(names, drv.path, sizeof drv.path);
    if (!h) {
        snprintf(drv.err, sizeof drv.err,
                 "CUDA driver not available: libcuda.so.1 not found (no NVIDIA driver on this host)");
        return;
    }
    SYM(drv, h, cuInit, "cuInit");
    SYM(drv, h, cuDriverGetVersion, "cuDriverGetVersion");
    SYM(drv, h, cuDeviceGetCount, "cuDeviceGetCount");
    SYM(drv, h, cuDeviceGet, "cuDeviceGet");
    SYM(drv, h, cuDeviceGetName, "cuDeviceGetName");
    SYM(drv, h, cuDeviceGetAttribute, "cuDeviceGetAttribute");
    SYM(drv, h, cuDeviceTotalMem, "cuDeviceTotalMem_v2");
    SYM(drv, h, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    SYM(drv, h, cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
    SYM(drv, h, cuCtxSetCurrent, "cuCtxSetCurrent");
    SYM(drv, h, cuCtxSynchronize, "cuCtxSynchronize");
    SYM(drv, h, cuMemGetInfo, "cuMemGetInfo_v2");
    SYM(drv, h, cuMemAlloc, "cuMemAlloc_v2");
    SYM(drv, h, cuMemFree, "cuMemFree_v2");
    SYM(drv, h, cuMemAllocHost, "cuMemAllocHost_v2");
    SYM(drv, h, cuMemFreeHost, "cuMemFreeHost");
    SYM(drv, h, cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
    SYM(drv, h, cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
    SYM(drv, h, cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
    SYM(drv, h, cuMemsetD8Async, "cuMemsetD8Async");
    SYM(drv, h, cuMemsetD32Async, "cuMemsetD32Async");
    SYM(drv, h, cuStreamCreate, "cuStreamCreate");
    SYM(drv, h, cuStreamDestroy, "cuStreamDestroy_v2");
    SYM(drv, h, cuStreamSynchronize, "cuStreamSynchronize");
    SYM(drv, h, cuStreamQuery, "cuStreamQuery");
    SYM(drv, h, cuEventCreate, "cuEventCreate");
    SYM(drv, h, cuEventDestroy, "cuEventDestroy_v2");
    SYM(drv, h, cuEventRecord, "cuEventRecord");
    SYM(drv, h, cuEventSynchronize, "cuEventSynchronize");
    SYM(drv, h, cuEventElapsedTime, "cuEventElapsedTime");
    SYM(drv, h, cuModuleLoadData, "cuModuleLoadData");
    SYM(drv, h, cuModuleUnload, "cuModuleUnload");
    SYM(drv, h, cuModuleGetFunction, "cuModuleGetFunction");
    SYM(drv, h, cuFuncSetAttribute, "cuFuncSetAttribute");
    SYM(drv, h, cuLaunchKernel, "cuLaunchKernel");
    *(void **)(&drv.cuLaunchKernelEx) = dlsym(h, "cuLaunchKernelEx");  // may be absent: plain launches then
    SYM(drv, h, cuStreamBeginCapture, "cuStreamBeginCapture_v2");
    SYM(drv, h, cuStreamEndCapture, "cuStreamEndCapture");
    SYM(drv, h, cuGraphInstantiate, "cuGraphInstantiateWithFlags");
    SYM(drv, h, cuGraphLaunch, "cuGraphLaunch");
    SYM(drv, h, cuGraphExecDestroy, "cuGraphExecDestroy");
    SYM(drv, h, cuGraphDestroy, "cuGraphDestroy");
    SYM(drv, h, cuGetErrorName, "cuGetErrorName");
    SYM(drv, h, cuGetErrorString, "cuGetErrorString");
    drv.status = 0;
}

static void load_nvrtc(void) {
    const char *names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so", NULL};
    void *h = open_first(names, rtc.path, sizeof rtc.path);
    if (!h) {
        snprintf(rtc.err, sizeof rtc.err,
                 "NVRTC not available: libnvrtc.so.13/.12 not found (install the CUDA toolkit or set "
                 "SERVAL_CUDA_LIB_DIR)");
        return;
    }
    SYM(rtc, h, nvrtcVersion, "nvrtcVersion");
    SYM(rtc, h, nvrtcCreateProgram, "nvrtcCreateProgram");
    SYM(rtc, h, nvrtcCompileProgram, "nvrtcCompileProgram");
    SYM(rtc, h, nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize");
    SYM(rtc, h, nvrtcGetProgramLog, "nvrtcGetProgramLog");
    SYM(rtc, h, nvrtcGetCUBINSize, "nvrtcGetCUBINSize");
    SYM(rtc, h, nvrtcGetCUBIN, "nvrtcGetCUBIN");
    SYM(rtc, h, nvrtcDestroyProgram, "nvrtcDestroyProgram");
    SYM(rtc, h, nvrtcGetErrorString, "nvrtcGetErrorString");
    rtc.status = 0;
    /* NVRTC dlopens libnvrtc-builtins.so.MAJOR.MINOR by name: load it from NVRTC's own folder
       first, so a folder named only in SERVAL_CUDA_LIB_DIR works without LD_LIBRARY_PATH. */
    int major = 0, minor = 0;
    const char *slash = strrchr(rtc.path, '/');
    if (slash && rtc.nvrtcVersion(&major, &minor) == 0) {
        char builtins[sizeof rtc.path + 64];
        snprintf(builtins, sizeof builtins, "%.*s/libnvrtc-builtins.so.%d.%d", (int)(slash - rtc.path), rtc.path,
                 major, minor);
        (void)dlopen(builtins, RTLD_NOW | RTLD_GLOBAL);
    }
}

static void load_cublaslt(void) {
    const char *names[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so", NULL};
    void *h = open_first(names, blt.path, sizeof blt.path);
    if (!h) {
        snprintf(blt.err, sizeof blt.err,
                 "cuBLASLt not available: libcublasLt.so.13/.12 not found (install the CUDA toolkit or set "
                 "SERVAL_CUDA_LIB_DIR)");
        return;
    }
    SYM(blt, h, cublasLtGetVersion, "cublasLtGetVersion");
    SYM(blt, h, cublasLtCreate, "cublasLtCreate");
    SYM(blt, h, cublasLtDestroy, "cublasLtDestroy");
    SYM(blt, h, cublasLtMatmulDescCreate, "cublasLtMatmulDescCreate");
    SYM(blt, h, cublasLtMatmulDescDestroy, "cublasLtMatmulDescDestroy");
    SYM(blt, h, cublasLtMatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute");
    SYM(blt, h, cublasLtMatrixLayoutCreate, "cublasLtMatrixLayoutCreate");
    SYM(blt, h, cublasLtMatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy");
    SYM(blt, h, cublasLtMatmulPreferenceCreate, "cublasLtMatmulPreferenceCreate");
    SYM(blt, h, cublasLtMatmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy");
    SYM(blt, h, cublasLtMatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute");
    SYM(blt, h, cublasLtMatmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic");
    SYM(blt, h, cublasLtMatmul, "cublasLtMatmul");
    blt.status = 0;
}

static pthread_once_t drv_once = PTHREAD_ONCE_INIT, rtc_once = PTHREAD_ONCE_INIT, blt_once = PTHREAD_ONCE_INIT;

static int report(int status, const char *msg, char *err, size_t err_len) {
    if (status != 0 && err && err_len) snprintf(err, err_len, "%s", msg);
    return status != 0;
}

int sv_cuda_load_driver(char *err, size_t err_len) {
    pthread_once(&drv_once, load_driver);
    return report(drv.status, drv.err, err, err_len);
}
int sv_cuda_load_nvrtc(char *err, size_t err_len) {
    pthread_once(&rtc_once, load_nvrtc);
    return report(rtc.status, rtc.err, err, err_len);
}
int sv_cuda_load_cublaslt(char *err, size_t err_len) {
    pthread_once(&blt_once, load_cublaslt);
    return report(blt.status, blt.err, err, err_len);
}
const char *sv_cuda_driver_path(void) { return drv.status == 0 ? drv.path : ""; }
const char *sv_cuda_nvrtc_path(void) { return rtc.status == 0 ? rtc.path : ""; }
const char *sv_cuda_cublaslt_path(void) { return blt.status == 0 ? blt.path : ""; }

// ---------------------------------------------------------------- forwarding

#define FWD(table, name, params, args)                                                                   \
    int sv_##name params {                                                                               \
        if (table.status != 0) return SV_NOT_LOADED;                                                     \
        return table.name args;                                                                          \
    }

FWD(drv, cuInit, (unsigned f), (f))
FWD(drv, cuDriverGetVersion, (int *v), (v))
FWD(drv, cuDeviceGetCount, (int *c), (c))
FWD(drv, cuDeviceGet, (int *d, int o), (d, o))
FWD(drv, cuDeviceGetName, (char *n, int l, int d), (n, l, d))
FWD(drv, cuDeviceGetAttribute, (int *v, int a, int d), (v, a, d))
FWD(drv, cuDeviceTotalMem, (size_t *b, int d), (b, d))
FWD(drv, cuDevicePrimaryCtxRetain, (void **c, int d), (c, d))
FWD(drv, cuDevicePrimaryCtxRelease, (int d), (d))
FWD(drv, cuCtxSetCurrent, (void *c), (c))
FWD(drv, cuCtxSynchronize, (void), ())
FWD(drv, cuMemGetInfo, (size_t *f, size_t *t), (f, t))
FWD(drv, cuMemAlloc, (uint64_t *p, size_t b), (p, b))
FWD(drv, cuMemFree, (uint64_t p), (p))
FWD(drv, cuMemAllocHost, (void **p, size_t b), (p, b))
FWD(drv, cuMemFreeHost, (void *p), (p))
FWD(drv, cuMemcpyHtoDAsync, (uint64_t d, const void *s, size_t b, void *st), (d, s, b, st))
FWD(drv, cuMemcpyDtoHAsync, (void *d, uint64_t s, size_t b, void *st), (d, s, b, st))
FWD(drv, cuMemcpyDtoDAsync, (uint64_t d, uint64_t s, size_t b, void *st), (d, s, b, st))
FWD(drv, cuMemsetD8Async, (uint64_t d, unsigned char v, size_t n, void *st), (d, v, n, st))
FWD(drv, cuMemsetD32Async, (uint64_t d, unsigned v, size_t n, void *st), (d, v, n, st))
FWD(drv, cuStreamCreate, (void **s, unsigned f), (s, f))
FWD(drv, cuStreamDestroy, (void *s), (s))
FWD(drv, cuStreamSynchronize, (void *s), (s))
FWD(drv, cuStreamQuery, (void *s), (s))
FWD(drv, cuEventCreate, (void **e, unsigned f), (e, f))
FWD(drv, cuEventDestroy, (void *e), (e))
FWD(drv, cuEventRecord, (void *e, void *s), (e, s))
FWD(drv, cuEventSynchronize, (void *e), (e))
FWD(drv, cuEventElapsedTime, (float *ms, void *a, void *b), (ms, a, b))
FWD(drv, cuModuleLoadData, (void **m, const void *i), (m, i))
FWD(drv, cuModuleUnload, (void *m), (m))
FWD(drv, cuModuleGetFunction, (void **f, void *m, const char *n), (f, m, n))
FWD(drv, cuFuncSetAttribute, (void *f, int a, int v), (f, a, v))
FWD(drv, cuLaunchKernel,
    (void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned sh, void *st,
     void **p, void **e),
    (f, gx, gy, gz, bx, by, bz, sh, st, p, e))

// cuLaunchKernelEx's config and attribute, laid out as cuda.h declares them (CUlaunchConfig,
// CUlaunchAttribute with its 64-byte value union).
typedef struct {
    unsigned id;
    char pad[4];
    union {
        char bytes[64];
        int i;
    } value;
} sv_launch_attribute;
typedef struct {
    unsigned gx, gy, gz, bx, by, bz, shared_bytes;
    void *stream;
    sv_launch_attribute *attrs;
    unsigned num_attrs;
} sv_launch_config;
enum { SV_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6 };
_Static_assert(sizeof(sv_launch_attribute) == 72, "CUlaunchAttribute is 72 bytes");
_Static_assert(offsetof(sv_launch_config, stream) == 32 && sizeof(sv_launch_config) == 56, "CUlaunchConfig layout");

int sv_has_programmatic_launch(void) { return drv.status == 0 && drv.cuLaunchKernelEx != NULL; }

int sv_cuLaunchKernelProgrammatic(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                                  unsigned shared_bytes, void *stream, void **params) {
    if (drv.status != 0) return SV_NOT_LOADED;
    if (!drv.cuLaunchKernelEx) return drv.cuLaunchKernel(f, gx, gy, gz, bx, by, bz, shared_bytes, stream, params, NULL);
    sv_launch_attribute attr;
    memset(&attr, 0, sizeof attr);
    attr.id = SV_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.i = 1;
    sv_launch_config config = {gx, gy, gz, bx, by, bz, shared_bytes, stream, &attr, 1};
    return drv.cuLaunchKernelEx(&config, f, params, NULL);
}

FWD(drv, cuStreamBeginCapture, (void *s, int m), (s, m))
FWD(drv, cuStreamEndCapture, (void *s, void **g), (s, g))
FWD(drv, cuGraphInstantiate, (void **e, void *g, unsigned long long f), (e, g, f))
FWD(drv, cuGraphLaunch, (void *e, void *s), (e, s))
FWD(drv, cuGraphExecDestroy, (void *e), (e))
FWD(drv, cuGraphDestroy, (void *g), (g))

const char *sv_cuda_error_name(int result) {
    const char *s = NULL;
    if (drv.status != 0 || drv.cuGetErrorName(result, &s) != 0 || !s) return "?";
    return s;
}
const char *sv_cuda_error_string(int result) {
    const char *s = NULL;
    if (drv.status != 0 || drv.cuGetErrorString(result, &s) != 0 || !s) return "?";
    return s;
}

FWD(rtc, nvrtcVersion, (int *a, int *b), (a, b))
int sv_nvrtcCreateProgram(void **prog, const char *src, const char *name) {
    if (rtc.status != 0) return SV_NOT_LOADED;
    return rtc.nvrtcCreateProgram(prog, src, name, 0, NULL, NULL);
}
FWD(rtc, nvrtcCompileProgram, (void *p, int n, const char *const *o), (p, n, o))
FWD(rtc, nvrtcGetProgramLogSize, (void *p, size_t *s), (p, s))
FWD(rtc, nvrtcGetProgramLog, (void *p, char *l), (p, l))
FWD(rtc, nvrtcGetCUBINSize, (void *p, size_t *s), (p, s))
FWD(rtc, nvrtcGetCUBIN, (void *p, char *c), (p, c))
FWD(rtc, nvrtcDestroyProgram, (void **p), (p))
const char *sv_nvrtc_error_string(int result) {
    if (rtc.status != 0) return "?";
    const char *s = rtc.nvrtcGetErrorString(result);
    return s ? s : "?";
}

size_t sv_cublasLtGetVersion(void) { return blt.status == 0 ? blt.cublasLtGetVersion() : 0; }
FWD(blt, cublasLtCreate, (void **h), (h))
FWD(blt, cublasLtDestroy, (void *h), (h))
FWD(blt, cublasLtMatmulDescCreate, (void **d, int c, int s), (d, c, s))
FWD(blt, cublasLtMatmulDescDestroy, (void *d), (d))
FWD(blt, cublasLtMatmulDescSetAttribute, (void *d, int a, const void *b, size_t s), (d, a, b, s))
FWD(blt, cublasLtMatrixLayoutCreate, (void **l, int t, uint64_t r, uint64_t c, int64_t ld), (l, t, r, c, ld))
FWD(blt, cublasLtMatrixLayoutDestroy, (void *l), (l))
FWD(blt, cublasLtMatmulPreferenceCreate, (void **p), (p))
FWD(blt, cublasLtMatmulPreferenceDestroy, (void *p), (p))
FWD(blt, cublasLtMatmulPreferenceSetAttribute, (void *p, int a, const void *b, size_t s), (p, a, b, s))
FWD(blt, cublasLtMatmulAlgoGetHeuristic,
    (void *h, void *desc, void *a, void *b, void *c, void *d, void *p, int n, sv_cublaslt_heuristic *r, int *rn),
    (h, desc, a, b, c, d, p, n, r, rn))
FWD(blt, cublasLtMatmul,
    (void *h, void *desc, const void *alpha, uint64_t a, void *al, uint64_t b, void *bl, const void *beta, uint64_t c,
     void *cl, uint64_t d, void *dl, const void *algo, uint64_t ws, size_t wss, void *st),
    (h, desc, alpha, a, al, b, bl, beta, c, cl, d, dl, algo, ws, wss, st))

const char *sv_cublas_status_name(int status) {
    switch (status) {
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
    case SV_NOT_LOADED: return "cuBLASLt not loaded";
    default: return "CUBLAS_STATUS_UNKNOWN";
    }
}
