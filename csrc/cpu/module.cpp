// Python bindings of the CPU kernels. No libtorch: tensors cross as raw data pointers
// (Python ints), sizes and leading dimensions. Every argument is checked here, so a bad
// call raises ValueError naming the argument instead of crashing the interpreter.
// What no check here can see: whether a pointer addresses a live buffer of the stated
// extent and dtype (a dangling pointer or a too-small buffer looks valid). The callers in
// sslkern/backends/native.py derive pointers, sizes and dtype codes from torch tensors.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.h"
#include "pretext.h"
#include "sslkern/activations.h"
#include "sslkern/kinds.h"
#include "sslkern/kinds_py.h"
#include "step.h"

namespace py = pybind11;
using sslkern::cpu::philox_fill;

namespace {

enum DType : int { kFloat32 = 0, kFloat64 = 1 };

[[noreturn]] void fail(const std::string& arg, const std::string& why) {
  throw std::invalid_argument(arg + ": " + why);
}

template <typename T>
T* pointer(uintptr_t address, const char* name, bool nullable = false) {
  if (address == 0) {
    if (nullable) return nullptr;
    fail(name, "null pointer");
  }
  if (address % alignof(T) != 0) fail(name, "pointer not aligned to " + std::to_string(alignof(T)) + " bytes");
  return reinterpret_cast<T*>(address);
}

void check_size(int64_t n, const char* name) {
  if (n < 0) fail(name, "negative size " + std::to_string(n));
}

// The kernels reach row i at base + i * ld with int64 arithmetic: the last element,
// (rows - 1) * ld + cols - 1, must have a byte offset that fits int64 (8-byte elements).
constexpr int64_t kMaxElements = std::numeric_limits<int64_t>::max() / 8;

void check_matrix(const char* name, int64_t rows, int64_t cols, int64_t ld) {
  check_size(rows, "rows");
  check_size(cols, "cols");
  if (ld < cols || ld < 1) fail(name, "leading dimension " + std::to_string(ld) + " < cols " + std::to_string(cols));
  if (rows > 0 && rows - 1 > (kMaxElements - cols) / ld)
    fail(name, std::to_string(rows) + " rows of leading dimension " + std::to_string(ld) +
                   " overflow 64-bit byte offsets");
}

// A kind code of sslkern/kinds.py: `family` is "activation", "loss" or "corruption".
void check_enum(int value, int count, const char* family, const char* name) {
  if (value < 0 || value >= count)
    fail(name, std::string("unknown ") + family + " code " + std::to_string(value) + " (known: 0.." +
                   std::to_string(count - 1) + ")");
}

void check_counters(int64_t n) {
  if (n > (int64_t(1) << 32)) fail("n", "more than 2^32 elements exceed the 32-bit Philox counter");
}

// Calls fn.template operator()<T>() with T the C++ type of the dtype code.
template <typename Fn>
auto dispatch(int dtype, Fn&& fn) {
  if (dtype == kFloat32) return fn(float{});
  if (dtype == kFloat64) return fn(double{});
  fail("dtype", "unsupported dtype code " + std::to_string(dtype) + " (0 = float32, 1 = float64)");
}

void corrupt_checked(bool grad, int dtype, uintptr_t src, uintptr_t out, int64_t n, int kind,
                     double level, uint64_t seed, uint32_t offset) {
  check_size(n, "n");
  check_counters(n);
  check_enum(kind, sslkern::kCorruptionCount, "corruption", "kind");
  if (!std::isfinite(level)) fail("level", "not finite");
  // The kernels take level as a float: a larger double would become inf (or UB).
  if (std::fabs(level) > FLT_MAX) fail("level", "outside the float32 range");
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* s = pointer<T>(src, grad ? "grad" : "x", n == 0);
    T* o = pointer<T>(out, "out", n == 0);
    py::gil_scoped_release nogil;
    if (grad) sslkern::cpu::corrupt_grad<T>(s, o, n, kind, float(level), seed, offset);
    else sslkern::cpu::corrupt<T>(s, o, n, kind, float(level), seed, offset);
  });
}

// The extra penalties of the one-call routes, checked.
sslkern::cpu::ExtraPenalties extra_penalties(int64_t batch, int64_t visible, double sparsity,
                                             double sparsity_target, int sparsity_kind, double higher_order,
                                             double higher_order_sigma, int64_t higher_order_samples) {
  if (!(sparsity >= 0.0) || !std::isfinite(sparsity)) fail("sparsity", "not finite and >= 0");
  check_enum(sparsity_kind, sslkern::kSparsityCount, "sparsity", "sparsity_kind");
  if (sparsity != 0.0 && sparsity_kind == sslkern::kKl && !(sparsity_target > 0.0 && sparsity_target < 1.0))
    fail("sparsity_target", "not in (0, 1)");
  if (!(higher_order >= 0.0) || !std::isfinite(higher_order)) fail("higher_order", "not finite and >= 0");
  if (!(higher_order_sigma >= 0.0) || higher_order_sigma > FLT_MAX)
    fail("higher_order_sigma", "not a finite float32 >= 0");
  if (higher_order_samples < 1 || higher_order_samples > (int64_t(1) << 32))
    fail("higher_order_samples", "must be in [1, 2**32]");
  // (1 + samples) B D counters, checked without overflowing: B D <= 2^32 already holds.
  if (higher_order != 0.0 && higher_order_samples > (int64_t(1) << 32) / (batch * visible) - 1)
    fail("higher_order_samples", "(1 + samples) * B * D counters exceed the 2^32 of the Philox stream");
  sslkern::cpu::ExtraPenalties p;
  p.sparsity = sparsity, p.sparsity_target = sparsity_target, p.sparsity_kind = sparsity_kind;
  p.higher_order = higher_order, p.sigma = float(higher_order_sigma), p.samples = higher_order_samples;
  return p;
}

// A rounded precision rounds the products of the objective only: the higher-order term's
// products stay in fp32 (the pass-by-pass route, sslkern/backends/penalties.py).
template <typename T>
void check_rounded_extras(const sslkern::cpu::AeStep<T>& s) {
  if (s.precision != sslkern::kDefault && s.extra.noisy_copies() != 0)
    fail("precision", "a rounded precision with a higher-order term is not computed by this kernel");
}

// The fused step's arguments, checked. BLAS takes 32-bit sizes, so every extent must fit.
template <typename T>
sslkern::cpu::AeStep<T> step_args(uintptr_t gemm, int64_t batch, int64_t visible, int64_t hidden,
                                  uintptr_t x, uintptr_t w, int64_t ldw, uintptr_t b, uintptr_t c,
                                  int corruption, double level, uint64_t seed, uint32_t offset,
                                  int encoder, int decoder, int loss, double contractive,
                                  uintptr_t ax, uintptr_t h, uintptr_t r, uintptr_t s2col, uintptr_t dc,
                                  int precision, uintptr_t half_gemm, double grad_scale,
                                  bool scratch_inside = false, bool dc_inside = false) {
  constexpr int64_t kBlasMax = std::numeric_limits<int>::max();
  check_size(batch, "batch");
  check_size(visible, "visible");
  check_size(hidden, "hidden");
  if (batch > kBlasMax / 2 || visible > kBlasMax || hidden > kBlasMax || ldw > kBlasMax)
    fail("shape", "an extent overflows BLAS's 32-bit sizes");
  if (batch == 0 || visible == 0 || hidden == 0)
    fail("shape", "the fused step needs B, D, H >= 1 (the caller handles empty shapes)");
  check_matrix("w", hidden, visible, ldw);
  check_counters(batch * visible);
  check_enum(corruption, sslkern::kCorruptionCount, "corruption", "corruption");
  if (corruption == sslkern::kBlock || corruption == sslkern::kPatch)  // need each row's image shape
    fail("corruption", "block and patch masks are not computed by this kernel (sslkern/backends/structured.py)");
  check_enum(encoder, sslkern::kActivationCount, "activation", "encoder");
  check_enum(decoder, sslkern::kActivationCount, "activation", "decoder");
  check_enum(loss, sslkern::kLossCount, "loss", "loss");
  if (!std::isfinite(level) || std::fabs(level) > FLT_MAX) fail("level", "not a finite float32");
  if (!(contractive >= 0.0) || !std::isfinite(contractive)) fail("contractive", "not finite and >= 0");
  check_enum(precision, sslkern::kPrecisionCount, "precision", "precision");
  if (precision != sslkern::kDefault && !std::is_same_v<T, float>)
    fail("precision", "rounded products need float32 parameters");
  if (half_gemm != 0 && precision != sslkern::kBf16) fail("half_gemm", "only bf16 operands go through a half gemm");
  if (!(grad_scale > 0.0) || grad_scale > FLT_MAX) fail("grad_scale", "not a finite float32 > 0");
  const bool penalty = contractive != 0.0;
  sslkern::cpu::AeStep<T> s;
  s.gemm = reinterpret_cast<sslkern::cpu::BlasGemm<T>>(pointer<char>(gemm, "gemm"));
  s.batch = batch, s.visible = visible, s.hidden = hidden;
  s.x = pointer<T>(x, "x");
  s.w = pointer<T>(w, "w"), s.ldw = ldw;
  s.b = pointer<T>(b, "b", true), s.c = pointer<T>(c, "c", true);
  s.corruption = corruption, s.level = float(level), s.seed = seed, s.offset = offset;
  s.encoder = encoder, s.decoder = decoder, s.loss = loss, s.contractive = contractive;
  s.ax = pointer<T>(ax, "ax", scratch_inside), s.h = pointer<T>(h, "h", scratch_inside);
  s.r = pointer<T>(r, "r", !penalty || scratch_inside);
  s.s2col = pointer<T>(s2col, "s2col", !penalty || scratch_inside);
  s.dc = pointer<T>(dc, "dc", dc_inside);
  s.precision = precision;
  s.half_gemm = reinterpret_cast<sslkern::cpu::HalfGemm>(pointer<char>(half_gemm, "half_gemm", true));
  s.grad_scale = float(grad_scale);
  return s;
}

// Calls fn(E{}) with E the unsigned word of `element_size` bytes: the pretext generators only
// move elements, so any dtype of that size is copied bit for bit.
template <typename Fn>
void dispatch_words(int element_size, Fn&& fn) {
  if (element_size == 2) return fn(uint16_t{});
  if (element_size == 4) return fn(uint32_t{});
  if (element_size == 8) return fn(uint64_t{});
  fail("element_size", "must be 2, 4 or 8 bytes, got " + std::to_string(element_size));
}

// The draws of a pretext call: `draws` per row must fit the 32-bit counter.
void check_pretext_batch(int64_t batch, int draws) {
  check_size(batch, "batch");
  if (batch > (int64_t(1) << 32) / draws)
    fail("batch", std::to_string(batch) + " rows of " + std::to_string(draws) + " draws exceed the 32-bit Philox counter");
}

void check_positive(int64_t value, const char* name) {
  if (value < 1) fail(name, "must be >= 1, got " + std::to_string(value));
}

// Images of height x width as the rows of x [batch, height*width]: the sides and the last
// element's byte offset must fit (as check_matrix's).
void check_images(int64_t batch, int64_t height, int64_t width, const char* height_name, const char* width_name) {
  constexpr int64_t kMaxSide = int64_t(1) << 31;
  check_positive(height, height_name);
  check_positive(width, width_name);
  if (height > kMaxSide || width > kMaxSide) fail("shape", "an image side exceeds 2^31");
  check_matrix("x", batch, height * width, height * width);
}

}  // namespace

PYBIND11_MODULE(_native_cpu, m) {
  m.doc() = "sslkern native CPU kernels (raw pointers; no libtorch)";

  m.def("philox_fill", [](uintptr_t out, int64_t n, uint64_t seed, uint32_t offset, bool normal) {
    check_size(n, "n");
    check_counters(n);
    float* o = pointer<float>(out, "out", n == 0);
    py::gil_scoped_release nogil;
    philox_fill(o, n, seed, offset, normal);
  }, py::arg("out"), py::arg("n"), py::arg("seed"), py::arg("offset"), py::arg("normal"));

  m.def("corrupt", [](int dtype, uintptr_t x, uintptr_t out, int64_t n, int kind, double level,
                      uint64_t seed, uint32_t offset) {
    corrupt_checked(false, dtype, x, out, n, kind, level, seed, offset);
  }, py::arg("dtype"), py::arg("x"), py::arg("out"), py::arg("n"), py::arg("kind"), py::arg("level"),
     py::arg("seed"), py::arg("offset"));
  m.def("corrupt_grad", [](int dtype, uintptr_t g, uintptr_t out, int64_t n, int kind, double level,
                           uint64_t seed, uint32_t offset) {
    corrupt_checked(true, dtype, g, out, n, kind, level, seed, offset);
  }, py::arg("dtype"), py::arg("grad"), py::arg("out"), py::arg("n"), py::arg("kind"), py::arg("level"),
     py::arg("seed"), py::arg("offset"));

  // Pretext generators (csrc/cpu/pretext.h). Labels are int64 [batch].
  m.def("rotations", [](int element_size, uintptr_t x, uintptr_t out, uintptr_t labels, int64_t batch,
                        int64_t side, uint64_t seed, uint32_t offset) {
    check_pretext_batch(batch, sslkern::cpu::kRotationDraws);
    check_images(batch, side, side, "side", "side");
    dispatch_words(element_size, [&](auto tag) {
      using E = decltype(tag);
      const E* xp = pointer<E>(x, "x", batch == 0);
      E* op = pointer<E>(out, "out", batch == 0);
      int64_t* lp = pointer<int64_t>(labels, "labels", batch == 0);
      py::gil_scoped_release nogil;
      sslkern::cpu::rotations<E>(xp, op, lp, batch, side, seed, offset);
    });
  }, py::arg("element_size"), py::arg("x"), py::arg("out"), py::arg("labels"), py::arg("batch"),
     py::arg("side"), py::arg("seed"), py::arg("offset"));
  m.def("jigsaw", [](int element_size, uintptr_t x, uintptr_t out, uintptr_t labels, int64_t batch,
                     int64_t height, int64_t width, int64_t grid_h, int64_t grid_w, uintptr_t permutations,
                     int64_t n_perms, uint64_t seed, uint32_t offset) {
    check_pretext_batch(batch, sslkern::cpu::kJigsawDraws);
    check_images(batch, height, width, "height", "width");
    check_positive(grid_h, "grid_h");
    check_positive(grid_w, "grid_w");
    if (height < grid_h || width < grid_w) fail("grid", "more tiles than pixels along a side");
    if (n_perms < 1 || n_perms > (int64_t(1) << 32)) fail("n_perms", "must be in [1, 2^32]");
    const int64_t tiles = grid_h * grid_w;
    const int64_t* perms = pointer<int64_t>(permutations, "permutations");
    for (int64_t e = 0; e < n_perms * tiles; ++e)  // the kernel indexes tiles with them
      if (perms[e] < 0 || perms[e] >= tiles) fail("permutations", "entry out of [0, tiles)");
    dispatch_words(element_size, [&](auto tag) {
      using E = decltype(tag);
      const E* xp = pointer<E>(x, "x", batch == 0);
      E* op = pointer<E>(out, "out", batch == 0);
      int64_t* lp = pointer<int64_t>(labels, "labels", batch == 0);
      py::gil_scoped_release nogil;
      sslkern::cpu::jigsaw<E>(xp, op, lp, batch, height, width, grid_h, grid_w, perms, n_perms, seed, offset);
    });
  }, py::arg("element_size"), py::arg("x"), py::arg("out"), py::arg("labels"), py::arg("batch"),
     py::arg("height"), py::arg("width"), py::arg("grid_h"), py::arg("grid_w"), py::arg("permutations"),
     py::arg("n_perms"), py::arg("seed"), py::arg("offset"));
  m.def("relative_patches", [](int element_size, uintptr_t x, uintptr_t center, uintptr_t neighbour,
                               uintptr_t labels, int64_t batch, int64_t height, int64_t width, int64_t patch,
                               int64_t gap, uint64_t seed, uint32_t offset) {
    check_pretext_batch(batch, sslkern::cpu::kRelativeDraws);
    check_images(batch, height, width, "height", "width");
    check_positive(patch, "patch");
    check_size(gap, "gap");
    if (3 * patch + 2 * gap > std::min(height, width)) fail("patch", "the 3x3 arrangement does not fit the image");
    dispatch_words(element_size, [&](auto tag) {
      using E = decltype(tag);
      const E* xp = pointer<E>(x, "x", batch == 0);
      E* cp = pointer<E>(center, "center", batch == 0);
      E* np_ = pointer<E>(neighbour, "neighbour", batch == 0);
      int64_t* lp = pointer<int64_t>(labels, "labels", batch == 0);
      py::gil_scoped_release nogil;
      sslkern::cpu::relative_patches<E>(xp, cp, np_, lp, batch, height, width, patch, gap, seed, offset);
    });
  }, py::arg("element_size"), py::arg("x"), py::arg("center"), py::arg("neighbour"), py::arg("labels"),
     py::arg("batch"), py::arg("height"), py::arg("width"), py::arg("patch"), py::arg("gap"), py::arg("seed"),
     py::arg("offset"));

  m.def("encoder_epilogue", [](int dtype, uintptr_t z, int64_t ldz, int64_t rows, int64_t cols,
                               uintptr_t b, int act, uintptr_t r, uintptr_t s2col) {
    check_matrix("z", rows, cols, ldz);
    check_enum(act, sslkern::kActivationCount, "activation", "act");
    return dispatch(dtype, [&](auto tag) {
      using T = decltype(tag);
      T* zp = pointer<T>(z, "z", rows * cols == 0);
      const T* bp = pointer<T>(b, "b", true);
      const T* rp = pointer<T>(r, "r", true);
      T* sp = pointer<T>(s2col, "s2col", true);
      py::gil_scoped_release nogil;
      return sslkern::cpu::encoder_epilogue<T>(zp, ldz, rows, cols, bp, act, rp, sp);
    });
  }, py::arg("dtype"), py::arg("z"), py::arg("ldz"), py::arg("rows"), py::arg("cols"), py::arg("b"),
     py::arg("act"), py::arg("r"), py::arg("s2col"));

  m.def("loss_epilogue", [](int dtype, uintptr_t a, int64_t lda, uintptr_t x, int64_t ldx,
                            int64_t rows, int64_t cols, uintptr_t c, int loss, int dec_act,
                            double scale, uintptr_t dc) {
    check_matrix("a", rows, cols, lda);
    check_matrix("x", rows, cols, ldx);
    check_enum(loss, sslkern::kLossCount, "loss", "loss");
    check_enum(dec_act, sslkern::kActivationCount, "activation", "dec_act");
    return dispatch(dtype, [&](auto tag) {
      using T = decltype(tag);
      T* ap = pointer<T>(a, "a", rows * cols == 0);
      const T* xp = pointer<T>(x, "x", rows * cols == 0);
      const T* cp = pointer<T>(c, "c", true);
      T* dcp = pointer<T>(dc, "dc", true);
      py::gil_scoped_release nogil;
      return sslkern::cpu::loss_epilogue<T>(ap, lda, xp, ldx, rows, cols, cp, loss, dec_act, T(scale), dcp);
    });
  }, py::arg("dtype"), py::arg("a"), py::arg("lda"), py::arg("x"), py::arg("ldx"), py::arg("rows"),
     py::arg("cols"), py::arg("c"), py::arg("loss"), py::arg("dec_act"), py::arg("scale"), py::arg("dc"));

  m.def("dz_epilogue", [](int dtype, uintptr_t dh, int64_t lddh, uintptr_t h, int64_t ldh,
                          int64_t rows, int64_t cols, int act, uintptr_t r, double coef, double g,
                          uintptr_t dz, int64_t lddz, uintptr_t h_copy, int64_t ldcopy, uintptr_t db) {
    check_matrix("h", rows, cols, ldh);
    check_matrix("dh", rows, cols, lddh);
    check_matrix("dz", rows, cols, lddz);
    check_matrix("h_copy", rows, cols, ldcopy);
    check_enum(act, sslkern::kActivationCount, "activation", "act");
    dispatch(dtype, [&](auto tag) {
      using T = decltype(tag);
      const T* dhp = pointer<T>(dh, "dh", true);
      const T* hp = pointer<T>(h, "h", rows * cols == 0);
      const T* rp = pointer<T>(r, "r", true);
      T* dzp = pointer<T>(dz, "dz", rows * cols == 0);
      T* cp = pointer<T>(h_copy, "h_copy", true);
      T* dbp = pointer<T>(db, "db", true);
      py::gil_scoped_release nogil;
      sslkern::cpu::dz_epilogue<T>(dhp, lddh, hp, ldh, rows, cols, act, rp, T(coef), T(g), dzp,
                                   lddz, cp, ldcopy, dbp);
    });
  }, py::arg("dtype"), py::arg("dh"), py::arg("lddh"), py::arg("h"), py::arg("ldh"), py::arg("rows"),
     py::arg("cols"), py::arg("act"), py::arg("r"), py::arg("coef"), py::arg("g"), py::arg("dz"),
     py::arg("lddz"), py::arg("h_copy"), py::arg("ldcopy"), py::arg("db"));

  m.def("round_operand", [](uintptr_t src, int64_t ld, int64_t rows, int64_t cols, double scale,
                            int precision, bool packed, uintptr_t dst) {
    check_matrix("src", rows, cols, ld);
    check_enum(precision, sslkern::kPrecisionCount, "precision", "precision");
    if (!(scale > 0.0) || scale > FLT_MAX) fail("scale", "not a finite float32 > 0");
    const float* sp = pointer<float>(src, "src", rows * cols == 0);
    void* dp = packed ? static_cast<void*>(pointer<uint16_t>(dst, "dst", rows * cols == 0))
                      : static_cast<void*>(pointer<float>(dst, "dst", rows * cols == 0));
    py::gil_scoped_release nogil;
    sslkern::cpu::round_operand(sp, ld, rows, cols, float(scale), precision, packed, dp);
  }, py::arg("src"), py::arg("ld"), py::arg("rows"), py::arg("cols"), py::arg("scale"), py::arg("precision"),
     py::arg("packed"), py::arg("dst"),
     "dst = scale * src (float32 [rows, cols], leading dimension ld) rounded to the precision's format: "
     "bf16 words (packed) or float32 holding the rounded values.");

  m.def("row_sq_norms", [](int dtype, uintptr_t w, int64_t ldw, int64_t rows, int64_t cols, uintptr_t r) {
    check_matrix("w", rows, cols, ldw);
    dispatch(dtype, [&](auto tag) {
      using T = decltype(tag);
      const T* wp = pointer<T>(w, "w", rows * cols == 0);
      T* rp = pointer<T>(r, "r", rows == 0);
      py::gil_scoped_release nogil;
      sslkern::cpu::row_sq_norms<T>(wp, ldw, rows, cols, rp);
    });
  }, py::arg("dtype"), py::arg("w"), py::arg("ldw"), py::arg("rows"), py::arg("cols"), py::arg("r"));

  m.def("row_scale_add", [](int dtype, uintptr_t dw, int64_t lddw, uintptr_t w, int64_t ldw,
                            int64_t rows, int64_t cols, uintptr_t scale, double alpha) {
    check_matrix("dw", rows, cols, lddw);
    check_matrix("w", rows, cols, ldw);
    dispatch(dtype, [&](auto tag) {
      using T = decltype(tag);
      T* dwp = pointer<T>(dw, "dw", rows * cols == 0);
      const T* wp = pointer<T>(w, "w", rows * cols == 0);
      const T* sp = pointer<T>(scale, "scale", rows == 0);
      py::gil_scoped_release nogil;
      sslkern::cpu::row_scale_add<T>(dwp, lddw, wp, ldw, rows, cols, sp, T(alpha));
    });
  }, py::arg("dtype"), py::arg("dw"), py::arg("lddw"), py::arg("w"), py::arg("ldw"), py::arg("rows"),
     py::arg("cols"), py::arg("scale"), py::arg("alpha"));

  // The whole forward and backward of autoencoder_loss, products through `gemm` (the
  // address of the BLAS sgemm_/dgemm_ for the dtype; see sslkern/backends/blas.py).
#define SSLK_STEP_PARAMS                                                                       \
  int dtype, uintptr_t gemm, int64_t batch, int64_t visible, int64_t hidden, uintptr_t x,       \
      uintptr_t w, int64_t ldw, uintptr_t b, uintptr_t c, int corruption, double level,         \
      uint64_t seed, uint32_t offset, int encoder, int decoder, int loss, double contractive,   \
      uintptr_t ax, uintptr_t h, uintptr_t r, uintptr_t s2col, uintptr_t dc, int precision,      \
      uintptr_t half_gemm, double grad_scale
// The same names, in the same order, for pybind11 (sslkern/backends/native.py checks its
// StepArgs against them at load).
#define SSLK_STEP_ARG_NAMES                                                                     \
  py::arg("dtype"), py::arg("gemm"), py::arg("batch"), py::arg("visible"), py::arg("hidden"),   \
      py::arg("x"), py::arg("w"), py::arg("ldw"), py::arg("b"), py::arg("c"),                   \
      py::arg("corruption"), py::arg("level"), py::arg("seed"), py::arg("offset"),              \
      py::arg("encoder"), py::arg("decoder"), py::arg("loss"), py::arg("contractive"),          \
      py::arg("ax"), py::arg("h"), py::arg("r"), py::arg("s2col"), py::arg("dc"),               \
      py::arg("precision"), py::arg("half_gemm"), py::arg("grad_scale")
#define SSLK_STEP_ARGS                                                                          \
  gemm, batch, visible, hidden, x, w, ldw, b, c, corruption, level, seed, offset, encoder,      \
      decoder, loss, contractive, ax, h, r, s2col, dc, precision, half_gemm, grad_scale
  m.def("ae_forward", [](SSLK_STEP_PARAMS) {
    return dispatch(dtype, [&](auto tag) {
      using T = decltype(tag);
      const auto s = step_args<T>(SSLK_STEP_ARGS);
      py::gil_scoped_release nogil;
      return sslkern::cpu::ae_forward<T>(s);
    });
  }, SSLK_STEP_ARG_NAMES);
  m.def("ae_backward", [](SSLK_STEP_PARAMS, double g, uintptr_t hz, uintptr_t dw, uintptr_t db) {
    dispatch(dtype, [&](auto tag) {
      using T = decltype(tag);
      const auto s = step_args<T>(SSLK_STEP_ARGS);
      T* hzp = pointer<T>(hz, "hz");
      T* dwp = pointer<T>(dw, "dw");
      T* dbp = pointer<T>(db, "db");
      py::gil_scoped_release nogil;
      sslkern::cpu::ae_backward<T>(s, T(g), hzp, dwp, dbp);
    });
  }, SSLK_STEP_ARG_NAMES, py::arg("g"), py::arg("hz"), py::arg("dw"), py::arg("db"));
#define SSLK_PENALTY_PARAMS                                                                     \
  double sparsity, double sparsity_target, int sparsity_kind, double higher_order,              \
      double higher_order_sigma, int64_t higher_order_samples
#define SSLK_PENALTY_ARG_NAMES                                                                  \
  py::arg("sparsity") = 0.0, py::arg("sparsity_target") = 0.05, py::arg("sparsity_kind") = 0,   \
      py::arg("higher_order") = 0.0, py::arg("higher_order_sigma") = 0.1,                       \
      py::arg("higher_order_samples") = 1
#define SSLK_PENALTY_ARGS                                                                       \
  batch, visible, sparsity, sparsity_target, sparsity_kind, higher_order, higher_order_sigma,   \
      higher_order_samples
  m.def("ae_value_and_grad", [](SSLK_STEP_PARAMS, uintptr_t dw, uintptr_t db, SSLK_PENALTY_PARAMS) {
    return dispatch(dtype, [&](auto tag) {
      using T = decltype(tag);
      auto s = step_args<T>(SSLK_STEP_ARGS, /*scratch_inside=*/true);
      s.extra = extra_penalties(SSLK_PENALTY_ARGS);
      check_rounded_extras(s);
      T* dwp = pointer<T>(dw, "dw");
      T* dbp = pointer<T>(db, "db");
      py::gil_scoped_release nogil;
      return sslkern::cpu::ae_value_and_grad<T>(s, dwp, dbp);
    });
  }, SSLK_STEP_ARG_NAMES, py::arg("dw"), py::arg("db"), SSLK_PENALTY_ARG_NAMES,
     "ae_forward then ae_backward with gradient 1, with the extra penalties; ax, h, r and s2col "
     "are not used (pass 0).");
  m.def("ae_sgd_step", [](SSLK_STEP_PARAMS, double lr, SSLK_PENALTY_PARAMS) {
    return dispatch(dtype, [&](auto tag) {
      using T = decltype(tag);
      if (!std::isfinite(lr)) fail("lr", "not finite");
      auto s = step_args<T>(SSLK_STEP_ARGS, /*scratch_inside=*/true, /*dc_inside=*/true);
      s.extra = extra_penalties(SSLK_PENALTY_ARGS);
      check_rounded_extras(s);
      T* wp = pointer<T>(w, "w");  // the same addresses, writable: the update is in place
      T* bp = pointer<T>(b, "b");
      T* cp = pointer<T>(c, "c");
      py::gil_scoped_release nogil;
      return sslkern::cpu::ae_sgd_step<T>(s, T(lr), wp, bp, cp);
    });
  }, SSLK_STEP_ARG_NAMES, py::arg("lr"), SSLK_PENALTY_ARG_NAMES,
     "One SGD step in place on w, b, c (lr), with the extra penalties; returns the loss. ax, h, r, "
     "s2col, dc: pass 0.");
#undef SSLK_PENALTY_PARAMS
#undef SSLK_PENALTY_ARG_NAMES
#undef SSLK_PENALTY_ARGS
#undef SSLK_STEP_PARAMS
#undef SSLK_STEP_ARG_NAMES
#undef SSLK_STEP_ARGS

  static const char* const kIsaNames[] = {"baseline", "avx2", "avx512"};
  m.def("isa", [] { return std::string(kIsaNames[sslkern::cpu::cpu_isa()]); },
        "The instruction set the row kernels run with.");
  m.def("set_isa", [](const std::string& name) {
    for (int i = 0; i < 3; ++i) {
      if (name != kIsaNames[i]) continue;
      if (!sslkern::cpu::set_cpu_isa(i)) fail("isa", "this CPU cannot run " + name);
      return;
    }
    fail("isa", "must be baseline, avx2 or avx512, got " + name);
  }, py::arg("isa"), "Run the row kernels with a lower instruction set (tests, benchmarks).");

  m.def("kinds", &sslkern::built_kinds,
        "The kind counts of kinds.h this module was built with, and the activation codes whose "
        "f'' vanishes (sslkern/_native.py refuses a build that disagrees with sslkern/kinds.py).");

  m.def("build_info", [] {
    py::dict d;
#ifdef _OPENMP
    d["openmp"] = true;
    d["max_threads"] = omp_get_max_threads();
#else
    d["openmp"] = false;
    d["max_threads"] = 1;
#endif
    d["compiler"] = std::string(__VERSION__);
    return d;
  });
}
