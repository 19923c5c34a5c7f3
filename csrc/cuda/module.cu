// sslkern native CUDA module: the kernels of kernels.cuh compiled ahead of time, behind one
// generic launcher. Like the CPU module it does not link libtorch: Python plans every launch
// (sslkern/backends/native_cuda.py: grid, block, arguments packed in 8-byte slots, torch's
// current stream) and the same plan drives the NVRTC kernels of sslkern/_cuda_runtime.py, so
// the launch logic exists once. Kernels are named by the C++ expression NVRTC also uses.
#include <pybind11/pybind11.h>

#include <cuda_runtime.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.cuh"
#include "sslkern/kinds_py.h"

namespace py = pybind11;

namespace {

struct Kernel {
  const char* name;
  const void* function;
  int arity;
};

// Every parameter must fit the 8-byte slot the Python side packs it in.
template <typename... Args>
constexpr int arity_of(void (*)(Args...)) {
  static_assert(((sizeof(Args) <= 8) && ...), "kernel parameters must fit 8-byte slots");
  return sizeof...(Args);
}

#define SSLK_KERNEL(...)                                                                   \
  Kernel{"sslkern::cuda::" #__VA_ARGS__, reinterpret_cast<const void*>(&sslkern::cuda::__VA_ARGS__), \
         arity_of(&sslkern::cuda::__VA_ARGS__)}
#define SSLK_TYPED(kernel, T, V) SSLK_KERNEL(kernel<T, V>)
#define SSLK_ALL_VECS(kernel) \
  SSLK_TYPED(kernel, float, 1), SSLK_TYPED(kernel, float, 4), SSLK_TYPED(kernel, double, 1), SSLK_TYPED(kernel, double, 2)

const std::vector<Kernel>& kernels() {
  static const std::vector<Kernel> table = {
      SSLK_KERNEL(philox_fill_kernel<1>), SSLK_KERNEL(philox_fill_kernel<4>),
      SSLK_ALL_VECS(corrupt_kernel),      SSLK_ALL_VECS(bias_act_kernel),
      SSLK_ALL_VECS(loss_grad_kernel),    SSLK_ALL_VECS(act_grad_kernel),
      SSLK_ALL_VECS(row_sq_norms_kernel), SSLK_ALL_VECS(row_scale_add_kernel),
      SSLK_KERNEL(reduce_partials_kernel<float>), SSLK_KERNEL(reduce_partials_kernel<double>),
  };
  return table;
}

void check(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    throw std::runtime_error(what + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
  }
}

dim3 to_dim3(const py::tuple& t, const char* name) {
  if (t.size() != 3) throw std::invalid_argument(std::string(name) + ": expected 3 sizes");
  return dim3(t[0].cast<unsigned>(), t[1].cast<unsigned>(), t[2].cast<unsigned>());
}

// Makes `device` current for the launch and restores the caller's device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")");
  }
  ~DeviceGuard() {
    int current = previous_;
    if (cudaGetDevice(&current) == cudaSuccess && current != previous_) cudaSetDevice(previous_);
  }

 private:
  int previous_ = 0;
};

void launch(int handle, const py::tuple& grid, const py::tuple& block, uintptr_t stream, int device,
            const py::bytes& packed) {
  const auto& table = kernels();
  if (handle < 0 || handle >= static_cast<int>(table.size()))
    throw std::invalid_argument("handle: no kernel " + std::to_string(handle));
  const Kernel& kernel = table[handle];
  const std::string bytes = packed;
  if (bytes.size() != static_cast<size_t>(kernel.arity) * 8)
    throw std::invalid_argument(std::string("args: ") + kernel.name + " takes " + std::to_string(kernel.arity) +
                                " arguments, got " + std::to_string(bytes.size() / 8.0) + " slots");
  std::vector<uint64_t> slots(kernel.arity);  // 8-byte aligned copies the pointers below point into
  if (!bytes.empty()) std::memcpy(slots.data(), bytes.data(), bytes.size());
  std::vector<void*> args(kernel.arity);
  for (int i = 0; i < kernel.arity; ++i) args[i] = &slots[i];
  const dim3 g = to_dim3(grid, "grid"), b = to_dim3(block, "block");
  DeviceGuard guard(device);
  check(cudaLaunchKernel(kernel.function, g, b, args.data(), 0, reinterpret_cast<cudaStream_t>(stream)),
        std::string("launching ") + kernel.name);
  check(cudaGetLastError(), std::string("after launching ") + kernel.name);
}

}  // namespace

PYBIND11_MODULE(_native_cuda, m) {
  m.doc() = "sslkern native CUDA kernels (raw pointers and streams; no libtorch)";
  m.def("build_info", [] {
    py::dict d;
    d["cuda_runtime"] = CUDART_VERSION;
    d["kernels"] = kernels().size();
    return d;
  });
  m.def("kinds", &sslkern::built_kinds,
        "The kind counts of kinds.h this module was built with, and the activation codes whose "
        "f'' vanishes (sslkern/_native.py refuses a build that disagrees with sslkern/kinds.py).");
  m.def("device_count", [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no driver/device" error
      return 0;
    }
    return n;
  });
  m.def("kernel_table", [] {
    py::list table;
    for (const Kernel& k : kernels()) table.append(py::make_tuple(k.name, k.arity));
    return table;
  }, "(name, parameter count) per kernel in handle order; names are NVRTC's name expressions.");
  m.def("launch", &launch, py::arg("handle"), py::arg("grid"), py::arg("block"), py::arg("stream"),
        py::arg("device"), py::arg("args"),
        "Launch kernel `handle` on `stream` of `device`; `args` packs each parameter in 8 bytes.");
}
