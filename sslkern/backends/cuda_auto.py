"""What `auto` picks on CUDA tensors, per shape: a table of measurements, not a guess.

Each rule covers shapes up to a batch size and a weight size (hidden x visible) and names the
backend that won there, with the measured step times that justify it. The first rule that
covers a shape decides; shapes no rule covers keep DEFAULT_ORDER. A forced backend
(set_backend / use_backend / SSLKERN_BACKEND) is never overridden by this table.

No rule has been measured yet: every CUDA shape takes triton first. To add one, run
`python benchmarks/gpu_check_native.py` on the GPU machine and copy a row of its table here.
"""
from typing import NamedTuple


class Rule(NamedTuple):
    max_batch: int
    max_weights: int      # hidden * visible
    backend: str
    evidence: str         # "<card>, torch x.y: triton a.b ms, native c.d ms (median step, fp32)"


DEFAULT_ORDER = ("triton", "native", "reference")
RULES: tuple = ()  # awaiting GPU measurements


def cuda_order(batch, visible, hidden, rules=RULES):
    """Backend preference for one CUDA call on a [batch, visible] input with `hidden` units."""
    for rule in rules:
        if batch <= rule.max_batch and hidden * visible <= rule.max_weights:
            rest = tuple(name for name in DEFAULT_ORDER if name != rule.backend)
            return (rule.backend,) + rest
    return DEFAULT_ORDER
