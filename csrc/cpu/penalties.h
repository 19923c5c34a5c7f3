// The sparsity and higher-order contractive penalties inside the one-call CPU step (step.cpp),
// the same terms as sslkern/backends/penalties.py. Each pass walks the [B, H] codes in column
// chunks, one chunk per OpenMP task and every row in order inside it, so each column's sum has
// one order whatever the thread count: the results are deterministic.
#pragma once
#include <cstdint>

namespace sslkern::cpu {

struct ExtraPenalties {
  double sparsity = 0.0;         // beta; 0 switches the term off
  double sparsity_target = 0.05; // rho (kl)
  int sparsity_kind = 0;         // Sparsity (kinds.h)
  double higher_order = 0.0;     // gamma; 0 switches the term off
  float sigma = 0.1f;            // standard deviation of the input perturbations
  int64_t samples = 1;           // perturbations per example
  bool on() const { return sparsity != 0.0 || higher_order != 0.0; }
  int64_t noisy_copies() const { return higher_order != 0.0 ? samples : 0; }
};

// dz_add <- s * dP/dh of the sparsity term (s = f'(z) from h), unscaled; returns the term.
template <typename T>
double sparsity_terms(const T* h, int64_t rows, int64_t cols, int act, const ExtraPenalties& p, T* dz_add);

// The higher-order term from h [B, H] and hn [n B, H] (f at the n perturbed inputs): returns
// gamma * mean_{i,k} sum_j (s_ij - s'_kij)^2 r_j; dz_add += its dP/dz at x~; hn <- dP/dz' in
// place; qcol[j] <- coef * sum_{i,k} (s_ij - s'_kij)^2 (the row-norm part of dW, with
// coef = 2 gamma / (B n)).
template <typename T>
double higher_order_terms(const T* h, T* hn, int64_t rows, int64_t cols, int act, const T* r,
                          const ExtraPenalties& p, T* dz_add, T* qcol);

// dz += add (both [rows, cols], contiguous) and db[j] += the column sums of add and of the
// `extra_rows` rows of `extra` ([extra_rows, cols]).
template <typename T>
void add_penalty_grads(T* dz, const T* add, int64_t rows, int64_t cols, const T* extra, int64_t extra_rows,
                       T* db);

}  // namespace sslkern::cpu
