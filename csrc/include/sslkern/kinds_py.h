// The kinds a compiled module was built with, for the Python loader (sslkern/_native.py
// refuses a build whose counts disagree with sslkern/kinds.py). Shared by the CPU and CUDA
// modules; host code only (it needs pybind11), never part of the NVRTC source.
#pragma once
#include <pybind11/pybind11.h>

#include "sslkern/activations.h"

namespace sslkern {

inline pybind11::dict built_kinds() {
  pybind11::dict d;
  d["activation"] = kActivationCount;
  d["loss"] = kLossCount;
  d["corruption"] = kCorruptionCount;
  d["sparsity"] = kSparsityCount;
  d["precision"] = kPrecisionCount;
  pybind11::list piecewise;  // activation codes whose f'' vanishes
  for (int act = 0; act < kActivationCount; ++act)
    if (act_piecewise_linear(act)) piecewise.append(act);
  d["piecewise_linear"] = piecewise;
  return d;
}

}  // namespace sslkern
