"""The jobs `main` dispatches to, in one explicit table.

Each job takes (config, workdir), is idempotent on its workdir (finished
stages are skipped, interrupted ones resume from their checkpoints), and
writes its outputs there.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

from rlcs_jax import preemption
from rlcs_jax.data import jsonl
from rlcs_jax.eval import ifeval
from rlcs_jax.model.config import ModelConfig
from rlcs_jax.sampler import text as text_sampler
from rlcs_jax.tokenizer import Tokenizer
from rlcs_jax.trainers import grpo
from rlcs_jax.trainers import pipeline
from rlcs_jax.trainers import rewards as rewards_lib
from rlcs_jax.trainers import rlcs
from rlcs_jax.trainers import rlmr
from rlcs_jax.trainers import sample
from rlcs_jax.trainers import setup
from rlcs_jax.trainers import sft


@dataclasses.dataclass
class Run:
  """What every stage of a job shares."""

  config: ml_collections.ConfigDict
  workdir: str
  mesh: Any
  files: dict[str, str]
  tokenizer: Tokenizer
  model_cfg: ModelConfig
  stop: preemption.StopRequest | None = None

  @property
  def rules(self):
    return setup.rules(self.config)


def prepare(config: ml_collections.ConfigDict, workdir: str) -> Run:
  setup.save_config(config, workdir)
  mesh = setup.make_mesh(config)
  files = setup.data_files(config, workdir)
  tokenizer = setup.load_tokenizer(config, workdir, files)
  return Run(
      config,
      workdir,
      mesh,
      files,
      tokenizer,
      setup.model_config(config, tokenizer),
      stop=_stop_request(),
  )


def _stop_request() -> preemption.StopRequest:
  """SIGTERM/SIGINT -> checkpoint at the next step boundary, then exit."""
  return preemption.StopRequest().install()


def policy_sft(run: Run) -> Any:
  """Runs (or loads) the policy SFT stage; returns its parameters."""
  if run.config.sft.steps == 0:  # No SFT: the pretrained weights as they are.
    params = setup.pretrained_params(run.config, run.model_cfg, run.mesh)
    if params is None:
      raise ValueError("sft.steps=0 needs pretrained weights (init.kind)")
    return params
  if sft.stage_is_done(run.workdir, "sft"):
    logging.info("sft stage already finished in %s", run.workdir)
    return sft.load_stage_params(
        run.workdir, "sft", run.model_cfg, run.mesh, run.rules
    )
  splits = {"train": run.files["sft_train"]}
  if run.files.get("sft_eval"):
    splits["eval"] = run.files["sft_eval"]
  sources = setup.datasets("sft", splits, run.workdir)
  prompts = [
      r["prompt"]
      for r in jsonl.read_jsonl(
          run.files.get("sft_eval") or run.files["sft_train"], "sft"
      )[: run.config.sft.num_samples]
  ]
  return sft.train(
      run.config,
      run.workdir,
      stage="sft",
      model_cfg=run.model_cfg,
      tokenizer=run.tokenizer,
      mesh=run.mesh,
      train_source=sources["train"],
      eval_source=sources.get("eval"),
      init_params=setup.pretrained_params(run.config, run.model_cfg, run.mesh),
      sample_prompts=prompts,
      stop=run.stop,
  )


def sft_job(config: ml_collections.ConfigDict, workdir: str) -> None:
  """StoryWorld (or user JSONL) -> tokenizer -> SFT -> sample continuations."""
  run = prepare(config, workdir)
  policy_sft(run)
  if jax.process_index() == 0:
    samples = sorted(
        f
        for f in os.listdir(os.path.join(workdir, "sft"))
        if f.startswith("samples_")
    )
    if samples:
      with open(
          os.path.join(workdir, "sft", samples[-1]), encoding="utf-8"
      ) as f:
        print(f.read())


# Code-checkable reward components, by config name.
def code_rewards(
    g: ml_collections.ConfigDict,
) -> list[rewards_lib.RewardComponent]:
  factories = {
      "target_length": lambda: rewards_lib.target_length(g.target_words),
      "constraint_pass": lambda: rewards_lib.constraint_pass("strict"),
  }
  out = []
  for name, weight in g.rewards.items():
    if name not in factories:
      raise ValueError(
          f"grpo.rewards.{name}: unknown reward; expected one of"
          f" {sorted(factories)}"
      )
    if weight:
      out.append(rewards_lib.RewardComponent(name, factories[name](), weight))
  if not out:
    raise ValueError("grpo.rewards: every reward weight is 0")
  return out


def evaluate_rewards(
    run: Run, params, records: list[dict[str, Any]], components, seed: int
) -> dict[str, float]:
  """Mean reward components of one sampled completion per held-out prompt."""
  g = run.config.grpo
  cfg = text_sampler.sampling_config(
      run.config.sampler,
      run.tokenizer,
      max_new_tokens=g.max_new_tokens,
      temperature=g.temperature,
  )
  prompts = [r["prompt"] for r in records]
  out = text_sampler.generate_text(
      params,
      run.model_cfg,
      run.tokenizer,
      prompts,
      cfg,
      jax.random.key(seed),
      chunk_size=32,
  )
  batch = rewards_lib.RewardBatch(
      prompts=prompts,
      completions=out.texts,
      completion_ids=[
          out.tokens[i, : out.lengths[i]].tolist() for i in range(len(prompts))
      ],
      truncated=out.truncated,
      records=records,
      group_size=1,
  )
  total, parts = rewards_lib.evaluate(components, batch)
  res = {
      "reward": float(np.nanmean(total)),
      "response_length": float(out.lengths.mean()),
      "truncation_rate": float(out.truncated.mean()),
  }
  res.update({k: float(np.nanmean(v)) for k, v in parts.items()})
  return res


def grpo_job(config: ml_collections.ConfigDict, workdir: str) -> None:
  """SFT policy (run or reused) -> GRPO on code-checkable rewards."""
  run = prepare(config, workdir)
  init = policy_sft(run)
  g = config.grpo
  split = g.prompt_split
  kind = setup.SPLIT_KINDS[split]
  source = setup.datasets(kind, {split: run.files[split]}, workdir)[split]
  components = code_rewards(g)
  eval_split = split.replace("_train", "_eval")
  eval_records = jsonl.read_jsonl(run.files[eval_split], kind)[: g.eval_prompts]
  result_path = os.path.join(workdir, "grpo", "results.json")
  results = {}
  if os.path.exists(result_path):
    with open(result_path) as f:
      results = json.load(f)
  if "before" not in results:
    results["before"] = evaluate_rewards(
        run, init, eval_records, components, config.seed
    )
  if sft.stage_is_done(workdir, "grpo"):
    params = sft.load_stage_params(
        workdir, "grpo", run.model_cfg, run.mesh, run.rules
    )
  else:
    trainer = grpo.GRPOTrainer(
        config,
        workdir,
        stage="grpo",
        model_cfg=run.model_cfg,
        tokenizer=run.tokenizer,
        mesh=run.mesh,
        init_params=init,
        reward_components=components,
    )
    params = grpo.train(trainer, source, prompt_kind=kind, stop=run.stop)
  results["after"] = evaluate_rewards(
      run, params, eval_records, components, config.seed
  )
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(result_path), exist_ok=True)
    with open(result_path, "w") as f:
      json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


def rlcs_job(config: ml_collections.ConfigDict, workdir: str) -> None:
  """RLCS end to end: policy SFT -> GenRM SFT -> GenRM GRPO -> policy GRPO
  with GenRM pivot rewards -> evaluation (results.json)."""
  run = prepare(config, workdir)
  params = rlcs.run_all(run, policy_sft(run))
  results = pipeline.CachedResults(os.path.join(workdir, pipeline.RLCS_RESULTS))
  pipeline.evaluate_rlcs(run, params, results)
  if jax.process_index() == 0:
    print(json.dumps(results.data, indent=2))


JOBS = {
    "sft": sft_job,
    "grpo": grpo_job,
    "rlcs": rlcs_job,
    "rlmr": rlmr.rlmr_job,
    "pipeline": pipeline.pipeline_job,
    "ifeval_eval": ifeval.ifeval_eval_job,
    "sample": sample.sample_job,
}
