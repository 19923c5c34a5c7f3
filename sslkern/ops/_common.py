from .. import backends

UINT64 = 2**64


def backend_for(name, device, dtype, shape=None):
    """The backend for a call; `shape` = (batch, visible, hidden) lets `auto` choose per shape."""
    return backends.resolve(name, device, dtype, shape)


def unsigned(seed):
    """The schema carries the 64-bit seed as a signed int64; the kernels want it unsigned."""
    return seed % UINT64


def stream(seed, offset, rng):
    """(seed, offset) for a backend: the int64 [2] device tensor `rng` = (seed bits, offset) in
    place of the seed when given (the backend reads it, the offset argument is unused), else the
    unsigned host seed and offset."""
    return (rng, 0) if rng is not None else (unsigned(seed), offset)


def cast_like(grad, like):
    return grad if grad is None or grad.dtype == like.dtype else grad.to(like.dtype)
