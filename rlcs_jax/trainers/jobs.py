"""The jobs `main` dispatches to, in one explicit table.

Each job takes (config, workdir), is idempotent on its workdir (finished
stages are skipped, interrupted ones resume from their checkpoints), and
writes its outputs there.
"""

from __future__ import annotations

import os

from absl import logging
import jax
import ml_collections

from rlcs_jax import preemption
from rlcs_jax.data import jsonl
from rlcs_jax.trainers import setup
from rlcs_jax.trainers import sft


def sft_job(config: ml_collections.ConfigDict, workdir: str) -> None:
  """StoryWorld (or user JSONL) -> tokenizer -> SFT -> sample continuations."""
  setup.save_config(config, workdir)
  mesh = setup.make_mesh(config)
  files = setup.data_files(config, workdir)
  tokenizer = setup.load_tokenizer(config, workdir, files)
  model_cfg = setup.model_config(config, tokenizer)
  splits = {"train": files["sft_train"]}
  if files.get("sft_eval"):
    splits["eval"] = files["sft_eval"]
  sources = setup.datasets("sft", splits, workdir)
  prompts = [
      r["prompt"]
      for r in jsonl.read_jsonl(
          files.get("sft_eval") or files["sft_train"], "sft"
      )[: config.sft.num_samples]
  ]
  if sft.stage_is_done(workdir, "sft"):
    logging.info("sft stage already finished in %s", workdir)
  else:
    sft.train(
        config,
        workdir,
        stage="sft",
        model_cfg=model_cfg,
        tokenizer=tokenizer,
        mesh=mesh,
        train_source=sources["train"],
        eval_source=sources.get("eval"),
        init_params=setup.pretrained_params(config, model_cfg, mesh),
        sample_prompts=prompts,
        stop=_stop_request(),
    )
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


def _stop_request() -> preemption.StopRequest:
  """SIGTERM/SIGINT -> checkpoint at the next step boundary, then exit."""
  return preemption.StopRequest().install()


JOBS = {
    "sft": sft_job,
}
