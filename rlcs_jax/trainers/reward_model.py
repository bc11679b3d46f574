"""Scalar Bradley–Terry reward-model training, and the RM as a text scorer.

`train_scalar_rm` follows `sft.train`: one jitted step with explicit in/out
shardings and the state donated, micro-batches under `lax.scan` combined as
(sum, count), orbax checkpoints of the state and the grain iterator (a
resumed run sees the same batches), metrics one step late, and the final
parameters saved atomically. The backbone starts from the SFT policy and
the head from zero, so every pair starts at r_c = r_r (loss ln 2, accuracy
0.5). It reads labels and texts only, never the hidden rater.

`make_scorer` wraps trained parameters as `(prompts, responses) -> scores`:
the writing-quality reward of RLMR and the scorer of agreement evaluation.
Rows are sorted by length and scored in fixed-size batches padded to a few
bucket lengths, so repeated calls reuse the compiled shapes.

Shape legend: B pairs (or rows), L length, D model width.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Mapping, Sequence

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from rlcs_jax import checkpoint as ckpt_lib
from rlcs_jax import compiler
from rlcs_jax import metrics as metrics_lib
from rlcs_jax import preemption
from rlcs_jax import sharding as shd
from rlcs_jax.data import builders
from rlcs_jax.data import pipeline
from rlcs_jax.genrm import scalar_rm
from rlcs_jax.model.config import ModelConfig
from rlcs_jax.sampler import sampling
from rlcs_jax.tokenizer import Tokenizer
from rlcs_jax.trainers import sft
from rlcs_jax.trainers import state as state_lib

BATCH_KEYS = (
    "chosen_tokens",
    "chosen_valid",
    "rejected_tokens",
    "rejected_valid",
)
# Scoring lengths (capped at the scorer's seq_len, which is always a bucket).
SCORE_BUCKETS = (64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)


@dataclasses.dataclass(frozen=True)
class PairFeaturizer:
  """Raw `pairs` data-source record -> chosen/rejected token arrays."""

  tokenizer: Tokenizer
  seq_len: int

  def __call__(self, raw: dict[str, Any]) -> dict[str, np.ndarray]:
    record = builders.decode_record("pairs", raw)
    return scalar_rm.featurize_pair(self.tokenizer, record, self.seq_len)


def pair_sums(
    params: Any, model_cfg: ModelConfig, batch: Mapping[str, jax.Array]
) -> tuple[tuple[jax.Array, jax.Array], dict]:
  """BT (loss_sum, count) and metric sums of one batch of pairs."""
  # Two forwards rather than one over concat([chosen, rejected]): the concat
  # of two batch-sharded arrays would reshuffle rows across devices.
  r_c = scalar_rm.score(
      params, model_cfg, batch["chosen_tokens"], batch["chosen_valid"]
  )
  r_r = scalar_rm.score(
      params, model_cfg, batch["rejected_tokens"], batch["rejected_valid"]
  )
  return scalar_rm.bt_loss(r_c, r_r)


def make_train_step(
    model_cfg: ModelConfig, tx: optax.GradientTransformation, grad_accum: int
) -> Callable:
  """Returns step(state, batch) -> (state, metrics); not yet jitted."""

  def loss_fn(p, b):
    (s, c), m = pair_sums(p, model_cfg, b)
    return s, (c, m)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state: state_lib.TrainState, batch):
    micro = jax.tree.map(
        lambda x: x.reshape(grad_accum, x.shape[0] // grad_accum, *x.shape[1:]),
        batch,
    )

    def body(carry, b):
      grads, loss_sum, count, msums = carry
      (s, (c, m)), g = grad_fn(state.params, b)
      msums = {k: msums[k] + m[k][0] for k in msums}
      return (
          jax.tree.map(jnp.add, grads, g),
          loss_sum + s,
          count + c,
          msums,
      ), None

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    init = (
        zeros,
        jnp.zeros(()),
        jnp.zeros(()),
        {"accuracy": jnp.zeros(()), "margin": jnp.zeros(())},
    )
    (grads, loss_sum, count, msums), _ = jax.lax.scan(body, init, micro)
    denom = jnp.maximum(count, 1.0)
    grads = jax.tree.map(lambda g: g / denom, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss_sum / denom,
        "accuracy": msums["accuracy"] / denom,
        "margin": msums["margin"] / denom,
        "grad_norm": optax.global_norm(grads),
    }
    return (
        state.replace(step=state.step + 1, params=params, opt_state=opt_state),
        metrics,
    )

  return step


def abstract_params(model_cfg: ModelConfig) -> dict[str, Any]:
  head = jax.eval_shape(lambda: scalar_rm.init_head(model_cfg))
  return {"backbone": state_lib.abstract_params(model_cfg), "head": head}


def param_shardings(model_cfg: ModelConfig, mesh, rules) -> dict[str, Any]:
  """Backbone by the logical rules; the tiny head replicated."""
  rep = shd.replicated(mesh)
  return {
      "backbone": state_lib.param_shardings(model_cfg, mesh, rules),
      "head": {"kernel": rep, "bias": rep},
  }


def _abstract_state(shardings, model_cfg, tx) -> state_lib.TrainState:
  params = abstract_params(model_cfg)
  shapes = state_lib.TrainState(
      step=jax.ShapeDtypeStruct((), jnp.int32),
      params=params,
      opt_state=jax.eval_shape(tx.init, params),
  )
  return jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      shapes,
      shardings,
  )


@dataclasses.dataclass(frozen=True)
class _Compiled:
  """The optimizer, shardings and jitted steps of one RM setting."""

  tx: optax.GradientTransformation
  params_sh: Any
  shardings: state_lib.TrainState
  train_step: Callable
  eval_step: Callable


def _hashable_rules(rules) -> tuple:
  return tuple(
      (k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in rules
  )


@functools.lru_cache(maxsize=4)
def _compile(
    model_cfg: ModelConfig,
    optim_cfg: state_lib.OptimConfig,
    grad_accum: int,
    mesh,
    rules: tuple,
) -> _Compiled:
  """Optimizer, shardings and jitted steps, cached per setting.

  A rerun in the same process (a resume, a sweep) reuses the compiled
  steps instead of compiling them again.
  """
  tx = state_lib.make_optimizer(optim_cfg)
  params_sh = param_shardings(model_cfg, mesh, rules)
  shardings = state_lib.state_shardings(
      params_sh, tx, abstract_params(model_cfg), mesh
  )
  batch_sh = {k: shd.batch_sharding(mesh) for k in BATCH_KEYS}
  train_step = compiler.jit(
      make_train_step(model_cfg, tx, grad_accum),
      in_shardings=(shardings, batch_sh),
      out_shardings=(shardings, shd.replicated(mesh)),
      donate_argnames=("state",),
  )
  eval_step = compiler.jit(
      lambda p, b: pair_sums(p, model_cfg, b),
      in_shardings=(params_sh, batch_sh),
      out_shardings=shd.replicated(mesh),
  )
  return _Compiled(tx, params_sh, shardings, train_step, eval_step)


def _check_section(stage: str, sc, mesh) -> int:
  """Validates the section; returns this process's batch of pairs."""
  for key in ("steps", "batch_size", "grad_accum", "seq_len"):
    if sc[key] <= 0:
      raise ValueError(f"{stage}.{key} must be positive, got {sc[key]}")
  if sc.lr <= 0:
    raise ValueError(f"{stage}.lr must be positive, got {sc.lr}")
  if sc.batch_size % sc.grad_accum:
    raise ValueError(
        f"{stage}: batch_size={sc.batch_size} must be a multiple of "
        f"grad_accum={sc.grad_accum}"
    )
  div = shd.batch_divisor(mesh)
  if sc.batch_size % div:
    raise ValueError(
        f"{stage}: batch_size={sc.batch_size} must be a multiple of the "
        f"mesh's data*fsdp = {div}"
    )
  return sc.batch_size // jax.process_count()


def train_scalar_rm(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    stage: str = "scalar_rm",
    model_cfg: ModelConfig,
    tokenizer: Tokenizer,
    mesh,
    pairs_source,
    init_backbone: Any = None,
    eval_source=None,
    stop: preemption.StopRequest | None = None,
) -> dict[str, Any]:
  """Runs (or resumes) Bradley–Terry RM training; returns the parameters.

  Args:
    config: the full config (`scalar_rm`, `optim`, `ckpt`, `log`, `seed`,
      `sharding_rules`, `data.num_threads`).
    workdir: run directory; this stage writes to `workdir/<stage>/`.
    pairs_source: a `pairs` data source (labels and texts only).
    init_backbone: backbone parameters (the SFT policy); random if None.
    eval_source: held-out `pairs`; BT loss and accuracy on its first
      `scalar_rm.eval_pairs` pairs are logged at the end.
    stop: polled at each step boundary; when set, the finished step is
      checkpointed and `preemption.Preempted` is raised.
  """
  sc = config.scalar_rm
  local_batch = _check_section(stage, sc, mesh)
  rules = _hashable_rules(config.sharding_rules)
  stage_dir = os.path.join(workdir, stage)
  optim_cfg = dataclasses.replace(
      state_lib.OptimConfig.from_config(config.optim, sc.steps), lr=sc.lr
  )
  compiled = _compile(model_cfg, optim_cfg, sc.grad_accum, mesh, rules)
  tx, params_sh, shardings = (
      compiled.tx,
      compiled.params_sh,
      compiled.shardings,
  )
  ckpt = ckpt_lib.Checkpointer(
      os.path.join(stage_dir, "checkpoints"),
      max_to_keep=config.ckpt.max_to_keep,
  )
  meta = dict(ckpt_lib.model_meta(model_cfg), head="scalar_bt")
  featurize = PairFeaturizer(tokenizer, sc.seq_len)
  train_iter = pipeline.batched_iterator(
      pairs_source,
      featurize=featurize,
      batch_size=local_batch,
      seed=config.seed,
      num_threads=config.data.num_threads,
  )

  start = ckpt.latest_step()
  if start is not None:
    state, data_state, _ = ckpt.restore(
        _abstract_state(shardings, model_cfg, tx), meta
    )
    train_iter.set_state(data_state["iterator"])
    logging.info("%s: resuming from step %d", stage, start)
  else:
    if init_backbone is None:
      rng = jax.random.fold_in(jax.random.key(config.seed), 0)
      init_backbone = state_lib.init_params(model_cfg, rng, mesh, rules)
    params = jax.device_put(
        scalar_rm.init_params(init_backbone, model_cfg), params_sh
    )
    state = state_lib.create_state(params, tx, shardings)
    start = 0
  logging.info(
      "%s: %d parameters, %d steps of %d pairs",
      stage,
      state_lib.count_params(state.params),
      sc.steps,
      sc.batch_size,
  )

  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    train_step = compiled.train_step
    writer = metrics_lib.MetricWriter(workdir, stage=stage)
    pending = None
    bar = tqdm.tqdm(
        range(start, sc.steps),
        desc=stage,
        initial=start,
        total=sc.steps,
        disable=not (config.log.progress_bar and jax.process_index() == 0),
    )
    for step in bar:
      batch = shd.global_batch(next(train_iter), mesh)
      state, metrics = train_step(state, batch)
      if pending is not None:  # Read step t-1 after dispatching step t.
        _log(writer, bar, *pending)
      pending = (step + 1, metrics)
      done = step + 1
      preempt = stop is not None and stop.should_stop(done) and done < sc.steps
      if done % config.ckpt.every_steps == 0 or done == sc.steps or preempt:
        ckpt.save(
            done,
            state,
            {"iterator": train_iter.get_state()},
            dict(meta, step=done),
            force=True,
        )
      if preempt:
        _log(writer, bar, *pending)
        writer.flush()
        ckpt.close()
        raise preemption.Preempted(stage, done)
    if pending is not None:
      _log(writer, bar, *pending)
    if eval_source is not None and sc.eval_pairs > 0:
      writer.write(
          sc.steps,
          evaluate(
              compiled.eval_step,
              state.params,
              eval_source,
              featurize,
              local_batch,
              sc.eval_pairs,
              mesh,
          ),
      )
    writer.flush()
  ckpt.close()
  ckpt_lib.save_params(sft.final_params_dir(workdir, stage), state.params)
  return state.params


def _log(writer, bar, step, metrics):
  host = metrics_lib.to_host(metrics)
  metrics_lib.check_finite(step, host)
  writer.write(step, host)
  bar.set_postfix(loss=f"{host['loss']:.3f}", acc=f"{host['accuracy']:.2f}")


def evaluate(
    eval_step,
    params,
    source,
    featurize,
    batch_size: int,
    num_pairs: int,
    mesh,
) -> dict[str, float]:
  """BT loss and accuracy on the first ~`num_pairs` held-out pairs.

  Whole batches only: at least one, at most `num_pairs // batch_size`.
  """
  num_batches = max(1, num_pairs // (batch_size * jax.process_count()))
  it = pipeline.batched_iterator(
      source,
      featurize=featurize,
      batch_size=batch_size,
      seed=0,
      shuffle=False,
      num_epochs=1,
  )
  loss = count = correct = 0.0
  for _, local in zip(range(num_batches), it):
    (s, c), m = jax.device_get(eval_step(params, shd.global_batch(local, mesh)))
    loss += float(s)
    count += float(c)
    correct += float(m["accuracy"][0])
  count = max(count, 1.0)
  return {"eval_loss": loss / count, "eval_accuracy": correct / count}


def load_params(workdir: str, stage: str, model_cfg: ModelConfig, mesh, rules):
  """Final RM parameters of a finished stage, on the current shardings."""
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract_params(model_cfg),
      param_shardings(model_cfg, mesh, rules),
  )
  return ckpt_lib.load_params(sft.final_params_dir(workdir, stage), abstract)


class Scorer:
  """`(prompts, responses) -> float32 scores [N]` with a trained scalar RM.

  Rows are tokenized exactly as in training (`scalar_rm.encode_scored`),
  sorted by length, and scored `batch_size` at a time, each batch right
  padded to the smallest bucket that fits it (the last batch is filled
  with copies of a row). `num_traces` counts compilations.
  """

  def __init__(
      self,
      params: Any,
      model_cfg: ModelConfig,
      tokenizer: Tokenizer,
      *,
      batch_size: int = 32,
      seq_len: int | None = None,
      batch_sharding=None,
  ):
    self.params = params
    self.tokenizer = tokenizer
    self.batch_size = batch_size
    self.seq_len = seq_len or model_cfg.max_seq_len
    self.buckets = tuple(b for b in SCORE_BUCKETS if b < self.seq_len) + (
        self.seq_len,
    )
    self.batch_sharding = batch_sharding
    self.num_traces = 0

    def fn(p, tokens_BL, valid_BL):
      self.num_traces += 1  # Runs only when jax traces (a new shape).
      return scalar_rm.score(p, model_cfg, tokens_BL, valid_BL)

    self._score = compiler.jit(fn)

  def __call__(
      self, prompts: Sequence[str], responses: Sequence[str]
  ) -> np.ndarray:
    if len(prompts) != len(responses):
      raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    seqs = [
        scalar_rm.encode_scored(
            self.tokenizer, p, r, self.seq_len, name=f"row {i}"
        )
        for i, (p, r) in enumerate(zip(prompts, responses))
    ]
    out = np.zeros(len(seqs), np.float32)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), self.batch_size):
      rows = order[start : start + self.batch_size]
      part = [seqs[i] for i in rows]
      part += [part[0]] * (self.batch_size - len(part))
      length = sampling.bucket_length(max(map(len, part)), self.buckets)
      tokens, valid = sampling.pad_prompts(
          part, length, self.tokenizer.pad_id, "right"
      )
      if self.batch_sharding is not None:
        tokens, valid = jax.device_put((tokens, valid), self.batch_sharding)
      scores = np.asarray(self._score(self.params, tokens, valid))
      out[rows] = scores[: len(rows)]
    return out


def make_scorer(
    params: Any,
    model_cfg: ModelConfig,
    tokenizer: Tokenizer,
    *,
    batch_size: int = 32,
    seq_len: int | None = None,
    batch_sharding=None,
) -> Callable[[Sequence[str], Sequence[str]], np.ndarray]:
  """The trained RM as `(prompts, responses) -> scores` (see `Scorer`)."""
  return Scorer(
      params,
      model_cfg,
      tokenizer,
      batch_size=batch_size,
      seq_len=seq_len,
      batch_sharding=batch_sharding,
  )
