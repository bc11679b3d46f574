"""Supervised fine-tuning: response-only NLL, AdamW, gradient accumulation.

Used for the story policy and for the GenRM (whose "responses" are teacher
reasoning chains). The step is one jit with explicit in/out shardings and the
state donated; micro-batches run inside it under `lax.scan` and combine as
(sum, count), so accumulation is exact. Checkpoints hold the train state and
the grain iterator state, so a resumed run sees the same batches.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
import tqdm

from rlcs_jax import checkpoint as ckpt_lib
from rlcs_jax import compiler
from rlcs_jax import metrics as metrics_lib
from rlcs_jax import numerics
from rlcs_jax import preemption
from rlcs_jax import sharding as shd
from rlcs_jax.data import pipeline
from rlcs_jax.grpo import logprobs as logprobs_lib
from rlcs_jax.model.config import ModelConfig
from rlcs_jax.model.transformer import Transformer
from rlcs_jax.sampler import text as text_sampler
from rlcs_jax.tokenizer import Tokenizer
from rlcs_jax.trainers import state as state_lib


def nll_sums(
    params: Any, model_cfg: ModelConfig, batch: dict[str, jax.Array]
) -> tuple[jax.Array, jax.Array]:
  """Sum of response-token NLL and the number of response tokens."""
  tokens = batch["tokens"]
  logits, _ = Transformer(model_cfg).apply(
      {"params": params}, tokens[:, :-1], valid_BL=batch["valid"][:, :-1]
  )
  logp = logprobs_lib.token_logprobs(logits, tokens[:, 1:])
  mask = batch["loss_mask"][:, :-1]
  return -jnp.sum(logp * mask), jnp.sum(mask)


def make_train_step(
    model_cfg: ModelConfig, tx: optax.GradientTransformation, grad_accum: int
) -> Callable:
  """Returns step(state, batch) -> (state, metrics); not yet jitted.

  A non-finite loss or gradient skips the update (parameters and optimizer
  state unchanged) and reports `skipped = 1`; see `numerics.py`.
  """

  def step(state: state_lib.TrainState, batch):
    def micro(b):
      return jax.tree.map(
          lambda x: x.reshape(
              grad_accum, x.shape[0] // grad_accum, *x.shape[1:]
          ),
          b,
      )

    grad_fn = jax.value_and_grad(
        lambda p, b: nll_sums(p, model_cfg, b), has_aux=True
    )

    def body(carry, b):
      grads, loss_sum, count = carry
      (s, c), g = grad_fn(state.params, b)
      return (jax.tree.map(jnp.add, grads, g), loss_sum + s, count + c), None

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    (grads, loss_sum, count), _ = jax.lax.scan(
        body, (zeros, jnp.zeros(()), jnp.zeros(())), micro(batch)
    )
    denom = jnp.maximum(count, 1.0)
    grads = jax.tree.map(lambda g: g / denom, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    loss, grad_norm = loss_sum / denom, optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    params = numerics.keep_if_finite(finite, params, state.params)
    opt_state = numerics.keep_if_finite(finite, opt_state, state.opt_state)
    metrics = {
        "loss": loss,
        "tokens": count,
        "grad_norm": grad_norm,
        "skipped": (~finite).astype(jnp.float32),
    }
    return (
        state.replace(step=state.step + 1, params=params, opt_state=opt_state),
        metrics,
    )

  return step


def jit_train_step(step_fn, shardings: state_lib.TrainState, mesh):
  batch_sh = {
      k: shd.batch_sharding(mesh) for k in ("tokens", "valid", "loss_mask")
  }
  return compiler.jit(
      step_fn,
      in_shardings=(shardings, batch_sh),
      out_shardings=(shardings, shd.replicated(mesh)),
      donate_argnames=("state",),
  )


def jit_eval_step(model_cfg: ModelConfig, params_sharding, mesh):
  batch_sh = {
      k: shd.batch_sharding(mesh) for k in ("tokens", "valid", "loss_mask")
  }
  return compiler.jit(
      lambda p, b: nll_sums(p, model_cfg, b),
      in_shardings=(params_sharding, batch_sh),
      out_shardings=shd.replicated(mesh),
  )


def _per_process(global_batch: int, mesh) -> int:
  div = shd.batch_divisor(mesh)
  if global_batch % div:
    raise ValueError(
        f"batch size {global_batch} must be a multiple of the "
        f"mesh's data*fsdp = {div}"
    )
  return global_batch // jax.process_count()


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    stage: str,
    model_cfg: ModelConfig,
    tokenizer: Tokenizer,
    mesh,
    train_source,
    eval_source=None,
    init_params: Any = None,
    section: ml_collections.ConfigDict | None = None,
    sample_prompts: list[str] | None = None,
    seq_len: int | None = None,
    stop: preemption.StopRequest | None = None,
) -> Any:
  """Runs (or resumes) SFT; returns the final parameters.

  Args:
    config: the full config (optim, sampler, ckpt, log, seed, rules).
    workdir: run directory; this stage writes to `workdir/<stage>/`.
    stage: stage name for metrics, TensorBoard and the checkpoint dir.
    section: SFT hyper-parameters (default `config.sft`).
    init_params: starting parameters (e.g. pretrained); random otherwise.
    sample_prompts: prompts whose continuations are written at the end.
    stop: polled at each step boundary; when set, the finished step is
      checkpointed and `preemption.Preempted` is raised.
  """
  sc = section or config.sft
  rules = tuple(tuple(r) for r in config.sharding_rules)
  if sc.batch_size % sc.grad_accum:
    raise ValueError(
        f"{stage}: batch_size={sc.batch_size} must be a multiple"
        f" of grad_accum={sc.grad_accum}"
    )
  stage_dir = os.path.join(workdir, stage)
  tx = state_lib.make_optimizer(
      state_lib.OptimConfig.from_config(config.optim, sc.steps)
  )
  params_sh = state_lib.param_shardings(model_cfg, mesh, rules)
  shardings = state_lib.state_shardings(
      params_sh, tx, state_lib.abstract_params(model_cfg), mesh
  )
  ckpt = ckpt_lib.Checkpointer(
      os.path.join(stage_dir, "checkpoints"),
      max_to_keep=config.ckpt.max_to_keep,
  )
  meta = ckpt_lib.model_meta(model_cfg)

  featurize = pipeline.SftFeaturizer(
      tokenizer, seq_len or config.data.seq_len, source_name=stage
  )
  local_batch = _per_process(sc.batch_size, mesh)
  train_iter = pipeline.batched_iterator(
      train_source,
      featurize=featurize,
      batch_size=local_batch,
      seed=config.seed,
      num_threads=config.data.num_threads,
  )

  start = ckpt.latest_step()
  if start is not None:
    abstract = state_lib.abstract_state(shardings, model_cfg, tx)
    state, data_state, _ = ckpt.restore(abstract, meta)
    train_iter.set_state(data_state["iterator"])
    logging.info("%s: resuming from step %d", stage, start)
  else:
    rng = jax.random.fold_in(jax.random.key(config.seed), 0)
    params = (
        init_params
        if init_params is not None
        else (state_lib.init_params(model_cfg, rng, mesh, rules))
    )
    params = jax.device_put(params, params_sh)
    state = state_lib.create_state(params, tx, shardings)
    start = 0
  logging.info(
      "%s: %d parameters, %d steps of batch %d",
      stage,
      state_lib.count_params(state.params),
      sc.steps,
      sc.batch_size,
  )

  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    train_step = jit_train_step(
        make_train_step(model_cfg, tx, sc.grad_accum), shardings, mesh
    )
    eval_step = jit_eval_step(model_cfg, params_sh, mesh)
    writer = metrics_lib.MetricWriter(workdir, stage=stage)
    guard = numerics.SkipGuard(stage, stage_dir, sc.max_consecutive_skips)
    log = lambda step, metrics, batch: _log(
        writer, bar, guard, step, metrics, batch
    )
    pending = None
    bar = tqdm.tqdm(
        range(start, sc.steps),
        desc=stage,
        initial=start,
        total=sc.steps,
        disable=not (config.log.progress_bar and jax.process_index() == 0),
    )
    for step in bar:
      host_batch = next(train_iter)
      batch = shd.global_batch(host_batch, mesh)
      state, metrics = train_step(state, batch)
      if pending is not None:  # Read step t-1 after dispatching step t.
        log(*pending)
      pending = (step + 1, metrics, host_batch)
      done = step + 1
      if (
          eval_source is not None
          and sc.eval_every
          and (done % sc.eval_every == 0 or done == sc.steps)
      ):
        log(*pending)
        pending = None
        writer.write(
            done,
            {
                "eval_loss": evaluate(
                    eval_step,
                    state.params,
                    eval_source,
                    featurize,
                    local_batch,
                    sc.eval_batches,
                    mesh,
                )
            },
        )
      preempt = (
          stop is not None and stop.should_stop(done) and (done < sc.steps)
      )
      if done % config.ckpt.every_steps == 0 or done == sc.steps or preempt:
        ckpt.save(
            done,
            state,
            {"iterator": train_iter.get_state()},
            dict(meta, step=done),
            force=True,
        )
      if preempt:
        if pending is not None:
          log(*pending)
        writer.flush()
        ckpt.close()
        raise preemption.Preempted(stage, done)
    if pending is not None:
      log(*pending)
    writer.flush()
    if sample_prompts:  # Every process: sampling is one global computation.
      write_samples(
          config,
          stage_dir,
          state.params,
          model_cfg,
          tokenizer,
          sample_prompts,
          sc.steps,
      )
  ckpt.close()
  ckpt_lib.save_params(final_params_dir(workdir, stage), state.params)
  return state.params


def _log(writer, bar, guard, step, metrics, host_batch):
  host = metrics_lib.to_host(metrics)
  writer.write(step, host)
  # A skipped step saves its batch; N skipped in a row stop the run.
  guard.update(step, host, host_batch)
  metrics_lib.check_finite(step, host)
  bar.set_postfix(loss=f"{host['loss']:.3f}")


def evaluate(
    eval_step,
    params,
    source,
    featurize,
    batch_size: int,
    num_batches: int,
    mesh,
) -> float:
  """Mean response NLL over the first `num_batches` eval batches."""
  it = pipeline.batched_iterator(
      source,
      featurize=featurize,
      batch_size=batch_size,
      seed=0,
      shuffle=False,
      num_epochs=1,
  )
  total = count = 0.0
  for _, local in zip(range(num_batches), it):
    s, c = eval_step(params, shd.global_batch(local, mesh))
    total += float(s)
    count += float(c)
  return total / max(count, 1.0)


def write_samples(
    config,
    stage_dir: str,
    params,
    model_cfg: ModelConfig,
    tokenizer: Tokenizer,
    prompts: list[str],
    step: int,
) -> str:
  """Samples one continuation per prompt; writes and logs them."""
  cfg = text_sampler.sampling_config(config.sampler, tokenizer, temperature=0.7)
  out = text_sampler.generate_text(
      params,
      model_cfg,
      tokenizer,
      prompts,
      cfg,
      jax.random.key(config.seed + step),
  )
  path = os.path.join(stage_dir, f"samples_{step}.txt")
  if jax.process_index() != 0:
    return path
  os.makedirs(stage_dir, exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for prompt, completion in zip(prompts, out.texts):
      f.write(f"=== PROMPT\n{prompt}\n=== CONTINUATION\n{completion}\n\n")
  logging.info("wrote %d samples to %s", len(prompts), path)
  return path


def final_params_dir(workdir: str, stage: str) -> str:
  return os.path.join(workdir, stage, "final_params")


def stage_is_done(workdir: str, stage: str) -> bool:
  """A stage is done once its final parameters are saved (atomically)."""
  return os.path.exists(final_params_dir(workdir, stage))


def load_stage_params(
    workdir: str, stage: str, model_cfg: ModelConfig, mesh, rules
) -> Any:
  """Final parameters of a finished stage, on the current shardings."""
  params_sh = state_lib.param_shardings(model_cfg, mesh, rules)
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      state_lib.abstract_params(model_cfg),
      params_sh,
  )
  return ckpt_lib.load_params(final_params_dir(workdir, stage), abstract)
