"""The sparsity and higher-order contractive penalties (issue "Penalties the classic libraries
had"): the float64 oracle against its own slow forms, then every backend and every route
(autoencoder_loss eager and through the registered op, value_and_grad, sgd_step, the native
CPU step's one C++ call and its pass-by-pass route) against the oracle at awkward shapes in
both dtypes, gradcheck of the new terms alone, opcheck, torch.compile, and the errors."""
import numpy as np
import pytest
import torch
from helpers import (DEFAULT, DEVICE, DTYPES, NOISY_OBJECTIVE, SAME_NUMBERS, assert_close, leaves,
                     make_inputs)

import sslkern
from sslkern import kinds
from sslkern import reference as oracle

# Cases: the penalties alone and together with the others, over encoders they accept.
CASES = {
    "kl": dict(encoder="sigmoid", sparsity=0.4, sparsity_target=0.15),
    "l1-tanh": dict(encoder="tanh", sparsity=0.3, sparsity_kind="l1"),
    "l1-relu": dict(encoder="relu", decoder="linear", loss="mse", sparsity=0.3, sparsity_kind="l1"),
    "hcae": dict(encoder="sigmoid", higher_order=0.8, higher_order_sigma=0.3),
    "hcae-softplus-3": dict(encoder="softplus", decoder="tanh", loss="mse", higher_order=0.6,
                            higher_order_sigma=0.2, higher_order_samples=3),
    "all": dict(encoder="sigmoid", contractive=0.3, sparsity=0.2, higher_order=0.5, higher_order_samples=2),
    "hcae-elu-l1": dict(encoder="elu", decoder="sigmoid", loss="mse", contractive=0.2, higher_order=0.4,
                        sparsity=0.1, sparsity_kind="l1"),
}
SHAPES = [(1, 1, 1), (3, 5, 7), (37, 129, 65)]
TRITON_SHAPES = [(3, 5, 7)]  # the interpreter is slow


def config(case, corruption="mask"):
    level = {"none": 0.0, "mask": 0.3, "gaussian": 0.2}[corruption]
    return dict(corruption=corruption, level=level, seed=2**40 + 7, offset=31, **CASES[case])


def policy(cfg):
    """The higher-order term adds normal draws (equal across devices within 1e-5, not bit for bit)."""
    return NOISY_OBJECTIVE if cfg.get("higher_order") or cfg["corruption"] == "gaussian" else DEFAULT


def oracle_value_and_grads(x, params, cfg):
    exact = leaves([x, *params], torch.float64, torch.device("cpu"))
    value = oracle.autoencoder_loss(*exact, **cfg)
    return value.detach(), torch.autograd.grad(value, exact)


# --- the oracle against its own slow forms ------------------------------------------------


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "softplus"])
def test_oracle_higher_order_is_the_jacobian_difference(activation):
    x, W, b, _ = make_inputs(3, 4, 5, torch.float64, "cpu")
    eps = oracle.higher_order_noise(x, 0.3, 2, seed=4, offset=1)
    analytic = oracle.higher_order_penalty(x, W, b, eps, activation)
    slow = oracle.higher_order_penalty_jacobian(x, W, b, eps, activation)
    torch.testing.assert_close(analytic, slow, rtol=1e-12, atol=1e-14)
    assert analytic > 0


def test_oracle_higher_order_noise_sits_past_the_corruption_counters():
    x = torch.zeros(3, 4, dtype=torch.float64)
    eps = oracle.higher_order_noise(x, 2.0, 2, seed=9, offset=5)
    draws = oracle.philox_normal(3 * 3 * 4, 9, 5).double() * 2.0
    assert torch.equal(eps.reshape(-1), draws[12:])  # counters 5 + 12 .. 5 + 35


def test_oracle_sparsity_matches_numpy():
    h = np.random.default_rng(0).uniform(0.05, 0.95, size=(6, 4))
    rho, mean = 0.2, h.mean(0)
    kl = np.sum(rho * np.log(rho / mean) + (1 - rho) * np.log((1 - rho) / (1 - mean)))
    assert float(oracle.sparsity_penalty(torch.tensor(h), "kl", rho)) == pytest.approx(kl, rel=1e-13)
    assert float(oracle.sparsity_penalty(torch.tensor(h - 0.5), "l1")) == pytest.approx(
        np.abs(h - 0.5).sum() / 6, rel=1e-13)


# --- every backend and route against the oracle -------------------------------------------

BACKENDS = sslkern.available_backends()


def test_oracle_kl_clamps_the_mean_activation():
    """rho^ in [c, 1 - c]: units at exactly 0 and 1 give the finite KL of the clamp's edges,
    and the slope is taken there too (straight through), not zeroed."""
    c = kinds.KL_RHO_HAT_CLAMP
    h = torch.tensor([[1.0, 0.0, 0.4], [1.0, 0.0, 0.6]], dtype=torch.float64, requires_grad=True)
    rho = 0.2
    edge = lambda m: rho * np.log(rho / m) + (1 - rho) * np.log((1 - rho) / (1 - m))  # noqa: E731
    value = oracle.sparsity_penalty(h, "kl", rho)
    assert float(value) == pytest.approx(edge(1 - c) + edge(c) + edge(0.5), rel=1e-12)
    grad, = torch.autograd.grad(value, h)
    slope = lambda m: ((1 - rho) / (1 - m) - rho / m) / 2  # noqa: E731
    assert torch.allclose(grad[0], torch.tensor([slope(1 - c), slope(c), slope(0.5)], dtype=torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("route", ["value_and_grad", "autograd"])
def test_kl_with_saturated_units_stays_finite(backend, route):
    """Sigmoid units pinned at 1 (and 0) over the whole batch: without the clamp the loss is
    inf and every gradient NaN, which one step spreads through the model."""
    x, W, b, c = make_inputs(11, 7, 5, torch.float32, DEVICE)
    W, b = W.clone(), b.clone()
    W[:2], b[:2] = 0.0, torch.tensor([60.0, -60.0], device=DEVICE)  # h = 1 and h = 0 exactly
    cfg = CASES["kl"]
    want = oracle.autoencoder_loss(*(t.double().cpu() for t in (x, W, b, c)), **cfg)
    with sslkern.use_backend(backend):
        if route == "value_and_grad":
            value, grads = sslkern.autoencoder_value_and_grad(x, W, b, c, **cfg)
        else:
            params = leaves([W, b, c])
            value = sslkern.autoencoder_loss(x, *params, **cfg)
            grads = torch.autograd.grad(value, params)
    assert torch.isfinite(value) and all(bool(torch.isfinite(g).all()) for g in grads)
    assert float(value) == pytest.approx(float(want), rel=1e-5)


def _shapes(backend):
    return TRITON_SHAPES if backend == "triton" and DEVICE.type == "cpu" else SHAPES


ROUTE_CASES = [(backend, shape) for backend in BACKENDS for shape in _shapes(backend)]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend, shape", ROUTE_CASES, ids=str)
def test_loss_and_all_gradients_match_oracle(backend, shape, dtype, case):
    """autoencoder_loss with autograd (dx included), eager and through the registered op."""
    cfg = config(case)
    x, *params = make_inputs(*shape, dtype)
    want_value, want_grads = oracle_value_and_grads(x, params, cfg)
    tracked = leaves([x, *params])
    with sslkern.use_backend(backend):
        value = sslkern.autoencoder_loss(*tracked, **cfg)
        grads = torch.autograd.grad(value, tracked)
    assert_close(value, want_value, dtype, policy=policy(cfg), what="loss")
    for name, got, want in zip(("x", "W", "b", "c"), grads, want_grads):
        assert_close(got, want, dtype, policy=policy(cfg), what=f"d/d{name}")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend, shape", ROUTE_CASES, ids=str)
def test_value_and_grad_and_sgd_step_match_oracle(backend, shape, dtype, case):
    cfg = config(case, corruption="gaussian" if case == "kl" else "mask")
    x, *params = make_inputs(*shape, dtype)
    want_value, want_grads = oracle_value_and_grads(x, params, cfg)
    lr = 0.3
    updated = [p.clone() for p in params]
    with sslkern.use_backend(backend):
        value, grads = sslkern.autoencoder_value_and_grad(x, *params, **cfg)
        before = sslkern.autoencoder_sgd_step(x, *updated, lr=lr, **cfg)
    for what, got in (("value_and_grad loss", value), ("sgd_step loss", before)):
        assert_close(got, want_value, dtype, policy=policy(cfg), what=what)
    for name, got, start, want in zip("Wbc", grads, params, want_grads[1:]):
        assert_close(got, want, dtype, policy=policy(cfg), what=f"d/d{name}")
        assert_close(updated["Wbc".index(name)], start.double() - lr * want, dtype, policy=policy(cfg),
                     what=f"updated {name}")


@pytest.mark.skipif("native" not in BACKENDS, reason="needs the native CPU module")
@pytest.mark.parametrize("case", ["kl", "l1-tanh", "all", "hcae-softplus-3"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_native_one_call_equals_its_pass_by_pass_route(monkeypatch, case, dtype):
    """The C++ terms (csrc/cpu/penalties.cpp) against the PyTorch ones (backends/penalties.py)
    on the same backend: equal up to the order of summation."""
    cfg = config(case)
    x, *params = make_inputs(29, 67, 45, dtype, "cpu")
    results = {}
    for step in ("fused", "passes"):
        monkeypatch.setenv("SSLKERN_CPU_STEP", step)
        with sslkern.use_backend("native"):
            results[step] = sslkern.autoencoder_value_and_grad(x, *params, **cfg)
    (v1, g1), (v2, g2) = results["fused"], results["passes"]
    slack = SAME_NUMBERS.at_least(2e-5 if dtype == torch.float32 else 1e-6, "normals from two libms")
    assert_close(v1, v2, dtype, policy=slack, what="loss")
    for name, a, e in zip("Wbc", g1, g2):
        assert_close(a, e, dtype, policy=slack, what=f"d/d{name}")


@pytest.mark.skipif("native" not in BACKENDS, reason="needs the native CPU module")
def test_native_one_call_is_deterministic_across_thread_counts():
    cfg = config("all")
    x, *params = make_inputs(64, 300, 200, torch.float32, "cpu")
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, max(2, threads)):
            torch.set_num_threads(count)
            with sslkern.use_backend("native"):
                results.append(sslkern.autoencoder_value_and_grad(x, *params, **cfg))
    finally:
        torch.set_num_threads(threads)
    (v1, g1), (v2, g2) = results
    assert torch.equal(v1, v2) and all(torch.equal(a, b) for a, b in zip(g1, g2))


# --- the new terms alone: gradcheck, and their values ---------------------------------------


def _penalty_alone(cfg):
    """The objective with the penalties minus the objective without them: the new terms alone."""
    plain = {k: v for k, v in cfg.items() if not k.startswith(("sparsity", "higher_order"))}
    return lambda *t: sslkern.autoencoder_loss(*t, **cfg) - sslkern.autoencoder_loss(*t, **plain)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b in ("reference", "native")])
@pytest.mark.parametrize("case", ["kl", "l1-tanh", "hcae", "hcae-softplus-3"])
def test_gradcheck_of_the_new_terms_alone(backend, case):
    cfg = config(case)
    cfg.pop("contractive", None)
    inputs = leaves(make_inputs(3, 5, 4, torch.float64, DEVICE))
    with sslkern.use_backend(backend):
        assert torch.autograd.gradcheck(_penalty_alone(cfg), inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_the_new_terms_alone_equal_the_oracle_terms():
    x, W, b, c = make_inputs(6, 9, 5, torch.float64, "cpu")
    cfg = dict(encoder="sigmoid", seed=3, offset=2, higher_order=0.7, higher_order_sigma=0.25,
               higher_order_samples=2, sparsity=0.5, sparsity_target=0.1)
    with sslkern.use_backend("reference"):
        got = _penalty_alone(cfg)(x, W, b, c)
    h = oracle.encode(x, W, b)
    eps = oracle.higher_order_noise(x, 0.25, 2, seed=3, offset=2)
    want = 0.5 * oracle.sparsity_penalty(h, "kl", 0.1) + 0.7 * oracle.higher_order_penalty(x, W, b, eps)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_higher_order_noise_changes_with_the_seed_and_offset():
    x, W, b, c = make_inputs(5, 8, 6, torch.float64, "cpu")
    values = {sslkern.autoencoder_loss(x, W, b, c, higher_order=1.0, seed=s, offset=o).item()
              for s, o in ((1, 0), (2, 0), (1, 40))}
    assert len(values) == 3


# --- the registered ops: opcheck, torch.compile, errors ------------------------------------

PENALTIES = (0.2, 0.1, "kl", 0.5, 0.2, 2)  # sparsity, target, kind, higher_order, sigma, samples


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b in ("reference", "native")])
def test_opcheck_with_the_penalties(backend):
    x, W, b, c = make_inputs(3, 5, 4, torch.float64, "cpu")
    ops = torch.ops.sslkern
    step = ("sigmoid", "sigmoid", "bce", "mask", 0.25, 0.3, 123, 4)
    saved = ops.autoencoder_loss(x, W, b, c, *step, backend, None, *PENALTIES)[1:]
    assert saved[5].shape == (4,) and saved[6].shape == (2 * 3, 4)  # hcol, h_noisy
    grad = torch.tensor(1.3, dtype=torch.float64)
    for op, args in [
        (ops.autoencoder_loss.default, (*leaves([x, W, b, c]), *step, backend, None, *PENALTIES)),
        (ops.autoencoder_loss_backward.default, (grad, x, W, c, *saved, *step, True, backend, None, *PENALTIES)),
        (ops.autoencoder_value_and_grad.default, (x, W, b, c, *step, backend, None, *PENALTIES)),
        (ops.autoencoder_sgd_step.default, (x, W.clone(), b.clone(), c.clone(), *step, backend, 0.1, None,
                                            *PENALTIES)),
    ]:
        torch.library.opcheck(op, args)


def test_compiled_objective_with_the_penalties_matches_eager():
    def objective(x, W, b, c):
        return sslkern.autoencoder_loss(x, W, b, c, corruption="mask", level=0.2, contractive=0.1,
                                        sparsity=0.3, sparsity_kind="l1", higher_order=0.4,
                                        higher_order_samples=2, seed=5)

    def run(fn):
        inputs = leaves(make_inputs(7, 11, 6, torch.float32, "cpu"))
        value = fn(*inputs)
        value.backward()
        return [value.detach()] + [t.grad for t in inputs]

    torch._dynamo.reset()
    compiled = torch.compile(objective, fullgraph=True, backend="aot_eager")
    for got, want in zip(run(compiled), run(objective)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def _call(**kw):
    x, W, b, c = make_inputs(3, 5, 4, torch.float32, "cpu")
    return sslkern.autoencoder_loss(x, W, b, c, **kw)


@pytest.mark.parametrize("kwargs, message", [
    (dict(encoder="tanh", sparsity=0.1), "sparsity_kind='kl' needs an encoder whose outputs lie in"),
    (dict(sparsity=0.1, sparsity_target=1.0), "sparsity_target must be in (0, 1)"),
    (dict(sparsity=-0.1), "sparsity must be a finite number >= 0"),
    (dict(sparsity=0.1, sparsity_kind="l2"), "sparsity_kind must be one of ['kl', 'l1']"),
    (dict(higher_order=float("nan")), "higher_order must be a finite number >= 0"),
    (dict(higher_order=0.1, higher_order_sigma=-1.0), "higher_order_sigma must be a finite number >= 0"),
    (dict(higher_order=0.1, higher_order_samples=0), "higher_order_samples must be an integer >= 1"),
    (dict(higher_order=0.1, higher_order_samples=2.5), "higher_order_samples must be an integer >= 1"),
])
def test_bad_penalty_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError) as info:
        _call(**kwargs)
    assert message in str(info.value)


def test_registered_op_checks_the_penalties_too():
    x, W, b, c = make_inputs(3, 5, 4, torch.float32, "cpu")
    with pytest.raises(ValueError, match=r"sslkern::autoencoder_value_and_grad: sparsity_kind='kl' needs"):
        torch.ops.sslkern.autoencoder_value_and_grad(x, W, b, c, "tanh", "sigmoid", "bce", "none", 0.0, 0.0,
                                                     0, 0, "auto", None, 0.5)
    with pytest.raises(ValueError, match=r"sslkern::autoencoder_sgd_step: sparsity_kind must be one of"):
        torch.ops.sslkern.autoencoder_sgd_step(x, W, b, c, "sigmoid", "sigmoid", "bce", "none", 0.0, 0.0,
                                               0, 0, "auto", 0.1, None, 0.5, 0.1, "max")


def test_higher_order_counters_are_checked():
    x = torch.zeros(2**16, 2**15 + 1)[:, :1].expand(2**16, 2**15 + 1)  # 2**31 + 2**16 elements, no memory
    W, b, c = torch.zeros(1, 2**15 + 1), torch.zeros(1), torch.zeros(2**15 + 1)
    with pytest.raises(ValueError, match=r"higher_order_samples=1: \(1 \+ samples\)"):
        sslkern.autoencoder_loss(x, W, b, c, higher_order=0.1)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b in ("reference", "native")])
def test_a_seed_tensor_reaches_the_backward_of_the_higher_order_term(backend):
    """The backward redraws the perturbations: with a seed tensor it must read the same one
    (saved for the backward even when x needs no gradient), through the op and eagerly."""
    x, W, b, c = make_inputs(5, 9, 4, torch.float64, "cpu")
    step = ("sigmoid", "sigmoid", "bce", "mask", 0.3, 0.0)
    trailing = (0.0, 0.05, "kl", 2.0, 0.5, 2)
    seed = 2**40 + 9
    params = leaves([W, b, c])
    with sslkern.use_backend(backend):
        by_int = torch.ops.sslkern.autoencoder_loss(x, *params, *step, seed, 3, backend, None, *trailing)[0]
        want = torch.autograd.grad(by_int, params)
        rng = torch.tensor([seed, 3])
        by_tensor = torch.ops.sslkern.autoencoder_loss(x, *params, *step, 0, 0, backend, rng, *trailing)[0]
        for got, exp in zip(torch.autograd.grad(by_tensor, params), want):
            assert torch.equal(got, exp)
        # eager: advancing the tensor before the backward raises instead of drawing other noise
        monkey = sslkern.autoencoder_loss(x, *params, corruption="mask", level=0.3, higher_order=2.0, seed=rng,
                                          higher_order_sigma=0.5, higher_order_samples=2)
        rng[1] += 45
        if backend == "reference":  # native computed its gradients in the forward's one C++ call
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                torch.autograd.grad(monkey, params)


def test_a_one_dimensional_x_is_named_not_an_index_error():
    W, b, c = make_inputs(3, 5, 4, torch.float32, "cpu")[1:]
    with pytest.raises(ValueError, match="x must have 2 dimension"):
        torch.ops.sslkern.autoencoder_loss(torch.rand(5), W, b, c, "sigmoid", "sigmoid", "bce", "none", 0.0, 0.0,
                                           0, 0, "auto", None, 0.1)
