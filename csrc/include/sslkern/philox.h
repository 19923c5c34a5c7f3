// Philox4x32-10 counter-based random numbers, bit-identical to Triton's tl.rand / tl.randn.
// One definition for every backend: the C++ CPU module, the CUDA module and NVRTC (cupy)
// all include this header. See docs/random.md for the specification.
#pragma once
#include "sslkern/common.h"
#include "sslkern/kinds.h"

namespace sslkern {

struct Philox4 {
  uint32_t c0, c1, c2, c3;
};

SSLK_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// Counter (counter, 0, 0, 0), key (seed low word, seed high word), ten rounds.
SSLK_HD Philox4 philox4x32_10(uint32_t counter, uint64_t seed) {
  uint32_t c0 = counter, c1 = 0, c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    uint32_t hi_b, lo_b, hi_a, lo_a;
    mulhilo32(0xCD9E8D57u, c2, hi_b, lo_b);
    mulhilo32(0xD2511F53u, c0, hi_a, lo_a);
    const uint32_t n0 = hi_b ^ c1 ^ k0, n2 = hi_a ^ c3 ^ k1;
    c0 = n0;
    c1 = lo_b;
    c2 = n2;
    c3 = lo_a;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{c0, c1, c2, c3};
}

// Triton's uint_to_uniform_float: fold the sign bit away, then one fp32 multiply.
SSLK_HD float uint_to_uniform(uint32_t bits) {
  int32_t v = static_cast<int32_t>(bits);
  if (v < 0) v = ~v;
  return static_cast<float>(v) * 4.6566127342e-10f;
}

SSLK_HD float philox_uniform(uint64_t seed, uint32_t counter) {
  return uint_to_uniform(philox4x32_10(counter, seed).c0);
}

// Box-Muller on (c0, c1), as tl.randn does: equal within 1e-5 across libms.
SSLK_HD float philox_normal(uint64_t seed, uint32_t counter) {
  const Philox4 r = philox4x32_10(counter, seed);
  float u1 = uint_to_uniform(r.c0);
  const float u2 = uint_to_uniform(r.c1);
  u1 = u1 > 1.0e-7f ? u1 : 1.0e-7f;
  return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307179586f * u2);
}

// Corruption kinds (docs/random.md; codes in kinds.h).
static_assert(kCorruptionCount == 6,
              "a new corruption kind needs a case here and in corrupt_span (csrc/cpu/kernels_rows.h)");

// x~ for one element; `keep` reports whether x flows through (the derivative dx~/dx).
template <typename T>
SSLK_HD T corrupt_element(T x, int kind, float level, uint64_t seed, uint32_t counter, bool& keep) {
  keep = true;
  switch (kind) {
    case kNone:
      return x;
    case kMask:
      keep = philox_uniform(seed, counter) >= level;
      return keep ? x : T(0);
    case kGaussian:
      return x + static_cast<T>(level * philox_normal(seed, counter));
    case kSaltPepper: {
      const float u = philox_uniform(seed, counter);
      if (u < 0.5f * level) { keep = false; return T(0); }
      if (u < level) { keep = false; return T(1); }
      return x;
    }
    case kBlock:
    case kPatch:  // need the image's shape: sslkern/backends/structured.py draws them
      break;
  }
  unknown_kind("corruption", kind);
}

}  // namespace sslkern
