"""Linear probe: how linearly separable the classes are in a frozen representation.

A multinomial logistic regression (softmax + L2) on standardised features, fitted full-batch
with L-BFGS in float64 on the CPU from zero weights: deterministic, no scikit-learn needed.
"""
import torch

DEFAULT_L2 = 1e-2
DEFAULT_MAX_ITER = 100


def features(encoder, X, batch_size=2048):
    """encoder(X) in batches, without gradients, as float64 on the CPU. `encoder` is a model
    with .encode (run in eval mode), a callable, or None for the raw input."""
    _check_matrix("X", X)
    if encoder is None:
        return X.detach().to("cpu", torch.float64)
    encode = getattr(encoder, "encode", encoder)
    if not callable(encode):
        raise TypeError(f"encoder must be a model with .encode, a callable or None, got {type(encoder).__name__}")
    was_training = getattr(encoder, "training", None)
    if was_training:
        encoder.eval()
    try:
        device = _device_of(encoder)
        with torch.no_grad():
            parts = [encode(chunk.to(device)).to("cpu", torch.float64) for chunk in X.split(batch_size)]
    finally:
        if was_training:
            encoder.train()
    out = torch.cat(parts) if parts else torch.empty(0, 0, dtype=torch.float64)
    if out.dim() != 2 or out.shape[0] != X.shape[0]:
        raise ValueError(f"encoder must map [N, D] to [N, F]; it gave shape {tuple(out.shape)} for N = {X.shape[0]}")
    return out


def fit_logistic_regression(F, y, n_classes, l2=DEFAULT_L2, max_iter=DEFAULT_MAX_ITER):
    """(weight [F, C], bias [C]) minimising mean cross-entropy + l2/2 ‖weight‖²."""
    weight = torch.zeros(F.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(F @ weight + bias, y) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    # L-BFGS is hundreds of tiny vector operations: one thread is faster than a pool (and on
    # a loaded machine, much faster) and makes the result independent of the thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        opt.step(closure)
    finally:
        torch.set_num_threads(threads)
    return weight.detach(), bias.detach()


def linear_probe(encoder, X_train, y_train, X_test, y_test, *, l2=DEFAULT_L2, max_iter=DEFAULT_MAX_ITER):
    """Test accuracy (a float in [0, 1]) of a logistic regression trained on encoder(X_train)
    and evaluated on encoder(X_test); features standardised with the training statistics."""
    _check_labels("y_train", y_train, X_train)
    _check_labels("y_test", y_test, X_test)
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"X_train has {X_train.shape[1]} features but X_test has {X_test.shape[1]}")
    if X_train.shape[0] == 0 or X_test.shape[0] == 0:
        raise ValueError("X_train and X_test must hold at least one example each")
    F_train, F_test = features(encoder, X_train), features(encoder, X_test)
    mean, std = F_train.mean(0), F_train.std(0, unbiased=False).clamp_min(1e-6)
    F_train, F_test = (F_train - mean) / std, (F_test - mean) / std
    y_train, y_test = y_train.to("cpu", torch.int64), y_test.to("cpu", torch.int64)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    weight, bias = fit_logistic_regression(F_train, y_train, n_classes, l2=l2, max_iter=max_iter)
    predicted = (F_test @ weight + bias).argmax(1)
    return (predicted == y_test).double().mean().item()


def _check_matrix(name, X):
    if not isinstance(X, torch.Tensor) or not X.dtype.is_floating_point or X.dim() != 2:
        raise TypeError(f"{name} must be a floating-point tensor [N, D], got "
                        f"{type(X).__name__ if not isinstance(X, torch.Tensor) else f'{X.dtype} {tuple(X.shape)}'}")


def _check_labels(name, y, X):
    _check_matrix(name.replace("y", "X"), X)
    if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool or y.dim() != 1:
        raise TypeError(f"{name} must be an integer tensor [N] of class indices, got "
                        f"{type(y).__name__ if not isinstance(y, torch.Tensor) else f'{y.dtype} {tuple(y.shape)}'}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{name} has {y.shape[0]} labels for {X.shape[0]} examples")
    if y.numel() and y.min() < 0:
        raise ValueError(f"{name} must hold class indices >= 0, got {int(y.min())}")


def _device_of(encoder):
    params = getattr(encoder, "parameters", None)
    param = next(params(), None) if callable(params) else None
    return param.device if param is not None else torch.device("cpu")
