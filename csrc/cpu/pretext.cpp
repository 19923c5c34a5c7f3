#include "pretext.h"

#include <cstring>

#include "sslkern/philox.h"

namespace sslkern::cpu {
namespace {

constexpr int64_t kParallelElements = 1 << 15;  // below this, threads cost more than they save

// Copies `count` elements; memcpy is the fastest way on every row length.
template <typename E>
inline void copy(E* dst, const E* src, int64_t count) {
  std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(E));
}

template <typename E>
void rotate_row(const E* src, E* dst, int64_t n, uint32_t k) {
  switch (k) {
    case 0:  // np.rot90(img, 0)
      copy(dst, src, n * n);
      return;
    case 1:  // out[r, c] = img[c, n-1-r]
      for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < n; ++c) dst[r * n + c] = src[c * n + (n - 1 - r)];
      return;
    case 2:  // out[r, c] = img[n-1-r, n-1-c]: the flat row reversed
      for (int64_t p = 0; p < n * n; ++p) dst[p] = src[n * n - 1 - p];
      return;
    case 3:  // out[r, c] = img[n-1-c, r]
      for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < n; ++c) dst[r * n + c] = src[(n - 1 - c) * n + r];
      return;
  }
  // Unreachable: pick(..., 4) < 4. Loud all the same, outside any parallel region's reach.
  __builtin_trap();
}

struct JigsawGeometry {
  int64_t height, width, grid_h, grid_w, tile_h, tile_w;
};

template <typename E>
void jigsaw_row(const E* src, E* dst, const JigsawGeometry& g, const int64_t* perm) {
  const int64_t tiled_h = g.grid_h * g.tile_h, tiled_w = g.grid_w * g.tile_w;
  for (int64_t t = 0; t < g.grid_h * g.grid_w; ++t) {
    const int64_t s = perm[t];
    const E* from = src + (s / g.grid_w) * g.tile_h * g.width + (s % g.grid_w) * g.tile_w;
    E* to = dst + (t / g.grid_w) * g.tile_h * g.width + (t % g.grid_w) * g.tile_w;
    for (int64_t r = 0; r < g.tile_h; ++r) copy(to + r * g.width, from + r * g.width, g.tile_w);
  }
  if (tiled_w < g.width)  // the right margin of the tiled rows
    for (int64_t r = 0; r < tiled_h; ++r)
      copy(dst + r * g.width + tiled_w, src + r * g.width + tiled_w, g.width - tiled_w);
  copy(dst + tiled_h * g.width, src + tiled_h * g.width, (g.height - tiled_h) * g.width);
}

template <typename E>
void copy_square(const E* src, int64_t width, int64_t top, int64_t left, int64_t patch, E* dst) {
  for (int64_t r = 0; r < patch; ++r) copy(dst + r * patch, src + (top + r) * width + left, patch);
}

}  // namespace

uint32_t pick(uint64_t seed, uint32_t counter, uint32_t n) {
  const uint64_t word = philox4x32_10(counter, seed).c0;
  return static_cast<uint32_t>((word * n) >> 32);
}

template <typename E>
void rotations(const E* x, E* out, int64_t* labels, int64_t batch, int64_t side, uint64_t seed,
               uint32_t offset) {
  const int64_t pixels = side * side;
#pragma omp parallel for schedule(static) if (batch * pixels > kParallelElements)
  for (int64_t i = 0; i < batch; ++i) {
    const uint32_t k = pick(seed, offset + uint32_t(kRotationDraws * i), 4);
    labels[i] = k;
    rotate_row(x + i * pixels, out + i * pixels, side, k);
  }
}

template <typename E>
void jigsaw(const E* x, E* out, int64_t* labels, int64_t batch, int64_t height, int64_t width,
            int64_t grid_h, int64_t grid_w, const int64_t* perms, int64_t n_perms, uint64_t seed,
            uint32_t offset) {
  const JigsawGeometry g{height, width, grid_h, grid_w, height / grid_h, width / grid_w};
  const int64_t pixels = height * width, tiles = grid_h * grid_w;
#pragma omp parallel for schedule(static) if (batch * pixels > kParallelElements)
  for (int64_t i = 0; i < batch; ++i) {
    const uint32_t label = pick(seed, offset + uint32_t(kJigsawDraws * i), uint32_t(n_perms));
    labels[i] = label;
    jigsaw_row(x + i * pixels, out + i * pixels, g, perms + label * tiles);
  }
}

template <typename E>
void relative_patches(const E* x, E* center, E* neighbour, int64_t* labels, int64_t batch,
                      int64_t height, int64_t width, int64_t patch, int64_t gap, uint64_t seed,
                      uint32_t offset) {
  const int64_t step = patch + gap, extent = 3 * patch + 2 * gap, area = patch * patch;
#pragma omp parallel for schedule(static) if (batch * area > kParallelElements / 4)
  for (int64_t i = 0; i < batch; ++i) {
    const uint32_t first = offset + uint32_t(kRelativeDraws * i);
    const uint32_t label = pick(seed, first, 8);
    const int64_t top = pick(seed, first + 1, uint32_t(height - extent + 1));
    const int64_t left = pick(seed, first + 2, uint32_t(width - extent + 1));
    const int64_t square = label < 4 ? label : label + 1;  // 0..8 row by row, 4 is the centre
    labels[i] = label;
    const E* image = x + i * height * width;
    copy_square(image, width, top + step, left + step, patch, center + i * area);
    copy_square(image, width, top + (square / 3) * step, left + (square % 3) * step, patch,
                neighbour + i * area);
  }
}

#define SSLK_PRETEXT_INSTANTIATE(E)                                                            \
  template void rotations<E>(const E*, E*, int64_t*, int64_t, int64_t, uint64_t, uint32_t);    \
  template void jigsaw<E>(const E*, E*, int64_t*, int64_t, int64_t, int64_t, int64_t, int64_t, \
                          const int64_t*, int64_t, uint64_t, uint32_t);                        \
  template void relative_patches<E>(const E*, E*, E*, int64_t*, int64_t, int64_t, int64_t,     \
                                    int64_t, int64_t, uint64_t, uint32_t);
SSLK_PRETEXT_INSTANTIATE(uint16_t)
SSLK_PRETEXT_INSTANTIATE(uint32_t)
SSLK_PRETEXT_INSTANTIATE(uint64_t)
#undef SSLK_PRETEXT_INSTANTIATE

}  // namespace sslkern::cpu
