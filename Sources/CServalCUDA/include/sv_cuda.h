// The CUDA entry points Serval calls, loaded at run time with dlopen/dlsym so the
// binary has no link-time CUDA dependency. Three libraries load independently:
// the driver (libcuda.so.1), NVRTC and cuBLASLt. Each loader returns 0 or fills
// `err` with one line naming what is missing. After a successful load the
// forwarding functions below call straight through; calling one of a library
// that did not load returns SV_NOT_LOADED.
//
// Only plain C types cross this boundary: handles are `void *`, device pointers
// `uint64_t`, and every call returns the library's own status code (CUresult,
// nvrtcResult, cublasStatus_t) for the Swift layer to name.
#ifndef SV_CUDA_H
#define SV_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "sv_nccl.h"  // NCCL, loaded the same way (sv_nccl.c)

#ifdef __cplusplus
extern "C" {
#endif

#define SV_NOT_LOADED (-1000)

// Loaders: 0 on success (also when already loaded), else nonzero with `err` set.
int sv_cuda_load_driver(char *err, size_t err_len);
int sv_cuda_load_nvrtc(char *err, size_t err_len);
int sv_cuda_load_cublaslt(char *err, size_t err_len);
/// The file each library was loaded from ("" when not loaded).
const char *sv_cuda_driver_path(void);
const char *sv_cuda_nvrtc_path(void);
const char *sv_cuda_cublaslt_path(void);

// ---- driver ----
int sv_cuInit(unsigned flags);
int sv_cuDriverGetVersion(int *version);
int sv_cuDeviceGetCount(int *count);
int sv_cuDeviceGet(int *device, int ordinal);
int sv_cuDeviceGetName(char *name, int len, int device);
int sv_cuDeviceGetAttribute(int *value, int attribute, int device);
int sv_cuDeviceTotalMem(size_t *bytes, int device);
int sv_cuDevicePrimaryCtxRetain(void **ctx, int device);
int sv_cuDevicePrimaryCtxRelease(int device);
int sv_cuCtxSetCurrent(void *ctx);
int sv_cuCtxSynchronize(void);
int sv_cuMemGetInfo(size_t *free_bytes, size_t *total_bytes);
int sv_cuMemAlloc(uint64_t *dptr, size_t bytes);
int sv_cuMemFree(uint64_t dptr);
int sv_cuMemAllocHost(void **ptr, size_t bytes);
int sv_cuMemFreeHost(void *ptr);
int sv_cuMemcpyHtoDAsync(uint64_t dst, const void *src, size_t bytes, void *stream);
int sv_cuMemcpyDtoHAsync(void *dst, uint64_t src, size_t bytes, void *stream);
int sv_cuMemcpyDtoDAsync(uint64_t dst, uint64_t src, size_t bytes, void *stream);
int sv_cuMemsetD8Async(uint64_t dst, unsigned char value, size_t count, void *stream);
int sv_cuMemsetD32Async(uint64_t dst, unsigned value, size_t count, void *stream);
int sv_cuStreamCreate(void **stream, unsigned flags);
int sv_cuStreamDestroy(void *stream);
int sv_cuStreamSynchronize(void *stream);
/// 0 when every operation queued on `stream` is complete, 600 (CUDA_ERROR_NOT_READY) while some are not.
int sv_cuStreamQuery(void *stream);
int sv_cuEventCreate(void **event, unsigned flags);
int sv_cuEventDestroy(void *event);
int sv_cuEventRecord(void *event, void *stream);
int sv_cuEventSynchronize(void *event);
int sv_cuEventElapsedTime(float *ms, void *start, void *end);
int sv_cuModuleLoadData(void **module, const void *image);
int sv_cuModuleUnload(void *module);
int sv_cuModuleGetFunction(void **function, void *module, const char *name);
int sv_cuFuncSetAttribute(void *function, int attribute, int value);
int sv_cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                      unsigned shared_bytes, void *stream, void **params, void **extra);
/// Whether the driver has cuLaunchKernelEx (programmatic dependent launch, Hopper and later).
int sv_has_programmatic_launch(void);
/// cuLaunchKernel with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION set: the kernel may be
/// scheduled before the previous kernel in the stream ends and must wait for it itself
/// (griddepcontrol.wait). A plain launch where the driver lacks cuLaunchKernelEx.
int sv_cuLaunchKernelProgrammatic(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                                  unsigned shared_bytes, void *stream, void **params);
// CUDA graphs: capture a stream's work once, replay it with one launch.
int sv_cuStreamBeginCapture(void *stream, int mode);
int sv_cuStreamEndCapture(void *stream, void **graph);
int sv_cuGraphInstantiate(void **exec, void *graph, unsigned long long flags);
int sv_cuGraphLaunch(void *exec, void *stream);
int sv_cuGraphExecDestroy(void *exec);
int sv_cuGraphDestroy(void *graph);
/// CUresult's name ("CUDA_ERROR_OUT_OF_MEMORY") and description; "?" when unknown.
const char *sv_cuda_error_name(int result);
const char *sv_cuda_error_string(int result);

// ---- NVRTC ----
int sv_nvrtcVersion(int *major, int *minor);
int sv_nvrtcCreateProgram(void **prog, const char *src, const char *name);
int sv_nvrtcCompileProgram(void *prog, int num_options, const char *const *options);
int sv_nvrtcGetProgramLogSize(void *prog, size_t *size);
int sv_nvrtcGetProgramLog(void *prog, char *log);
int sv_nvrtcGetCUBINSize(void *prog, size_t *size);
int sv_nvrtcGetCUBIN(void *prog, char *cubin);
int sv_nvrtcDestroyProgram(void **prog);
const char *sv_nvrtc_error_string(int result);

// ---- cuBLASLt ----
// Values of the enums we pass (from cublasLt.h / library_types.h).
enum {
    SV_CUDA_R_32F = 0,
    SV_CUDA_R_16F = 2,
    SV_CUDA_R_16BF = 14,
    SV_CUDA_R_8F_E4M3 = 28,
    SV_CUBLAS_COMPUTE_32F = 68,
    SV_CUBLAS_OP_N = 0,
    SV_CUBLAS_OP_T = 1,
    SV_CUBLASLT_MATMUL_DESC_TRANSA = 3,
    SV_CUBLASLT_MATMUL_DESC_TRANSB = 4,
    SV_CUBLASLT_MATMUL_DESC_A_SCALE_POINTER = 17,
    SV_CUBLASLT_MATMUL_DESC_B_SCALE_POINTER = 18,
    SV_CUBLASLT_MATMUL_DESC_A_SCALE_MODE = 31,
    SV_CUBLASLT_MATMUL_DESC_B_SCALE_MODE = 32,
    // cublasLtMatmulMatrixScale_t: one f32 per 128 values along k (activations), one per 128x128 block (weights).
    SV_CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F = 4,
    SV_CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F = 5,
    SV_CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
};

/// cublasLtMatmulHeuristicResult_t: an opaque 64-byte algorithm plus its needs.
typedef struct {
    uint64_t algo[8];
    size_t workspace_size;
    int state;
    float waves_count;
    int reserved[4];
} sv_cublaslt_heuristic;

size_t sv_cublasLtGetVersion(void);
int sv_cublasLtCreate(void **handle);
int sv_cublasLtDestroy(void *handle);
int sv_cublasLtMatmulDescCreate(void **desc, int compute_type, int scale_type);
int sv_cublasLtMatmulDescDestroy(void *desc);
int sv_cublasLtMatmulDescSetAttribute(void *desc, int attribute, const void *buf, size_t size);
int sv_cublasLtMatrixLayoutCreate(void **layout, int type, uint64_t rows, uint64_t cols, int64_t ld);
int sv_cublasLtMatrixLayoutDestroy(void *layout);
int sv_cublasLtMatmulPreferenceCreate(void **pref);
int sv_cublasLtMatmulPreferenceDestroy(void *pref);
int sv_cublasLtMatmulPreferenceSetAttribute(void *pref, int attribute, const void *buf, size_t size);
int sv_cublasLtMatmulAlgoGetHeuristic(void *handle, void *desc, void *a, void *b, void *c, void *d, void *pref,
                                      int requested, sv_cublaslt_heuristic *results, int *returned);
int sv_cublasLtMatmul(void *handle, void *desc, const void *alpha, uint64_t a, void *a_layout, uint64_t b,
                      void *b_layout, const void *beta, uint64_t c, void *c_layout, uint64_t d, void *d_layout,
                      const void *algo, uint64_t workspace, size_t workspace_size, void *stream);
const char *sv_cublas_status_name(int status);

#ifdef __cplusplus
}
#endif
#endif
