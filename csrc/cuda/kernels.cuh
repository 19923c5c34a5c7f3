// CUDA passes that run between torch's (cuBLAS) products: the GPU twin of csrc/cpu/kernels.cpp.
//
// One source, two compilers: module.cu includes this file (nvcc, ahead of time) and
// sslkern/_cuda_runtime.py hands it to NVRTC through cupy (run time), with the headers inlined.
// Hence every kernel takes only pointers and scalars (no structs), so both launchers can pack
// its arguments the same way, and nothing here uses the host standard library.
//
// Layout: matrices are row-major with a leading dimension. Column sums and scalar totals are
// deterministic: each (row chunk, column tile) block writes its partials to a workspace in a
// fixed place, reduce_partials_kernel sums them in a fixed order; no atomics anywhere.
#pragma once

#ifdef __CUDACC_RTC__
// NVRTC has no C standard library headers; these match the Linux LP64 definitions.
typedef unsigned int uint32_t;
typedef int int32_t;
typedef unsigned long long uint64_t;
typedef long long int64_t;
#endif

// Every switch over a kind code in these headers (act_forward, act_d1, act_d2, loss_and_grad,
// corrupt_element) traps on a code it does not know: the launch fails instead of computing.
#include "sslkern/activations.h"
#include "sslkern/kinds.h"
#include "sslkern/philox.h"

namespace sslkern {
namespace cuda {

// Tile of the row/column passes: a warp across columns, kTileY warps down the rows, and a fixed
// number of rows per partial so the summation order depends on the shape only.
constexpr int kTileX = 32;
constexpr int kTileY = 8;
constexpr int kChunkRows = 32;

// VEC elements moved as one 16-byte access when the caller guarantees alignment (VEC > 1);
// a partial pack at the end of a row falls back to element accesses.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load_pack(const T* p, int valid) {
  Pack<T, VEC> out;
  if (valid == VEC) return *reinterpret_cast<const Pack<T, VEC>*>(p);
#pragma unroll
  for (int k = 0; k < VEC; ++k) out.v[k] = k < valid ? p[k] : T(0);
  return out;
}

template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load_pack_or_zero(const T* p, int valid) {
  if (p) return load_pack<T, VEC>(p, valid);
  Pack<T, VEC> out;
#pragma unroll
  for (int k = 0; k < VEC; ++k) out.v[k] = T(0);
  return out;
}

template <typename T, int VEC>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, VEC>& value, int valid) {
  if (valid == VEC) {
    *reinterpret_cast<Pack<T, VEC>*>(p) = value;
    return;
  }
#pragma unroll
  for (int k = 0; k < VEC; ++k)
    if (k < valid) p[k] = value.v[k];
}

__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// ---------------------------------------------------------------------------------------------
// Element-wise passes over a flat, contiguous range; element i draws counter offset + i.

template <int VEC>
__global__ void philox_fill_kernel(float* out, int64_t n, uint64_t seed, uint32_t offset, int normal) {
  for (int64_t i = global_thread() * VEC; i < n; i += grid_stride() * VEC) {
    const int valid = n - i < VEC ? static_cast<int>(n - i) : VEC;
    Pack<float, VEC> v;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const uint32_t counter = offset + static_cast<uint32_t>(i + k);
      v.v[k] = normal ? philox_normal(seed, counter) : philox_uniform(seed, counter);
    }
    store_pack<float, VEC>(out + i, v, valid);
  }
}

// grad == 0: out = corrupt(src). grad == 1: out = src where the corruption kept x, else 0.
template <typename T, int VEC>
__global__ void corrupt_kernel(const T* src, T* out, int64_t n, int kind, float level, uint64_t seed,
                               uint32_t offset, int grad) {
  for (int64_t i = global_thread() * VEC; i < n; i += grid_stride() * VEC) {
    const int valid = n - i < VEC ? static_cast<int>(n - i) : VEC;
    Pack<T, VEC> v = load_pack<T, VEC>(src + i, valid);
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      bool keep;
      const T x = corrupt_element(v.v[k], kind, level, seed, offset + static_cast<uint32_t>(i + k), keep);
      v.v[k] = grad ? (keep ? v.v[k] : T(0)) : x;
    }
    store_pack<T, VEC>(out + i, v, valid);
  }
}

// ---------------------------------------------------------------------------------------------
// Row/column passes. `Op` handles VEC adjacent elements of one row, adds their column-sum
// contributions to col[] and their scalar contribution to total; tile_pass does the rest.

template <typename T, int VEC, typename Op>
__device__ __forceinline__ void tile_pass(const Op& op, int64_t rows, int64_t cols, T* col_partials,
                                          double* total_partials) {
  __shared__ T col_smem[kTileY][kTileX * VEC];
  __shared__ double total_smem[kTileY * kTileX];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t col_tiles = (cols + kTileX * VEC - 1) / (kTileX * VEC);
  const int64_t chunks = (rows + kChunkRows - 1) / kChunkRows;
  for (int64_t tile = blockIdx.x; tile < col_tiles; tile += gridDim.x) {
    const int64_t col = (tile * kTileX + tx) * VEC;
    const int valid = cols - col <= 0 ? 0 : (cols - col < VEC ? static_cast<int>(cols - col) : VEC);
    for (int64_t chunk = blockIdx.y; chunk < chunks; chunk += gridDim.y) {
      T col_acc[VEC];
#pragma unroll
      for (int k = 0; k < VEC; ++k) col_acc[k] = T(0);
      double total = 0.0;
      const int64_t row_end = rows < (chunk + 1) * kChunkRows ? rows : (chunk + 1) * kChunkRows;
      if (valid > 0)
        for (int64_t row = chunk * kChunkRows + ty; row < row_end; row += kTileY)
          op(row, col, valid, col_acc, total);
      if (col_partials) {  // uniform across the block, so the barriers are safe
#pragma unroll
        for (int k = 0; k < VEC; ++k) col_smem[ty][tx * VEC + k] = col_acc[k];
        __syncthreads();
        if (ty == 0 && valid > 0) {
          for (int y = 1; y < kTileY; ++y)
#pragma unroll
            for (int k = 0; k < VEC; ++k) col_acc[k] += col_smem[y][tx * VEC + k];
          for (int k = 0; k < valid; ++k) col_partials[chunk * cols + col + k] = col_acc[k];
        }
        __syncthreads();
      }
      if (total_partials) {
        const int t = ty * kTileX + tx;
        total_smem[t] = total;
        __syncthreads();
        for (int half = kTileX * kTileY / 2; half > 0; half /= 2) {
          if (t < half) total_smem[t] += total_smem[t + half];
          __syncthreads();
        }
        if (t == 0) total_partials[chunk * col_tiles + tile] = total_smem[0];
        __syncthreads();
      }
    }
  }
}

// col_out[j] = sum over chunks of col_partials[chunk, j]; *total_out = total_scale * the sum of
// the total partials (block 0). Either output may be null. A (kTileX, kTileY) block sums kTileX
// columns: each thread row takes every kTileY-th chunk, then the rows are added in order.
template <typename T>
__global__ void __launch_bounds__(kTileX * kTileY)
reduce_partials_kernel(const T* col_partials, int64_t chunks, int64_t cols, T* col_out,
                       const double* total_partials, int64_t n_totals, T* total_out, double total_scale) {
  const int tx = threadIdx.x, ty = threadIdx.y, t = ty * kTileX + tx;
  if (col_out) {
    __shared__ T col_smem[kTileY][kTileX];
    for (int64_t base = static_cast<int64_t>(blockIdx.x) * kTileX; base < cols;
         base += static_cast<int64_t>(gridDim.x) * kTileX) {
      const int64_t j = base + tx;
      T acc = T(0);
      if (j < cols) {
#pragma unroll 4
        for (int64_t c = ty; c < chunks; c += kTileY) acc += col_partials[c * cols + j];
      }
      col_smem[ty][tx] = acc;
      __syncthreads();
      if (ty == 0 && j < cols) {
        for (int y = 1; y < kTileY; ++y) acc += col_smem[y][tx];
        col_out[j] = acc;
      }
      __syncthreads();
    }
  }
  if (total_out && blockIdx.x == 0) {
    __shared__ double total_smem[kTileX * kTileY];
    double acc = 0.0;
    for (int64_t i = t; i < n_totals; i += kTileX * kTileY) acc += total_partials[i];
    total_smem[t] = acc;
    __syncthreads();
    for (int half = kTileX * kTileY / 2; half > 0; half /= 2) {
      if (t < half) total_smem[t] += total_smem[t + half];
      __syncthreads();
    }
    if (t == 0) *total_out = static_cast<T>(total_smem[0] * total_scale);
  }
}

// z <- f(z + b); with r: total += s^2 r, col += s^2 (s = f'(z), from h).
template <typename T, int VEC>
struct BiasActOp {
  T* z; int64_t ldz; const T* b; int act; const T* r;
  __device__ void operator()(int64_t i, int64_t j, int valid, T (&col)[VEC], double& total) const {
    T* zi = z + i * ldz + j;
    Pack<T, VEC> v = load_pack<T, VEC>(zi, valid);
    const Pack<T, VEC> bias = load_pack_or_zero<T, VEC>(b ? b + j : nullptr, valid);
    const Pack<T, VEC> norm = load_pack_or_zero<T, VEC>(r ? r + j : nullptr, valid);
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      v.v[k] = act_forward<T>(act, v.v[k] + bias.v[k]);
      if (r && k < valid) {
        const T s = act_d1<T>(act, v.v[k]);
        col[k] += s * s;
        total += static_cast<double>(s * s * norm.v[k]);
      }
    }
    store_pack<T, VEC>(zi, v, valid);
  }
};

template <typename T, int VEC>
__global__ void __launch_bounds__(kTileX * kTileY)
bias_act_kernel(T* z, int64_t ldz, int64_t rows, int64_t cols, const T* b, int act, const T* r,
                T* col_partials, double* total_partials) {
  tile_pass<T, VEC>(BiasActOp<T, VEC>{z, ldz, b, act, r}, rows, cols, col_partials, total_partials);
}

// a <- dL/da * scale from a + c and the clean x; total += loss; col += the new a.
template <typename T, int VEC>
struct LossGradOp {
  T* a; int64_t lda; const T* x; int64_t ldx; const T* c; int loss; int dec_act; T scale;
  __device__ void operator()(int64_t i, int64_t j, int valid, T (&col)[VEC], double& total) const {
    T* ai = a + i * lda + j;
    Pack<T, VEC> v = load_pack<T, VEC>(ai, valid);
    const Pack<T, VEC> target = load_pack<T, VEC>(x + i * ldx + j, valid);
    const Pack<T, VEC> bias = load_pack_or_zero<T, VEC>(c ? c + j : nullptr, valid);
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      T grad;
      const T l = loss_and_grad<T>(loss, dec_act, v.v[k] + bias.v[k], target.v[k], grad);
      v.v[k] = grad * scale;
      if (k < valid) {
        total += static_cast<double>(l);
        col[k] += v.v[k];
      }
    }
    store_pack<T, VEC>(ai, v, valid);
  }
};

template <typename T, int VEC>
__global__ void __launch_bounds__(kTileX * kTileY)
loss_grad_kernel(T* a, int64_t lda, const T* x, int64_t ldx, int64_t rows, int64_t cols, const T* c,
                 int loss, int dec_act, T scale, T* col_partials, double* total_partials) {
  tile_pass<T, VEC>(LossGradOp<T, VEC>{a, lda, x, ldx, c, loss, dec_act, scale}, rows, cols,
                    col_partials, total_partials);
}

// dz = g (dh f'(z) + coef f'(z) f''(z) r) from h = f(z); h_copy = g h; col += dz.
// g is read from the device (g_ptr) when given, so a gradient scalar never costs a host sync.
// dz may alias dh: each element is read before it is written, by the same thread.
template <typename T, int VEC>
struct ActGradOp {
  const T* dh; int64_t lddh; const T* h; int64_t ldh; int act; const T* r; T coef;
  const T* g_ptr; T g_value; T* dz; int64_t lddz; T* h_copy; int64_t ldcopy;
  __device__ void operator()(int64_t i, int64_t j, int valid, T (&col)[VEC], double&) const {
    const T g = g_ptr ? *g_ptr : g_value;
    const bool contractive = r && coef != T(0) && !act_piecewise_linear(act);
    const Pack<T, VEC> hv = load_pack<T, VEC>(h + i * ldh + j, valid);
    const Pack<T, VEC> dhv = load_pack_or_zero<T, VEC>(dh ? dh + i * lddh + j : nullptr, valid);
    const Pack<T, VEC> norm = load_pack_or_zero<T, VEC>(contractive ? r + j : nullptr, valid);
    Pack<T, VEC> out, copy;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const T s = act_d1<T>(act, hv.v[k]);
      T v = dh ? dhv.v[k] * s : T(0);  // as the CPU pass: no dh means exactly 0, even for s = inf
      if (contractive) v += coef * s * act_d2<T>(act, hv.v[k]) * norm.v[k];
      out.v[k] = g * v;
      copy.v[k] = g * hv.v[k];
      if (k < valid) col[k] += out.v[k];
    }
    store_pack<T, VEC>(dz + i * lddz + j, out, valid);
    if (h_copy) store_pack<T, VEC>(h_copy + i * ldcopy + j, copy, valid);
  }
};

template <typename T, int VEC>
__global__ void __launch_bounds__(kTileX * kTileY)
act_grad_kernel(const T* dh, int64_t lddh, const T* h, int64_t ldh, int64_t rows, int64_t cols, int act,
                const T* r, T coef, const T* g_ptr, T g_value, T* dz, int64_t lddz, T* h_copy,
                int64_t ldcopy, T* col_partials) {
  tile_pass<T, VEC>(ActGradOp<T, VEC>{dh, lddh, h, ldh, act, r, coef, g_ptr, g_value, dz, lddz, h_copy, ldcopy},
                    rows, cols, col_partials, static_cast<double*>(nullptr));
}

// ---------------------------------------------------------------------------------------------
// Row passes over W: one warp per row, a fixed shuffle tree (deterministic).

template <typename T, int VEC>
__global__ void row_sq_norms_kernel(const T* w, int64_t ldw, int64_t rows, int64_t cols, T* r) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t row = global_thread() / 32; row < rows; row += warps) {
    T acc = T(0);
    for (int64_t j = static_cast<int64_t>(lane) * VEC; j < cols; j += 32 * VEC) {
      const int valid = cols - j < VEC ? static_cast<int>(cols - j) : VEC;
      const Pack<T, VEC> v = load_pack<T, VEC>(w + row * ldw + j, valid);
#pragma unroll
      for (int k = 0; k < VEC; ++k) acc += v.v[k] * v.v[k];
    }
#pragma unroll
    for (int delta = 16; delta > 0; delta /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, delta);
    if (lane == 0) r[row] = acc;
  }
}

// dw_j += alpha * scale_j * w_j; alpha from the device (alpha_ptr) when given.
template <typename T, int VEC>
__global__ void row_scale_add_kernel(T* dw, int64_t lddw, const T* w, int64_t ldw, int64_t rows,
                                     int64_t cols, const T* scale, const T* alpha_ptr, T alpha_value) {
  const T alpha = alpha_ptr ? *alpha_ptr : alpha_value;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T f = alpha * scale[row];
    for (int64_t j = static_cast<int64_t>(threadIdx.x) * VEC; j < cols; j += static_cast<int64_t>(blockDim.x) * VEC) {
      const int valid = cols - j < VEC ? static_cast<int>(cols - j) : VEC;
      Pack<T, VEC> d = load_pack<T, VEC>(dw + row * lddw + j, valid);
      const Pack<T, VEC> v = load_pack<T, VEC>(w + row * ldw + j, valid);
#pragma unroll
      for (int k = 0; k < VEC; ++k) d.v[k] += f * v.v[k];
      store_pack<T, VEC>(dw + row * lddw + j, d, valid);
    }
  }
}

}  // namespace cuda
}  // namespace sslkern
