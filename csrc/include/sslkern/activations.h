// Activation and loss math shared by the CPU and CUDA kernels (docs/design.md).
// Derivatives are written in terms of the output h = f(z), which the kernels keep, so
// backward passes never need z. The codes are those of kinds.h (generated from
// sslkern/kinds.py).
#pragma once
#include "sslkern/common.h"
#include "sslkern/kinds.h"
#include "sslkern/philox.h"

namespace sslkern {

template <typename T> SSLK_HD T stable_sigmoid(T z) {
  if (z >= T(0)) return T(1) / (T(1) + exp(-z));
  const T e = exp(z);
  return e / (T(1) + e);
}

// softplus(z) = log(1 + e^z) without overflow for large |z|.
template <typename T> SSLK_HD T stable_softplus(T z) {
  return (z > T(0) ? z : T(0)) + log1p(exp(-(z > T(0) ? z : -z)));
}

// The math of one activation, chosen at compile time: ActMath<kTanh>::forward(z). There is
// no primary definition, so a code without its specialisation does not compile.
// forward(z) = f(z); d1(h) = f'(z) and d2(h) = f''(z) from h = f(z); kPiecewiseLinear: f''
// vanishes everywhere (the contractive gradient has no dZ term; sslkern/kinds.py says the same).
template <int Act> struct ActMath;

template <> struct ActMath<kLinear> {
  static constexpr bool kPiecewiseLinear = true;
  template <typename T> static SSLK_HD T forward(T z) { return z; }
  template <typename T> static SSLK_HD T d1(T) { return T(1); }
  template <typename T> static SSLK_HD T d2(T) { return T(0); }
};

template <> struct ActMath<kSigmoid> {
  static constexpr bool kPiecewiseLinear = false;
  template <typename T> static SSLK_HD T forward(T z) { return stable_sigmoid(z); }
  template <typename T> static SSLK_HD T d1(T h) { return h * (T(1) - h); }
  template <typename T> static SSLK_HD T d2(T h) { return h * (T(1) - h) * (T(1) - T(2) * h); }
};

template <> struct ActMath<kTanh> {
  static constexpr bool kPiecewiseLinear = false;
  template <typename T> static SSLK_HD T forward(T z) { return tanh(z); }
  template <typename T> static SSLK_HD T d1(T h) { return T(1) - h * h; }
  template <typename T> static SSLK_HD T d2(T h) { return T(-2) * h * (T(1) - h * h); }
};

template <> struct ActMath<kRelu> {
  static constexpr bool kPiecewiseLinear = true;
  template <typename T> static SSLK_HD T forward(T z) { return z <= T(0) ? T(0) : z; }  // NaN passes
  template <typename T> static SSLK_HD T d1(T h) { return h > T(0) ? T(1) : T(0); }
  template <typename T> static SSLK_HD T d2(T) { return T(0); }
};

// softplus: sigmoid(z) = 1 - e^{-h}.
template <> struct ActMath<kSoftplus> {
  static constexpr bool kPiecewiseLinear = false;
  template <typename T> static SSLK_HD T forward(T z) { return stable_softplus(z); }
  template <typename T> static SSLK_HD T d1(T h) { return -expm1(-h); }
  template <typename T> static SSLK_HD T d2(T h) { return -expm1(-h) * exp(-h); }
};

// elu with alpha = 1: f(z) = z for z > 0, e^z - 1 otherwise; for z <= 0, f' = f'' = e^z = h + 1.
// Written so that a NaN z takes the expm1 branch and comes out NaN.
template <> struct ActMath<kElu> {
  static constexpr bool kPiecewiseLinear = false;
  template <typename T> static SSLK_HD T forward(T z) { return z > T(0) ? z : expm1(z); }
  template <typename T> static SSLK_HD T d1(T h) { return h > T(0) ? T(1) : h + T(1); }
  template <typename T> static SSLK_HD T d2(T h) { return h > T(0) ? T(0) : h + T(1); }
};

// The same with the activation known at run time (the CUDA kernels). An unknown code throws
// std::invalid_argument on the host and traps on the device.
static_assert(kActivationCount == 6,
              "a new activation needs its ActMath, a case in each switch below, and a case in "
              "with_act (csrc/cpu/kernels_rows.h)");
#define SSLK_ACT_SWITCH(act, EXPR)                  \
  switch (act) {                                    \
    case kLinear: { using M = ActMath<kLinear>; EXPR; }     \
    case kSigmoid: { using M = ActMath<kSigmoid>; EXPR; }   \
    case kTanh: { using M = ActMath<kTanh>; EXPR; }         \
    case kRelu: { using M = ActMath<kRelu>; EXPR; }         \
    case kSoftplus: { using M = ActMath<kSoftplus>; EXPR; } \
    case kElu: { using M = ActMath<kElu>; EXPR; }           \
  }                                                 \
  unknown_kind("activation", act)

template <typename T> SSLK_HD T act_forward(int act, T z) {
  SSLK_ACT_SWITCH(act, return M::forward(z));
}

template <typename T> SSLK_HD T act_d1(int act, T h) {
  SSLK_ACT_SWITCH(act, return M::d1(h));
}

template <typename T> SSLK_HD T act_d2(int act, T h) {
  SSLK_ACT_SWITCH(act, return M::d2(h));
}

SSLK_HD bool act_piecewise_linear(int act) {
  SSLK_ACT_SWITCH(act, return M::kPiecewiseLinear);
}
#undef SSLK_ACT_SWITCH

// Per-element reconstruction loss from the decoder pre-activation a and the clean target x;
// writes dL/da (unscaled by 1/B) to grad.
static_assert(kLossCount == 2,
              "a new loss needs a case here and in loss_rows (csrc/cpu/kernels_rows.h)");
template <typename T> SSLK_HD T loss_and_grad(int loss, int dec_act, T a, T x, T& grad) {
  switch (loss) {
    case kBce:  // softplus(a) - x a, dL/da = sigmoid(a) - x
      grad = stable_sigmoid(a) - x;
      return stable_softplus(a) - x * a;
    case kMse: {
      const T y = act_forward(dec_act, a);
      const T diff = y - x;
      grad = diff * act_d1(dec_act, y);
      return T(0.5) * diff * diff;
    }
  }
  unknown_kind("loss", loss);
}

}  // namespace sslkern
