"""The training step of benchmarks/gpu_check.py in JAX under jax.jit: the baseline a compiler
that sees the whole step (forward, gradients, SGD update, mask draw) reaches.

The objective is torch_objective's: mask corruption, sigmoid encoder, tied decoder, BCE with
logits summed over features and averaged over the batch, plus the contractive penalty
sum_j (sum_i s_ij^2) ||W_j||^2 / B with s = h (1 - h). The mask comes from jax.random with a
fresh key each step, split inside the jitted step so the loop does no host work.

Importing this module imports jax (gpu_check.py treats ImportError as "no jax").
"""
import os

# Before jax is imported: by default XLA takes 75 % of the GPU's memory, which torch shares.
os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402


def backend():
    """Where jitted code runs: "gpu"/"cuda" on the GPU machine, "cpu" otherwise."""
    return jax.default_backend()


def draw_keep_mask(key, shape, level):
    """True where x is kept: u >= level, as torch_objective draws it."""
    return jax.random.uniform(key, shape) >= level


def masked_objective(params, x, keep, contractive):
    """The DAE+CAE objective for a given keep mask (so a test can pass torch's mask in)."""
    W, b, c = params
    batch = x.shape[0]
    h = jax.nn.sigmoid((x * keep) @ W.T + b)
    a = h @ W + c
    recon = jnp.sum(jax.nn.softplus(a) - x * a) / batch
    s = h * (1 - h)
    penalty = jnp.sum(s * s, axis=0) @ jnp.sum(W * W, axis=1) / batch
    return recon + contractive * penalty


def make_step(level, contractive, lr):
    """jitted (params, x, key) -> (params, key, loss): one SGD step with a fresh mask."""
    value_and_grad = jax.value_and_grad(masked_objective)

    def step(params, x, key):
        key, mask_key = jax.random.split(key)
        loss, grads = value_and_grad(params, x, draw_keep_mask(mask_key, x.shape, level), contractive)
        params = tuple(p - lr * g for p, g in zip(params, grads))
        return params, key, loss

    # params are replaced every step: donating them lets XLA update in place
    return jax.jit(step, donate_argnums=0)


def make_inputs(shape, dtype, seed=0):
    """x ~ U(0, 1), W ~ N(0, 1/D), b = c = 0, like gpu_check.make_params (not the same numbers)."""
    batch, visible, hidden = shape
    dtype = jnp.dtype(dtype)
    x_key, w_key, step_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.uniform(x_key, (batch, visible)).astype(dtype)
    W = (jax.random.normal(w_key, (hidden, visible)) / visible ** 0.5).astype(dtype)
    params = (W, jnp.zeros(hidden, dtype), jnp.zeros(visible, dtype))
    return params, x, step_key


def time_step(shape, dtype, level, contractive, lr, steps_per_sample=20, samples=10, warmup=10):
    """Median ms of one jitted step. Wall clock around block_until_ready: torch's CUDA events
    do not see JAX's stream. The warm-up includes the compile."""
    from sslkern.bench import wall_median_ms

    step = make_step(level, contractive, lr)
    params, x, key = make_inputs(shape, dtype)
    state = [params, key]

    def run():
        state[0], state[1], loss = step(state[0], x, state[1])
        return state[0], state[1], loss

    return wall_median_ms(run, samples, warmup, steps_per_sample, wait=jax.block_until_ready)
