#include "penalties.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "sslkern/activations.h"
#include "sslkern/common.h"

namespace sslkern::cpu {
namespace {

constexpr int64_t kColumnChunk = 64;        // columns per task: a fixed split, whatever the threads
constexpr int64_t kParallelWork = 1 << 14;  // below this, threads cost more than they save

// body(j0, j1) over column chunks; a chunk's columns are owned by one task.
template <typename Body>
void by_column_chunks(int64_t rows, int64_t cols, Body body) {
  const int64_t chunks = (cols + kColumnChunk - 1) / kColumnChunk;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    body(chunk * kColumnChunk, std::min(cols, (chunk + 1) * kColumnChunk));
}

// Per-chunk totals added in chunk order: deterministic.
double ordered_total(const std::vector<double>& parts) {
  double total = 0.0;
  for (double part : parts) total += part;
  return total;
}

}  // namespace

template <typename T>
double sparsity_terms(const T* h, int64_t rows, int64_t cols, int act, const ExtraPenalties& p, T* dz_add) {
  const double inv_batch = 1.0 / double(std::max<int64_t>(rows, 1));
  const T beta_b = T(p.sparsity * inv_batch);
  std::vector<double> parts((cols + kColumnChunk - 1) / kColumnChunk, 0.0);
  switch (p.sparsity_kind) {
    case kKl: {
      const double rho = p.sparsity_target;
      by_column_chunks(rows, cols, [&](int64_t j0, int64_t j1) {
        T sum[kColumnChunk] = {}, slope[kColumnChunk];
        for (int64_t i = 0; i < rows; ++i)  // row by row: the chunk's columns are contiguous
          for (int64_t j = j0; j < j1; ++j) sum[j - j0] += h[i * cols + j];
        double part = 0.0;
        for (int64_t j = j0; j < j1; ++j) {
          const double rho_hat = std::clamp(double(sum[j - j0]) * inv_batch, kKlRhoHatClamp, 1 - kKlRhoHatClamp);
          part += rho * std::log(rho / rho_hat) + (1 - rho) * std::log((1 - rho) / (1 - rho_hat));
          slope[j - j0] = beta_b * T((1 - rho) / (1 - rho_hat) - rho / rho_hat);
        }
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = j0; j < j1; ++j) dz_add[i * cols + j] = act_d1(act, h[i * cols + j]) * slope[j - j0];
        parts[j0 / kColumnChunk] = part;
      });
      return p.sparsity * ordered_total(parts);
    }
    case kL1: {
      by_column_chunks(rows, cols, [&](int64_t j0, int64_t j1) {
        double part = 0.0;
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = j0; j < j1; ++j) {
            const T v = h[i * cols + j];
            part += std::abs(double(v));
            const T sign = T((v > T(0)) - (v < T(0)));
            dz_add[i * cols + j] = act_d1(act, v) * sign * beta_b;
          }
        parts[j0 / kColumnChunk] = part;
      });
      return p.sparsity * inv_batch * ordered_total(parts);
    }
  }
  unknown_kind("sparsity", p.sparsity_kind);
}

template <typename T>
double higher_order_terms(const T* h, T* hn, int64_t rows, int64_t cols, int act, const T* r,
                          const ExtraPenalties& p, T* dz_add, T* qcol) {
  const int64_t n = p.samples;
  const double inv = 1.0 / (double(std::max<int64_t>(rows, 1)) * double(n));
  const T coef = T(2.0 * p.higher_order * inv);
  std::vector<double> parts((cols + kColumnChunk - 1) / kColumnChunk, 0.0);
  by_column_chunks(rows, cols, [&](int64_t j0, int64_t j1) {
    double part = 0.0;
    for (int64_t j = j0; j < j1; ++j) qcol[j] = T(0);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = j0; j < j1; ++j) {
        const T hv = h[i * cols + j];
        const T s = act_d1(act, hv);
        T delta_sum = T(0), q = T(0);
        for (int64_t k = 0; k < n; ++k) {
          T& noisy = hn[(k * rows + i) * cols + j];
          const T delta = s - act_d1(act, noisy);
          q += delta * delta;
          delta_sum += delta;
          noisy = -coef * act_d2(act, noisy) * delta * r[j];  // dP/dz' of sample k
        }
        qcol[j] += q;
        part += double(q) * double(r[j]);
        dz_add[i * cols + j] += coef * act_d2(act, hv) * delta_sum * r[j];
      }
    for (int64_t j = j0; j < j1; ++j) qcol[j] *= coef;
    parts[j0 / kColumnChunk] = part;
  });
  return p.higher_order * inv * ordered_total(parts);
}

template <typename T>
void add_penalty_grads(T* dz, const T* add, int64_t rows, int64_t cols, const T* extra, int64_t extra_rows,
                       T* db) {
  by_column_chunks(rows + extra_rows, cols, [&](int64_t j0, int64_t j1) {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = j0; j < j1; ++j) {
        dz[i * cols + j] += add[i * cols + j];
        db[j] += add[i * cols + j];
      }
    for (int64_t i = 0; i < extra_rows; ++i)
      for (int64_t j = j0; j < j1; ++j) db[j] += extra[i * cols + j];
  });
}

template double sparsity_terms<float>(const float*, int64_t, int64_t, int, const ExtraPenalties&, float*);
template double sparsity_terms<double>(const double*, int64_t, int64_t, int, const ExtraPenalties&, double*);
template double higher_order_terms<float>(const float*, float*, int64_t, int64_t, int, const float*,
                                          const ExtraPenalties&, float*, float*);
template double higher_order_terms<double>(const double*, double*, int64_t, int64_t, int, const double*,
                                           const ExtraPenalties&, double*, double*);
template void add_penalty_grads<float>(float*, const float*, int64_t, int64_t, const float*, int64_t, float*);
template void add_penalty_grads<double>(double*, const double*, int64_t, int64_t, const double*, int64_t,
                                        double*);

}  // namespace sslkern::cpu
