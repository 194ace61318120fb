/*
 * pgi_emu_cublas.cpp — the CUDA emulator's cuBLAS: handles, and SGEMM /
 * GemmEx on column-major matrices as cuBLAS documents them,
 *   C = alpha * op(A) * op(B) + beta * C,  op(A) m x k, op(B) k x n, C m x n,
 * element (i, j) of a matrix X with leading dimension ldx at X[i + j * ldx].
 * Products accumulate in float (CUBLAS_COMPUTE_32F); A and B may be F32, F16
 * or BF16 (the same type), C is F32.  Anything else is refused with
 * CUBLAS_STATUS_NOT_SUPPORTED.  The work is queued on the handle's stream
 * like a kernel (recorded under stream capture); operands outside device
 * allocations fault like an illegal address.
 */
#include <cublas_v2.h>

#include <stdio.h>
#include <stdlib.h>

#include <set>
#include <vector>

namespace pgi_emu {
cudaError_t submit_work(cudaStream_t stream, std::function<void()> w);
bool device_range(const void *p, size_t n);
void host_fault(cudaError_t code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
}  // namespace pgi_emu

struct cublasContext {
    cudaStream_t stream;
    void *workspace;
    size_t workspace_bytes;
    cublasMath_t math;
};

static std::set<cublasHandle_t> g_handles;

static bool quiet()
{
    const char *v = getenv("PGI_EMU_QUIET");

    return v != NULL && *v != '0' && *v != '\0';
}

cublasStatus_t cublasCreate(cublasHandle_t *handle)
{
    if (handle == NULL)
        return CUBLAS_STATUS_INVALID_VALUE;
    *handle = new cublasContext();
    (*handle)->stream = NULL;
    (*handle)->workspace = NULL;
    (*handle)->workspace_bytes = 0;
    (*handle)->math = CUBLAS_DEFAULT_MATH;
    g_handles.insert(*handle);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle)
{
    if (g_handles.erase(handle) == 0)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream)
{
    if (g_handles.count(handle) == 0)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void *workspace, size_t bytes)
{
    if (g_handles.count(handle) == 0)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (bytes > 0 && !pgi_emu::device_range(workspace, bytes))
        return CUBLAS_STATUS_INVALID_VALUE;
    handle->workspace = workspace;
    handle->workspace_bytes = bytes;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode)
{
    if (g_handles.count(handle) == 0)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusName(cublasStatus_t status)
{
    switch (status)
    {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
        case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

const char *cublasGetStatusString(cublasStatus_t status)
{
    switch (status)
    {
        case CUBLAS_STATUS_SUCCESS: return "success";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
        case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
        default: return cublasGetStatusName(status);
    }
}

static size_t type_bytes(cudaDataType t)
{
    switch (t)
    {
        case CUDA_R_32F: return 4;
        case CUDA_R_16F: case CUDA_R_16BF: return 2;
        default: return 0;
    }
}

static float load_element(const void *base, cudaDataType t, size_t i)
{
    switch (t)
    {
        case CUDA_R_16F: return __half2float(((const __half *) base)[i]);
        case CUDA_R_16BF: return __bfloat162float(((const __nv_bfloat16 *) base)[i]);
        default: return ((const float *) base)[i];
    }
}

/* op(X) of a column-major matrix as rows of float: out[r * depth + l] =
 * op(X)(r, l) for r < n_out, l < depth (A: r = i; B transposed: r = j). */
static void gather_rows(std::vector<float> &out, const void *x, cudaDataType t, int ld,
                        bool row_is_column, int n_out, int depth)
{
    out.resize((size_t) n_out * (size_t) depth);
    for (int r = 0; r < n_out; r++)
        for (int l = 0; l < depth; l++)
        {
            size_t at = row_is_column ? (size_t) r * (size_t) ld + (size_t) l
                                      : (size_t) l * (size_t) ld + (size_t) r;

            out[(size_t) r * depth + l] = load_element(x, t, at);
        }
}

static cublasStatus_t gemm(const char *name, cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, float alpha,
                           const void *A, cudaDataType at, int lda, const void *B,
                           cudaDataType bt, int ldb, float beta, float *C, int ldc)
{
    if (g_handles.count(handle) == 0)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((transa != CUBLAS_OP_N && transa != CUBLAS_OP_T) ||
        (transb != CUBLAS_OP_N && transb != CUBLAS_OP_T) || m < 0 || n < 0 || k < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    int a_rows = transa == CUBLAS_OP_N ? m : k, a_cols = transa == CUBLAS_OP_N ? k : m;
    int b_rows = transb == CUBLAS_OP_N ? k : n, b_cols = transb == CUBLAS_OP_N ? n : k;

    if (lda < (a_rows > 1 ? a_rows : 1) || ldb < (b_rows > 1 ? b_rows : 1) || ldc < (m > 1 ? m : 1))
    {
        if (!quiet())
            fprintf(stderr, "pgi_emu: %s: leading dimensions lda %d ldb %d ldc %d too small for m %d n %d k %d\n",
                name, lda, ldb, ldc, m, n, k);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m == 0 || n == 0)
        return CUBLAS_STATUS_SUCCESS;

    size_t a_bytes = k == 0 ? 0 : ((size_t) (a_cols - 1) * lda + a_rows) * type_bytes(at);
    size_t b_bytes = k == 0 ? 0 : ((size_t) (b_cols - 1) * ldb + b_rows) * type_bytes(bt);
    size_t c_bytes = ((size_t) (n - 1) * ldc + m) * sizeof(float);
    cudaError_t rc = pgi_emu::submit_work(handle->stream, [=] {
        if ((a_bytes > 0 && !pgi_emu::device_range(A, a_bytes)) ||
            (b_bytes > 0 && !pgi_emu::device_range(B, b_bytes)) || !pgi_emu::device_range(C, c_bytes))
        {
            pgi_emu::host_fault(cudaErrorIllegalAddress,
                                "%s m %d n %d k %d: an operand (A %p, %zu bytes; B %p, %zu bytes; "
                                "C %p, %zu bytes) is not inside one device allocation",
                                name, m, n, k, A, a_bytes, B, b_bytes, (void *) C, c_bytes);
            return;
        }
        std::vector<float> a, b;

        /* rows of op(A) (i, l) and columns of op(B) (l, j), both contiguous in l */
        gather_rows(a, A, at, lda, transa == CUBLAS_OP_T, m, k);
        gather_rows(b, B, bt, ldb, transb == CUBLAS_OP_N, n, k);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
            {
                const float *ar = a.data() + (size_t) i * k, *bc = b.data() + (size_t) j * k;
                float acc = 0.0f;
                float *c = C + (size_t) j * ldc + i;

                for (int l = 0; l < k; l++)
                    acc += ar[l] * bc[l];
                /* beta == 0: C is not read (it may hold garbage) */
                *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
            }
    });
    return rc == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float *alpha,
                           const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc)
{
    if (alpha == NULL || beta == NULL)
        return CUBLAS_STATUS_INVALID_VALUE;
    return gemm("cublasSgemm", handle, transa, transb, m, n, k, *alpha, A, CUDA_R_32F, lda, B,
                CUDA_R_32F, ldb, *beta, C, ldc);
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void *alpha,
                            const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo)
{
    (void) algo;
    if (alpha == NULL || beta == NULL)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (computeType != CUBLAS_COMPUTE_32F || Ctype != CUDA_R_32F || Atype != Btype ||
        type_bytes(Atype) == 0)
    {
        if (!quiet())
            fprintf(stderr, "pgi_emu: cublasGemmEx: A type %d, B type %d, C type %d, compute %d: not "
                "emulated\n", (int) Atype, (int) Btype, (int) Ctype, (int) computeType);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    return gemm("cublasGemmEx", handle, transa, transb, m, n, k, *(const float *) alpha, A, Atype,
                lda, B, Btype, ldb, *(const float *) beta, (float *) C, ldc);
}
