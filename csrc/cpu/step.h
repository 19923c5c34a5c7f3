// The autoencoder objective's forward and backward as one call each: the products through a
// BLAS gemm that the caller hands in as a function pointer (torch's own MKL/OpenBLAS, found
// by sslkern/backends/blas.py), the fused passes of kernels.h between them. One call per
// direction instead of a dozen Python round trips is what the small batches need.
#pragma once
#include <cstdint>

#include "penalties.h"
#include "sslkern/kinds.h"

namespace sslkern::cpu {

// The Fortran gemm (sgemm_ / dgemm_): column-major C = alpha op(A) op(B) + beta C, 32-bit
// sizes (LP64). Trailing hidden string lengths are not passed; BLAS libraries ignore them.
template <typename T>
using BlasGemm = void (*)(const char* transa, const char* transb, const int* m, const int* n,
                          const int* k, const T* alpha, const T* a, const int* lda, const T* b,
                          const int* ldb, const T* beta, T* c, const int* ldc);

// The Fortran gemm for bf16 operands (MKL's gemm_bf16bf16f32, OpenBLAS's sbgemm): the
// operands as 16-bit words, fp32 alpha, beta and C, fp32 accumulation.
using HalfGemm = void (*)(const char* transa, const char* transb, const int* m, const int* n,
                          const int* k, const float* alpha, const uint16_t* a, const int* lda,
                          const uint16_t* b, const int* ldb, const float* beta, float* c,
                          const int* ldc);

// Everything both directions need. Matrices are row-major; all but W are contiguous.
template <typename T>
struct AeStep {
  BlasGemm<T> gemm;
  int64_t batch, visible, hidden;  // B, D, H
  const T* x;                      // [B, D] contiguous, the clean input
  const T* w;  int64_t ldw;        // [H, D], tied weights
  const T* b;                      // [H] encoder bias
  const T* c;                      // [D] decoder bias
  int corruption; float level; uint64_t seed; uint32_t offset;
  int encoder, decoder, loss;
  double contractive;              // lambda; 0 skips the penalty
  T* ax;     // [2B, D]: dL/da (times 1/B) in rows 0..B-1, x~ in rows B..2B-1
  T* h;      // [B, H]
  T* r;      // [H] squared row norms of W (contractive only)
  T* s2col;  // [H] column sums of f'(z)^2 (contractive only)
  T* dc;     // [D] dL/dc
  // The sparsity and higher-order terms: only ae_value_and_grad and ae_sgd_step take them
  // (their workspace holds the buffers below; the split ae_forward / ae_backward do not).
  ExtraPenalties extra{};
  T* h_noisy = nullptr;  // [nB, H] f at x~ + eps_k, then dP/dz' (rows 2B.. of hz)
  T* dz_add = nullptr;   // [B, H] the penalties' dP/dz at x~
  T* qcol = nullptr;     // [H] the higher-order term's row scale of W
  // The products' precision (kinds.h Precision; docs/design.md "Mixed precision"). A rounded
  // one (float only, no higher-order term) rounds every operand first (round_operand), the
  // gradient operands dA and dZ times grad_scale, and multiplies through half_gemm where it
  // is given (bf16 words, fp32 output), else through gemm (the rounded values in fp32).
  int precision = kDefault;
  HalfGemm half_gemm = nullptr;
  float grad_scale = 1.0f;
  bool reuse_rounded = false;  // one-call routes: W, x~ and h rounded once, in the forward
};

// Returns L + lambda P (+ the extra penalties) and fills ax, h, r, s2col, dc. With a
// higher-order term ax has (2 + n) B rows: x~ + eps_k follow x~.
template <typename T>
double ae_forward(const AeStep<T>& s);

// dW [H, D] and db [H], times the incoming gradient g, from what the forward stored;
// hz [2B, H] is scratch (g h, then dZ: one product over K = 2B gives both dW terms).
template <typename T>
void ae_backward(const AeStep<T>& s, T g, T* hz, T* dw, T* db);

// Both at once for an incoming gradient of 1 (every gradient is linear in it, so the
// caller scales later if it is not 1): returns the loss, writes dw, db and s.dc. ax, h,
// r and s2col of `s` are ignored: they live in a per-thread workspace reused across calls,
// so a training step allocates nothing here and no Python runs between the two halves.
template <typename T>
double ae_value_and_grad(AeStep<T> s, T* dw, T* db);

// One plain SGD step in place: W -= lr dW, b -= lr db, c -= lr dc for the gradients above
// (s.w, s.b, s.c are ignored: the writable w, b, c are). Returns the loss before the update.
// dW is never stored: the weight-gradient product accumulates into W (alpha = -lr, beta = 1)
// after the rows of W are scaled for the contractive term. s.dc is ignored too (workspace).
template <typename T>
double ae_sgd_step(AeStep<T> s, T lr, T* w, T* b, T* c);

}  // namespace sslkern::cpu
