// The per-image copies of the pretext generators, compiled once per instruction set by
// csrc/cpu/pretext.cpp (as kernels_rows.h is by kernels.cpp): baseline x86-64 copies with
// 16-byte vectors, AVX2 with 32, AVX-512 with 64. Each copy is a plain move of elements, so
// every instruction set gives the same bits (tests/test_pretext.py compares them).
// Included inside a namespace, with SSLK_ROWS_ISA set to 0, 1 or 2.

constexpr int64_t kVecBytes = SSLK_ROWS_ISA == 2 ? 64 : SSLK_ROWS_ISA == 1 ? 32 : 16;

// labels[i] = (c0 * n) >> 32 of the word at counter offset + draws * i + j, for every row i
// (docs/random.md §10). Here, not in pretext.cpp, so the Philox loop vectorises at the ISA's width.
inline void draw_labels(int64_t* labels, int64_t batch, int draws, int j, uint32_t n, uint64_t seed,
                        uint32_t offset) {
  for (int64_t i = 0; i < batch; ++i) {
    const uint64_t word = philox4x32_10(offset + uint32_t(draws * i + j), seed).c0;
    labels[i] = static_cast<int64_t>((word * n) >> 32);
  }
}

template <int64_t kBytes>
inline void move(char* dst, const char* src) {
  typedef uint8_t Vec __attribute__((vector_size(kBytes)));
  Vec v;
  std::memcpy(&v, src, kBytes);
  std::memcpy(dst, &v, kBytes);
}

// Copies `bytes` bytes without a call (the segments are short, a tile row of 14 floats, where
// memcpy's call costs more than the copy): whole vectors, then one vector overlapping the
// last for the tail. CMakeLists.txt keeps GCC from turning the loops back into memcpy calls.
template <int64_t kBytes = kVecBytes>
inline void copy_bytes(char* __restrict dst, const char* __restrict src, int64_t bytes) {
  if constexpr (kBytes > 16) {
    if (bytes < kBytes) return copy_bytes<kBytes / 2>(dst, src, bytes);
  } else if (bytes < kBytes) {
    for (int64_t i = 0; i < bytes; ++i) dst[i] = src[i];
    return;
  }
  for (int64_t i = 0; i + kBytes < bytes; i += kBytes) move<kBytes>(dst + i, src + i);
  move<kBytes>(dst + bytes - kBytes, src + bytes - kBytes);
}

template <typename E>
inline void copy(E* dst, const E* src, int64_t count) {
  copy_bytes(reinterpret_cast<char*>(dst), reinterpret_cast<const char*>(src), count * int64_t(sizeof(E)));
}

typedef uint32_t Quad __attribute__((vector_size(16)));

inline Quad load(const uint32_t* p) {
  Quad v;
  std::memcpy(&v, p, 16);
  return v;
}

inline void store(uint32_t* p, Quad v) { std::memcpy(p, &v, 16); }

// The 4x4 transpose of rows a, b, c, d (two rounds of interleaving).
inline void transpose4(Quad& a, Quad& b, Quad& c, Quad& d) {
  const Quad ab_lo = __builtin_shuffle(a, b, Quad{0, 4, 1, 5}), ab_hi = __builtin_shuffle(a, b, Quad{2, 6, 3, 7});
  const Quad cd_lo = __builtin_shuffle(c, d, Quad{0, 4, 1, 5}), cd_hi = __builtin_shuffle(c, d, Quad{2, 6, 3, 7});
  a = __builtin_shuffle(ab_lo, cd_lo, Quad{0, 1, 4, 5});
  b = __builtin_shuffle(ab_lo, cd_lo, Quad{2, 3, 6, 7});
  c = __builtin_shuffle(ab_hi, cd_hi, Quad{0, 1, 4, 5});
  d = __builtin_shuffle(ab_hi, cd_hi, Quad{2, 3, 6, 7});
}

// A quarter turn of a 4-byte image whose side is a multiple of 4, by 4x4 blocks: k = 1 (out
// row r is column n-1-r of img) or 3 (out row r is column r, reversed). Element by element,
// a column is read one strided load at a time, several times slower.
inline void quarter_turn_blocks(const uint32_t* src, uint32_t* dst, int64_t n, uint32_t k) {
  for (int64_t R = 0; R < n; R += 4) {
    for (int64_t C = 0; C < n; C += 4) {
      // k = 1: out[R+i, C+j] = img[C+j, n-1-R-i]; k = 3: out[R+i, C+j] = img[n-1-C-j, R+i].
      const int64_t col = k == 1 ? n - 4 - R : R;
      Quad v[4];
      for (int j = 0; j < 4; ++j) v[j] = load(src + (k == 1 ? C + j : n - 1 - C - j) * n + col);
      transpose4(v[0], v[1], v[2], v[3]);
      for (int i = 0; i < 4; ++i) store(dst + (R + i) * n + C, v[k == 1 ? 3 - i : i]);
    }
  }
}

// np.rot90(img, k) of one n x n image.
template <typename E>
void rotate_image(const E* __restrict src, E* __restrict dst, int64_t n, uint32_t k) {
  if constexpr (sizeof(E) == 4) {
    if ((k == 1 || k == 3) && n % 4 == 0) return quarter_turn_blocks(src, dst, n, k);
  }
  switch (k) {
    case 0:
      copy(dst, src, n * n);
      return;
    case 1:  // out[r, c] = img[c, n-1-r]
      for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < n; ++c) dst[r * n + c] = src[c * n + (n - 1 - r)];
      return;
    case 2:  // out[r, c] = img[n-1-r, n-1-c]: the flat image reversed
      for (int64_t p = 0; p < n * n; ++p) dst[p] = src[n * n - 1 - p];
      return;
    case 3:  // out[r, c] = img[n-1-c, r]
      for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < n; ++c) dst[r * n + c] = src[(n - 1 - c) * n + r];
      return;
  }
  __builtin_trap();  // unreachable: labels are drawn in [0, 4) (no exception may leave OpenMP)
}

// One image of the jigsaw: output tile t from input tile perm[t], the margin in place.
template <typename E>
void jigsaw_image(const E* __restrict src, E* __restrict dst, const JigsawGeometry& g, const int64_t* perm) {
  const int64_t tiles = static_cast<int64_t>(g.corner.size()), width = g.width, tile_h = g.tile_h;
  const int64_t tile_w = g.tile_w, tiled_h = g.tiled_h, tiled_w = g.tiled_w;
  const int64_t* corner = g.corner.data();
  for (int64_t t = 0; t < tiles; ++t) {
    const E* from = src + corner[perm[t]];
    E* to = dst + corner[t];
    for (int64_t r = 0; r < tile_h; ++r) copy(to + r * width, from + r * width, tile_w);
  }
  if (tiled_w < width)  // the right margin of the tiled rows
    for (int64_t r = 0; r < tiled_h; ++r) copy(dst + r * width + tiled_w, src + r * width + tiled_w, width - tiled_w);
  copy(dst + tiled_h * width, src + tiled_h * width, (g.height - tiled_h) * width);
}

// The patch x patch square at (top, left) of an image `width` wide, into dst.
template <typename E>
void copy_square(const E* __restrict image, int64_t width, int64_t top, int64_t left, int64_t patch, E* __restrict dst) {
  for (int64_t r = 0; r < patch; ++r) copy(dst + r * patch, image + (top + r) * width + left, patch);
}
