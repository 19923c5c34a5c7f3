#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "sslkern/activations.h"

namespace sslkern::cpu {
namespace {

constexpr int64_t kRowBlock = 16;          // rows per column-sum partial (fixed: determinism)
constexpr int64_t kParallelWork = 1 << 14;  // below this, threads cost more than they save

int64_t num_blocks(int64_t rows) { return (rows + kRowBlock - 1) / kRowBlock; }

// Sums the [blocks, cols] partials into out[cols] in block order.
template <typename T>
void reduce_partials(const std::vector<T>& partials, int64_t blocks, int64_t cols, T* out) {
#pragma omp parallel for schedule(static) if (blocks * cols > kParallelWork)
  for (int64_t j = 0; j < cols; ++j) {
    T acc = 0;
    for (int64_t k = 0; k < blocks; ++k) acc += partials[k * cols + j];
    out[j] = acc;
  }
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
#pragma omp parallel for schedule(static) if (n > kParallelWork / 16)
  for (int64_t i = 0; i < n; ++i) {
    bool keep;
    out[i] = corrupt_element(x[i], kind, level, seed, offset + static_cast<uint32_t>(i), keep);
  }
}

template <typename T>
void corrupt_grad(const T* g, T* out, int64_t n, int kind, float level, uint64_t seed, uint32_t offset) {
#pragma omp parallel for schedule(static) if (n > kParallelWork / 16)
  for (int64_t i = 0; i < n; ++i) {
    bool keep;
    corrupt_element(T(0), kind, level, seed, offset + static_cast<uint32_t>(i), keep);
    out[i] = keep ? g[i] : T(0);
  }
}

template <typename T>
double encoder_epilogue(T* z, int64_t ldz, int64_t rows, int64_t cols, const T* b, int act,
                        const T* r, T* s2col) {
  const int64_t blocks = num_blocks(rows);
  std::vector<T> partials(s2col ? blocks * cols : 0, T(0));
  std::vector<double> block_penalty(blocks, 0.0);
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    T* s2 = s2col ? partials.data() + blk * cols : nullptr;
    double penalty = 0.0;
    for (int64_t i = blk * kRowBlock; i < std::min(rows, (blk + 1) * kRowBlock); ++i) {
      T* zi = z + i * ldz;
      for (int64_t j = 0; j < cols; ++j) zi[j] = act_forward<T>(act, zi[j] + (b ? b[j] : T(0)));
      if (!r) continue;
      T row_penalty = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const T s = act_d1<T>(act, zi[j]);
        row_penalty += s * s * r[j];
        if (s2) s2[j] += s * s;
      }
      penalty += row_penalty;
    }
    block_penalty[blk] = penalty;
  }
  if (s2col) reduce_partials(partials, blocks, cols, s2col);
  double total = 0.0;
  for (double p : block_penalty) total += p;
  return total;
}

template <typename T>
double loss_epilogue(T* a, int64_t lda, const T* x, int64_t ldx, int64_t rows, int64_t cols,
                     const T* c, int loss, int dec_act, T scale, T* dc) {
  const int64_t blocks = num_blocks(rows);
  std::vector<T> partials(dc ? blocks * cols : 0, T(0));
  std::vector<double> block_loss(blocks, 0.0);
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    T* dcp = dc ? partials.data() + blk * cols : nullptr;
    double total = 0.0;
    for (int64_t i = blk * kRowBlock; i < std::min(rows, (blk + 1) * kRowBlock); ++i) {
      T* ai = a + i * lda;
      const T* xi = x + i * ldx;
      T row_loss = 0;
      for (int64_t k = 0; k < cols; ++k) {
        T grad;
        row_loss += loss_and_grad<T>(loss, dec_act, ai[k] + (c ? c[k] : T(0)), xi[k], grad);
        ai[k] = grad * scale;
        if (dcp) dcp[k] += ai[k];
      }
      total += row_loss;
    }
    block_loss[blk] = total;
  }
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
  std::vector<T> partials(db ? blocks * cols : 0, T(0));
  const bool contractive = r && coef != T(0) && act != kLinear && act != kRelu;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    T* dbp = db ? partials.data() + blk * cols : nullptr;
    for (int64_t i = blk * kRowBlock; i < std::min(rows, (blk + 1) * kRowBlock); ++i) {
      const T* hi = h + i * ldh;
      const T* dhi = dh ? dh + i * lddh : nullptr;
      T* dzi = dz + i * lddz;
      for (int64_t j = 0; j < cols; ++j) {
        const T s = act_d1<T>(act, hi[j]);
        T v = dhi ? dhi[j] * s : T(0);
        if (contractive) v += coef * s * act_d2<T>(act, hi[j]) * r[j];
        dzi[j] = g * v;
        if (dbp) dbp[j] += dzi[j];
      }
      if (h_copy)
        for (int64_t j = 0; j < cols; ++j) h_copy[i * ldcopy + j] = g * hi[j];
    }
  }
  if (db) reduce_partials(partials, blocks, cols, db);
}

template <typename T>
void row_sq_norms(const T* w, int64_t ldw, int64_t rows, int64_t cols, T* r) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t j = 0; j < rows; ++j) {
    T acc = 0;
    for (int64_t k = 0; k < cols; ++k) acc += w[j * ldw + k] * w[j * ldw + k];
    r[j] = acc;
  }
}

template <typename T>
void row_scale_add(T* dw, int64_t lddw, const T* w, int64_t ldw, int64_t rows, int64_t cols,
                   const T* scale, T alpha) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t j = 0; j < rows; ++j) {
    const T f = alpha * scale[j];
    for (int64_t k = 0; k < cols; ++k) dw[j * lddw + k] += f * w[j * ldw + k];
  }
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
