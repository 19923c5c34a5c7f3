// Row kernels of the fused CPU passes, included once per instruction set by kernels.cpp
// (inside a namespace, under a `#pragma GCC target`; SSLK_ROWS_ISA says which: 0 baseline,
// 1 AVX2 + FMA, 2 AVX-512). Everything
// here is inline or a template, so each inclusion compiles its own copy at that width.
// Deliberately no include guard and no #includes: kernels.cpp includes what this needs.

// ---------------------------------------------------------------------------------------
// Vectorisable float exp and log1p (Cephes polynomials, about 1 ulp). double uses libm.

SSLK_INLINE float exp_poly(float x) {  // e^x for x <= 0 (underflow clamps at 2^-126)
  x = x < -87.3f ? -87.3f : x;         // NaN passes through both comparisons
  x = x > 88.0f ? 88.0f : x;
  // Round x log2(e) to an integer n by adding 1.5 * 2^23: no floor() or float->int
  // conversion, which would stop the vectoriser (and be undefined for NaN).
  constexpr float kMagic = 12582912.0f;
  const float shifted = x * 1.44269504088896341f + kMagic;
  const float n = shifted - kMagic;
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
  uint32_t n_bits, magic_bits;
  std::memcpy(&n_bits, &shifted, sizeof(n_bits));
  std::memcpy(&magic_bits, &kMagic, sizeof(magic_bits));
  const uint32_t bits = (n_bits - magic_bits + 127u) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// log(1 + e) for e in [0, 1]: 1 + e = 2^k (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)), then
// the Cephes polynomial for log(1 + f). f comes from e directly (e, or (e - 1) / 2), never
// from the rounded 1 + e, so small e keep their precision without a correcting divide.
SSLK_INLINE float log1p_unit(float e) {
  const bool big = e > 0.41421356f;
  return log_reduced(big ? 1.0f : 0.0f, big ? 0.5f * (e - 1.0f) : e);
}

// e^x - 1 for x <= 0 (NaN passes through). Near 0, where e^x - 1 cancels, the Taylor series
// to x^8 (remainder below 6e-9, a tenth of an ulp at |x| = 1/2); below -1/2 exp_poly(x) - 1,
// which then is at most -0.39 and so keeps exp_poly's few ulp.
SSLK_INLINE float expm1_poly(float x) {
  float p = 2.4801587302e-5f;  // 1/8!
  p = p * x + 1.9841269841e-4f;
  p = p * x + 1.3888888889e-3f;
  p = p * x + 8.3333333333e-3f;
  p = p * x + 4.1666666667e-2f;
  p = p * x + 1.6666666667e-1f;
  p = p * x + 0.5f;
  const float near_zero = x + (x * x) * p;
  const float below = exp_poly(x) - 1.0f;
  return x > -0.5f ? near_zero : below;
}

template <typename T> SSLK_INLINE T exp_neg(T x) { return std::exp(x); }
template <> SSLK_INLINE float exp_neg<float>(float x) { return exp_poly(x); }
template <typename T> SSLK_INLINE T log1p_small(T e) { return std::log1p(e); }
template <> SSLK_INLINE float log1p_small<float>(float e) { return log1p_unit(e); }
template <typename T> SSLK_INLINE T expm1_neg(T x) { return std::expm1(x); }
template <> SSLK_INLINE float expm1_neg<float>(float x) { return expm1_poly(x); }

// sigmoid and softplus from one e = exp(-|z|): branch-free, so the loops vectorise.
template <typename T> SSLK_INLINE T sigmoid_from(T z, T e) {
  const T inv = T(1) / (T(1) + e);
  return z >= T(0) ? inv : e * inv;
}
template <typename T> SSLK_INLINE T fast_sigmoid(T z) { return sigmoid_from(z, exp_neg<T>(-std::abs(z))); }

// f(z) with the activation known at compile time: the branch-free forms where the loops then
// vectorise, else ActMath (libm). The derivatives are ActMath's (arithmetic on h only).
template <int Act, typename T> SSLK_INLINE T forward(T z) {
  if constexpr (Act == kSigmoid) return fast_sigmoid(z);
  else if constexpr (Act == kElu) return z > T(0) ? z : expm1_neg<T>(z);  // NaN: expm1 branch
  else return ActMath<Act>::forward(z);  // an Act without an ActMath does not compile
}

// Calls fn(std::integral_constant<int, act>{}): one instantiation per activation. The CPU
// passes call it only to pick their row function, before any parallel region, so an unknown
// code throws std::invalid_argument to the caller (it never runs inside a region).
template <typename Fn> SSLK_INLINE auto with_act(int act, Fn&& fn) {
  static_assert(kActivationCount == 6, "a new activation needs a case here");
  switch (act) {
    case kLinear: return fn(std::integral_constant<int, kLinear>{});
    case kSigmoid: return fn(std::integral_constant<int, kSigmoid>{});
    case kTanh: return fn(std::integral_constant<int, kTanh>{});
    case kRelu: return fn(std::integral_constant<int, kRelu>{});
    case kSoftplus: return fn(std::integral_constant<int, kSoftplus>{});
    case kElu: return fn(std::integral_constant<int, kElu>{});
  }
  unknown_kind("activation", act);
}

// The same for the loss (bce fixes the decoder: its kernel works on the logit).
template <typename Fn> SSLK_INLINE auto with_loss(int loss, int dec, Fn&& fn) {
  static_assert(kLossCount == 2, "a new loss needs a case here");
  switch (loss) {
    case kBce: return fn(std::integral_constant<int, kBce>{}, std::integral_constant<int, kSigmoid>{});
    case kMse: return with_act(dec, [&](auto A) { return fn(std::integral_constant<int, kMse>{}, A); });
  }
  unknown_kind("loss", loss);
}

// The same for the corruption kind.
template <typename Fn> SSLK_INLINE auto with_corruption(int kind, Fn&& fn) {
  static_assert(kCorruptionCount == 6, "a new corruption kind needs a case here");
  switch (kind) {
    case kNone: return fn(std::integral_constant<int, kNone>{});
    case kMask: return fn(std::integral_constant<int, kMask>{});
    case kGaussian: return fn(std::integral_constant<int, kGaussian>{});
    case kSaltPepper: return fn(std::integral_constant<int, kSaltPepper>{});
    case kBlock:
    case kPatch:  // need the image's shape: sslkern/backends/structured.py draws them
      throw std::invalid_argument("corruption: block and patch masks are not computed by this kernel");
  }
  unknown_kind("corruption", kind);
}

// Calls fn(std::bool_constant<flag>{}).
template <typename Fn> SSLK_INLINE auto with_flag(bool flag, Fn&& fn) {
  return flag ? fn(std::true_type{}) : fn(std::false_type{});
}

// ---------------------------------------------------------------------------------------
// Row kernels: one instantiation per case, picked by the entry points below.

// u[k] = philox_uniform(seed, counter0 + k) for k < count.
#if SSLK_ROWS_ISA >= 1
// Vector Philox, bit-identical to the scalar one in philox.h (integer arithmetic, then the
// same int -> float conversion and multiply). Two facts of our stream make it cheaper than
// ten full rounds: the counter's words 1-3 start at zero, so round 0 has one product and
// round 1's second product is a per-seed constant; and only word 0 of the result is used,
// so the last round needs one high half. 16 full products per lane instead of 20.
// The lane-width operations are overloads on the vector type, defined per ISA below.
template <typename V> SSLK_INLINE V vbroadcast(uint32_t v);
template <> SSLK_INLINE __m256i vbroadcast<__m256i>(uint32_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }
SSLK_INLINE __m256i vadd(__m256i a, __m256i b) { return _mm256_add_epi32(a, b); }
SSLK_INLINE __m256i vxor(__m256i a, __m256i b) { return _mm256_xor_si256(a, b); }
SSLK_INLINE __m256i vlanes(__m256i) { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
// a * m to 64 bits per lane, as high and low halves. vpmuludq multiplies the even lanes;
// the odd lanes go through a 64-bit shift of a (m is a broadcast, so its odd lanes equal
// its even ones). Two multiplies serve both halves: the multiplier ports are the limit.
SSLK_INLINE void vmulhilo(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}
SSLK_INLINE __m256i vmulhi(__m256i a, __m256i m) {
  const __m256i even = _mm256_srli_epi64(_mm256_mul_epu32(a, m), 32);
  return _mm256_blend_epi32(even, _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m), 0xAA);
}
SSLK_INLINE void vstore_uniform(float* u, __m256i bits) {
  const __m256i folded = _mm256_xor_si256(bits, _mm256_srai_epi32(bits, 31));  // v < 0 ? ~v : v
  _mm256_storeu_ps(u, _mm256_mul_ps(_mm256_cvtepi32_ps(folded), _mm256_set1_ps(4.6566127342e-10f)));
}
#if SSLK_ROWS_ISA >= 2
template <> SSLK_INLINE __m512i vbroadcast<__m512i>(uint32_t v) { return _mm512_set1_epi32(static_cast<int>(v)); }
SSLK_INLINE __m512i vadd(__m512i a, __m512i b) { return _mm512_add_epi32(a, b); }
SSLK_INLINE __m512i vxor(__m512i a, __m512i b) { return _mm512_xor_si512(a, b); }
SSLK_INLINE __m512i vlanes(__m512i) {
  return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
SSLK_INLINE void vmulhilo(__m512i a, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(a, m);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}
SSLK_INLINE __m512i vmulhi(__m512i a, __m512i m) {
  const __m512i even = _mm512_srli_epi64(_mm512_mul_epu32(a, m), 32);
  return _mm512_mask_blend_epi32(0xAAAA, even, _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m));
}
SSLK_INLINE void vstore_uniform(float* u, __m512i bits) {
  const __m512i folded = _mm512_xor_si512(bits, _mm512_srai_epi32(bits, 31));
  _mm512_storeu_ps(u, _mm512_mul_ps(_mm512_cvtepi32_ps(folded), _mm512_set1_ps(4.6566127342e-10f)));
}
#endif

// Words 0 and 1 of Philox4x32-10 at counters counter0 + lane, lane < the vector's width.
template <typename V>
SSLK_INLINE void philox_words01(uint32_t counter0, uint32_t k0, uint32_t k1, V& w0, V& w1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  const V m0 = vbroadcast<V>(kM0), m1 = vbroadcast<V>(kM1);
  const V ctr = vadd(vbroadcast<V>(counter0), vlanes(V{}));
  // round 0 on (ctr, 0, 0, 0)
  V c1 = vbroadcast<V>(0), c2, c3;
  vmulhilo(ctr, m0, c2, c3);
  c2 = vxor(c2, vbroadcast<V>(k1));
  // round 1: word 0 is the scalar k0, so its product is a constant
  const uint64_t p = static_cast<uint64_t>(kM0) * k0;
  V c0;
  vmulhilo(c2, m1, c0, c1);
  c0 = vxor(c0, vbroadcast<V>(k0 + kW0));
  c2 = vxor(vbroadcast<V>(static_cast<uint32_t>(p >> 32) ^ (k1 + kW1)), c3);
  c3 = vbroadcast<V>(static_cast<uint32_t>(p));
  for (uint32_t round = 2; round < 9; ++round) {
    V hi_b, lo_b, hi_a, lo_a;
    vmulhilo(c2, m1, hi_b, lo_b);
    vmulhilo(c0, m0, hi_a, lo_a);
    c0 = vxor(vxor(hi_b, c1), vbroadcast<V>(k0 + round * kW0));
    c1 = lo_b;
    c2 = vxor(vxor(hi_a, c3), vbroadcast<V>(k1 + round * kW1));
    c3 = lo_a;
  }
  V hi_b;  // round 9: words 0 and 1 only
  vmulhilo(c2, m1, hi_b, w1);
  w0 = vxor(vxor(hi_b, c1), vbroadcast<V>(k0 + 9 * kW0));
}

// Word 0 alone (the uniform draw): the inlined copy drops word 1's unused low half.
template <typename V>
SSLK_INLINE V philox_word0(uint32_t counter0, uint32_t k0, uint32_t k1) {
  V w0, w1;
  philox_words01<V>(counter0, k0, k1, w0, w1);
  return w0;
}

SSLK_INLINE void philox_uniforms(uint64_t seed, uint32_t counter0, int64_t count, float* u) {
#if SSLK_ROWS_ISA >= 2
  using V = __m512i;
#else
  using V = __m256i;
#endif
  constexpr int64_t kWidth = sizeof(V) / 4;
  const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  int64_t k = 0;
  for (; k + kWidth <= count; k += kWidth)
    vstore_uniform(u + k, philox_word0<V>(counter0 + static_cast<uint32_t>(k), k0, k1));
  for (; k < count; ++k) u[k] = philox_uniform(seed, counter0 + static_cast<uint32_t>(k));
}

// u1[k], u2[k] = the uniforms of words 0 and 1 at counter0 + k.
SSLK_INLINE void philox_uniform_pairs(uint64_t seed, uint32_t counter0, int64_t count, float* u1, float* u2) {
#if SSLK_ROWS_ISA >= 2
  using V = __m512i;
#else
  using V = __m256i;
#endif
  constexpr int64_t kWidth = sizeof(V) / 4;
  const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  int64_t k = 0;
  for (; k + kWidth <= count; k += kWidth) {
    V w0, w1;
    philox_words01<V>(counter0 + static_cast<uint32_t>(k), k0, k1, w0, w1);
    vstore_uniform(u1 + k, w0);
    vstore_uniform(u2 + k, w1);
  }
  for (; k < count; ++k) {
    const Philox4 r = philox4x32_10(counter0 + static_cast<uint32_t>(k), seed);
    u1[k] = uint_to_uniform(r.c0), u2[k] = uint_to_uniform(r.c1);
  }
}
#else
SSLK_INLINE void philox_uniforms(uint64_t seed, uint32_t counter0, int64_t count, float* u) {
  for (int64_t k = 0; k < count; ++k) u[k] = philox_uniform(seed, counter0 + static_cast<uint32_t>(k));
}

SSLK_INLINE void philox_uniform_pairs(uint64_t seed, uint32_t counter0, int64_t count, float* u1, float* u2) {
  for (int64_t k = 0; k < count; ++k) {
    const Philox4 r = philox4x32_10(counter0 + static_cast<uint32_t>(k), seed);
    u1[k] = uint_to_uniform(r.c0), u2[k] = uint_to_uniform(r.c1);
  }
}
#endif

// n[k] = the normal draw of counter0 + k (philox_normal's Box-Muller, through box_muller:
// one copy for every instruction set, so the copies draw identical normals).
SSLK_INLINE void philox_normals(uint64_t seed, uint32_t counter0, int64_t count, float* n) {
  constexpr int64_t kChunk = 256;
  alignas(64) float u1[kChunk], u2[kChunk];
  for (int64_t k0 = 0; k0 < count; k0 += kChunk) {
    const int64_t m = std::min(kChunk, count - k0);
    philox_uniform_pairs(seed, counter0 + static_cast<uint32_t>(k0), m, u1, u2);
    box_muller(u1, u2, n + k0, m);
  }
}

// out[i] for begin <= i < end: x~ (grad false) or dx~/dx times x (grad true, x a gradient).
template <int Kind, typename T>
SSLK_INLINE void corrupt_span(const T* x, T* out, int64_t begin, int64_t end, float level,
                              uint64_t seed, uint32_t offset, bool grad) {
  const T zero = T(0);
  if constexpr (Kind == kMask || Kind == kSaltPepper) {
    constexpr int64_t kChunk = 256;
    alignas(32) float u[kChunk];
    const float half = 0.5f * level;
    const T fill = grad ? zero : T(1);  // salt: 1 where half <= u < level (its gradient is 0)
    for (int64_t i0 = begin; i0 < end; i0 += kChunk) {
      const int64_t n = std::min(kChunk, end - i0);
      philox_uniforms(seed, offset + static_cast<uint32_t>(i0), n, u);
      const T* xi = x + i0;
      T* oi = out + i0;
      if constexpr (Kind == kMask) {
#pragma omp simd
        for (int64_t k = 0; k < n; ++k) oi[k] = u[k] >= level ? xi[k] : zero;
      } else {
#pragma omp simd
        for (int64_t k = 0; k < n; ++k) oi[k] = u[k] >= level ? xi[k] : (u[k] < half ? zero : fill);
      }
    }
  } else if constexpr (Kind == kGaussian) {
    if (!grad) {
      constexpr int64_t kChunk = 256;
      alignas(64) float noise[kChunk];
      for (int64_t i0 = begin; i0 < end; i0 += kChunk) {
        const int64_t n = std::min(kChunk, end - i0);
        philox_normals(seed, offset + static_cast<uint32_t>(i0), n, noise);
        const T* xi = x + i0;
        T* oi = out + i0;
#pragma omp simd
        for (int64_t k = 0; k < n; ++k) oi[k] = xi[k] + static_cast<T>(level * noise[k]);
      }
    } else {
      for (int64_t i = begin; i < end; ++i) out[i] = x[i];  // additive noise: dx~/dx = 1
    }
  } else {
    static_assert(Kind == kNone, "corrupt_span: a corruption kind without a case");
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
        const T s = ActMath<Act>::d1(zi[j]);
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
        static_assert(Loss == kMse, "loss_rows: a loss without a case");
        const T y = forward<Dec, T>(v);
        const T diff = y - xi[k];
        grad = diff * ActMath<Dec>::d1(y);
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
      const T s = ActMath<Act>::d1(hi[j]);
      T v = T(0);
      if constexpr (HasDh) v = dhi[j] * s;
      if constexpr (Contractive) v += coef * s * ActMath<Act>::d2(hi[j]) * r[j];
      const T out = g * v;
      dzi[j] = out;
      if constexpr (HasDb) dbp[j] += out;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Entry points: one per (pass, dtype). The passes that depend on a kind or on optional
// operands return the row function for them (every switch runs here, once per call, before
// the caller enters its parallel region; an unknown code throws std::invalid_argument); the
// others are the row functions themselves. The *Fn types are in kernels.cpp.

#define SSLK_ROW_PASSES(T, SUFFIX)                                                            \
  CorruptSpanFn<T> corrupt_span_##SUFFIX(int kind) {                                          \
    return with_corruption(kind, [](auto K) -> CorruptSpanFn<T> {                             \
      return &corrupt_span<decltype(K)::value, T>;                                            \
    });                                                                                       \
  }                                                                                           \
  EncoderRowsFn<T> encoder_rows_##SUFFIX(int act, bool has_b, bool has_r, bool has_s2) {      \
    return with_act(act, [&](auto A) {                                                        \
      return with_flag(has_b, [&](auto HB) {                                                  \
        return with_flag(has_r, [&](auto HR) {                                                \
          return with_flag(has_s2, [&](auto HS) -> EncoderRowsFn<T> {                         \
            return &encoder_rows<decltype(A)::value, HB(), HR(), HS(), T>;                    \
          });                                                                                 \
        });                                                                                   \
      });                                                                                     \
    });                                                                                       \
  }                                                                                           \
  LossRowsFn<T> loss_rows_##SUFFIX(int loss, int dec, bool has_c, bool has_dc) {              \
    return with_loss(loss, dec, [&](auto L, auto D) {                                         \
      return with_flag(has_c, [&](auto HC) {                                                  \
        return with_flag(has_dc, [&](auto HD) -> LossRowsFn<T> {                              \
          return &loss_rows<decltype(L)::value, decltype(D)::value, HC(), HD(), T>;           \
        });                                                                                   \
      });                                                                                     \
    });                                                                                       \
  }                                                                                           \
  /* contractive: the caller's request; an activation with f'' = 0 drops the term. */        \
  DzRowsFn<T> dz_rows_##SUFFIX(int act, bool has_dh, bool contractive, bool has_db) {         \
    return with_act(act, [&](auto A) {                                                        \
      const bool with_d2 = contractive && !ActMath<decltype(A)::value>::kPiecewiseLinear;     \
      return with_flag(has_dh, [&](auto HD) {                                                 \
        return with_flag(with_d2, [&](auto C) {                                               \
          return with_flag(has_db, [&](auto HB) -> DzRowsFn<T> {                              \
            return &dz_rows<decltype(A)::value, HD(), C(), HB(), T>;                          \
          });                                                                                 \
        });                                                                                   \
      });                                                                                     \
    });                                                                                       \
  }                                                                                           \
  void row_sq_norms_##SUFFIX(const T* w, int64_t ldw, int64_t row0, int64_t row1, \
                                         int64_t cols, T* r) {                                \
    for (int64_t j = row0; j < row1; ++j) {                                                   \
      const T* wj = w + j * ldw;                                                              \
      T acc = 0;                                                                              \
      _Pragma("omp simd reduction(+ : acc)") for (int64_t k = 0; k < cols; ++k) acc +=        \
          wj[k] * wj[k];                                                                      \
      r[j] = acc;                                                                             \
    }                                                                                         \
  }                                                                                           \
  void row_scale_add_##SUFFIX(T* dw, int64_t lddw, const T* w, int64_t ldw,      \
                                          int64_t row0, int64_t row1, int64_t cols,           \
                                          const T* scale, T alpha) {                          \
    for (int64_t j = row0; j < row1; ++j) {                                                   \
      const T f = alpha * scale[j];                                                           \
      _Pragma("omp simd") for (int64_t k = 0; k < cols; ++k) dw[j * lddw + k] +=              \
          f * w[j * ldw + k];                                                                 \
    }                                                                                         \
  }                                                                                           \
  void column_sums_##SUFFIX(const T* partials, int64_t blocks, int64_t col0,     \
                                        int64_t col1, int64_t cols, T* out) {                 \
    for (int64_t j = col0; j < col1; ++j) out[j] = T(0);                                      \
    for (int64_t k = 0; k < blocks; ++k) {                                                    \
      const T* p = partials + k * cols;                                                       \
      _Pragma("omp simd") for (int64_t j = col0; j < col1; ++j) out[j] += p[j];               \
    }                                                                                         \
  }

SSLK_ROW_PASSES(float, f32)
SSLK_ROW_PASSES(double, f64)
#undef SSLK_ROW_PASSES

// ---------------------------------------------------------------------------------------
// Product operands at a rounded precision (round_operand in kernels.cpp): scale * src rounded
// to nearest, ties to even, as a GPU rounds, on the bits and with selects only, so that every
// copy vectorises. A NaN stays a (quiet) NaN.

SSLK_INLINE float float_of_bits(uint32_t bits) {
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

SSLK_INLINE uint32_t bits_of_float(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return bits;
}

SSLK_INLINE uint32_t bf16_rounded_bits(float v) {  // the bf16 in the high half of a float
  const uint32_t bits = bits_of_float(v);
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
  return (bits & 0x7FFFFFFFu) > 0x7F800000u ? bits | 0x00400000u : rounded;
}

SSLK_INLINE float fp16_rounded(float v) {  // the nearest fp16, as a float
  const uint32_t bits = bits_of_float(v);
  const uint32_t sign = bits & 0x80000000u, mag = bits & 0x7FFFFFFFu;
  const uint32_t normal = (mag + 0xFFFu + ((mag >> 13) & 1u)) & 0xFFFFE000u;  // 11 significant bits
  // below 2^-14: multiples of 2^-24, the ulp of 0.75 (adding it rounds there, ties to even)
  const uint32_t sub = bits_of_float((float_of_bits(mag) + 0.75f) - 0.75f);
  uint32_t out = mag < 0x38800000u ? sub : normal;  // 2^-14: fp16's smallest normal
  out = mag < 0x477FF000u ? out : 0x7F800000u;  // 65520, halfway past 65504: infinity
  out = mag > 0x7F800000u ? mag | 0x00400000u : out;
  return float_of_bits(out | sign);
}

#define SSLK_ROUND_ROWS(NAME, OUT, EXPR)                                                      \
  void NAME(const float* src, int64_t ld, int64_t row0, int64_t row1, int64_t cols, float scale, \
            OUT* dst) {                                                                       \
    for (int64_t i = row0; i < row1; ++i) {                                                   \
      const float* in = src + i * ld;                                                         \
      OUT* out = dst + i * cols;                                                              \
      _Pragma("omp simd") for (int64_t k = 0; k < cols; ++k) {                                \
        const float v = in[k] * scale;                                                        \
        out[k] = EXPR;                                                                        \
      }                                                                                       \
    }                                                                                         \
  }
SSLK_ROUND_ROWS(round_rows_bf16_words, uint16_t, uint16_t(bf16_rounded_bits(v) >> 16))
SSLK_ROUND_ROWS(round_rows_bf16, float, float_of_bits(bf16_rounded_bits(v)))
SSLK_ROUND_ROWS(round_rows_fp16, float, fp16_rounded(v))
SSLK_ROUND_ROWS(scaled_rows, float, v)
#undef SSLK_ROUND_ROWS

