// Pretext-task generators (docs/random.md §10): each batch row is one image whose pixels are
// copied to where the row's label, drawn from the Philox stream, says. Pure copies: the
// kernels move elements as raw words of their size (E is uint16_t, uint32_t or uint64_t),
// so every floating dtype comes out bit for bit.
#pragma once
#include <cstdint>

namespace sslkern::cpu {

// Philox words each task draws per row (row i uses counters offset + kDraws * i + j).
constexpr int kRotationDraws = 1;  // j = 0: the label
constexpr int kJigsawDraws = 1;    // j = 0: the label
constexpr int kRelativeDraws = 3;  // j = 0: the label, 1: the arrangement's top, 2: its left

// A draw in [0, n) is (c0 * n) >> 32 of the Philox word at its counter (draw_labels in
// pretext_rows.h; docs/random.md §10).

// x [batch, side*side] -> out: row i rotated by labels[i] * 90 degrees counter-clockwise.
template <typename E>
void rotations(const E* x, E* out, int64_t* labels, int64_t batch, int64_t side, uint64_t seed,
               uint32_t offset);

// Output tile t of row i holds input tile perms[labels[i] * tiles + t]; the pixels outside the
// grid_h x grid_w tiled area stay in place. perms [n_perms, tiles], entries in [0, tiles).
template <typename E>
void jigsaw(const E* x, E* out, int64_t* labels, int64_t batch, int64_t height, int64_t width,
            int64_t grid_h, int64_t grid_w, const int64_t* perms, int64_t n_perms, uint64_t seed,
            uint32_t offset);

// center/neighbour [batch, patch*patch]: the middle square of a 3x3 arrangement of patch-sized
// squares gap pixels apart at a drawn position, and neighbour labels[i] (0..7, row by row,
// the centre skipped).
template <typename E>
void relative_patches(const E* x, E* center, E* neighbour, int64_t* labels, int64_t batch,
                      int64_t height, int64_t width, int64_t patch, int64_t gap, uint64_t seed,
                      uint32_t offset);

}  // namespace sslkern::cpu
