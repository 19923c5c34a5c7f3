// sslkern native CUDA module. Built when nvcc is found (SSLKERN_CUDA=0 skips, =1 requires).
// Like the CPU module it does not link libtorch: pointers, sizes and the stream cross the
// boundary. The kernels arrive with the CUDA backend (issue 4); this module already loads,
// reports its build and counts devices, so the build switch and the loader are exercised.
#include <pybind11/pybind11.h>

#include <cuda_runtime.h>

#include "sslkern/philox.h"

namespace py = pybind11;

PYBIND11_MODULE(_native_cuda, m) {
  m.doc() = "sslkern native CUDA kernels (raw pointers and streams; no libtorch)";
  m.def("build_info", [] {
    py::dict d;
    d["cuda_runtime"] = CUDART_VERSION;
    return d;
  });
  m.def("device_count", [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no driver/device" error
      return 0;
    }
    return n;
  });
}
