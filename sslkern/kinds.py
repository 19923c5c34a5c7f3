"""The registry of kinds: every activation, loss, corruption and sparsity kind sslkern knows, one table
each (and the pretext tasks of sslkern.pretext and the product precisions, whose codes no kernel
switches on).

A kind is declared here and nowhere else. Each row carries its name (what users pass), its
integer code (what the compiled kernels and the Triton constexprs receive) and the properties
the rest of the library asks about. Argument validation, the CLI's choices, the codes each
backend passes, the generated C++ header `csrc/include/sslkern/kinds.h` and the tests'
parametrisation all read these tables.

Adding a kind is one row here plus its math in each kernel language (CONTRIBUTING.md walks
through it). Codes are append-only: the compiled kernels switch on them, and every such switch
raises on a code it does not know instead of computing something else.

    python -m sslkern.kinds > csrc/include/sslkern/kinds.h    # regenerate the C++ header
"""
import math
from dataclasses import dataclass
from typing import Generic, Iterator, TypeVar


@dataclass(frozen=True)
class Activation:
    name: str
    code: int
    #: f'' vanishes everywhere (piecewise linear): the contractive gradient has no dZ term.
    piecewise_linear: bool = False
    #: the open interval f maps into (a KL sparsity target must lie in it).
    output_range: tuple = (-math.inf, math.inf)
    doc: str = ""


@dataclass(frozen=True)
class Loss:
    name: str
    code: int
    #: the decoder activation this loss is defined for (None: any).
    needs_decoder: "str | None" = None
    doc: str = ""


@dataclass(frozen=True)
class Corruption:
    name: str
    code: int
    #: dx~/dx is 1 everywhere (additive noise, or none); otherwise a regenerated keep-mask gates it.
    passes_gradient: bool
    #: the closed interval the level must lie in.
    level_range: tuple = (0.0, 1.0)
    #: what the level means, for error messages.
    level_meaning: str = "a probability"
    #: the rows of x must be images of a known shape (image_shape=).
    needs_image_shape: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Sparsity:
    name: str
    code: int
    #: the encoder's output must lie in (0, 1): the penalty compares mean activations with a
    #: target probability (the activation's output_range in ACTIVATIONS decides).
    needs_unit_interval: bool = False
    doc: str = ""


K = TypeVar("K")


class Table(Generic[K]):
    """The rows of one family, looked up by name or by code. Unknown names and codes raise."""

    def __init__(self, family: str, cpp_enum: str, *rows: K):
        self.family, self.cpp_enum = family, cpp_enum
        self._by_name = {row.name: row for row in rows}
        self._by_code = {row.code: row for row in rows}
        if len(self._by_name) != len(rows) or sorted(self._by_code) != list(range(len(rows))):
            raise AssertionError(f"{family}: names must be unique and codes 0..{len(rows) - 1}")

    def __iter__(self) -> Iterator[K]:
        return iter(self._by_code[code] for code in sorted(self._by_code))

    def __len__(self):
        return len(self._by_code)

    def __contains__(self, name):
        return name in self._by_name

    def names(self):
        """The names in code order (CLI choices, test parametrisation)."""
        return tuple(row.name for row in self)

    def __getitem__(self, name) -> K:
        try:
            return self._by_name[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.family} {name!r}; known: {', '.join(self.names())}") from None

    def code(self, name) -> int:
        """The integer the kernels switch on."""
        return self[name].code

    def by_code(self, code) -> K:
        try:
            return self._by_code[code]
        except KeyError:
            raise ValueError(f"unknown {self.family} code {code!r}") from None

    def where(self, **properties):
        """Names of the rows whose attributes equal `properties`, e.g. where(passes_gradient=True)."""
        return frozenset(row.name for row in self
                         if all(getattr(row, key) == value for key, value in properties.items()))


ACTIVATIONS: Table[Activation] = Table(
    "activation", "Activation",
    Activation("linear", 0, piecewise_linear=True, doc="f(z) = z"),
    Activation("sigmoid", 1, output_range=(0.0, 1.0), doc="f(z) = 1 / (1 + e^-z)"),
    Activation("tanh", 2, output_range=(-1.0, 1.0), doc="f(z) = tanh z"),
    Activation("relu", 3, piecewise_linear=True, output_range=(0.0, math.inf), doc="f(z) = max(z, 0)"),
    Activation("softplus", 4, output_range=(0.0, math.inf), doc="f(z) = log(1 + e^z)"),
    Activation("elu", 5, output_range=(-1.0, math.inf), doc="f(z) = z for z > 0, e^z - 1 otherwise (alpha = 1)"),
)

LOSSES: Table[Loss] = Table(
    "loss", "Loss",
    Loss("bce", 0, needs_decoder="sigmoid",
         doc="summed Bernoulli cross-entropy, computed from the decoder's logit (stable for any value)"),
    Loss("mse", 1, doc="half the summed squared error"),
)

CORRUPTIONS: Table[Corruption] = Table(
    "corruption", "Corruption",
    Corruption("none", 0, passes_gradient=True, level_range=(-math.inf, math.inf),
               level_meaning="ignored", doc="x~ = x"),
    Corruption("mask", 1, passes_gradient=False, doc="x~_i = 0 where u_i < level, else x_i"),
    Corruption("gaussian", 2, passes_gradient=True, level_range=(0.0, math.inf),
               level_meaning="a standard deviation", doc="x~_i = x_i + level * n_i"),
    Corruption("salt_pepper", 3, passes_gradient=False,
               doc="x~_i = 0 where u_i < level/2, 1 where level/2 <= u_i < level, else x_i"),
    Corruption("block", 4, passes_gradient=False, needs_image_shape=True,
               level_meaning="the hole's share of the image's area",
               doc="one square hole per image, side round(sqrt(level H W)), at a uniformly random position"),
    Corruption("patch", 5, passes_gradient=False, needs_image_shape=True,
               level_meaning="the probability that a tile is dropped",
               doc="the image cut into patch x patch tiles, each dropped with probability level"),
)

SPARSITIES: Table[Sparsity] = Table(
    "sparsity kind", "Sparsity",
    Sparsity("kl", 0, needs_unit_interval=True,
             doc="beta * sum_j KL(rho || mean_i h_ij): the mean activation pulled toward rho"),
    Sparsity("l1", 1, doc="beta * mean_i sum_j |h_ij|"),
)
# kl evaluates KL(rho || rho^) and its slope at rho^ clamped to [c, 1 - c]: a unit saturated over
# the whole batch (an fp32 sigmoid reaches exactly 0 or 1) then gives a large finite penalty,
# not inf and NaN gradients. A power of two, so that 1 - c is exact in fp32 as in fp64 and
# every dtype clamps to the same edges. Emitted into kinds.h as kKlRhoHatClamp.
KL_RHO_HAT_CLAMP = 2.0 ** -20

# The corruption kinds the elementwise kernels compute; the others are structured masks, drawn
# per image in PyTorch (sslkern/backends/structured.py).
ELEMENTWISE_CORRUPTIONS = tuple(row.name for row in CORRUPTIONS if not row.needs_image_shape)

def unit_interval(activation) -> bool:
    """Whether the activation called `activation` maps into (0, 1) (a KL sparsity target fits)."""
    low, high = ACTIVATIONS[activation].output_range
    return low >= 0.0 and high <= 1.0


@dataclass(frozen=True)
class PretextTask:
    name: str
    code: int
    #: Philox words each batch row draws: row i uses counters offset + draws_per_row * i + j.
    draws_per_row: int
    #: how many labels (None: one per permutation of the set the caller gives).
    classes: "int | None"
    #: two views per example (centre and neighbour) through one encoder.
    siamese: bool = False
    doc: str = ""


# The pretext tasks of sslkern.pretext. Not in FAMILIES: no compiled kernel switches on these
# codes (each task has its own C++ entry and Triton kernel), so no C++ enum is generated.
PRETEXT_TASKS: Table[PretextTask] = Table(
    "pretext task", "PretextTask",
    PretextTask("rotation", 0, draws_per_row=1, classes=4, doc="the image turned by label x 90 degrees"),
    PretextTask("jigsaw", 1, draws_per_row=1, classes=None, doc="tiles shuffled by permutation `label`"),
    PretextTask("relative", 2, draws_per_row=3, classes=8, siamese=True,
                doc="which of the 8 neighbours of a centre patch the second patch is"),
)


@dataclass(frozen=True)
class Precision:
    name: str
    code: int
    #: the torch dtype (by name) the products' operands are rounded to; None: the parameters' dtype.
    operands: "str | None"
    #: the backward's gradient operands are scaled by a power of two before the rounding, and
    #: the products' outputs unscaled (fp16's narrow exponent range would flush dL/da to zero).
    scales_gradients: bool = False
    doc: str = ""


# How the objective's matrix products round their operands (the `precision` argument). The
# GPU kernels receive an operand dtype; the compiled CPU step switches on this code. Every
# precision accumulates in fp32 or wider, and keeps the loss, the penalty statistics, the
# gradients and the (fp32) parameters in the parameters' dtype.
PRECISIONS: Table[Precision] = Table(
    "precision", "Precision",
    Precision("default", 0, None, doc="products in the parameters' dtype (fp32: tf32 only where torch allows it)"),
    Precision("bf16", 1, "bfloat16", doc="bf16 operands, fp32 accumulation; fp32 parameters"),
    Precision("fp16", 2, "float16", scales_gradients=True,
              doc="fp16 operands with the gradient operands scaled, fp32 accumulation; fp32 parameters"),
)

# The tables with a generated C++ enum (csrc/include/sslkern/kinds.h).
FAMILIES = (ACTIVATIONS, LOSSES, CORRUPTIONS, SPARSITIES, PRECISIONS)


def cpp_header() -> str:
    """The text of csrc/include/sslkern/kinds.h: the codes as C++ enums, and their counts."""
    lines = [
        "// GENERATED by `python -m sslkern.kinds` from sslkern/kinds.py: do not edit.",
        "// tests/test_kinds.py fails when this file and the Python table disagree.",
        "#pragma once",
        "",
        "namespace sslkern {",
        "",
    ]
    for table in FAMILIES:
        lines.append(f"enum {table.cpp_enum} : int {{")
        for row in table:
            lines.append(f"  {cpp_name(row)} = {row.code},  // {row.doc}")
        lines += ["};", f"constexpr int k{table.cpp_enum}Count = {len(table)};", ""]
    lines += ["// The sparsity kl's clamp of the mean activation (KL_RHO_HAT_CLAMP in sslkern/kinds.py).",
              f"constexpr double kKlRhoHatClamp = {KL_RHO_HAT_CLAMP.hex()};  // {KL_RHO_HAT_CLAMP!r}", ""]
    lines += ["}  // namespace sslkern", ""]
    return "\n".join(lines)


def cpp_name(row):
    """The C++ enumerator of a row: k + the name in CamelCase (kSigmoid, kSaltPepper)."""
    return "k" + "".join(part.capitalize() for part in row.name.split("_"))


if __name__ == "__main__":
    print(cpp_header(), end="")
