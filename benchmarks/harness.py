"""The one timing harness of sslkern's benchmarks (warm-up, medians, device synchronised
before every clock read). It lives in the package (sslkern/bench.py) so that `sslkern bench`
ships it; scripts here import it from this module."""
from sslkern.bench import (  # noqa: F401
    Objective, Shape, Timing, compare, machine, make_problem, measure, plot, products_step,
    sslkern_backends, sslkern_step, synchronize, table, to_json, torch_objective, variants,
)
