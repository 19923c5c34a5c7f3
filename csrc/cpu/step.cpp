#include "step.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "penalties.h"
#include "sslkern/philox.h"

namespace sslkern::cpu {
namespace {

// Row-major C[M, N] = alpha op(A) op(B) + beta C through the column-major gemm: the same
// memory read column-major is the transpose, so C^T = op(B)^T op(A)^T. E is the operands'
// element (T, or the 16-bit words of a half gemm).
template <typename Gemm, typename E, typename T>
void gemm_rows(Gemm gemm, int64_t m, int64_t n, int64_t k, const E* a, int64_t lda, bool trans_a,
               const E* b, int64_t ldb, bool trans_b, T* c, int64_t ldc, T alpha = T(1),
               T beta = T(0)) {
  const char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
  const int mm = int(n), nn = int(m), kk = int(k), la = int(ldb), lb = int(lda), lc = int(ldc);
  gemm(&ta, &tb, &mm, &nn, &kk, &alpha, b, &la, a, &lb, &beta, c, &lc);
}

// --- the products at the step's precision ---------------------------------------------------
// At the default precision a product reads the arrays themselves. A rounded precision reads
// rounded copies in a per-thread scratch: W [H, D], [S dA ; x~] [2B, D] and [g h ; S dZ]
// [2B, H] (S = grad_scale), each rounded once per step where the one-call routes allow.

struct Operand {
  const void* data;
  int64_t ld;
};

template <typename T>
bool rounds(const AeStep<T>& s) { return s.precision != kDefault; }

template <typename T>
size_t operand_bytes(const AeStep<T>& s) { return s.half_gemm ? sizeof(uint16_t) : sizeof(T); }

struct RoundedOperands {
  char* w;
  char* ax;
  char* hz;
};

template <typename T>
RoundedOperands rounded_operands(const AeStep<T>& s) {
  const int64_t B = s.batch, D = s.visible, H = s.hidden;
  thread_local std::vector<T> scratch;  // sized in T: packed words take half of it
  const size_t need = size_t(H * D + 2 * B * D + 2 * B * H);
  if (scratch.size() < need) scratch.resize(need);
  char* base = reinterpret_cast<char*>(scratch.data());
  const size_t elem = operand_bytes(s);
  return {base, base + size_t(H * D) * elem, base + size_t(H * D + 2 * B * D) * elem};
}

// Rows [r0, r1) of src (leading dimension ld), times scale, rounded into the same rows of the
// contiguous operand `dst` of `cols` columns.
template <typename T>
void round_rows(const AeStep<T>& s, const T* src, int64_t ld, int64_t r0, int64_t r1, int64_t cols,
                float scale, char* dst) {
  if constexpr (std::is_same_v<T, float>) {
    round_operand(src + r0 * ld, ld, r1 - r0, cols, scale, s.precision, s.half_gemm != nullptr,
                  dst + size_t(r0 * cols) * operand_bytes(s));
  } else {  // module.cpp refuses this before any work
    throw std::invalid_argument("precision: rounded products need float32 parameters");
  }
}

// C = alpha op(A) op(B) + beta C for operands in the step's format.
template <typename T>
void product(const AeStep<T>& s, int64_t m, int64_t n, int64_t k, Operand a, bool trans_a, Operand b,
             bool trans_b, T* c, int64_t ldc, T alpha = T(1), T beta = T(0)) {
  if constexpr (std::is_same_v<T, float>) {
    if (rounds(s) && s.half_gemm) {
      gemm_rows(s.half_gemm, m, n, k, static_cast<const uint16_t*>(a.data), a.ld, trans_a,
                static_cast<const uint16_t*>(b.data), b.ld, trans_b, c, ldc, alpha, beta);
      return;
    }
  }
  gemm_rows(s.gemm, m, n, k, static_cast<const T*>(a.data), a.ld, trans_a, static_cast<const T*>(b.data),
            b.ld, trans_b, c, ldc, alpha, beta);
}

// W as the products take it: rounded into the scratch unless the forward already did.
template <typename T>
Operand weights(const AeStep<T>& s, bool fresh) {
  if (!rounds(s)) return {s.w, s.ldw};
  const RoundedOperands r = rounded_operands(s);
  if (fresh) round_rows(s, s.w, s.ldw, 0, s.hidden, s.visible, 1.0f, r.w);
  return {r.w, s.visible};
}

// The forward's saved tensors, hz and `extra` more elements, from a per-thread workspace
// that grows to the largest step seen on this thread: a training step allocates nothing.
template <typename T>
T* bind_workspace(AeStep<T>& s, T** hz, size_t extra) {
  const int64_t B = s.batch, D = s.visible, H = s.hidden, rows = 2 + s.extra.noisy_copies();
  const int64_t penalty = s.extra.on() ? B * H + H : 0;  // dz_add, qcol
  thread_local std::vector<T> workspace;
  const size_t need = size_t(rows * B * D + (1 + rows) * B * H + 2 * H + penalty) + extra;
  if (workspace.size() < need) workspace.resize(need);
  T* next = workspace.data();
  auto take = [&next](int64_t count) { T* p = next; next += count; return p; };
  s.ax = take(rows * B * D), s.h = take(B * H), s.r = take(H), s.s2col = take(H);
  *hz = take(rows * B * H);
  if (s.extra.on()) s.h_noisy = *hz + 2 * B * H, s.dz_add = take(B * H), s.qcol = take(H);
  return next;
}

// The extra penalties' value; fills dz_add, and for a higher-order term the perturbed inputs
// (ax rows 2B..), f at them and then dP/dz' (h_noisy) and qcol.
template <typename T>
double extra_penalties(const AeStep<T>& s) {
  const int64_t B = s.batch, D = s.visible, H = s.hidden, n = s.extra.noisy_copies();
  double value = 0.0;
  if (s.extra.sparsity != 0.0) value += sparsity_terms<T>(s.h, B, H, s.encoder, s.extra, s.dz_add);
  else std::fill(s.dz_add, s.dz_add + B * H, T(0));
  if (n == 0) return value;
  const T* x_tilde = s.ax + B * D;
  for (int64_t k = 0; k < n; ++k) {  // sample k draws counters offset + (1 + k) B D + i
    const auto first = uint32_t((uint64_t(s.offset) + uint64_t(1 + k) * uint64_t(B * D)) & 0xFFFFFFFFull);
    corrupt<T>(x_tilde, s.ax + (2 + k) * B * D, B * D, kGaussian, s.extra.sigma, s.seed, first);
  }
  gemm_rows(s.gemm, n * B, H, D, s.ax + 2 * B * D, D, false, s.w, s.ldw, true, s.h_noisy, H);
  encoder_epilogue<T>(s.h_noisy, H, n * B, H, s.b, s.encoder, nullptr, nullptr);
  return value + higher_order_terms<T>(s.h, s.h_noisy, B, H, s.encoder, s.r, s.extra, s.dz_add, s.qcol);
}

// The row scale of W in the weight gradient: coef s2col (contractive) + qcol (higher order),
// into qcol; or s2col itself when there is no higher-order term. Null when neither.
template <typename T>
const T* row_scale(const AeStep<T>& s, T coef) {
  const bool contractive = s.contractive != 0.0;
  if (s.extra.noisy_copies() == 0) return contractive ? s.s2col : nullptr;
  if (contractive)
    for (int64_t j = 0; j < s.hidden; ++j) s.qcol[j] += coef * s.s2col[j];
  return s.qcol;
}

// hz = [g h ; dZ] (the left operand of the weight-gradient product) and db, times g.
template <typename T>
void hidden_grads(const AeStep<T>& s, T g, T coef, T* hz, T* db) {
  const int64_t B = s.batch, D = s.visible, H = s.hidden;
  T* d_z = hz + B * H;
  Operand d_a{s.ax, D};
  if (rounds(s)) {  // S dA, rounded into the scratch's [S dA ; x~]
    const RoundedOperands r = rounded_operands(s);
    round_rows(s, s.ax, D, 0, B, D, s.grad_scale, r.ax);
    d_a = {r.ax, D};
  }
  product(s, B, H, D, d_a, false, weights(s, !s.reuse_rounded), true, d_z, H,
          T(1) / T(s.grad_scale));  // dA W^T
  dz_epilogue<T>(d_z, H, s.h, H, B, H, s.encoder, s.contractive != 0.0 ? s.r : nullptr, coef, g,
                 d_z, H, hz, H, db);
  // The extra penalties exist only in the one-call routes, where g = 1.
  if (s.extra.on()) add_penalty_grads<T>(d_z, s.dz_add, B, H, s.h_noisy, s.extra.noisy_copies() * B, db);
}

// out = alpha [g h; dZ; dZ'_k]^T [dA; x~; x~ + eps_k] + beta out: every weight-gradient
// product in one call (K = (2 + n) B).
template <typename T>
void weight_grad_product(const AeStep<T>& s, const T* hz, T* out, int64_t ldout, T alpha, T beta) {
  const int64_t B = s.batch, D = s.visible, H = s.hidden, rows = (2 + s.extra.noisy_copies()) * B;
  Operand left{hz, H}, right{s.ax, D};
  if (rounds(s)) {  // S dA is rounded already (hidden_grads)
    const RoundedOperands r = rounded_operands(s);
    if (!s.reuse_rounded) {
      round_rows(s, s.ax, D, B, 2 * B, D, 1.0f, r.ax);  // x~
      round_rows(s, hz, H, 0, B, H, 1.0f, r.hz);        // g h
    }
    round_rows(s, hz, H, B, 2 * B, H, s.grad_scale, r.hz);  // S dZ
    left = {r.hz, H}, right = {r.ax, D};
  }
  product(s, H, D, rows, left, true, right, false, out, ldout, alpha / T(s.grad_scale), beta);
}

template <typename T>
T penalty_coef(const AeStep<T>& s) {
  return T(2.0 * s.contractive / double(s.batch));
}

}  // namespace

template <typename T>
double ae_forward(const AeStep<T>& s) {
  const int64_t B = s.batch, D = s.visible, H = s.hidden;
  const bool contractive = s.contractive != 0.0;
  T* d_a = s.ax;
  T* x_tilde = s.ax + B * D;
  if (s.corruption == kNone) std::memcpy(x_tilde, s.x, B * D * sizeof(T));
  else corrupt<T>(s.x, x_tilde, B * D, s.corruption, s.level, s.seed, s.offset);
  if (contractive || s.extra.higher_order != 0.0) row_sq_norms<T>(s.w, s.ldw, H, D, s.r);
  const Operand w = weights(s, true);
  Operand x_op{x_tilde, D}, h_op{s.h, H};
  const RoundedOperands r = rounds(s) ? rounded_operands(s) : RoundedOperands{};
  if (rounds(s)) {
    round_rows(s, s.ax, D, B, 2 * B, D, 1.0f, r.ax);
    x_op = {r.ax + size_t(B * D) * operand_bytes(s), D};
  }
  product(s, B, H, D, x_op, false, w, true, s.h, H);  // x~ W^T
  const double penalty = encoder_epilogue<T>(s.h, H, B, H, s.b, s.encoder,
                                             contractive ? s.r : nullptr,
                                             contractive ? s.s2col : nullptr);
  const double extra = s.extra.on() ? extra_penalties<T>(s) : 0.0;
  if (rounds(s)) {  // h: the decoder's operand, and (g = 1) the weight gradient's
    round_rows(s, s.h, H, 0, B, H, 1.0f, r.hz);
    h_op = {r.hz, H};
  }
  product(s, B, D, H, h_op, false, w, false, d_a, D);  // h W
  const double inv_batch = 1.0 / double(B);
  const double recon = loss_epilogue<T>(d_a, D, s.x, D, B, D, s.c, s.loss, s.decoder,
                                        T(inv_batch), s.dc);
  return recon * inv_batch + (contractive ? s.contractive * inv_batch * penalty : 0.0) + extra;
}

template <typename T>
void ae_backward(const AeStep<T>& s, T g, T* hz, T* dw, T* db) {
  const int64_t D = s.visible, H = s.hidden;
  const T coef = penalty_coef(s);
  hidden_grads<T>(s, g, coef, hz, db);
  weight_grad_product<T>(s, hz, dw, D, T(1), T(0));
  if (s.extra.noisy_copies() != 0) row_scale_add<T>(dw, D, s.w, s.ldw, H, D, row_scale(s, coef), g);
  else if (s.contractive != 0.0) row_scale_add<T>(dw, D, s.w, s.ldw, H, D, s.s2col, coef * g);
}

template <typename T>
double ae_value_and_grad(AeStep<T> s, T* dw, T* db) {
  T* hz;
  bind_workspace<T>(s, &hz, 0);
  const double loss = ae_forward<T>(s);
  s.reuse_rounded = true;  // the backward follows on this thread, W unchanged
  ae_backward<T>(s, T(1), hz, dw, db);
  return loss;
}

template <typename T>
double ae_sgd_step(AeStep<T> s, T lr, T* w, T* b, T* c) {
  const int64_t D = s.visible, H = s.hidden;
  s.w = w, s.b = b, s.c = c;
  T* hz;
  T* db = bind_workspace<T>(s, &hz, size_t(H + D));
  s.dc = db + H;
  const double loss = ae_forward<T>(s);
  s.reuse_rounded = true;  // the backward follows on this thread, W unchanged until the update
  const T coef = penalty_coef(s);
  hidden_grads<T>(s, T(1), coef, hz, db);  // the last use of W before it changes
  // W - lr (G + coef s2col_j W_j) = W (1 - lr coef s2col_j) - lr G: scale the rows in place,
  // then accumulate the product into W (beta = 1): dW is never stored.
  if (s.extra.noisy_copies() != 0) row_scale_add<T>(w, s.ldw, w, s.ldw, H, D, row_scale(s, coef), -lr);
  else if (s.contractive != 0.0) row_scale_add<T>(w, s.ldw, w, s.ldw, H, D, s.s2col, -lr * coef);
  weight_grad_product<T>(s, hz, w, s.ldw, -lr, T(1));
  for (int64_t j = 0; j < H; ++j) b[j] -= lr * db[j];
  for (int64_t k = 0; k < D; ++k) c[k] -= lr * s.dc[k];
  return loss;
}

template double ae_forward<float>(const AeStep<float>&);
template double ae_forward<double>(const AeStep<double>&);
template void ae_backward<float>(const AeStep<float>&, float, float*, float*, float*);
template void ae_backward<double>(const AeStep<double>&, double, double*, double*, double*);
template double ae_value_and_grad<float>(AeStep<float>, float*, float*);
template double ae_value_and_grad<double>(AeStep<double>, double*, double*);
template double ae_sgd_step<float>(AeStep<float>, float, float*, float*, float*);
template double ae_sgd_step<double>(AeStep<double>, double, double*, double*, double*);

}  // namespace sslkern::cpu
