// What every shared header needs: the function qualifier for code compiled by the host
// compiler, nvcc and NVRTC alike, and the one way such code refuses a kind code it does not
// know (sslkern/kinds.py): on the host a std::invalid_argument naming the kind and the code,
// on the device a trap (the launch fails with an error instead of computing something else).
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define SSLK_HD __host__ __device__ __forceinline__
#else
#define SSLK_HD inline
#endif

#ifndef __CUDACC_RTC__
#include <stdint.h>
#include <math.h>
#include <stdexcept>
#include <string>
#endif

namespace sslkern {

// `family` is "activation", "loss" or "corruption". Host callers must not reach this inside
// an OpenMP parallel region (an exception cannot leave one): the CPU kernels validate and
// dispatch on every kind before they enter one (csrc/cpu/kernels_rows.h, with_act).
[[noreturn]] SSLK_HD void unknown_kind(const char* family, int code) {
#ifdef __CUDA_ARCH__
  (void)family;
  (void)code;
  __trap();
  __builtin_unreachable();
#else
  throw std::invalid_argument(std::string("unknown ") + family + " code " + std::to_string(code));
#endif
}

}  // namespace sslkern
