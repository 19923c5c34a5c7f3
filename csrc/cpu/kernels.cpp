#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "sslkern/activations.h"

// Speed (benchmarks/RESULTS.md): the passes are memory-light and transcendental-heavy, so
// what matters is that the inner loops vectorise. Three things make them:
//  - the activation / loss switch is hoisted out of the loops (one loop per case);
//  - float exp/log are branch-free polynomials (libm's expf does not vectorise without
//    -ffast-math, which we refuse: Philox must stay bit-exact and NaN must propagate);
//  - the row kernels are compiled three times, for AVX-512, AVX2+FMA and baseline x86-64,
//    and picked at run time, so one build runs everywhere at the host's width.
// Parallelism stays outside the row kernels: fixed row blocks under OpenMP.

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define SSLK_X86_DISPATCH 1
#else
#define SSLK_X86_DISPATCH 0
#endif
#define SSLK_INLINE inline __attribute__((always_inline))

namespace sslkern::cpu {
namespace {

constexpr int64_t kRowBlock = 16;          // rows per column-sum partial (fixed: determinism)
constexpr int64_t kParallelWork = 1 << 14;  // below this, threads cost more than they save
constexpr int64_t kFlatBlock = 4096;       // elements per task of the flat (Philox) passes

int64_t num_blocks(int64_t rows) { return (rows + kRowBlock - 1) / kRowBlock; }

}  // namespace

// log(2^k (1 + f)) for f in [sqrt(1/2) - 1, sqrt(2) - 1]: the Cephes polynomial for
// log(1 + f) (about 1 ulp), ln 2 split in two so k ln 2 adds exactly. Shared by the row
// kernels' log1p (every instruction-set copy inlines it) and the Box-Muller below.
SSLK_INLINE float log_reduced(float k, float f) {
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
  const float y = p * f * f2 + k * -2.12194440e-4f - 0.5f * f2;
  return f + y + k * 0.693359375f;
}

namespace {

// ln u for u in [1e-7, 1]: u = 2^e m with m in [sqrt(1/2), sqrt(2)), then log_reduced
// (about 1 ulp). Exponent and mantissa by bit operations, so the loop vectorises.
inline float log_unit(float u) {
  uint32_t bits;
  std::memcpy(&bits, &u, sizeof(bits));
  const float e = static_cast<float>(static_cast<int32_t>(bits >> 23) - 126);
  bits = (bits & 0x007FFFFFu) | 0x3F000000u;  // m in [1/2, 1)
  float m;
  std::memcpy(&m, &bits, sizeof(m));
  const bool low = m < 0.70710678f;
  return log_reduced(low ? e - 1.0f : e, low ? m + m - 1.0f : m - 1.0f);
}

// cos(2 pi u) for u in [0, 1): fold to a in [0, 1/4] (cos is even, and cos(2 pi t) =
// -cos(2 pi (1/2 - t))), then the Taylor series of cos to x^14 at x = 2 pi a <= pi / 2
// (remainder below 7e-11).
inline float cos_2pi(float u) {
  float t = u > 0.5f ? 1.0f - u : u;  // cos(2 pi u) = cos(2 pi (1 - u)); t in [0, 1/2]
  const bool flip = t > 0.25f;
  t = flip ? 0.5f - t : t;
  const float x = 6.283185307179586f * t;
  const float x2 = x * x;
  float p = -1.1470745597729725e-11f;  // -1/14!
  p = p * x2 + 2.0876756987868099e-9f;
  p = p * x2 - 2.7557319223985893e-7f;
  p = p * x2 + 2.4801587301587302e-5f;
  p = p * x2 - 1.3888888888888889e-3f;
  p = p * x2 + 4.1666666666666667e-2f;
  p = p * x2 - 0.5f;
  const float c = p * x2 + 1.0f;
  return flip ? -c : c;
}

}  // namespace

// Box-Muller on uniform pairs, as philox_normal (philox.h) but with the polynomials above in
// place of libm's logf and cosf, which do not vectorise: within a few ulp of it, and of
// tl.randn within 1e-5 (docs/random.md). Compiled once, for the baseline instruction set,
// so that every copy of the row kernels draws the same normals bit for bit.
void box_muller(const float* u1, const float* u2, float* n, int64_t count) {
#pragma omp simd
  for (int64_t k = 0; k < count; ++k) {
    const float radius = std::sqrt(-2.0f * log_unit(u1[k] > 1.0e-7f ? u1[k] : 1.0e-7f));
    n[k] = radius * cos_2pi(u2[k]);
  }
}

// The row kernels, once per instruction set (see kernels_rows.h). x86-64 with GCC gets an
// AVX2 + FMA copy and an AVX-512 copy, chosen at run time by what the CPU has; everything
// else the baseline. (On Zen 4 the 512-bit copy is the faster one even though its units
// are 256 bits wide: half the instructions, and vpternlogd / masked blends.)
// The row functions the kind-dependent entry points return (see kernels_rows.h).
template <typename T>
using CorruptSpanFn = void (*)(const T* x, T* out, int64_t begin, int64_t end, float level,
                               uint64_t seed, uint32_t offset, bool grad);
template <typename T>
using EncoderRowsFn = double (*)(T* z, int64_t ldz, int64_t row0, int64_t row1, int64_t cols,
                                 const T* b, const T* r, T* s2);
template <typename T>
using LossRowsFn = double (*)(T* a, int64_t lda, const T* x, int64_t ldx, int64_t row0,
                              int64_t row1, int64_t cols, const T* c, T scale, T* dcp);
template <typename T>
using DzRowsFn = void (*)(const T* dh, int64_t lddh, const T* h, int64_t ldh, int64_t row0,
                          int64_t row1, int64_t cols, const T* r, T coef, T g, T* dz,
                          int64_t lddz, T* h_copy, int64_t ldcopy, T* dbp);

#define SSLK_ROWS_ISA 0
namespace isa_base {
#include "kernels_rows.h"  // NOLINT: included once per instruction set
}  // namespace isa_base
#undef SSLK_ROWS_ISA
#if SSLK_X86_DISPATCH
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SSLK_ROWS_ISA 1
namespace isa_avx2 {
#include "kernels_rows.h"  // NOLINT: included once per instruction set
}  // namespace isa_avx2
#undef SSLK_ROWS_ISA
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512")
#define SSLK_ROWS_ISA 2
namespace isa_avx512 {
#include "kernels_rows.h"  // NOLINT: included once per instruction set
}  // namespace isa_avx512
#undef SSLK_ROWS_ISA
#pragma GCC pop_options
#endif

namespace {

int best_isa() {
#if SSLK_X86_DISPATCH
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return kIsaBase;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  return avx512 ? kIsaAvx512 : kIsaAvx2;
#else
  return kIsaBase;
#endif
}

int g_isa = best_isa();  // set_isa may lower it (tests compare the copies bit for bit)

#if SSLK_X86_DISPATCH
#define SSLK_ROWS(fn) (g_isa == kIsaAvx512 ? isa_avx512::fn : g_isa == kIsaAvx2 ? isa_avx2::fn : isa_base::fn)
#else
#define SSLK_ROWS(fn) isa_base::fn
#endif

// The row functions for T, from the clone family of the current ISA. Each call validates its
// kind codes (std::invalid_argument): the drivers below make it before their parallel region.
template <typename T> struct Rows;
#define SSLK_ROWS_FOR(T, SUFFIX)                                                               \
  template <> struct Rows<T> {                                                                 \
    static CorruptSpanFn<T> corrupt_span(int kind) { return SSLK_ROWS(corrupt_span_##SUFFIX)(kind); } \
    static EncoderRowsFn<T> encoder_rows(int act, bool b, bool r, bool s2) {                   \
      return SSLK_ROWS(encoder_rows_##SUFFIX)(act, b, r, s2);                                  \
    }                                                                                          \
    static LossRowsFn<T> loss_rows(int loss, int dec, bool c, bool dc) {                       \
      return SSLK_ROWS(loss_rows_##SUFFIX)(loss, dec, c, dc);                                  \
    }                                                                                          \
    static DzRowsFn<T> dz_rows(int act, bool dh, bool contractive, bool db) {                  \
      return SSLK_ROWS(dz_rows_##SUFFIX)(act, dh, contractive, db);                            \
    }                                                                                          \
  };
SSLK_ROWS_FOR(float, f32)
SSLK_ROWS_FOR(double, f64)
#undef SSLK_ROWS_FOR

inline void row_sq_norms_t(const float* w, int64_t ldw, int64_t r0, int64_t r1, int64_t c, float* r) {
  SSLK_ROWS(row_sq_norms_f32)(w, ldw, r0, r1, c, r);
}
inline void row_sq_norms_t(const double* w, int64_t ldw, int64_t r0, int64_t r1, int64_t c, double* r) {
  SSLK_ROWS(row_sq_norms_f64)(w, ldw, r0, r1, c, r);
}
inline void row_scale_add_t(float* dw, int64_t lddw, const float* w, int64_t ldw, int64_t r0,
                            int64_t r1, int64_t c, const float* s, float a) {
  SSLK_ROWS(row_scale_add_f32)(dw, lddw, w, ldw, r0, r1, c, s, a);
}
inline void row_scale_add_t(double* dw, int64_t lddw, const double* w, int64_t ldw, int64_t r0,
                            int64_t r1, int64_t c, const double* s, double a) {
  SSLK_ROWS(row_scale_add_f64)(dw, lddw, w, ldw, r0, r1, c, s, a);
}
inline void column_sums_t(const float* p, int64_t blocks, int64_t c0, int64_t c1, int64_t cols, float* out) {
  SSLK_ROWS(column_sums_f32)(p, blocks, c0, c1, cols, out);
}
inline void column_sums_t(const double* p, int64_t blocks, int64_t c0, int64_t c1, int64_t cols, double* out) {
  SSLK_ROWS(column_sums_f64)(p, blocks, c0, c1, cols, out);
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

int cpu_isa() { return g_isa; }

bool set_cpu_isa(int isa) {
  if (isa < kIsaBase || isa > best_isa()) return false;
  g_isa = isa;
  return true;
}

void philox_fill(float* out, int64_t n, uint64_t seed, uint32_t offset, bool normal) {
  const int64_t tasks = (n + kFlatBlock - 1) / kFlatBlock;
#pragma omp parallel for schedule(static) if (n > kParallelWork / 16)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t begin = t * kFlatBlock, count = std::min(n, begin + kFlatBlock) - begin;
    const uint32_t counter = offset + static_cast<uint32_t>(begin);
    if (normal) SSLK_ROWS(philox_normals)(seed, counter, count, out + begin);
    else SSLK_ROWS(philox_uniforms)(seed, counter, count, out + begin);
  }
}

template <typename T>
void corrupt_any(const T* src, T* out, int64_t n, int kind, float level, uint64_t seed,
                 uint32_t offset, bool grad) {
  const CorruptSpanFn<T> span = Rows<T>::corrupt_span(kind);  // throws on an unknown kind
  const int64_t tasks = (n + kFlatBlock - 1) / kFlatBlock;
#pragma omp parallel for schedule(static) if (n > kParallelWork / 4)
  for (int64_t t = 0; t < tasks; ++t)
    span(src, out, t * kFlatBlock, std::min(n, (t + 1) * kFlatBlock), level, seed, offset, grad);
}

template <typename T>
void corrupt(const T* x, T* out, int64_t n, int kind, float level, uint64_t seed, uint32_t offset) {
  corrupt_any<T>(x, out, n, kind, level, seed, offset, false);
}

template <typename T>
void corrupt_grad(const T* g, T* out, int64_t n, int kind, float level, uint64_t seed, uint32_t offset) {
  corrupt_any<T>(g, out, n, kind, level, seed, offset, true);
}

template <typename T>
double encoder_epilogue(T* z, int64_t ldz, int64_t rows, int64_t cols, const T* b, int act,
                        const T* r, T* s2col) {
  const EncoderRowsFn<T> pass = Rows<T>::encoder_rows(act, b, r, s2col);  // throws on an unknown act
  const int64_t blocks = num_blocks(rows);
  T* partials = s2col ? partial_buffer<T>(blocks * cols) : nullptr;
  std::vector<double> block_penalty(blocks, 0.0);
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk)
    block_penalty[blk] = pass(z, ldz, blk * kRowBlock, std::min(rows, (blk + 1) * kRowBlock), cols,
                              b, r, partials ? partials + blk * cols : nullptr);
  if (s2col) reduce_partials(partials, blocks, cols, s2col);
  double total = 0.0;
  for (double p : block_penalty) total += p;
  return total;
}

template <typename T>
double loss_epilogue(T* a, int64_t lda, const T* x, int64_t ldx, int64_t rows, int64_t cols,
                     const T* c, int loss, int dec_act, T scale, T* dc) {
  const LossRowsFn<T> pass = Rows<T>::loss_rows(loss, dec_act, c, dc);  // throws on unknown codes
  const int64_t blocks = num_blocks(rows);
  T* partials = dc ? partial_buffer<T>(blocks * cols) : nullptr;
  std::vector<double> block_loss(blocks, 0.0);
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk)
    block_loss[blk] = pass(a, lda, x, ldx, blk * kRowBlock, std::min(rows, (blk + 1) * kRowBlock),
                           cols, c, scale, partials ? partials + blk * cols : nullptr);
  if (dc) reduce_partials(partials, blocks, cols, dc);
  double total = 0.0;
  for (double l : block_loss) total += l;
  return total;
}

template <typename T>
void dz_epilogue(const T* dh, int64_t lddh, const T* h, int64_t ldh, int64_t rows, int64_t cols,
                 int act, const T* r, T coef, T g, T* dz, int64_t lddz, T* h_copy,
                 int64_t ldcopy, T* db) {
  const DzRowsFn<T> pass = Rows<T>::dz_rows(act, dh, r && coef != T(0), db);  // throws on an unknown act
  const int64_t blocks = num_blocks(rows);
  T* partials = db ? partial_buffer<T>(blocks * cols) : nullptr;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk)
    pass(dh, lddh, h, ldh, blk * kRowBlock, std::min(rows, (blk + 1) * kRowBlock), cols, r, coef, g,
         dz, lddz, h_copy, ldcopy, partials ? partials + blk * cols : nullptr);
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

namespace {

template <typename Out>
void round_blocks(void (*rows_fn)(const float*, int64_t, int64_t, int64_t, int64_t, float, Out*),
                  const float* src, int64_t ld, int64_t rows, int64_t cols, float scale, void* dst) {
  const int64_t blocks = num_blocks(rows);
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk)
    rows_fn(src, ld, blk * kRowBlock, std::min(rows, (blk + 1) * kRowBlock), cols, scale,
            static_cast<Out*>(dst));
}

}  // namespace

void round_operand(const float* src, int64_t ld, int64_t rows, int64_t cols, float scale,
                   int precision, bool packed, void* dst) {
  static_assert(kPrecisionCount == 3, "a new precision needs a case here");
  switch (precision) {
    case kBf16:
      if (packed) return round_blocks(SSLK_ROWS(round_rows_bf16_words), src, ld, rows, cols, scale, dst);
      return round_blocks(SSLK_ROWS(round_rows_bf16), src, ld, rows, cols, scale, dst);
    case kFp16:
      if (packed) throw std::invalid_argument("precision: fp16 operands are not packed (no fp16 gemm is used)");
      return round_blocks(SSLK_ROWS(round_rows_fp16), src, ld, rows, cols, scale, dst);
    case kDefault:  // nothing to round: scale * src
      if (packed) throw std::invalid_argument("precision: the default precision has no 16-bit words");
      return round_blocks(SSLK_ROWS(scaled_rows), src, ld, rows, cols, scale, dst);
  }
  unknown_kind("precision", precision);
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
