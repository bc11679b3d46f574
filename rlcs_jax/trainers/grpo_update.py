"""Jitted pieces of the GRPO update: completion log-probs and the step.

`make_update_step` builds `step(state, batch) -> (state, metrics)`: one
clipped-ratio update over a rollout batch whose micro-batches accumulate
gradients and (sum, count) loss terms under `lax.scan`; a non-finite loss or
gradient keeps the old state. `completion_logprobs` is the forward it shares
with the trainer's old-policy and reference passes; `group_advantages` is
the jitted group baseline. `GRPOTrainer` (grpo.py) jits and caches these per
padded prompt length.

Shape legend: B rows (P prompts * R completions), Lp padded prompt length,
T max new tokens, L = Lp + T.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import optax

from rlcs_jax import compiler
from rlcs_jax import numerics
from rlcs_jax.grpo import advantages as adv_lib
from rlcs_jax.grpo import logprobs as logprobs_lib
from rlcs_jax.grpo import losses as losses_lib
from rlcs_jax.model.config import ModelConfig
from rlcs_jax.model.transformer import Transformer, output_logits
from rlcs_jax.trainers import state as state_lib

if TYPE_CHECKING:
  from rlcs_jax.trainers import grpo

group_advantages = compiler.jit(
    adv_lib.group_advantages, static_argnames=("scale_by_std", "eps")
)


def completion_logprobs(
    params,
    model_cfg: ModelConfig,
    tokens_BL: jax.Array,
    valid_BL: jax.Array,
    prompt_len: int,
    temperature: float = 1.0,
    group_size: int = 1,
):
  """Log-probs and entropies of the completion tokens [B, T] (float32).

  Only the T completion positions go through the output head. With
  `group_size` R > 1, rows i*R .. i*R+R-1 must share their prompt (the first
  `prompt_len` tokens and valid flags), as a GRPO group's completions do:
  each prompt then goes through the model once, and its keys and values are
  repeated for its R completions, which attend to them as a prefix (and
  send their gradients back through them). The same function of the
  parameters on P*Lp + B*T tokens instead of B*(Lp+T); values differ from
  the R = 1 pass by float rounding only.
  """
  model = Transformer(model_cfg)
  if group_size == 1:
    hidden, _ = model.apply(
        {"params": params},
        tokens_BL[:, :-1],
        valid_BL=valid_BL[:, :-1],
        return_hidden=True,
    )
    hidden = hidden[:, prompt_len - 1 :]
  else:
    r = group_size
    hidden_PL, prefix = model.apply(
        {"params": params},
        tokens_BL[::r, :prompt_len],
        valid_BL=valid_BL[::r, :prompt_len],
        return_hidden=True,
        return_prefix=True,
    )
    repeat = lambda x: jnp.repeat(x, r, axis=0)
    # The last prompt position's hidden state predicts the first completion
    # token (prompts are left-padded, so it is the last prompt token).
    hidden = repeat(hidden_PL[:, -1:])
    if tokens_BL.shape[1] - prompt_len > 1:
      hidden_BT, _ = model.apply(
          {"params": params},
          tokens_BL[:, prompt_len:-1],
          valid_BL=valid_BL[:, prompt_len:-1],
          prefix=jax.tree.map(repeat, prefix),
          return_hidden=True,
      )
      hidden = jnp.concatenate([hidden, hidden_BT], axis=1)
  logits = output_logits(params, model_cfg, hidden)
  return logprobs_lib.token_logprobs_and_entropy(
      logits, tokens_BL[:, prompt_len:], temperature=temperature
  )


def make_update_step(
    model_cfg: ModelConfig,
    tx: optax.GradientTransformation,
    cfg: grpo.GRPOConfig,
    prompt_len: int,
    temperature: float,
    group_size: int = 1,
):
  """step(state, batch) -> (state, metrics); micro-batches under scan.

  `group_size` > 1: every micro-batch holds whole groups of that many rows
  sharing a prompt (see `completion_logprobs`).
  """
  loss_cfg = cfg.loss

  def loss_fn(params, b):
    logp, entropy = completion_logprobs(
        params,
        model_cfg,
        b["tokens"],
        b["valid"],
        prompt_len,
        temperature,
        group_size,
    )
    # One update pass per rollout: the old policy is the current one, so its
    # log-probs are this forward's, detached (ratio exactly 1, gradient
    # unchanged), and the separate old-policy pass is skipped.
    old_logp = b["old_logp"] if "old_logp" in b else jax.lax.stop_gradient(logp)
    (s, c), m = losses_lib.grpo_loss(
        logp,
        old_logp,
        b["adv"],
        b["mask"],
        loss_cfg,
        ref_logp_BL=b.get("ref_logp"),
        seq_weight_B=b["seq_weight"],
        entropy_BL=entropy,
    )
    return s, (s, c, m)

  grad_fn = jax.grad(loss_fn, has_aux=True)

  def step(state: state_lib.TrainState, batch):
    rows = batch["tokens"].shape[0]
    mb = cfg.micro_batch or rows
    n = rows // mb
    micro = jax.tree.map(lambda x: x.reshape(n, mb, *x.shape[1:]), batch)

    def body(carry, b):
      grads, loss_sum, count, metrics = carry
      g, (s, c, m) = grad_fn(state.params, b)
      grads = jax.tree.map(jnp.add, grads, g)
      metrics = losses_lib.combine([metrics, m])
      return (grads, loss_sum + s, count + c, metrics), None

    # First micro-batch outside the scan fixes the metrics' structure. With
    # one micro-batch there is no scan: a zero-length one would still trace
    # a second copy of the model's backward pass (XLA then drops the loop).
    first = jax.tree.map(lambda x: x[0], micro)
    g0, (s0, c0, m0) = grad_fn(state.params, first)
    grads, loss_sum, count, metrics = g0, s0, c0, m0
    if n > 1:
      rest = jax.tree.map(lambda x: x[1:], micro)
      (grads, loss_sum, count, metrics), _ = jax.lax.scan(
          body, (g0, s0, c0, m0), rest
      )
    denom = jnp.maximum(count, 1).astype(jnp.float32)
    grads = jax.tree.map(lambda g: g / denom, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    out = losses_lib.finalize_all(metrics)
    out["loss"] = loss_sum / denom
    out["grad_norm"] = optax.global_norm(grads)
    # Non-finite loss or gradients: keep the old state (the caller's
    # SkipGuard counts the skip and saves the rollout).
    finite = jnp.isfinite(out["loss"]) & jnp.isfinite(out["grad_norm"])
    params = numerics.keep_if_finite(finite, params, state.params)
    opt_state = numerics.keep_if_finite(finite, opt_state, state.opt_state)
    out["skipped"] = (~finite).astype(jnp.float32)
    return (
        state.replace(step=state.step + 1, params=params, opt_state=opt_state),
        out,
    )

  return step
