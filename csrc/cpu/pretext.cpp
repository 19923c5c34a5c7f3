#include "pretext.h"

#include <cstring>
#include <vector>

#include "kernels.h"  // cpu_isa: the instruction set the row kernels run with
#include "sslkern/philox.h"

// Each generator draws every label first (draw_labels, vectorised), then copies the images
// in parallel over rows with the copy of pretext_rows.h for the CPU's instruction set.

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define SSLK_PRETEXT_DISPATCH 1  // as kernels.cpp: GCC on x86-64 builds AVX2 and AVX-512 copies
#else
#define SSLK_PRETEXT_DISPATCH 0
#endif

namespace sslkern::cpu {
namespace {

struct JigsawGeometry {
  int64_t height, width, tiled_h, tiled_w, tile_h, tile_w;
  std::vector<int64_t> corner;  // element offset of tile t's top-left pixel (no division per image)
};

}  // namespace

#define SSLK_ROWS_ISA 0
namespace pretext_base {
#include "pretext_rows.h"  // NOLINT: included once per instruction set
}  // namespace pretext_base
#undef SSLK_ROWS_ISA
#if SSLK_PRETEXT_DISPATCH
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SSLK_ROWS_ISA 1
namespace pretext_avx2 {
#include "pretext_rows.h"  // NOLINT: included once per instruction set
}  // namespace pretext_avx2
#undef SSLK_ROWS_ISA
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512")
#define SSLK_ROWS_ISA 2
namespace pretext_avx512 {
#include "pretext_rows.h"  // NOLINT: included once per instruction set
}  // namespace pretext_avx512
#undef SSLK_ROWS_ISA
#pragma GCC pop_options
#define SSLK_PRETEXT_ROWS(fn) \
  (cpu_isa() == kIsaAvx512 ? pretext_avx512::fn : cpu_isa() == kIsaAvx2 ? pretext_avx2::fn : pretext_base::fn)
#else
#define SSLK_PRETEXT_ROWS(fn) pretext_base::fn
#endif

namespace {

constexpr int64_t kParallelElements = 1 << 15;  // below this, threads cost more than they save

JigsawGeometry jigsaw_geometry(int64_t height, int64_t width, int64_t grid_h, int64_t grid_w) {
  JigsawGeometry g{height, width, 0, 0, height / grid_h, width / grid_w, {}};
  g.tiled_h = grid_h * g.tile_h;
  g.tiled_w = grid_w * g.tile_w;
  for (int64_t t = 0; t < grid_h * grid_w; ++t)
    g.corner.push_back((t / grid_w) * g.tile_h * width + (t % grid_w) * g.tile_w);
  return g;
}

}  // namespace

template <typename E>
void rotations(const E* x, E* out, int64_t* labels, int64_t batch, int64_t side, uint64_t seed,
               uint32_t offset) {
  const int64_t pixels = side * side;
  SSLK_PRETEXT_ROWS(draw_labels)(labels, batch, kRotationDraws, 0, 4, seed, offset);
  const auto rotate = SSLK_PRETEXT_ROWS(rotate_image<E>);
#pragma omp parallel for schedule(static) if (batch * pixels > kParallelElements)
  for (int64_t i = 0; i < batch; ++i) rotate(x + i * pixels, out + i * pixels, side, uint32_t(labels[i]));
}

template <typename E>
void jigsaw(const E* x, E* out, int64_t* labels, int64_t batch, int64_t height, int64_t width,
            int64_t grid_h, int64_t grid_w, const int64_t* perms, int64_t n_perms, uint64_t seed,
            uint32_t offset) {
  const JigsawGeometry g = jigsaw_geometry(height, width, grid_h, grid_w);
  const int64_t pixels = height * width, tiles = grid_h * grid_w;
  SSLK_PRETEXT_ROWS(draw_labels)(labels, batch, kJigsawDraws, 0, uint32_t(n_perms), seed, offset);
  const auto shuffle = SSLK_PRETEXT_ROWS(jigsaw_image<E>);
#pragma omp parallel for schedule(static) if (batch * pixels > kParallelElements)
  for (int64_t i = 0; i < batch; ++i) shuffle(x + i * pixels, out + i * pixels, g, perms + labels[i] * tiles);
}

template <typename E>
void relative_patches(const E* x, E* center, E* neighbour, int64_t* labels, int64_t batch,
                      int64_t height, int64_t width, int64_t patch, int64_t gap, uint64_t seed,
                      uint32_t offset) {
  const int64_t step = patch + gap, extent = 3 * patch + 2 * gap, area = patch * patch;
  std::vector<int64_t> tops(batch), lefts(batch);
  const auto draw = SSLK_PRETEXT_ROWS(draw_labels);
  draw(labels, batch, kRelativeDraws, 0, 8, seed, offset);
  draw(tops.data(), batch, kRelativeDraws, 1, uint32_t(height - extent + 1), seed, offset);
  draw(lefts.data(), batch, kRelativeDraws, 2, uint32_t(width - extent + 1), seed, offset);
  const auto square_of = SSLK_PRETEXT_ROWS(copy_square<E>);
#pragma omp parallel for schedule(static) if (batch * area > kParallelElements / 4)
  for (int64_t i = 0; i < batch; ++i) {
    const int64_t top = tops[i], left = lefts[i];
    const int64_t square = labels[i] < 4 ? labels[i] : labels[i] + 1;  // 0..8 row by row, 4 the centre
    const E* image = x + i * height * width;
    square_of(image, width, top + step, left + step, patch, center + i * area);
    square_of(image, width, top + (square / 3) * step, left + (square % 3) * step, patch, neighbour + i * area);
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
