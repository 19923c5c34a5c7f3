"""How tensors cross into the compiled modules: a data pointer and a leading dimension."""


def _ptr(t):
    return 0 if t is None else t.data_ptr()


def _ld(t):
    """Leading dimension of a row-major 2-D view (1 for an empty one)."""
    if t.stride(1) != 1 and t.shape[1] > 1:
        raise ValueError("native kernels need rows with unit stride")
    return max(t.stride(0), t.shape[1], 1)
