"""Every public op on every backend against the float64 oracle (sslkern.reference):
values and gradients at awkward shapes, gradcheck in float64, opcheck on the custom ops."""
import os

import pytest
import torch
from helpers import (ACTIVATIONS, CORRUPTIONS, DEFAULT, DEVICE, DTYPES, LEVELS, NOISY, NORMAL_DRAWS, OBJECTIVES,
                     SAME_MATH, SHAPES, assert_close, leaves, make_inputs, objective_cases, objective_config)

import sslkern
from sslkern import reference as oracle


def skip_if_interpreted(backend, shape=None):
    """Triton under TRITON_INTERPRET runs each op through numpy, ~1000x slower: there it gets
    only shapes of at most 1000 (B*D*H) work, no gradcheck (shape None). tests/test_triton.py
    covers it further on CPU; on CUDA everything runs."""
    too_big = shape is None or shape[0] * shape[1] * shape[2] > 1000
    if backend == "triton" and os.environ.get("TRITON_INTERPRET") == "1" and too_big:
        pytest.skip("too slow for the Triton interpreter")


def run_and_grad(fn, inputs, out_grad_seed=7):
    """fn(*inputs) and the gradients of <output, g> for a fixed random g (not all ones, so a
    wrongly broadcast or unscaled gradient shows)."""
    out = fn(*inputs)
    gen = torch.Generator().manual_seed(out_grad_seed)
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype=out.dtype, device=out.device)
    grads = torch.autograd.grad(out, inputs, g, allow_unused=True, materialize_grads=True)
    return out.detach(), grads


_oracle_results = {}  # the oracle's answer per case, shared by the backends (it dominates the time)


def oracle_run(oracle_fn, inputs, case=None):
    if case is None:
        return run_and_grad(oracle_fn, leaves(inputs, torch.float64, "cpu"))
    if case not in _oracle_results:
        _oracle_results[case] = run_and_grad(oracle_fn, leaves(inputs, torch.float64, "cpu"))
    return _oracle_results[case]


def check_against_oracle(fn, oracle_fn, inputs, dtype, names, policy=DEFAULT, case=None):
    actual, actual_grads = run_and_grad(fn, leaves(inputs))
    expected, expected_grads = oracle_run(oracle_fn, inputs, case)
    assert_close(actual, expected, dtype, policy=policy, what="value")
    for name, got, want in zip(names, actual_grads, expected_grads):
        assert_close(got, want, dtype, policy=policy, what=f"d/d{name}")


# --- random streams ------------------------------------------------------------------------

@pytest.mark.parametrize("n, seed, offset", [(1, 0, 0), (129, 42, 7), (1000, 2**40 + 3, 2**32 - 500)])
def test_philox_uniform_matches_oracle_bit_exact(backend, n, seed, offset):
    got = sslkern.philox_uniform(n, seed, offset, device=DEVICE).cpu()
    assert got.dtype == torch.float32 and got.shape == (n,)
    assert torch.equal(got, oracle.philox_uniform(n, seed, offset))


@pytest.mark.parametrize("n, seed, offset", [(1, 0, 0), (129, 42, 7), (1000, 2**40 + 3, 2**32 - 500)])
def test_philox_normal_matches_oracle(backend, n, seed, offset):
    got = sslkern.philox_normal(n, seed, offset, device=DEVICE).cpu()
    assert got.dtype == torch.float32 and got.shape == (n,)
    assert_close(got, oracle.philox_normal(n, seed, offset), torch.float32, policy=NORMAL_DRAWS, what="normal")


# --- corruption ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", CORRUPTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_corrupt(backend, kind, dtype, shape):
    skip_if_interpreted(backend, shape)
    x = make_inputs(*shape, dtype)[0]
    level, seed, offset = LEVELS[kind], 11, 3
    policy = NOISY if kind == "gaussian" else DEFAULT
    check_against_oracle(lambda v: sslkern.corrupt(v, kind, level, seed, offset),
                         lambda v: oracle.corrupt(v, kind, level, seed, offset),
                         [x], dtype, ["x"], policy)


# --- encode / decode / contractive penalty -------------------------------------------------

# op -> (its tensor arguments from make_inputs' x, W, b, c; their names)
SINGLE_LAYER_OPS = {
    "encode": (lambda x, W, b, c: [x, W, b], ["x", "W", "b"]),
    "decode": (lambda x, W, b, c: [torch.sigmoid(x @ W.T), W, c], ["h", "W", "c"]),
    "contractive_penalty": (lambda x, W, b, c: [x, W, b], ["x", "W", "b"]),
}


@pytest.mark.parametrize("op", SINGLE_LAYER_OPS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_single_layer_op(backend, op, activation, dtype, shape):
    skip_if_interpreted(backend, shape)
    arguments, names = SINGLE_LAYER_OPS[op]
    check_against_oracle(lambda *t: getattr(sslkern, op)(*t, activation=activation),
                         lambda *t: getattr(oracle, op)(*t, activation),
                         arguments(*make_inputs(*shape, dtype)), dtype, names)


@pytest.mark.parametrize("op", SINGLE_LAYER_OPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_single_layer_ops_with_data_that_needs_no_gradient(backend, op, dtype):
    """x as plain data: the backward skips the dx product; W and bias still match the oracle."""
    data, *params = SINGLE_LAYER_OPS[op][0](*make_inputs(5, 9, 4, dtype))
    params_ = leaves(params)
    got = torch.autograd.grad(getattr(sslkern, op)(data, *params_, activation="tanh").sum(), params_)
    ref_params = leaves(params, torch.float64)
    want = torch.autograd.grad(getattr(oracle, op)(data.double(), *ref_params, "tanh").sum(), ref_params)
    for name, g, w in zip(["W", "bias"], got, want):
        assert_close(g, w, dtype, what=f"d/d{name}")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_analytic_penalty_equals_jacobian_penalty(activation):
    # Leaves that require grad: the oracle differentiates h in z (it fails on constant inputs).
    x, W, b = leaves(make_inputs(4, 6, 5, torch.float64, "cpu")[:3])
    analytic = oracle.contractive_penalty(x, W, b, activation)
    brute_force = oracle.contractive_penalty_jacobian(x, W, b, activation)
    assert_close(analytic, brute_force, torch.float64, policy=SAME_MATH, what="penalty")
    assert analytic > 0


# --- the whole objective -------------------------------------------------------------------

@pytest.mark.parametrize("objective, corruption, contractive", objective_cases())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_autoencoder_loss(backend, objective, corruption, contractive, dtype, shape):
    skip_if_interpreted(backend, shape)
    config = objective_config(objective, corruption, contractive, seed=2**33 + 5, offset=17)
    policy = NOISY if corruption == "gaussian" else DEFAULT
    check_against_oracle(lambda *t: sslkern.autoencoder_loss(*t, **config),
                         lambda *t: oracle.autoencoder_loss(*t, **config),
                         make_inputs(*shape, dtype), dtype, ["x", "W", "b", "c"], policy,
                         case=(objective, corruption, contractive, dtype, shape))


@pytest.mark.parametrize("dtype", DTYPES)
def test_autoencoder_loss_many_rows(backend, dtype):
    """Enough rows for the CPU passes to split the batch over threads and reduce partial sums."""
    shape = (1031, 67, 33)
    skip_if_interpreted(backend, shape)
    config = dict(encoder="softplus", decoder="sigmoid", loss="bce", corruption="salt_pepper", level=0.2,
                  contractive=0.7, seed=12, offset=2**32 - 5000)
    check_against_oracle(lambda *t: sslkern.autoencoder_loss(*t, **config),
                         lambda *t: oracle.autoencoder_loss(*t, **config),
                         make_inputs(*shape, dtype), dtype, ["x", "W", "b", "c"], case=("many", dtype))


def test_autoencoder_loss_x_in_another_dtype(backend):
    """x may have its own floating dtype: computed in the parameters' dtype, its gradient in x's."""
    x, W, b, c = make_inputs(5, 7, 3, torch.float64, "cpu")
    xs = x.float().to(DEVICE).requires_grad_(True)
    loss = sslkern.autoencoder_loss(xs, *leaves([W, b, c], device=DEVICE), corruption="mask", level=0.2,
                                    contractive=0.1)
    (dx,) = torch.autograd.grad(loss, xs)
    assert loss.dtype == torch.float64 and dx.dtype == torch.float32
    x64 = xs.detach().double().cpu().requires_grad_(True)
    expected = oracle.autoencoder_loss(x64, W, b, c, corruption="mask", level=0.2, contractive=0.1)
    (dx_expected,) = torch.autograd.grad(expected, x64)
    assert_close(loss.detach(), expected.detach(), torch.float64)
    assert_close(dx, dx_expected, torch.float32)


def test_gradients_of_some_inputs_only(backend):
    """With only some inputs requiring grad (the backward then skips dx), those gradients are
    the same as when every input requires it."""
    inputs = make_inputs(5, 7, 3, torch.float64)
    ops = [lambda x, W, b, c: sslkern.autoencoder_loss(x, W, b, c, corruption="mask", level=0.3,
                                                       contractive=0.2, seed=1),
           lambda x, W, b, c: sslkern.encode(x, W, b, "tanh").sum(),
           lambda x, W, b, c: sslkern.contractive_penalty(x, W, b, "softplus"),
           lambda x, W, b, c: sslkern.decode(x[:, :3], W, c, "sigmoid").sum()]
    for op in ops:
        everything = leaves(inputs)
        full = torch.autograd.grad(op(*everything), everything, allow_unused=True, materialize_grads=True)
        for wanted in ([0], [1], [1, 2, 3]):
            tensors = [t.detach().requires_grad_(i in wanted) for i, t in enumerate(inputs)]
            grads = torch.autograd.grad(op(*tensors), [tensors[i] for i in wanted], allow_unused=True,
                                        materialize_grads=True)
            for i, grad in zip(wanted, grads):
                assert_close(grad, full[i], torch.float64, policy=SAME_MATH, what=f"gradient {i} of {wanted}")


def test_repeated_calls_are_bit_identical(backend):
    skip_if_interpreted(backend, SHAPES[-1])
    inputs = make_inputs(*SHAPES[-1], torch.float32)
    config = dict(encoder="tanh", corruption="salt_pepper", level=0.2, contractive=0.3, seed=4)
    first, again = (run_and_grad(lambda *t: sslkern.autoencoder_loss(*t, **config), leaves(inputs))
                    for _ in range(2))
    for a, b in zip([first[0], *first[1]], [again[0], *again[1]]):
        assert torch.equal(a, b)


# --- gradcheck (float64) -------------------------------------------------------------------

def _gradcheck(fn, inputs):
    assert torch.autograd.gradcheck(fn, leaves(inputs), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_gradcheck_corrupt(backend, kind):
    skip_if_interpreted(backend)
    x = make_inputs(3, 5, 2, torch.float64)[0]
    _gradcheck(lambda v: sslkern.corrupt(v, kind, LEVELS[kind], 5, 1), [x])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradcheck_encode_decode_penalty(backend, activation):
    skip_if_interpreted(backend)
    x, W, b, c = make_inputs(3, 5, 4, torch.float64)
    _gradcheck(lambda *t: sslkern.encode(*t, activation=activation), [x, W, b])
    _gradcheck(lambda *t: sslkern.decode(*t, activation=activation), [x[:, :4], W, c])
    _gradcheck(lambda *t: sslkern.contractive_penalty(*t, activation=activation), [x, W, b])


@pytest.mark.parametrize("objective", OBJECTIVES, ids="-".join)
def test_gradcheck_autoencoder_loss(backend, objective):
    skip_if_interpreted(backend)
    encoder, decoder, loss = objective
    for corruption in CORRUPTIONS:
        _gradcheck(lambda *t: sslkern.autoencoder_loss(
            *t, encoder=encoder, decoder=decoder, loss=loss, corruption=corruption,
            level=LEVELS[corruption], contractive=0.3, seed=9), make_inputs(3, 5, 4, torch.float64))


# --- opcheck on the registered custom ops ---------------------------------------------------

PRETEXT_OPS = {"rotations", "jigsaw", "relative_patches"}
OPCHECK_BACKENDS = [name for name in sslkern.available_backends() if name in ("reference", "native")]


def _opcheck_cases(backend):
    x, W, b, c = make_inputs(3, 5, 4, torch.float64, "cpu")
    h = torch.rand(3, 4, dtype=torch.float64)
    grad = torch.tensor(1.3, dtype=torch.float64)
    ops = torch.ops.sslkern
    step = ("tanh", "sigmoid", "bce", "mask", 0.25, 0.5, 123, 4)
    saved = ops.autoencoder_loss(x, W, b, c, *step, backend)[1:]
    rng = torch.tensor([-2**62 - 5, 2**32 - 3])  # (seed bits, offset) in place of the int seed
    saved_rng = ops.autoencoder_loss(x, W, b, c, *step, backend, rng)[1:]
    _, pen_h, r, s2col = ops.contractive_penalty(x, W, b, "sigmoid", backend)
    x_, W_, b_, c_ = leaves([x, W, b, c])  # the forward ops with autograd
    return [
        (ops.philox.default, (7, -5, 3, False, torch.device("cpu"), backend)),
        (ops.philox.default, (7, 5, 3, True, torch.device("cpu"), backend)),
        (ops.corrupt.default, (x_, "salt_pepper", 0.3, 1, 2, backend)),
        (ops.corrupt.default, (x_, "mask", 0.3, 0, 0, backend, rng)),
        (ops.corrupt_grad.default, (torch.randn(3, 5, dtype=torch.float64), "mask", 0.3, 1, 2, backend)),
        (ops.corrupt_grad.default, (torch.randn(3, 5, dtype=torch.float64), "mask", 0.3, 0, 0, backend, rng)),
        (ops.linear_act.default, (x_, W_, b_, "tanh", True, backend)),
        (ops.linear_act.default, (h, W_, c_, "sigmoid", False, backend)),
        (ops.linear_act_backward.default, (torch.randn(3, 4, dtype=torch.float64), h, x, W,
                                           "sigmoid", True, True, backend)),
        (ops.linear_act_backward.default, (torch.randn(3, 4, dtype=torch.float64), h, x, W,
                                           "sigmoid", True, False, backend)),
        (ops.contractive_penalty.default, (x_, W_, b_, "softplus", backend)),
        (ops.contractive_penalty_backward.default, (grad, x, W, pen_h, r, s2col, "sigmoid", True, backend)),
        (ops.contractive_penalty_backward.default, (grad, x, W, pen_h, r, s2col, "sigmoid", False, backend)),
        (ops.autoencoder_loss.default, (x_, W_, b_, c_, *step, backend)),
        (ops.autoencoder_loss_backward.default, (grad, x, W, c, *saved, *step, True, backend)),
        (ops.autoencoder_loss.default, (x_, W_, b_, c_, *step, backend, rng)),
        (ops.autoencoder_loss_backward.default, (grad, x, W, c, *saved_rng, *step, True, backend, rng)),
        (ops.autoencoder_value_and_grad.default, (x, W, b, c, *step, backend)),
        (ops.autoencoder_value_and_grad.default, (x, W, b, c, *step, backend, rng)),
        (ops.autoencoder_sgd_step.default, (x, W.clone(), b.clone(), c.clone(), *step, backend, 0.1)),
        (ops.autoencoder_sgd_step.default, (x, W.clone(), b.clone(), c.clone(), *step, backend, 0.1, rng)),
    ]


@pytest.mark.parametrize("backend_name", OPCHECK_BACKENDS)
def test_opcheck(backend_name):
    cases = _opcheck_cases(backend_name)
    for op, args in cases:
        torch.library.opcheck(op, args)
    # A newly registered op must get a case here (triton_op wrappers fail under the interpreter;
    # the pretext generators have theirs in tests/test_pretext.py).
    registered = {name.split("::")[1] for name in torch._C._dispatch_get_all_op_names()
                  if name.startswith("sslkern::") and "triton" not in name} - PRETEXT_OPS
    assert registered <= {op.name().split("::")[1].split(".")[0] for op, _ in cases}


# --- the eager fast path (sslkern/ops/autoencoder.py) ---------------------------------------


def test_eager_fast_path_admits_parameters_not_subclasses():
    from sslkern.ops.autoencoder import eager_fast_path_ok

    class Traced(torch.Tensor):
        pass

    x, W = torch.rand(2, 4), torch.nn.Parameter(torch.randn(3, 4))
    assert eager_fast_path_ok(x, W, None)
    assert not eager_fast_path_ok(x.as_subclass(Traced), W)
    assert not eager_fast_path_ok(torch.empty(2, 4, device="meta"))


def test_eager_fast_path_equals_the_registered_op(backend, device):
    """Plain calls skip the dispatcher; they must give the op's loss and gradients bit for bit."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 7, generator=g).to(device).requires_grad_()
    W = torch.nn.Parameter((torch.randn(3, 7, generator=g) * 0.3).to(device))
    b = torch.nn.Parameter(torch.randn(3, generator=g).to(device))
    c = torch.nn.Parameter(torch.randn(7, generator=g).to(device))
    step = dict(corruption="mask", level=0.3, contractive=0.2, seed=11, offset=5)
    fast = sslkern.autoencoder_loss(x, W, b, c, **step)
    fast_grads = torch.autograd.grad(fast, (x, W, b, c))
    op = torch.ops.sslkern.autoencoder_loss(x, W, b, c, "sigmoid", "sigmoid", "bce", "mask", 0.3, 0.2,
                                            11, 5, backend)[0]
    op_grads = torch.autograd.grad(op, (x, W, b, c))
    assert torch.equal(fast, op)
    for a, e in zip(fast_grads, op_grads):
        assert torch.equal(a, e)
