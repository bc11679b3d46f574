"""GRPO trainer: rollouts -> rewards -> group advantages -> clipped updates.

One step: draw P prompts, sample R completions each with the jitted KV-cache
sampler, score them with the reward components (host), compute group
advantages (jitted), then run `num_iterations` update passes over the batch
(micro-batches accumulate exactly as (sum, count) under `lax.scan`), with
old log-probs stored from the rollout policy and reference log-probs from a
frozen copy of the initial policy when beta > 0. Optional dynamic sampling
drops zero-signal groups and draws more prompts (bounded). Overlong
completions can be masked out of the loss or penalised.

Reliability: each prompt's token length is checked against what the sampler
can fit before sampling (an error names the record and its source); a
non-finite loss or gradient skips the update and `numerics.SkipGuard` saves
the rollout and stops the run after `max_consecutive_skips` in a row.

Several processes: each process draws its own prompt records; the records
are gathered so that every process holds the same global rollout (prompts,
completions, rewards), rewards are computed identically everywhere (a reward
may itself run the model, a global computation), and device arrays are
built from that global host copy with the batch sharding.

Shape legend: P prompts, R completions per prompt, B = P*R rows,
Lp padded prompt length, T max new tokens, L = Lp + T.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from typing import Any, Callable, Sequence

from absl import logging
import flax.linen as nn
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from rlcs_jax import checkpoint as ckpt_lib
from rlcs_jax import compiler
from rlcs_jax import metrics as metrics_lib
from rlcs_jax import numerics
from rlcs_jax import preemption
from rlcs_jax import sharding as shd
from rlcs_jax.data import builders
from rlcs_jax.data import pipeline
from rlcs_jax.grpo import advantages as adv_lib
from rlcs_jax.grpo import losses as losses_lib
from rlcs_jax.model.config import ModelConfig
from rlcs_jax.sampler import sampling
from rlcs_jax.sampler import text as text_sampler
from rlcs_jax.tokenizer import Tokenizer
from rlcs_jax.trainers import grpo_update
from rlcs_jax.trainers import rewards as rewards_lib
from rlcs_jax.trainers import rollouts
from rlcs_jax.trainers import state as state_lib

OVERLONG_MODES = ("none", "mask", "penalty")


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
  """Validated GRPO hyper-parameters (from `config.grpo`)."""

  steps: int
  num_prompts: int  # P per step (global).
  num_generations: int  # R per prompt.
  num_iterations: int  # Update passes per rollout batch.
  micro_batch: int  # Rows per micro-batch; 0 = the whole batch.
  share_prompt_pass: bool  # Each group's prompt once in the model passes.
  scale_by_std: bool
  adv_eps: float
  dynamic_sampling: bool
  min_group_std: float
  max_draws: int  # Prompt batches drawn per step at most (dynamic sampling).
  overlong: str
  overlong_penalty: float
  loss: losses_lib.LossConfig

  def __post_init__(self):
    if self.num_generations < 2:
      raise ValueError("grpo.num_generations must be >= 2 (group baseline)")
    if self.overlong not in OVERLONG_MODES:
      raise ValueError(
          f"grpo.overlong must be one of {OVERLONG_MODES}, got "
          f"{self.overlong!r}"
      )
    rows = self.num_prompts * self.num_generations
    if self.micro_batch and rows % self.micro_batch:
      raise ValueError(
          f"grpo.micro_batch={self.micro_batch} must divide "
          f"num_prompts*num_generations={rows}"
      )
    if self.max_draws < 1:
      raise ValueError("grpo.max_draws must be >= 1")

  @classmethod
  def from_config(
      cls, g: ml_collections.ConfigDict, max_new_tokens: int
  ) -> "GRPOConfig":
    return cls(
        steps=g.steps,
        num_prompts=g.num_prompts,
        num_generations=g.num_generations,
        num_iterations=g.num_iterations,
        micro_batch=g.micro_batch,
        share_prompt_pass=g.share_prompt_pass,
        scale_by_std=g.scale_by_std,
        adv_eps=g.adv_eps,
        dynamic_sampling=g.dynamic_sampling,
        min_group_std=g.min_group_std,
        max_draws=g.max_draws,
        overlong=g.overlong,
        overlong_penalty=g.overlong_penalty,
        loss=losses_lib.LossConfig(
            clip_eps_low=g.clip_eps_low,
            clip_eps_high=g.clip_eps_high,
            beta=g.beta,
            kl_estimator=g.kl_estimator,
            aggregation=g.aggregation,
            max_response_len=max_new_tokens,
        ),
    )


def _record_name(record: dict[str, Any]) -> str:
  if record.get("id"):
    return repr(record["id"])
  return f"key={record.get('key')!r}"  # IFEval records: `id` is optional.


class GRPOTrainer:
  """Owns the policy state, reference params, jitted functions and loop."""

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      workdir: str,
      *,
      stage: str,
      model_cfg: ModelConfig,
      tokenizer: Tokenizer,
      mesh,
      init_params: Any,
      reward_components: Sequence[rewards_lib.RewardComponent],
      combine_rewards: (
          Callable[[rewards_lib.RewardBatch, np.ndarray, dict], np.ndarray]
          | None
      ) = None,
      section: ml_collections.ConfigDict | None = None,
  ):
    self.config = config
    self.section = section or config.grpo
    self.workdir = workdir
    self.stage = stage
    self.stage_dir = os.path.join(workdir, stage)
    self.model_cfg = model_cfg
    self.tokenizer = tokenizer
    self.mesh = mesh
    self.rules = tuple(tuple(r) for r in config.sharding_rules)
    self.components = list(reward_components)
    self.combine_rewards = combine_rewards
    g = self.section
    self.sampling_cfg = text_sampler.sampling_config(
        config.sampler,
        tokenizer,
        max_new_tokens=g.max_new_tokens,
        temperature=g.temperature,
    )
    self.cfg = GRPOConfig.from_config(g, self.sampling_cfg.max_new_tokens)
    self.tx = state_lib.make_optimizer(
        dataclasses.replace(
            state_lib.OptimConfig.from_config(config.optim, self.cfg.steps),
            lr=g.lr,
            warmup_steps=g.warmup_steps,
        )
    )
    self.params_sh = state_lib.param_shardings(model_cfg, mesh, self.rules)
    self.shardings = state_lib.state_shardings(
        self.params_sh, self.tx, state_lib.abstract_params(model_cfg), mesh
    )
    params = jax.device_put(init_params, self.params_sh)
    # Frozen reference: only when the KL term is on (no optimizer state).
    self.ref_params = params if self.cfg.loss.uses_kl else None
    self.state = state_lib.create_state(params, self.tx, self.shardings)
    self._update_fns = {}
    self._logp_fns = {}
    # Named in errors about prompt records (`train` sets the data file).
    self.prompt_source = f"{stage} prompts"
    self.max_prompt_len = rollouts.max_prompt_tokens(
        model_cfg.max_seq_len,
        self.sampling_cfg.max_new_tokens,
        self.sampling_cfg.prompt_buckets,
    )

  # -- jitted function caches (one per padded prompt length) ---------------

  def _update_fn(self, prompt_len: int, group_size: int):
    key = (prompt_len, group_size)
    if key not in self._update_fns:
      self._update_fns[key] = compiler.jit(
          grpo_update.make_update_step(
              self.model_cfg,
              self.tx,
              self.cfg,
              prompt_len,
              self.sampling_cfg.temperature,
              group_size,
          ),
          in_shardings=(self.shardings, None),
          out_shardings=(self.shardings, shd.replicated(self.mesh)),
          donate_argnames=("state",),
      )
    return self._update_fns[key]

  def _logp_fn(self, prompt_len: int, group_size: int):
    key = (prompt_len, group_size)
    if key not in self._logp_fns:
      self._logp_fns[key] = compiler.jit(
          lambda p, t, v: grpo_update.completion_logprobs(
              p,
              self.model_cfg,
              t,
              v,
              prompt_len,
              self.sampling_cfg.temperature,
              group_size,
          )[0]
      )
    return self._logp_fns[key]

  def _prompt_group_size(self, roll: rollouts.Rollout) -> int:
    """R when `grpo.share_prompt_pass` is set, each group's R rows share
    their prompt tokens and every micro-batch holds whole groups (the model
    passes then run each prompt once, `grpo_update.completion_logprobs`),
    else 1."""
    r = self.cfg.num_generations
    rows, lp = roll.tokens.shape[0], roll.prompt_len
    whole_groups = rows % r == 0 and (self.cfg.micro_batch or rows) % r == 0
    if not (self.cfg.share_prompt_pass and whole_groups):
      return 1
    for x in (roll.tokens[:, :lp], roll.valid[:, :lp]):
      groups = x.reshape(rows // r, r, lp)
      if not (groups == groups[:, :1]).all():
        return 1
    return r

  # -- rollouts ------------------------------------------------------------

  def _encode_prompts(self, records) -> list[list[int]]:
    """Prompt token ids per record; a prompt that cannot fit is an error."""
    encoded = [self.tokenizer.encode_prompt(rec["prompt"]) for rec in records]
    for rec, ids in zip(records, encoded):
      if len(ids) > self.max_prompt_len:
        raise pipeline.PromptTooLongError(
            f"{self.stage}: record {_record_name(rec)} of "
            f"{self.prompt_source} has a {len(ids)}-token prompt; at most "
            f"{self.max_prompt_len} tokens fit (model.max_seq_len="
            f"{self.model_cfg.max_seq_len} minus max_new_tokens="
            f"{self.sampling_cfg.max_new_tokens}, rounded down to a "
            "sampler.prompt_buckets length); shorten or drop the prompt, or "
            "lower max_new_tokens"
        )
    return encoded

  def _generate(
      self, prompt_ids, rng, group_size: int = 1
  ) -> text_sampler.Completions:
    """Samples one completion per prompt from the same host prompts on every
    process (the sampler's computation is global). `group_size` R > 1: rows
    i*R .. i*R+R-1 are one prompt (prefilled once)."""
    cfg = self.sampling_cfg
    length = sampling.bucket_length(
        max(map(len, prompt_ids)), cfg.prompt_buckets
    )
    tokens, valid = sampling.pad_prompts(
        prompt_ids, length, cfg.pad_id, cfg.padding
    )
    # Rollouts are split over the batch axes when the row count allows.
    if len(prompt_ids) % shd.batch_divisor(self.mesh) == 0:
      put = lambda x: shd.global_from_host(x, shd.batch_sharding(self.mesh))
    elif jax.process_count() > 1:
      put = lambda x: shd.global_from_host(x, shd.replicated(self.mesh))
    else:
      put = lambda x: x
    out = sampling.generate_arrays(
        self.state.params,
        put(tokens),
        put(valid),
        # The key `text_sampler.generate_text` uses for its first chunk.
        jax.random.fold_in(rng, 0),
        model_cfg=self.model_cfg,
        cfg=cfg,
        group_size=group_size,
    )
    comp, logprobs, lengths, truncated = shd.host_from_global(out)
    return text_sampler.Completions(
        texts=[
            text_sampler.decode_completion(
                self.tokenizer, comp[i], lengths[i], truncated[i]
            )
            for i in range(len(prompt_ids))
        ],
        tokens=comp,
        logprobs=logprobs,
        lengths=lengths,
        truncated=truncated,
        prompt_tokens=list(prompt_ids),
    )

  def _sample_groups(self, records, rng):
    r = self.cfg.num_generations
    encoded = self._encode_prompts(records)
    prompts = [rec["prompt"] for rec in records for _ in range(r)]
    out = self._generate(
        [ids for ids in encoded for _ in range(r)], rng, group_size=r
    )
    rows = [rec for rec in records for _ in range(r)]
    batch = rewards_lib.RewardBatch(
        prompts=prompts,
        completions=out.texts,
        completion_ids=[
            out.tokens[i, : out.lengths[i]].tolist()
            for i in range(len(prompts))
        ],
        truncated=out.truncated,
        records=rows,
        group_size=r,
    )
    total, parts = rewards_lib.evaluate(self.components, batch)
    if self.combine_rewards is not None:
      total = self.combine_rewards(batch, total, parts)
    if self.cfg.overlong == "penalty":
      total = np.where(out.truncated, self.cfg.overlong_penalty, total)
    elif self.cfg.overlong == "mask":
      total = np.where(out.truncated, np.nan, total)
    return out, batch, total.reshape(len(records), r), parts

  def rollout(self, prompt_iter, step: int) -> rollouts.Rollout:
    """Samples a full batch of P groups (dynamic sampling: bounded redraws)."""
    p = self.cfg.num_prompts
    key = jax.random.fold_in(jax.random.key(self.config.seed + 1), step)
    kept, drawn = [], 0
    for draw in range(self.cfg.max_draws):
      # This process's records -> the global batch, on every process.
      records = shd.allgather_json(next(prompt_iter))
      out, batch, rewards, parts = self._sample_groups(
          records, jax.random.fold_in(key, draw)
      )
      drawn += len(records)
      keep = np.ones(len(records), bool)
      if self.cfg.dynamic_sampling:
        keep = np.asarray(
            adv_lib.group_std_keep_mask(
                jnp.asarray(rewards), self.cfg.min_group_std
            )
        )
      kept.append((out, batch, rewards, parts, keep))
      if not self.cfg.dynamic_sampling or sum(k[-1].sum() for k in kept) >= p:
        break
    roll = self._assemble(kept, p, drawn)
    if jax.process_count() > 1:
      # Each process feeds its shards of the update from its own copy of the
      # rollout: copies that differ (a non-deterministic reward) would mix
      # silently.
      digest = hashlib.sha256()
      for x in (roll.tokens, roll.mask, roll.rewards):
        digest.update(np.ascontiguousarray(x).tobytes())
      multihost_utils.assert_equal(
          np.frombuffer(digest.digest(), np.uint8),
          f"{self.stage}: step {step + 1}: the processes' rollouts differ",
      )
    return roll

  def _assemble(self, kept, p, drawn) -> rollouts.Rollout:
    r = self.cfg.num_generations
    groups = []  # (draw index, group index)
    for d, k in enumerate(kept):
      groups += [(d, i) for i in np.flatnonzero(k[-1])]
    n_kept = len(groups)
    if len(groups) < p:  # Not enough signal: fill with dropped groups.
      for d, k in enumerate(kept):
        groups += [(d, i) for i in np.flatnonzero(~k[-1])]
    groups = groups[:p]
    rows = [(d, i * r + j) for d, i in groups for j in range(r)]
    pick = lambda f: [f(kept[d])[x] for d, x in rows]
    prompt_ids = pick(lambda k: k[0].prompt_tokens)
    prompt_len = sampling.bucket_length(
        max(map(len, prompt_ids)), self.sampling_cfg.prompt_buckets
    )
    comp = np.stack(pick(lambda k: k[0].tokens))
    lengths = np.array(pick(lambda k: k[0].lengths))
    truncated = np.array(pick(lambda k: k[0].truncated))
    tokens, valid, mask = rollouts.build_sequences(
        prompt_ids, comp, lengths, self.tokenizer.pad_id, prompt_len
    )
    rewards = np.array([kept[d][2][i] for d, i in groups], np.float32)
    if self.cfg.overlong == "mask":
      mask = mask & ~truncated[:, None]
    parts = {name: np.array(pick(lambda k: k[3][name])) for name in kept[0][3]}
    return rollouts.Rollout(
        records=pick(lambda k: k[1].records),
        prompts=pick(lambda k: k[1].prompts),
        completions=pick(lambda k: k[1].completions),
        tokens=tokens,
        valid=valid,
        mask=mask,
        lengths=lengths,
        truncated=truncated,
        rewards=rewards,
        parts=parts,
        prompt_len=prompt_len,
        kept_groups=min(n_kept, p),
        drawn_groups=drawn,
    )

  # -- one training step ---------------------------------------------------

  def train_step(
      self,
      roll: rollouts.Rollout,
      seq_weight: np.ndarray | None = None,
      advantages: np.ndarray | None = None,
  ):
    """Advantages, old/ref log-probs, then `num_iterations` updates."""
    timings = {}
    if advantages is None:
      adv, adv_metrics = grpo_update.group_advantages(
          jnp.asarray(roll.rewards),
          scale_by_std=self.cfg.scale_by_std,
          eps=self.cfg.adv_eps,
      )
      adv_host = metrics_lib.to_host(adv_metrics)
    else:
      adv, adv_host = jnp.asarray(advantages), {}
    put = lambda x: shd.global_from_host(
        x, shd.batch_sharding(self.mesh, np.ndim(x))
    )
    batch = {
        "tokens": put(roll.tokens),
        "valid": put(roll.valid),
        "mask": put(roll.mask.astype(np.float32)),
        "adv": put(np.asarray(adv).reshape(-1)),
        "seq_weight": put(
            np.ones(len(roll.tokens), np.float32)
            if seq_weight is None
            else np.asarray(seq_weight, np.float32).reshape(-1)
        ),
    }
    group_size = self._prompt_group_size(roll)
    logp_fn = self._logp_fn(roll.prompt_len, group_size)
    if self.cfg.num_iterations > 1:
      t1 = time.perf_counter()
      batch["old_logp"] = logp_fn(
          self.state.params, batch["tokens"], batch["valid"]
      )
      jax.block_until_ready(batch["old_logp"])
      timings["time/old_logp"] = time.perf_counter() - t1
    if self.ref_params is not None:
      t1 = time.perf_counter()
      batch["ref_logp"] = logp_fn(
          self.ref_params, batch["tokens"], batch["valid"]
      )
      jax.block_until_ready(batch["ref_logp"])
      timings["time/reference"] = time.perf_counter() - t1
    update = self._update_fn(roll.prompt_len, group_size)
    t2 = time.perf_counter()
    per_iter = []
    for _ in range(self.cfg.num_iterations):
      self.state, m = update(self.state, batch)
      per_iter.append(m)
    host = [metrics_lib.to_host(m) for m in per_iter]
    timings["time/update"] = time.perf_counter() - t2
    out = dict(host[-1])
    out["ratio_mean_first_iter"] = host[0]["ratio_mean"]
    out["skipped"] = sum(h["skipped"] for h in host)
    out.update({f"adv/{k}": v for k, v in adv_host.items()})
    return out, timings


def train(
    trainer: GRPOTrainer,
    prompt_source,
    *,
    prompt_kind: str,
    stop: preemption.StopRequest | None = None,
    on_step: Callable[[int, rollouts.Rollout, dict], None] | None = None,
    shape_fn: (
        Callable[[GRPOTrainer, rollouts.Rollout], tuple[Any, Any, dict]] | None
    ) = None,
) -> Any:
  """Runs (or resumes) the GRPO loop; returns the final policy params.

  `shape_fn(trainer, rollout) -> (advantages_PR | None, seq_weight_PR |
  None, metrics)` lets a stage replace the group advantages or add
  per-sequence loss weights (GenRM entropy shaping).
  """
  config, g = trainer.config, trainer.cfg
  if g.num_prompts % jax.process_count():
    raise ValueError(
        f"{trainer.stage}: num_prompts={g.num_prompts} must be a multiple of "
        f"the process count {jax.process_count()}"
    )
  trainer.prompt_source = builders.describe_source(prompt_source)
  ckpt = ckpt_lib.Checkpointer(
      os.path.join(trainer.stage_dir, "checkpoints"),
      max_to_keep=config.ckpt.max_to_keep,
  )
  meta = ckpt_lib.model_meta(trainer.model_cfg)
  prompt_iter = pipeline.records_iterator(
      prompt_source,
      prompt_kind,
      batch_size=g.num_prompts // jax.process_count(),
      seed=config.seed,
  )
  start = ckpt.latest_step() or 0
  if start:
    abstract = state_lib.abstract_state(
        trainer.shardings, trainer.model_cfg, trainer.tx
    )
    trainer.state, data_state, _ = ckpt.restore(abstract, meta)
    prompt_iter.set_state(data_state["iterator"])
    logging.info("%s: resuming from step %d", trainer.stage, start)
  writer = metrics_lib.MetricWriter(trainer.workdir, stage=trainer.stage)
  guard = numerics.SkipGuard(
      trainer.stage, trainer.stage_dir, trainer.section.max_consecutive_skips
  )
  bar = tqdm.tqdm(
      range(start, g.steps),
      desc=trainer.stage,
      initial=start,
      total=g.steps,
      disable=not (config.log.progress_bar and jax.process_index() == 0),
  )
  with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(trainer.rules):
    for step in bar:
      t0 = time.perf_counter()
      roll = trainer.rollout(prompt_iter, step)
      t1 = time.perf_counter()
      adv = weight = None
      extra = {}
      if shape_fn is not None:
        adv, weight, extra = shape_fn(trainer, roll)
      metrics, timings = trainer.train_step(
          roll, seq_weight=weight, advantages=adv
      )
      metrics.update(extra)
      done = step + 1
      metrics.update(rollouts.rollout_metrics(roll, g))
      metrics.update(timings)
      metrics["time/generate_and_score"] = t1 - t0
      metrics["time/step"] = time.perf_counter() - t0
      if on_step is not None:
        on_step(done, roll, metrics)
      writer.write(done, metrics)
      # A skipped step saves its rollout; N skipped in a row stop the run.
      guard.update(done, metrics, rollouts.rollout_arrays(roll))
      metrics_lib.check_finite(done, metrics)
      bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}")
      preempt = stop is not None and stop.should_stop(done) and done < g.steps
      if done % config.ckpt.every_steps == 0 or done == g.steps or preempt:
        ckpt.save(
            done,
            trainer.state,
            {"iterator": prompt_iter.get_state()},
            dict(meta, step=done),
            force=True,
        )
      if preempt:
        writer.flush()
        ckpt.close()
        raise preemption.Preempted(trainer.stage, done)
  writer.flush()
  ckpt.close()
  ckpt_lib.save_params(
      os.path.join(trainer.stage_dir, "final_params"), trainer.state.params
  )
  return trainer.state.params
