"""The registry of kinds (sslkern/kinds.py) is the one place a kind is declared: validation and
the CLI derive from it, and a name or code it does not know raises instead of computing
something else. (The C++ side, csrc/include/sslkern/kinds.h, is held against it in
test_kinds.py.)"""
import math

import pytest
import torch

import sslkern
from sslkern import kinds
from sslkern.kinds import ACTIVATIONS, CORRUPTIONS, FAMILIES, LOSSES


@pytest.mark.parametrize("table", FAMILIES, ids=lambda t: t.family)
def test_codes_are_dense_and_names_unique(table):
    assert [row.code for row in table] == list(range(len(table)))
    assert len(set(table.names())) == len(table)
    for row in table:
        assert table[row.name] is row and table.by_code(row.code) is row and table.code(row.name) == row.code


@pytest.mark.parametrize("table", FAMILIES, ids=lambda t: t.family)
def test_unknown_name_and_code_raise(table):
    with pytest.raises(ValueError, match=f"unknown {table.family} 'bogus'"):
        table["bogus"]
    with pytest.raises(ValueError, match=f"unknown {table.family} code {len(table)}"):
        table.by_code(len(table))


def test_a_table_refuses_duplicate_or_sparse_codes():
    with pytest.raises(AssertionError):
        kinds.Table("loss", "Loss", kinds.Loss("a", 0), kinds.Loss("b", 2))
    with pytest.raises(AssertionError):
        kinds.Table("loss", "Loss", kinds.Loss("a", 0), kinds.Loss("a", 1))


def test_properties_the_library_asks_about():
    assert ACTIVATIONS.where(piecewise_linear=True) == {"linear", "relu"}
    assert CORRUPTIONS.where(passes_gradient=True) == {"none", "gaussian"}
    assert LOSSES["bce"].needs_decoder == "sigmoid" and LOSSES["mse"].needs_decoder is None


@pytest.mark.parametrize("activation", ACTIVATIONS.names())
def test_every_activation_is_accepted(activation):
    x, W, b = torch.rand(3, 4, dtype=torch.float64), torch.rand(2, 4, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    with sslkern.use_backend("reference"):
        h = sslkern.encode(x, W, b, activation)
    assert h.shape == (3, 2)


def test_an_unknown_activation_names_the_argument():
    x, W, b = torch.rand(3, 4), torch.rand(2, 4), torch.zeros(2)
    with pytest.raises(ValueError, match="activation must be one of .*'elu'.*got 'gelu'"):
        sslkern.encode(x, W, b, "gelu")
    with pytest.raises(ValueError, match="decoder must be one of"):
        sslkern.autoencoder_loss(x, W, b, torch.zeros(4), decoder="swish")


@pytest.mark.parametrize("kind", CORRUPTIONS.names())
def test_level_range_comes_from_the_table(kind):
    low, high = CORRUPTIONS[kind].level_range
    x = torch.rand(2, 4)
    images = dict(image_shape=(2, 2), patch=1) if CORRUPTIONS[kind].needs_image_shape else {}
    if math.isfinite(low):
        with pytest.raises(ValueError, match=f"level must be .* for '{kind}'"):
            sslkern.corrupt(x, kind, low - 0.5, **images)
    if math.isfinite(high):
        with pytest.raises(ValueError, match=f"level must be .* for '{kind}'"):
            sslkern.corrupt(x, kind, high + 0.5, **images)
    sslkern.corrupt(x, kind, low if math.isfinite(low) else 0.0, **images)


def test_a_loss_that_needs_a_decoder_says_which():
    x, W, b, c = torch.rand(3, 4), torch.rand(2, 4), torch.zeros(2), torch.zeros(4)
    with pytest.raises(ValueError, match="loss='bce' needs decoder='sigmoid'"):
        sslkern.autoencoder_loss(x, W, b, c, decoder="tanh", loss="bce")


def test_header_generator_lists_every_row():
    header = kinds.cpp_header()
    for table in FAMILIES:
        assert f"constexpr int k{table.cpp_enum}Count = {len(table)};" in header
        for row in table:
            assert f"  {kinds.cpp_name(row)} = {row.code}," in header


def test_cli_choices_come_from_the_table():
    from sslkern.commands import train

    parser = __import__("argparse").ArgumentParser()
    train.add_arguments(parser)
    choices = {action.dest: action.choices for action in parser._actions if action.choices}
    assert tuple(choices["corruption"]) == CORRUPTIONS.names()
