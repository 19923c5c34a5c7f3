// Fused CPU passes that run between torch's matrix products (docs/kernels.md).
// Matrices are row-major with a leading dimension (elements between rows), so views of
// rows inside larger buffers work without copies. Column sums are deterministic: fixed
// row blocks, reduced in a fixed order, independent of the thread count.
#pragma once
#include <cstdint>

namespace sslkern::cpu {

// Which copy of the row kernels runs: the best the CPU has, unless lowered by set_cpu_isa
// (not thread-safe against running kernels; tests and benchmarks use it).
enum Isa : int { kIsaBase = 0, kIsaAvx2 = 1, kIsaAvx512 = 2 };
int cpu_isa();
bool set_cpu_isa(int isa);  // false (and no change) when the CPU lacks it

void philox_fill(float* out, int64_t n, uint64_t seed, uint32_t offset, bool normal);

template <typename T>
void corrupt(const T* x, T* out, int64_t n, int kind, float level, uint64_t seed, uint32_t offset);

// out = g where the corruption let x through, else 0 (the derivative of corrupt in x).
template <typename T>
void corrupt_grad(const T* g, T* out, int64_t n, int kind, float level, uint64_t seed, uint32_t offset);

// z <- f(z + b) in place. With r (squared row norms of W, [H]) also returns
// sum_ij s_ij^2 r_j and writes s2col[j] = sum_i s_ij^2, where s = f'(z).
template <typename T>
double encoder_epilogue(T* z, int64_t ldz, int64_t rows, int64_t cols, const T* b, int act,
                        const T* r, T* s2col);

// a <- dL/da * scale in place, from a + c and the clean x; dc[k] = sum_i of the new a.
// Returns the summed loss (unscaled).
template <typename T>
double loss_epilogue(T* a, int64_t lda, const T* x, int64_t ldx, int64_t rows, int64_t cols,
                     const T* c, int loss, int dec_act, T scale, T* dc);

// dz = g * (dh * f'(z) + coef * f'(z) f''(z) r), from h = f(z); dh may be null (0).
// Optionally h_copy = g * h (the first half of the weight-gradient operand) and
// db[j] = sum_i dz_ij.
template <typename T>
void dz_epilogue(const T* dh, int64_t lddh, const T* h, int64_t ldh, int64_t rows, int64_t cols,
                 int act, const T* r, T coef, T g, T* dz, int64_t lddz, T* h_copy,
                 int64_t ldcopy, T* db);

template <typename T>
void row_sq_norms(const T* w, int64_t ldw, int64_t rows, int64_t cols, T* r);

// dw_j += alpha * scale_j * w_j for every row j.
template <typename T>
void row_scale_add(T* dw, int64_t lddw, const T* w, int64_t ldw, int64_t rows, int64_t cols,
                   const T* scale, T alpha);

// A product operand at a precision (kinds.h Precision): dst [rows, cols], contiguous, =
// scale * src rounded to bf16 or fp16, to nearest (ties to even) as a GPU rounds (kDefault:
// not rounded). scale is a power of two (fp16's gradient scale), so multiplying by it is
// exact. `packed` writes the bf16 words a half gemm reads (uint16_t); otherwise dst is fp32
// holding the rounded values, which an fp32 gemm multiplies exactly (fp32 sums). Only bf16
// packs.
void round_operand(const float* src, int64_t ld, int64_t rows, int64_t cols, float scale,
                   int precision, bool packed, void* dst);

}  // namespace sslkern::cpu
