"""What the test files share: the device, dtypes and shapes, THE tolerance policy, the one
assert_close, and the builders of the oracle tests (inputs, leaves, objective cases).

Test files import from here, never from each other; conftest.py takes DEVICE from here.

Tolerances
----------
A Policy is one table, dtype -> (rtol, atol), with a name and the reason it exists. DEFAULT is
the rule for a result computed in `dtype` against the float64 oracle. Every other policy is
named for the case that needs it, and says why in one line (POLICIES lists them all); a test
picks one by name instead of writing numbers of its own (at_least and scaled derive one for a
case-dependent slack, such as a noise level). Two ways of measuring:

  max-norm (default)   |actual - expected|_max <= atol + rtol * max(|expected|_max, floor)
  elementwise          |actual_i - expected_i| <= atol + rtol * |expected_i| for every i
                       (tighter: for tails and extremes, where small entries matter)
"""
from dataclasses import dataclass, field, replace

import pytest
import torch

from sslkern import kinds

# On a CUDA machine every backend runs on CUDA tensors (triton needs them there); the oracle
# always runs in float64 on the CPU.
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
DTYPES = [torch.float32, torch.float64]
# (B, D, H): a single unit, small primes, sizes that are no multiple of any block.
SHAPES = [(1, 1, 1), (3, 5, 7), (37, 129, 65)]

ACTIVATIONS = kinds.ACTIVATIONS.names()
CORRUPTIONS = kinds.ELEMENTWISE_CORRUPTIONS  # block and patch: tests/test_structured_masks.py
# (encoder, decoder, loss): bce with its sigmoid decoder, mse with several decoders.
OBJECTIVES = [("sigmoid", "sigmoid", "bce"), ("tanh", "sigmoid", "mse"), ("relu", "linear", "mse"),
              ("softplus", "tanh", "mse"), ("linear", "softplus", "mse"), ("sigmoid", "relu", "mse")]
LEVELS = {"none": 0.0, "mask": 0.3, "gaussian": 0.2, "salt_pepper": 0.3}


# --- the tolerance policy ------------------------------------------------------------------

F64, F32, F16, BF16 = torch.float64, torch.float32, torch.float16, torch.bfloat16


@dataclass(frozen=True)
class Policy:
    """dtype -> (rtol, atol), measured in the max-norm or entry by entry."""
    name: str
    table: dict = field(repr=False)
    reason: str = field(repr=False)
    elementwise: bool = False
    floor: float = 0.0  # max-norm only: rtol scales max(|expected|_max, floor)

    def tolerance(self, dtype):
        if dtype not in self.table:
            raise KeyError(f"tolerance policy {self.name} has no entry for {dtype}")
        return self.table[dtype]

    def at_least(self, rtol, why):
        """This policy with every rtol raised to at least `rtol` (a slack that depends on the
        case, e.g. the gaussian level); `why` names it in failure messages."""
        table = {d: (max(r, rtol), a) for d, (r, a) in self.table.items()}
        return replace(self, name=f"{self.name}+{why}({rtol:.2g})", table=table)

    def scaled(self, factor, why):
        """This policy with rtol and atol times `factor` (e.g. draws multiplied by a level);
        `why` names it in failure messages."""
        table = {d: (r * factor, a * factor) for d, (r, a) in self.table.items()}
        return replace(self, name=f"{self.name}*{why}({factor:.2g})", table=table)


# The one table per dtype: a result computed in `dtype` against the float64 oracle (max-norm).
DEFAULT = Policy("DEFAULT", {F32: (2e-5, 1e-6), F64: (1e-10, 1e-12)},
                 "the dtype's rounding through a few reductions of awkward length")

# Looser, named, each for a reason.
NOISY = Policy("NOISY", {F32: (5e-5, 1e-6), F64: (5e-5, 1e-6)},
               "gaussian corruption adds float32 normal draws, which agree across devices only "
               "within 1e-5 (libm differs; docs/random.md), whatever the tensors' dtype")
NOISY_OBJECTIVE = Policy("NOISY_OBJECTIVE", {F32: (5e-5, 1e-6), F64: (1e-6, 1e-7)},
                         "the objective's loss and parameter gradients with gaussian corruption: "
                         "the float32 draws' 1e-5 scaled by the level, averaged over the batch")
PROPERTY = Policy("PROPERTY", {F64: (1e-7, 0.0), F32: (3e-4, 0.0), BF16: (1.5e-1, 0.0), F16: (3e-2, 0.0)},
                  "hypothesis draws shapes, weight scales (to 3), every option and half precision: "
                  "derivatives from h = f(z) (1 - h near 1) and half precision rounds every "
                  "intermediate, errors compounding; relative to max(|expected|, 1)", floor=1.0)
HALF_INPUTS = Policy("HALF_INPUTS", {F32: (1e-5, 0.0), F16: (1e-2, 1e-2), BF16: (1e-2, 1e-2)},
                     "x in float16/bfloat16 with float32 parameters: the loss is float32 math "
                     "on the same values; dx is rounded to x's 11 or 8 bits", elementwise=True)
HALF_INPUT_WEIGHTS = Policy("HALF_INPUT_WEIGHTS", {F32: (1e-4, 1e-5)},
                            "dW of a half-precision x: float32 products of the rounded x, summed "
                            "over the batch", elementwise=True)
HALF_PARAMS = Policy("HALF_PARAMS", {F16: (5e-2, 0.0), BF16: (5e-2, 0.0)},
                     "float16/bfloat16 parameters round every intermediate to 11 or 8 bits",
                     elementwise=True)
SATURATED_PENALTY = Policy("SATURATED_PENALTY", {F32: (2e-5, 1e-6), F64: (1e-10, 1e-6)},
                           "the penalty at |z| up to 1e4 adds f'(z)^2 |W_j|^2 terms with "
                           "|W_j|^2 = 5e7: an absolute floor for f' that underflows",
                           elementwise=True)
DEVICE_MATH = Policy("DEVICE_MATH", {F32: (1e-4, 1e-5), F64: (1e-10, 1e-12)},
                     "a GPU's libm and fast intrinsics against torch's CPU epilogues, entry by "
                     "entry", elementwise=True)

# Tighter than DEFAULT, entry by entry: tails, extremes, and one computation two ways.
RELATIVE = Policy("RELATIVE", {F32: (2e-5, 0.0), F64: (1e-10, 0.0)},
                  "tails and extremes: every entry to the dtype's relative precision, tiny ones "
                  "(softplus(-80) ~ 1e-35) included", elementwise=True)
RELATIVE_GRADIENTS = Policy("RELATIVE_GRADIENTS", {F32: (2e-5, 2e-5), F64: (1e-10, 1e-10)},
                            "gradients at logits beyond +-100: sigmoid(a) - x cancels to ~0 in "
                            "some entries, so an absolute floor at the rtol level",
                            elementwise=True)
UNDERFLOW = Policy("UNDERFLOW", {F32: (2e-5, 1e-12), F64: (1e-10, 1e-12)},
                   "sigmoid(-200) is 1e-87 in float64 and 0 (or a denormal) in float32",
                   elementwise=True)
ENTRYWISE = Policy("ENTRYWISE", dict(DEFAULT.table),
                   "DEFAULT's numbers for every entry, where entries differ widely in size",
                   elementwise=True)
NORMAL_DRAWS = Policy("NORMAL_DRAWS", {F32: (0.0, 1e-5), F64: (0.0, 1e-5)},
                      "philox_normal, and x plus level times it (level <= 1), agree across "
                      "devices within 1e-5 (libm differs; docs/random.md)", elementwise=True)
TWO_ROUTES = Policy("TWO_ROUTES", {F32: (1e-5, 1e-7), F64: (1e-12, 1e-7)},
                    "the native step's registered two-call route against its fused eager route: "
                    "the same math, reduced in another order", elementwise=True)
REORDERED = Policy("REORDERED", {F32: (1e-5, 1e-7), F64: (1e-12, 1e-14)},
                   "the same math with its sums in another order: the baseline, AVX2 and AVX-512 "
                   "copies of the row kernels, a compiled graph against eager", elementwise=True)
SAME_NUMBERS = Policy("SAME_NUMBERS", {F32: (1e-6, 1e-7), F64: (1e-13, 1e-14)},
                      "value_and_grad and sgd_step against the autograd route's numbers: the same "
                      "kernels, the update accumulated in another order", elementwise=True)
SAME_MATH = Policy("SAME_MATH", {F64: (1e-12, 1e-12)},
                   "one float64 computation reached two ways (another route, a subset of the "
                   "gradients, a mode on top, the analytic and the brute-force penalty)",
                   elementwise=True)
ONE_ROUNDING = Policy("ONE_ROUNDING", {F32: (2e-7, 0.0), F64: (1e-15, 0.0)},
                      "an elementwise function against its float64 formula rounded once to the "
                      "dtype", elementwise=True)

POLICIES = [DEFAULT, NOISY, NOISY_OBJECTIVE, PROPERTY, HALF_INPUTS, HALF_INPUT_WEIGHTS, HALF_PARAMS,
            SATURATED_PENALTY, DEVICE_MATH, RELATIVE, RELATIVE_GRADIENTS, UNDERFLOW, ENTRYWISE,
            NORMAL_DRAWS, TWO_ROUTES, REORDERED, SAME_NUMBERS, SAME_MATH, ONE_ROUNDING]


def assert_close(actual, expected, dtype, *, policy=DEFAULT, what="value", equal_nan=False,
                 check_dtype=True):
    """actual (computed in `dtype`) against expected (usually the float64 oracle) under
    `policy`'s (rtol, atol) for `dtype`. Shapes must match, and actual's dtype must be `dtype`
    unless check_dtype is False (a result in another dtype than the one that sets the
    tolerance). equal_nan: NaN where expected has NaN counts as equal."""
    if not (isinstance(actual, torch.Tensor) and isinstance(expected, torch.Tensor)):  # Python numbers
        actual, expected = (torch.as_tensor(v, dtype=torch.float64) for v in (actual, expected))
        check_dtype = False
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if check_dtype:
        assert actual.dtype == dtype, f"{what}: dtype {actual.dtype} != {dtype}"
    rtol, atol = policy.tolerance(dtype)
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    where = f"{policy.name} for {str(dtype)[6:]}: rtol {rtol:.2g}, atol {atol:.2g}"
    if policy.elementwise:
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=equal_nan,
                                   msg=lambda message: f"{what} ({where}, elementwise): {message}")
        return
    if equal_nan:
        nan = expected.isnan()
        assert torch.equal(actual.isnan(), nan), f"{what}: NaN where the expected value has none, or not NaN"
        actual, expected = actual[~nan], expected[~nan]
    err = (actual - expected).abs().max().item() if expected.numel() else 0.0
    scale = max(expected.abs().max().item() if expected.numel() else 0.0, policy.floor)
    bound = atol + rtol * scale
    assert err <= bound, (f"{what}: max error {err:.3e} > {bound:.3e} ({where}, max-norm; "
                          f"{err / bound if bound else float('inf'):.3g}x the bound)")


# --- builders of the oracle tests ----------------------------------------------------------

def make_inputs(batch, visible, hidden, dtype, device=DEVICE, seed=0):
    """x in [0, 1] (a valid bce target), W scaled so activations are neither linear nor saturated."""
    gen = torch.Generator().manual_seed(seed + 1000 * batch + visible)
    x = torch.rand(batch, visible, generator=gen, dtype=torch.float64)
    W = torch.randn(hidden, visible, generator=gen, dtype=torch.float64) * (1.5 / visible ** 0.5)
    b = torch.randn(hidden, generator=gen, dtype=torch.float64) * 0.3
    c = torch.randn(visible, generator=gen, dtype=torch.float64) * 0.3
    return [t.to(dtype=dtype, device=device) for t in (x, W, b, c)]


def leaves(tensors, dtype=None, device=None):
    """Leaf copies that require grad (aliasing an input that needs no conversion)."""
    return [t.detach().to(dtype=dtype or t.dtype, device=device or t.device).requires_grad_(True)
            for t in tensors]


def leaf_pairs(*tensors, dtype=None):
    """Leaves on DEVICE in `dtype` (default: their own) for the code under test, and float64
    CPU leaves of the same values for the oracle."""
    tested = [t.to(DEVICE, dtype or t.dtype).requires_grad_() for t in tensors]
    exact = [t.detach().double().requires_grad_() for t in tensors]
    return tested, exact


def objective_config(objective, corruption, contractive, seed=2**40 + 3, offset=29):
    """autoencoder_loss's keywords for one of objective_cases()."""
    encoder, decoder, loss = objective
    return dict(encoder=encoder, decoder=decoder, loss=loss, corruption=corruption,
                level=LEVELS[corruption], contractive=contractive, seed=seed, offset=offset)


def objective_policy(corruption):
    """NOISY_OBJECTIVE where gaussian noise enters the objective; DEFAULT otherwise."""
    return NOISY_OBJECTIVE if corruption == "gaussian" else DEFAULT


def objective_cases():
    """bce with every corruption, with and without the penalty; each mse decoder with two
    corruption kinds, so every kind meets every objective family and both penalty settings."""
    bce, *mse = OBJECTIVES
    cases = [(bce, kind, lam) for kind in CORRUPTIONS for lam in (0.0, 0.5)]
    for i, objective in enumerate(mse):
        cases += [(objective, CORRUPTIONS[i % len(CORRUPTIONS)], 0.0),
                  (objective, CORRUPTIONS[(i + 1) % len(CORRUPTIONS)], 0.5)]
    return [pytest.param(*case, id=f"{'-'.join(case[0])}-{case[1]}-{case[2]}") for case in cases]


def assert_same_state(got, want):
    """Two state dicts equal entry for entry, tensors bit for bit (resumed against uninterrupted runs)."""
    assert got.keys() == want.keys()
    for key in want:
        if isinstance(want[key], torch.Tensor):
            assert torch.equal(got[key], want[key]), f"{key} differs from the uninterrupted run"
        else:
            assert got[key] == want[key], f"{key}: {got[key]!r} != {want[key]!r}"
