#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "sslkern/activations.h"

// Speed (benchmarks/RESULTS.md): the passes are memory-light and transcendental-heavy, so
// what matters is that the inner loops vectorise. Three things make them:
//  - the activation / loss switch is hoisted out of the loops (one loop per case);
//  - float exp/log are branch-free polynomials (libm's expf does not vectorise without
//    -ffast-math, which we refuse: Philox must stay bit-exact and NaN must propagate);
//  - each row kernel is compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at
//    load time (GCC target_clones), so one build runs everywhere at the host's width.
// Parallelism stays outside the cloned kernels: fixed row blocks under OpenMP.

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define SSLK_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SSLK_CLONES
#endif
#define SSLK_INLINE inline __attribute__((always_inline))

namespace sslkern::cpu {
namespace {

constexpr int64_t kRowBlock = 16;          // rows per column-sum partial (fixed: determinism)
constexpr int64_t kParallelWork = 1 << 14;  // below this, threads cost more than they save
constexpr int64_t kFlatBlock = 4096;       // elements per task of the flat (Philox) passes

int64_t num_blocks(int64_t rows) { return (rows + kRowBlock - 1) / kRowBlock; }

// ---------------------------------------------------------------------------------------
// Vectorisable float exp and log1p (Cephes polynomials, about 1 ulp). double uses libm.

SSLK_INLINE float exp_poly(float x) {  // e^x for x <= 0 (underflow clamps at 2^-126)
  x = x < -87.3f ? -87.3f : x;         // NaN passes through both comparisons
  x = x > 88.0f ? 88.0f : x;
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  n = n == n ? n : 0.0f;  // keep the integer conversion defined for NaN (the poly stays NaN)
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// log(1 + e) for e in [0, 1]: log of u = 1 + e by a polynomial on [sqrt(1/2), sqrt(2)),
// then the classic correction e / (u - 1) for the rounding of 1 + e.
SSLK_INLINE float log1p_unit(float e) {
  const float u = 1.0f + e;
  const bool big = u > 1.41421356f;
  const float m = big ? 0.5f * u : u;
  const float k = big ? 1.0f : 0.0f;
  const float f = m - 1.0f;
  const float f2 = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  float y = p * f * f2 + k * -2.12194440e-4f - 0.5f * f2;
  const float log_u = f + y + k * 0.693359375f;
  const float d = u - 1.0f;
  return d == 0.0f ? e : log_u * (e / d);
}

template <typename T> SSLK_INLINE T exp_neg(T x) { return std::exp(x); }
template <> SSLK_INLINE float exp_neg<float>(float x) { return exp_poly(x); }
template <typename T> SSLK_INLINE T log1p_small(T e) { return std::log1p(e); }
template <> SSLK_INLINE float log1p_small<float>(float e) { return log1p_unit(e); }

// sigmoid and softplus from one e = exp(-|z|): branch-free, so the loops vectorise.
template <typename T> SSLK_INLINE T sigmoid_from(T z, T e) {
  const T inv = T(1) / (T(1) + e);
  return z >= T(0) ? inv : e * inv;
}
template <typename T> SSLK_INLINE T fast_sigmoid(T z) { return sigmoid_from(z, exp_neg<T>(-std::abs(z))); }

// f(z) with the activation known at compile time.
template <int Act, typename T> SSLK_INLINE T forward(T z) {
  if constexpr (Act == kSigmoid) return fast_sigmoid(z);
  else if constexpr (Act == kRelu) return z > T(0) ? z : T(0);
  else if constexpr (Act == kLinear) return z;
  else return act_forward<T>(Act, z);
}

// Calls fn(std::integral_constant<int, act>{}) : one instantiation per activation.
template <typename Fn> SSLK_INLINE auto with_act(int act, Fn&& fn) {
  switch (act) {
    case kSigmoid: return fn(std::integral_constant<int, kSigmoid>{});
    case kTanh: return fn(std::integral_constant<int, kTanh>{});
    case kRelu: return fn(std::integral_constant<int, kRelu>{});
    case kSoftplus: return fn(std::integral_constant<int, kSoftplus>{});
    default: return fn(std::integral_constant<int, kLinear>{});
  }
}

// ---------------------------------------------------------------------------------------
// Row kernels (always inlined into the cloned entry points below).

template <typename T>
SSLK_INLINE void corrupt_span(const T* x, T* out, int64_t begin, int64_t end, int kind, float level,
                              uint64_t seed, uint32_t offset, bool grad) {
  const T zero = T(0);
  if (kind == kMask) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const bool keep = philox_uniform(seed, offset + static_cast<uint32_t>(i)) >= level;
      out[i] = keep ? x[i] : zero;
    }
  } else if (kind == kSaltPepper) {
    const float half = 0.5f * level;
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const float u = philox_uniform(seed, offset + static_cast<uint32_t>(i));
      out[i] = u >= level ? x[i] : (grad || u < half ? zero : T(1));
    }
  } else if (kind == kGaussian && !grad) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = x[i] + static_cast<T>(level * philox_normal(seed, offset + static_cast<uint32_t>(i)));
  } else {
    for (int64_t i = begin; i < end; ++i) out[i] = x[i];
  }
}

// z <- f(z + b); with r, returns sum_ij s^2 r_j and adds s^2 into s2 (one partial row).
// Optional operands are compile-time flags: a null test inside a loop stops vectorisation.
template <int Act, bool HasB, bool HasR, bool HasS2, typename T>
SSLK_INLINE double encoder_rows(T* z, int64_t ldz, int64_t row0, int64_t row1, int64_t cols,
                                const T* b, const T* r, T* s2) {
  double penalty = 0.0;
  for (int64_t i = row0; i < row1; ++i) {
    T* zi = z + i * ldz;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) {
      if constexpr (HasB) zi[j] = forward<Act, T>(zi[j] + b[j]);
      else zi[j] = forward<Act, T>(zi[j]);
    }
    if constexpr (HasR) {
      T row_penalty = 0;
#pragma omp simd reduction(+ : row_penalty)
      for (int64_t j = 0; j < cols; ++j) {
        const T s = act_d1<T>(Act, zi[j]);
        row_penalty += s * s * r[j];
        if constexpr (HasS2) s2[j] += s * s;
      }
      penalty += row_penalty;
    }
  }
  return penalty;
}

// a <- dL/da * scale from a + c and x; adds the new a into dcp; returns the summed loss.
template <int Loss, int Dec, bool HasC, bool HasDc, typename T>
SSLK_INLINE double loss_rows(T* a, int64_t lda, const T* x, int64_t ldx, int64_t row0, int64_t row1,
                             int64_t cols, const T* c, T scale, T* dcp) {
  double total = 0.0;
  for (int64_t i = row0; i < row1; ++i) {
    T* ai = a + i * lda;
    const T* xi = x + i * ldx;
    T row_loss = 0;
#pragma omp simd reduction(+ : row_loss)
    for (int64_t k = 0; k < cols; ++k) {
      T v = ai[k];
      if constexpr (HasC) v += c[k];
      T grad, loss;
      if constexpr (Loss == kBce) {  // softplus(v) - x v, dL/dv = sigmoid(v) - x
        const T e = exp_neg<T>(-std::abs(v));
        grad = sigmoid_from(v, e) - xi[k];
        loss = (v > T(0) ? v : T(0)) + log1p_small<T>(e) - xi[k] * v;
      } else {
        const T y = forward<Dec, T>(v);
        const T diff = y - xi[k];
        grad = diff * act_d1<T>(Dec, y);
        loss = T(0.5) * diff * diff;
      }
      row_loss += loss;
      ai[k] = grad * scale;
      if constexpr (HasDc) dcp[k] += grad * scale;
    }
    total += row_loss;
  }
  return total;
}

template <int Act, bool HasDh, bool Contractive, bool HasDb, typename T>
SSLK_INLINE void dz_rows(const T* dh, int64_t lddh, const T* h, int64_t ldh, int64_t row0,
                         int64_t row1, int64_t cols, const T* r, T coef, T g, T* dz, int64_t lddz,
                         T* h_copy, int64_t ldcopy, T* dbp) {
  for (int64_t i = row0; i < row1; ++i) {
    const T* hi = h + i * ldh;
    const T* dhi = HasDh ? dh + i * lddh : nullptr;
    T* dzi = dz + i * lddz;
    if (h_copy) {
      T* ci = h_copy + i * ldcopy;
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) ci[j] = g * hi[j];
    }
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) {
      const T s = act_d1<T>(Act, hi[j]);
      T v = T(0);
      if constexpr (HasDh) v = dhi[j] * s;
      if constexpr (Contractive) v += coef * s * act_d2<T>(Act, hi[j]) * r[j];
      const T out = g * v;
      dzi[j] = out;
      if constexpr (HasDb) dbp[j] += out;
    }
  }
}

// Calls fn(std::bool_constant<flag>{}).
template <typename Fn> SSLK_INLINE auto with_flag(bool flag, Fn&& fn) {
  return flag ? fn(std::true_type{}) : fn(std::false_type{});
}

// ---------------------------------------------------------------------------------------
// Cloned entry points: one per (pass, dtype); the switch on the activation runs once per
// row block.

#define SSLK_CLONED_PASSES(T, SUFFIX)                                                          \
  SSLK_CLONES void corrupt_span_##SUFFIX(const T* x, T* out, int64_t begin, int64_t end,     \
                                         int kind, float level, uint64_t seed, uint32_t offset, \
                                         bool grad) {                                         \
    corrupt_span<T>(x, out, begin, end, kind, level, seed, offset, grad);                     \
  }                                                                                           \
  SSLK_CLONES double encoder_rows_##SUFFIX(T* z, int64_t ldz, int64_t row0, int64_t row1,    \
                                           int64_t cols, const T* b, int act, const T* r,     \
                                           T* s2) {                                           \
    return with_act(act, [&](auto A) {                                                        \
      return with_flag(b, [&](auto HB) {                                                      \
        return with_flag(r, [&](auto HR) {                                                    \
          return with_flag(s2, [&](auto HS) {                                                 \
            return encoder_rows<decltype(A)::value, HB(), HR(), HS(), T>(z, ldz, row0, row1,  \
                                                                         cols, b, r, s2);     \
          });                                                                                 \
        });                                                                                   \
      });                                                                                     \
    });                                                                                       \
  }                                                                                           \
  SSLK_CLONES double loss_rows_##SUFFIX(T* a, int64_t lda, const T* x, int64_t ldx,          \
                                        int64_t row0, int64_t row1, int64_t cols, const T* c, \
                                        int loss, int dec, T scale, T* dcp) {                 \
    return with_flag(c, [&](auto HC) {                                                        \
      return with_flag(dcp, [&](auto HD) {                                                    \
        if (loss == kBce)                                                                     \
          return loss_rows<kBce, kSigmoid, HC(), HD(), T>(a, lda, x, ldx, row0, row1, cols,   \
                                                          c, scale, dcp);                     \
        return with_act(dec, [&](auto A) {                                                    \
          return loss_rows<kMse, decltype(A)::value, HC(), HD(), T>(a, lda, x, ldx, row0,     \
                                                                    row1, cols, c, scale,     \
                                                                    dcp);                     \
        });                                                                                   \
      });                                                                                     \
    });                                                                                       \
  }                                                                                           \
  SSLK_CLONES void dz_rows_##SUFFIX(const T* dh, int64_t lddh, const T* h, int64_t ldh,      \
                                    int64_t row0, int64_t row1, int64_t cols, int act,        \
                                    const T* r, T coef, T g, T* dz, int64_t lddz, T* h_copy,  \
                                    int64_t ldcopy, T* dbp) {                                 \
    const bool contractive = r && coef != T(0) && act != kLinear && act != kRelu;             \
    with_act(act, [&](auto A) {                                                               \
      with_flag(dh, [&](auto HD) {                                                            \
        with_flag(contractive, [&](auto C) {                                                  \
          with_flag(dbp, [&](auto HB) {                                                       \
            dz_rows<decltype(A)::value, HD(), C(), HB(), T>(dh, lddh, h, ldh, row0, row1,     \
                                                            cols, r, coef, g, dz, lddz,       \
                                                            h_copy, ldcopy, dbp);             \
          });                                                                                 \
        });                                                                                   \
      });                                                                                     \
    });                                                                                       \
  }                                                                                           \
  SSLK_CLONES void row_sq_norms_##SUFFIX(const T* w, int64_t ldw, int64_t row0, int64_t row1, \
                                         int64_t cols, T* r) {                                \
    for (int64_t j = row0; j < row1; ++j) {                                                   \
      const T* wj = w + j * ldw;                                                              \
      T acc = 0;                                                                              \
      _Pragma("omp simd reduction(+ : acc)") for (int64_t k = 0; k < cols; ++k) acc +=        \
          wj[k] * wj[k];                                                                      \
      r[j] = acc;                                                                             \
    }                                                                                         \
  }                                                                                           \
  SSLK_CLONES void row_scale_add_##SUFFIX(T* dw, int64_t lddw, const T* w, int64_t ldw,      \
                                          int64_t row0, int64_t row1, int64_t cols,           \
                                          const T* scale, T alpha) {                          \
    for (int64_t j = row0; j < row1; ++j) {                                                   \
      const T f = alpha * scale[j];                                                           \
      _Pragma("omp simd") for (int64_t k = 0; k < cols; ++k) dw[j * lddw + k] +=              \
          f * w[j * ldw + k];                                                                 \
    }                                                                                         \
  }                                                                                           \
  SSLK_CLONES void column_sums_##SUFFIX(const T* partials, int64_t blocks, int64_t col0,     \
                                        int64_t col1, int64_t cols, T* out) {                 \
    for (int64_t j = col0; j < col1; ++j) out[j] = T(0);                                      \
    for (int64_t k = 0; k < blocks; ++k) {                                                    \
      const T* p = partials + k * cols;                                                       \
      _Pragma("omp simd") for (int64_t j = col0; j < col1; ++j) out[j] += p[j];               \
    }                                                                                         \
  }

SSLK_CLONED_PASSES(float, f32)
SSLK_CLONED_PASSES(double, f64)

// Overloads so the templated drivers below pick the clone family by type.
inline void corrupt_span_t(const float* x, float* o, int64_t b, int64_t e, int k, float l,
                           uint64_t s, uint32_t off, bool g) { corrupt_span_f32(x, o, b, e, k, l, s, off, g); }
inline void corrupt_span_t(const double* x, double* o, int64_t b, int64_t e, int k, float l,
                           uint64_t s, uint32_t off, bool g) { corrupt_span_f64(x, o, b, e, k, l, s, off, g); }
inline double encoder_rows_t(float* z, int64_t ldz, int64_t r0, int64_t r1, int64_t c,
                             const float* b, int a, const float* r, float* s2) {
  return encoder_rows_f32(z, ldz, r0, r1, c, b, a, r, s2);
}
inline double encoder_rows_t(double* z, int64_t ldz, int64_t r0, int64_t r1, int64_t c,
                             const double* b, int a, const double* r, double* s2) {
  return encoder_rows_f64(z, ldz, r0, r1, c, b, a, r, s2);
}
inline double loss_rows_t(float* a, int64_t lda, const float* x, int64_t ldx, int64_t r0,
                          int64_t r1, int64_t c, const float* cc, int l, int d, float s, float* p) {
  return loss_rows_f32(a, lda, x, ldx, r0, r1, c, cc, l, d, s, p);
}
inline double loss_rows_t(double* a, int64_t lda, const double* x, int64_t ldx, int64_t r0,
                          int64_t r1, int64_t c, const double* cc, int l, int d, double s, double* p) {
  return loss_rows_f64(a, lda, x, ldx, r0, r1, c, cc, l, d, s, p);
}
inline void dz_rows_t(const float* dh, int64_t lddh, const float* h, int64_t ldh, int64_t r0,
                      int64_t r1, int64_t c, int a, const float* r, float coef, float g, float* dz,
                      int64_t lddz, float* hc, int64_t ldc, float* p) {
  dz_rows_f32(dh, lddh, h, ldh, r0, r1, c, a, r, coef, g, dz, lddz, hc, ldc, p);
}
inline void dz_rows_t(const double* dh, int64_t lddh, const double* h, int64_t ldh, int64_t r0,
                      int64_t r1, int64_t c, int a, const double* r, double coef, double g,
                      double* dz, int64_t lddz, double* hc, int64_t ldc, double* p) {
  dz_rows_f64(dh, lddh, h, ldh, r0, r1, c, a, r, coef, g, dz, lddz, hc, ldc, p);
}
inline void row_sq_norms_t(const float* w, int64_t ldw, int64_t r0, int64_t r1, int64_t c, float* r) {
  row_sq_norms_f32(w, ldw, r0, r1, c, r);
}
inline void row_sq_norms_t(const double* w, int64_t ldw, int64_t r0, int64_t r1, int64_t c, double* r) {
  row_sq_norms_f64(w, ldw, r0, r1, c, r);
}
inline void row_scale_add_t(float* dw, int64_t lddw, const float* w, int64_t ldw, int64_t r0,
                            int64_t r1, int64_t c, const float* s, float a) {
  row_scale_add_f32(dw, lddw, w, ldw, r0, r1, c, s, a);
}
inline void row_scale_add_t(double* dw, int64_t lddw, const double* w, int64_t ldw, int64_t r0,
                            int64_t r1, int64_t c, const double* s, double a) {
  row_scale_add_f64(dw, lddw, w, ldw, r0, r1, c, s, a);
}
inline void column_sums_t(const float* p, int64_t blocks, int64_t c0, int64_t c1, int64_t cols, float* out) {
  column_sums_f32(p, blocks, c0, c1, cols, out);
}
inline void column_sums_t(const double* p, int64_t blocks, int64_t c0, int64_t c1, int64_t cols, double* out) {
  column_sums_f64(p, blocks, c0, c1, cols, out);
}

// Per-thread scratch for the column-sum partials: reused across calls (no allocation in
// the steady state of a training loop).
template <typename T> T* partial_buffer(int64_t count) {
  thread_local std::vector<T> buffer;
  if (static_cast<int64_t>(buffer.size()) < count) buffer.resize(count);
  std::fill(buffer.begin(), buffer.begin() + count, T(0));
  return buffer.data();
}

// Sums the [blocks, cols] partials into out[cols] in block order (column chunks in parallel).
template <typename T>
void reduce_partials(const T* partials, int64_t blocks, int64_t cols, T* out) {
  constexpr int64_t kChunk = 256;
  const int64_t chunks = (cols + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (blocks * cols > kParallelWork)
  for (int64_t q = 0; q < chunks; ++q)
    column_sums_t(partials, blocks, q * kChunk, std::min(cols, (q + 1) * kChunk), cols, out);
}

}  // namespace

void philox_fill(float* out, int64_t n, uint64_t seed, uint32_t offset, bool normal) {
#pragma omp parallel for schedule(static) if (n > kParallelWork / 16)
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t counter = offset + static_cast<uint32_t>(i);
    out[i] = normal ? philox_normal(seed, counter) : philox_uniform(seed, counter);
  }
}

template <typename T>
void corrupt(const T* x, T* out, int64_t n, int kind, float level, uint64_t seed, uint32_t offset) {
  const int64_t tasks = (n + kFlatBlock - 1) / kFlatBlock;
#pragma omp parallel for schedule(static) if (n > kParallelWork / 4)
  for (int64_t t = 0; t < tasks; ++t)
    corrupt_span_t(x, out, t * kFlatBlock, std::min(n, (t + 1) * kFlatBlock), kind, level, seed,
                   offset, false);
}

template <typename T>
void corrupt_grad(const T* g, T* out, int64_t n, int kind, float level, uint64_t seed, uint32_t offset) {
  const int64_t tasks = (n + kFlatBlock - 1) / kFlatBlock;
#pragma omp parallel for schedule(static) if (n > kParallelWork / 4)
  for (int64_t t = 0; t < tasks; ++t)
    corrupt_span_t(g, out, t * kFlatBlock, std::min(n, (t + 1) * kFlatBlock), kind, level, seed,
                   offset, true);
}

template <typename T>
double encoder_epilogue(T* z, int64_t ldz, int64_t rows, int64_t cols, const T* b, int act,
                        const T* r, T* s2col) {
  const int64_t blocks = num_blocks(rows);
  T* partials = s2col ? partial_buffer<T>(blocks * cols) : nullptr;
  std::vector<double> block_penalty(blocks, 0.0);
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk)
    block_penalty[blk] = encoder_rows_t(z, ldz, blk * kRowBlock, std::min(rows, (blk + 1) * kRowBlock),
                                        cols, b, act, r, partials ? partials + blk * cols : nullptr);
  if (s2col) reduce_partials(partials, blocks, cols, s2col);
  double total = 0.0;
  for (double p : block_penalty) total += p;
  return total;
}

template <typename T>
double loss_epilogue(T* a, int64_t lda, const T* x, int64_t ldx, int64_t rows, int64_t cols,
                     const T* c, int loss, int dec_act, T scale, T* dc) {
  const int64_t blocks = num_blocks(rows);
  T* partials = dc ? partial_buffer<T>(blocks * cols) : nullptr;
  std::vector<double> block_loss(blocks, 0.0);
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk)
    block_loss[blk] = loss_rows_t(a, lda, x, ldx, blk * kRowBlock, std::min(rows, (blk + 1) * kRowBlock),
                                  cols, c, loss, dec_act, scale, partials ? partials + blk * cols : nullptr);
  if (dc) reduce_partials(partials, blocks, cols, dc);
  double total = 0.0;
  for (double l : block_loss) total += l;
  return total;
}

template <typename T>
void dz_epilogue(const T* dh, int64_t lddh, const T* h, int64_t ldh, int64_t rows, int64_t cols,
                 int act, const T* r, T coef, T g, T* dz, int64_t lddz, T* h_copy,
                 int64_t ldcopy, T* db) {
  const int64_t blocks = num_blocks(rows);
  T* partials = db ? partial_buffer<T>(blocks * cols) : nullptr;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk)
    dz_rows_t(dh, lddh, h, ldh, blk * kRowBlock, std::min(rows, (blk + 1) * kRowBlock), cols, act, r,
              coef, g, dz, lddz, h_copy, ldcopy, partials ? partials + blk * cols : nullptr);
  if (db) reduce_partials(partials, blocks, cols, db);
}

template <typename T>
void row_sq_norms(const T* w, int64_t ldw, int64_t rows, int64_t cols, T* r) {
  const int64_t blocks = num_blocks(rows);
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk)
    row_sq_norms_t(w, ldw, blk * kRowBlock, std::min(rows, (blk + 1) * kRowBlock), cols, r);
}

template <typename T>
void row_scale_add(T* dw, int64_t lddw, const T* w, int64_t ldw, int64_t rows, int64_t cols,
                   const T* scale, T alpha) {
  const int64_t blocks = num_blocks(rows);
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk)
    row_scale_add_t(dw, lddw, w, ldw, blk * kRowBlock, std::min(rows, (blk + 1) * kRowBlock), cols,
                    scale, alpha);
}

#define SSLK_INSTANTIATE(T)                                                                     \
  template void corrupt<T>(const T*, T*, int64_t, int, float, uint64_t, uint32_t);             \
  template void corrupt_grad<T>(const T*, T*, int64_t, int, float, uint64_t, uint32_t);        \
  template double encoder_epilogue<T>(T*, int64_t, int64_t, int64_t, const T*, int, const T*, \
                                      T*);                                                      \
  template double loss_epilogue<T>(T*, int64_t, const T*, int64_t, int64_t, int64_t, const T*, \
                                   int, int, T, T*);                                            \
  template void dz_epilogue<T>(const T*, int64_t, const T*, int64_t, int64_t, int64_t, int,    \
                               const T*, T, T, T*, int64_t, T*, int64_t, T*);                   \
  template void row_sq_norms<T>(const T*, int64_t, int64_t, int64_t, T*);                      \
  template void row_scale_add<T>(T*, int64_t, const T*, int64_t, int64_t, int64_t, const T*, T);

SSLK_INSTANTIATE(float)
SSLK_INSTANTIATE(double)

}  // namespace sslkern::cpu
