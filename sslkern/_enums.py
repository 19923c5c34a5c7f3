"""Names of activations, losses and corruption kinds, and the integer codes the compiled
kernels use for them (the enums in csrc/include/sslkern/*.h)."""

ACTIVATIONS = {"linear": 0, "sigmoid": 1, "tanh": 2, "relu": 3, "softplus": 4}
LOSSES = {"bce": 0, "mse": 1}
CORRUPTIONS = {"none": 0, "mask": 1, "gaussian": 2, "salt_pepper": 3}

# Activations whose second derivative vanishes: the contractive gradient has no dZ term.
PIECEWISE_LINEAR = frozenset({"linear", "relu"})
