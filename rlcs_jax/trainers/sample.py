"""The `sample` job: a few prompts through the jitted KV-cache sampler.

Loads a policy (pretrained weights from `config.init`, e.g. SmolLM2-135M-
Instruct from its GGUF; otherwise the finished `sft` stage of the workdir),
wraps each prompt in the tokenizer's template (ChatML for SmolLM2), samples
with the `sampler` settings, writes `W/samples.txt` and prints it.

  python -m rlcs_jax.main --config configs/smollm2.py --workdir /tmp/smol
"""

from __future__ import annotations

import os

from absl import logging
import jax
import ml_collections

from rlcs_jax.sampler import text as text_sampler
from rlcs_jax.trainers import setup
from rlcs_jax.trainers import sft
from rlcs_jax.verifiers import ifeval_io

SAMPLES = "samples.txt"


def sample_prompts(config: ml_collections.ConfigDict) -> list[str]:
  """The first `sample.num_prompts` prompts of `sample.prompts`."""
  path = config.sample.prompts or ifeval_io.CREATIVE_PROMPTS_PATH
  prompts = [r["prompt"] for r in ifeval_io.read_prompts(path)]
  if not prompts:
    raise ValueError(f"{path}: no prompts")
  return prompts[: config.sample.num_prompts]


def format_samples(prompts: list[str], texts: list[str]) -> str:
  return "".join(
      f"=== PROMPT {i}\n{p}\n=== SAMPLE {i}\n{t}\n\n"
      for i, (p, t) in enumerate(zip(prompts, texts))
  )


def sample_job(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Samples one continuation per prompt; returns the samples text."""
  from rlcs_jax.trainers import jobs  # pylint: disable=g-import-not-at-top
  # (Imported here: jobs imports this module for its JOBS table.)

  run = jobs.prepare(config, workdir)
  params = setup.pretrained_params(config, run.model_cfg, run.mesh)
  if params is None:
    if not sft.stage_is_done(workdir, "sft"):
      raise ValueError(
          "sample: set init.kind/init.path (pretrained weights) or run the "
          f"sft job in {workdir} first"
      )
    params = sft.load_stage_params(
        workdir, "sft", run.model_cfg, run.mesh, run.rules
    )
  prompts = sample_prompts(config)
  cfg = text_sampler.sampling_config(config.sampler, run.tokenizer)
  out = text_sampler.generate_text(
      params,
      run.model_cfg,
      run.tokenizer,
      prompts,
      cfg,
      jax.random.key(config.seed),
  )
  text = format_samples(prompts, out.texts)
  if jax.process_index() == 0:
    path = os.path.join(workdir, SAMPLES)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(path + ".tmp", path)
    logging.info("wrote %d samples to %s", len(prompts), path)
    print(text)
  return text
