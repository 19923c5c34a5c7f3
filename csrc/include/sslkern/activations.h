// Activation and loss math shared by the CPU and CUDA kernels (design.md section 1).
// Derivatives are written in terms of the output h = f(z), which the kernels keep, so
// backward passes never need z.
#pragma once
#include "sslkern/philox.h"

namespace sslkern {

// Values match sslkern/_enums.py.
enum Activation : int { kLinear = 0, kSigmoid = 1, kTanh = 2, kRelu = 3, kSoftplus = 4 };
enum Loss : int { kBce = 0, kMse = 1 };

template <typename T> SSLK_HD T stable_sigmoid(T z) {
  if (z >= T(0)) return T(1) / (T(1) + exp(-z));
  const T e = exp(z);
  return e / (T(1) + e);
}

// softplus(z) = log(1 + e^z) without overflow for large |z|.
template <typename T> SSLK_HD T stable_softplus(T z) {
  return (z > T(0) ? z : T(0)) + log1p(exp(-(z > T(0) ? z : -z)));
}

template <typename T> SSLK_HD T act_forward(int act, T z) {
  switch (act) {
    case kSigmoid: return stable_sigmoid(z);
    case kTanh: return tanh(z);
    case kRelu: return z <= T(0) ? T(0) : z;  // written so that NaN passes through
    case kSoftplus: return stable_softplus(z);
    default: return z;
  }
}

// f'(z) from h = f(z). softplus: sigmoid(z) = 1 - e^{-h}.
template <typename T> SSLK_HD T act_d1(int act, T h) {
  switch (act) {
    case kSigmoid: return h * (T(1) - h);
    case kTanh: return T(1) - h * h;
    case kRelu: return h > T(0) ? T(1) : T(0);
    case kSoftplus: return -expm1(-h);
    default: return T(1);
  }
}

// f''(z) from h = f(z).
template <typename T> SSLK_HD T act_d2(int act, T h) {
  switch (act) {
    case kSigmoid: return h * (T(1) - h) * (T(1) - T(2) * h);
    case kTanh: return T(-2) * h * (T(1) - h * h);
    case kSoftplus: return -expm1(-h) * exp(-h);
    default: return T(0);
  }
}

// Per-element reconstruction loss from the decoder pre-activation a and the clean target x;
// writes dL/da (unscaled by 1/B) to grad.
template <typename T> SSLK_HD T loss_and_grad(int loss, int dec_act, T a, T x, T& grad) {
  if (loss == kBce) {  // softplus(a) - x a, dL/da = sigmoid(a) - x
    grad = stable_sigmoid(a) - x;
    return stable_softplus(a) - x * a;
  }
  const T y = act_forward(dec_act, a);
  const T diff = y - x;
  grad = diff * act_d1(dec_act, y);
  return T(0.5) * diff * diff;
}

}  // namespace sslkern
