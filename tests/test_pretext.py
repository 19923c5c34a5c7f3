"""The pretext generators (sslkern.pretext) against an independent numpy formulation.

Labels are checked against the float64 oracle's Philox (sslkern.reference) with the counter
layout of docs/random.md §9; images against numpy slicing and np.rot90. Every backend must
give exactly the oracle's outputs, so backends are bit-identical to each other too."""
import itertools

import numpy as np
import pytest
import torch

import sslkern
from helpers import DEVICE
from sslkern import pretext
from sslkern import reference as oracle
from sslkern.ops import pretext as pretext_ops

DTYPES = [torch.float32, torch.float64]


def _has_pretext_kernels(name):
    try:
        pretext_ops.implementation_for(name, DEVICE, torch.float32)
    except sslkern.BackendError:
        return False
    return True


BACKENDS = [name for name in sslkern.available_backends() if _has_pretext_kernels(name)]


@pytest.fixture(params=BACKENDS)
def backend(request):
    with sslkern.use_backend(request.param):
        yield request.param


def oracle_picks(batch, per_row, choices, seed, offset):
    """[batch] numpy arrays: (c0 * n) >> 32 of the oracle's word at offset + per_row*i + j."""
    words = oracle.philox4x32_10(batch * per_row, seed, offset)[0].numpy().astype(np.uint64).reshape(batch, per_row)
    return [((words[:, j] * np.uint64(n)) >> np.uint64(32)).astype(np.int64) for j, n in enumerate(choices)]


def images(batch, height, width, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, height * width, generator=gen, dtype=torch.float64).to(dtype).to(DEVICE)


def as_numpy(t, *shape):
    return t.detach().cpu().numpy().reshape(*shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch, side", [(7, 13), (1, 1), (3, 28)])
def test_rotations_against_numpy(backend, dtype, batch, side):
    x = images(batch, side, side, dtype)
    out, labels = pretext.rotations(x, (side, side), seed=11, offset=5)
    (expected_labels,) = oracle_picks(batch, 1, (4,), 11, 5)
    np.testing.assert_array_equal(labels.cpu().numpy(), expected_labels)
    assert out.dtype == dtype and labels.dtype == torch.int64
    source, turned = as_numpy(x, batch, side, side), as_numpy(out, batch, side, side)
    for i, k in enumerate(expected_labels):
        np.testing.assert_array_equal(turned[i], np.rot90(source[i], k))
        np.testing.assert_array_equal(np.rot90(turned[i], -k), source[i])  # turning back restores it


def jigsaw_expected(source, perm, grid):
    """numpy: cut into tiles, output tile t = input tile perm[t]; the margin stays."""
    height, width = source.shape
    th, tw = height // grid[0], width // grid[1]
    out = source.copy()
    for t, s in enumerate(perm):
        tr, tc, sr, sc = t // grid[1], t % grid[1], s // grid[1], s % grid[1]
        out[tr * th:(tr + 1) * th, tc * tw:(tc + 1) * tw] = source[sr * th:(sr + 1) * th, sc * tw:(sc + 1) * tw]
    return out


def unpermute(out, perm, grid):
    """numpy: put each tile back: the inverse of jigsaw_expected."""
    inverse = np.argsort(perm)
    return jigsaw_expected(out, inverse, grid)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grid, shape, permutations", [
    ((2, 2), (13, 13), None),
    ((3, 2), (13, 11), "set"),
    ((1, 3), (5, 7), "all"),
])
def test_jigsaw_against_numpy(backend, dtype, grid, shape, permutations):
    batch = 7
    tiles = grid[0] * grid[1]
    if permutations == "set":
        permutations = pretext.permutation_set(tiles, 10, seed=3).to(DEVICE)
    elif permutations == "all":
        permutations = torch.tensor(list(itertools.permutations(range(tiles)))[::-1], device=DEVICE)
    x = images(batch, *shape, dtype)
    out, labels = pretext.jigsaw(x, shape, grid=grid, permutations=permutations, seed=2, offset=100)
    perms = (pretext.default_permutations(grid) if permutations is None else permutations).cpu().numpy()
    (expected_labels,) = oracle_picks(batch, 1, (len(perms),), 2, 100)
    np.testing.assert_array_equal(labels.cpu().numpy(), expected_labels)
    source, shuffled = as_numpy(x, batch, *shape), as_numpy(out, batch, *shape)
    for i, label in enumerate(expected_labels):
        np.testing.assert_array_equal(shuffled[i], jigsaw_expected(source[i], perms[label], grid))
        np.testing.assert_array_equal(unpermute(shuffled[i], perms[label], grid), source[i])


def test_default_permutations_are_all_24():
    perms = pretext.default_permutations((2, 2))
    assert perms.shape == (24, 4)
    assert {tuple(row) for row in perms.tolist()} == set(itertools.permutations(range(4)))
    perms.zero_()  # the caller's copy: the next default is intact
    assert torch.equal(pretext.default_permutations((2, 2))[3], torch.tensor([0, 2, 3, 1]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, patch, gap", [((13, 13), 3, 1), ((11, 17), 2, 0), ((3, 3), 1, 0), ((28, 28), 8, 2)])
def test_relative_patches_against_numpy(backend, dtype, shape, patch, gap):
    batch = 7
    x = images(batch, *shape, dtype)
    center, neighbour, labels = pretext.relative_patches(x, shape, patch=patch, gap=gap, seed=4, offset=7)
    extent = 3 * patch + 2 * gap
    expected_labels, top, left = oracle_picks(batch, 3, (8, shape[0] - extent + 1, shape[1] - extent + 1), 4, 7)
    np.testing.assert_array_equal(labels.cpu().numpy(), expected_labels)
    assert center.shape == neighbour.shape == (batch, patch * patch)
    source = as_numpy(x, batch, *shape)
    step = patch + gap
    for i, label in enumerate(expected_labels):
        square = label if label < 4 else label + 1
        row, col = top[i] + (square // 3) * step, left[i] + (square % 3) * step
        np.testing.assert_array_equal(as_numpy(center[i], patch, patch),
                                      source[i, top[i] + step:top[i] + step + patch, left[i] + step:left[i] + step + patch])
        np.testing.assert_array_equal(as_numpy(neighbour[i], patch, patch), source[i, row:row + patch, col:col + patch])


def test_backends_bit_identical_on_awkward_sizes():
    x = images(7, 13, 13, torch.float32)
    results = {}
    for name in BACKENDS:
        with sslkern.use_backend(name):
            results[name] = (pretext.rotations(x, (13, 13), seed=9, offset=1),
                             pretext.jigsaw(x, (13, 13), grid=(3, 3), seed=9, offset=1),
                             pretext.relative_patches(x, (13, 13), patch=3, gap=1, seed=9, offset=1))
    first = results[BACKENDS[0]]
    for name, result in results.items():
        for got, want in zip(result, first):
            assert all(torch.equal(a, b) for a, b in zip(got, want)), name


def test_empty_batch(backend):
    x = images(0, 5, 5, torch.float32)
    out, labels = pretext.rotations(x, (5, 5))
    assert out.shape == (0, 25) and labels.shape == (0,)
    center, neighbour, labels = pretext.relative_patches(x, (5, 5), patch=1, gap=0)
    assert center.shape == neighbour.shape == (0, 1) and labels.shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_dtypes_are_exact_copies(dtype):
    x = images(5, 6, 6, dtype)
    with sslkern.use_backend("auto"):  # whichever backend takes half dtypes here
        out, labels = pretext.rotations(x, (6, 6), seed=1)
    with sslkern.use_backend("reference"):
        want, want_labels = pretext.rotations(x.double(), (6, 6), seed=1)
    assert out.dtype == dtype and torch.equal(out.double(), want) and torch.equal(labels, want_labels)


def test_labels_roughly_uniform():
    """Loose: each class within 5 standard errors of its expected count (fixed seeds)."""
    n = 6000
    x = torch.zeros(n, 9, device=DEVICE)
    cases = [(pretext.rotations(x, (3, 3), seed=1)[1], 4),
             (pretext.jigsaw(x, (3, 3), seed=2)[1], 24),
             (pretext.relative_patches(x, (3, 3), patch=1, gap=0, seed=3)[2], 8)]
    for labels, classes in cases:
        counts = torch.bincount(labels.cpu(), minlength=classes).double()
        assert counts.numel() == classes
        expected = n / classes
        assert (counts - expected).abs().max() < 5 * (expected * (1 - 1 / classes)) ** 0.5, counts


def test_relative_positions_cover_the_room():
    x = torch.arange(10 * 10, dtype=torch.float32, device=DEVICE).repeat(4000, 1)
    center, _, _ = pretext.relative_patches(x, (10, 10), patch=2, gap=0, seed=5)
    corners = center[:, 0].long().cpu()  # the pixel index of the centre square's corner
    rows, cols = corners // 10 - 2, corners % 10 - 2  # the arrangement's top and left
    assert set(rows.tolist()) == set(range(5)) and set(cols.tolist()) == set(range(5))


def test_offsets_move_along_one_stream():
    x = torch.zeros(40, 4, device=DEVICE)
    _, labels = pretext.rotations(x, (2, 2), seed=8, offset=0)
    _, tail = pretext.rotations(x[20:], (2, 2), seed=8, offset=20)
    assert torch.equal(labels[20:], tail)  # row i uses counter offset + i
    _, moved = pretext.rotations(x, (2, 2), seed=8, offset=40)
    _, reseeded = pretext.rotations(x, (2, 2), seed=9, offset=0)
    assert not torch.equal(labels, moved) and not torch.equal(labels, reseeded)
    *_, rel = pretext.relative_patches(torch.zeros(40, 9, device=DEVICE), (3, 3), patch=1, gap=0, seed=8)
    *_, rel_tail = pretext.relative_patches(torch.zeros(20, 9, device=DEVICE), (3, 3), patch=1, gap=0, seed=8,
                                            offset=60)
    assert torch.equal(rel[20:], rel_tail)  # three draws per row


def test_permutation_set_is_far_apart_and_seeded():
    perms = pretext.permutation_set(9, 30, seed=1)
    assert perms.shape == (30, 9) and perms.dtype == torch.int64
    assert all(sorted(row) == list(range(9)) for row in perms.tolist())
    distances = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    distances.fill_diagonal_(9)
    assert int(distances.min()) >= 6  # greedy maximal-Hamming sets of 30 from 9! stay far apart
    assert torch.equal(perms, pretext.permutation_set(9, 30, seed=1))
    assert not torch.equal(perms, pretext.permutation_set(9, 30, seed=2))
    assert len({tuple(r) for r in pretext.permutation_set(4, 24).tolist()}) == 24
    with pytest.raises(ValueError, match="count"):
        pretext.permutation_set(3, 7)


@pytest.mark.parametrize("call, error, match", [
    (lambda x: pretext.rotations(x, (4, 9)), ValueError, "square"),
    (lambda x: pretext.rotations(x, (6, 5)), ValueError, "image_shape"),
    (lambda x: pretext.rotations(x.long(), (6, 6)), TypeError, "x"),
    (lambda x: pretext.rotations(x[0], (6, 6)), ValueError, "x"),
    (lambda x: pretext.rotations(x, (6, 6), seed=-1), ValueError, "seed"),
    (lambda x: pretext.rotations(x, (6, 6), offset=2**32), ValueError, "offset"),
    (lambda x: pretext.jigsaw(x, (6, 6), grid=(7, 1)), ValueError, "grid"),
    (lambda x: pretext.jigsaw(x, (6, 6), grid=(2,)), ValueError, "grid"),
    (lambda x: pretext.jigsaw(x, (6, 6), permutations=torch.zeros(3, 4, dtype=torch.long)), ValueError,
     "not a permutation"),
    (lambda x: pretext.jigsaw(x, (6, 6), permutations=torch.tensor([[0, 1, 2]])), ValueError, r"\[P >= 1, 4\]"),
    (lambda x: pretext.jigsaw(x, (6, 6), permutations=torch.eye(4)), TypeError, "integer dtype"),
    (lambda x: pretext.jigsaw(x, (6, 6), permutations=[[0, 1, 2, 3]]), TypeError, "permutations"),
    (lambda x: pretext.jigsaw(x, (6, 6), permutations=torch.arange(4, device="meta")[None]), ValueError,
     "permutations must be on"),
    (lambda x: pretext.relative_patches(x, (6, 6), patch=2, gap=1), ValueError, "patch=2 and gap=1"),
    (lambda x: pretext.relative_patches(x, (6, 6), patch=0), ValueError, "patch"),
    (lambda x: pretext.relative_patches(x, (6, 6), patch=1, gap=-1), ValueError, "gap"),
])
def test_bad_arguments_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call(images(3, 6, 6, torch.float32).cpu())


def test_registered_ops_refuse_what_they_index():
    x = images(2, 4, 4, torch.float32).cpu()
    with pytest.raises(ValueError, match="sslkern::rotations: .*image_shape"):
        torch.ops.sslkern.rotations(x, 5, 0, 0, "auto")
    with pytest.raises(ValueError, match="sslkern::jigsaw: permutations"):
        torch.ops.sslkern.jigsaw(x, 4, 4, 2, 2, torch.full((1, 4), 7), 0, 0, "auto")
    with pytest.raises(ValueError, match="sslkern::relative_patches: .*do not fit"):
        torch.ops.sslkern.relative_patches(x, 4, 4, 2, 0, 0, 0, "auto")



def test_a_backend_without_pretext_kernels_is_refused_or_skipped(monkeypatch):
    """As native on CUDA tensors: named, it is refused; under auto the next backend runs."""
    monkeypatch.setitem(pretext_ops.IMPLEMENTATIONS, "native", ((), "sslkern.pretext._native"))
    with pytest.raises(sslkern.BackendError, match="no pretext kernels for cpu"):
        pretext_ops.implementation_for("native", torch.device("cpu"), torch.float32)
    chosen = pretext_ops.implementation_for("auto", torch.device("cpu"), torch.float32)
    assert chosen.__name__ == "sslkern.pretext._torch"


def test_opcheck():
    x = images(5, 6, 6, torch.float32)
    perms = pretext.default_permutations((2, 3), device=DEVICE)
    cases = [(torch.ops.sslkern.rotations, (x, 6, 3, 2, "auto")),
             (torch.ops.sslkern.jigsaw, (x, 6, 6, 2, 3, perms, 3, 2, "auto")),
             (torch.ops.sslkern.relative_patches, (x, 6, 6, 1, 1, -5, 2, "auto"))]  # a seed >= 2**63
    for op, args in cases:
        torch.library.opcheck(op, args)


def test_torch_compile_traces_the_ops():
    x = images(4, 6, 6, torch.float32)

    def generate(x):
        rotated, labels = pretext.rotations(x, (6, 6), seed=3)
        shuffled, jig = pretext.jigsaw(x, (6, 6), seed=3)
        center, neighbour, rel = pretext.relative_patches(x, (6, 6), patch=1, gap=1, seed=3)
        return rotated, labels, shuffled, jig, center, neighbour, rel

    compiled = torch.compile(generate, backend="eager", fullgraph=True)
    for got, want in zip(compiled(x), generate(x)):
        assert torch.equal(got, want)


def test_every_instruction_set_copies_the_same():
    """The C++ copies are compiled per instruction set (csrc/cpu/pretext_rows.h); each must give
    the oracle's bits, on the 4x4-block quarter turns (side 28) and the short tile rows."""
    lib = sslkern._native.load("cpu")
    best = lib.isa()
    x = images(64, 28, 28, torch.float32).cpu()
    results = {}
    try:
        for isa in ("baseline", "avx2", "avx512"):
            try:
                lib.set_isa(isa)
            except ValueError:
                continue  # this CPU lacks it
            with sslkern.use_backend("native"):
                results[isa] = (pretext.rotations(x, (28, 28), seed=3), pretext.jigsaw(x, (28, 28), grid=(3, 5), seed=3),
                                pretext.relative_patches(x, (28, 28), patch=5, gap=1, seed=3))
    finally:
        lib.set_isa(best)
    with sslkern.use_backend("reference"):
        want = (pretext.rotations(x, (28, 28), seed=3), pretext.jigsaw(x, (28, 28), grid=(3, 5), seed=3),
                pretext.relative_patches(x, (28, 28), patch=5, gap=1, seed=3))
    assert set(want[0][1].tolist()) == {0, 1, 2, 3}  # every quarter turn is exercised
    assert "baseline" in results
    for isa, result in results.items():
        for got, expected in zip(result, want):
            assert all(torch.equal(a, b) for a, b in zip(got, expected)), isa


def test_bench_compares_each_generator_with_a_copy():
    """What `sslkern bench --pretext` reports: every generator, per backend, as a ratio to the
    copy of the same batch (the numbers themselves are never checked in tests)."""
    from sslkern import bench

    rows = bench.compare_pretext(3, (7, 7), device="cpu", warmup=1, steps=5, max_seconds=1.0)
    assert {r["backend"] for r in rows} == set(bench.pretext_backends("cpu"))
    for name in bench.pretext_backends("cpu"):
        variants = {r["variant"]: r for r in rows if r["backend"] == name}
        assert set(variants) == {"copy", "rotations", "jigsaw", "relative_patches"}
        assert variants["copy"]["x_copy"] == 1.0
    assert "relative_patches" in bench.pretext_table(rows, 3, (7, 7))
