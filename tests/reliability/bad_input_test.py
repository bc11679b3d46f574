"""Bad input gives an error naming its source; nothing half-made looks done.

Already covered elsewhere (not repeated here):
  tests/data/jsonl_test.py  malformed/invalid JSON line, missing field, wrong
      field type (file:line), empty split (reader and TFDS builder), prompt
      longer than `data.seq_len` in `SftFeaturizer` (names the record).
  tests/sampler/sampling_test.py  prompt bucket + new tokens > max_seq_len.
  tests/main_test.py  unknown `--config.*` key (nearest keys named),
      checkpoint/config mismatch on resume (`model.d_model: checkpoint=...`).
Added: the same failures through the real entry points (CLI, SFT trainer,
GRPO trainer and its prompt limit, stage parameters), and user JSONL that
lacks a split the job needs.
"""

import json
import os
import subprocess
import sys

import jax
import pytest

from configs import grpo_tiny
from rlcs_jax import checkpoint as ckpt_lib
from rlcs_jax.data import jsonl
from rlcs_jax.data import pipeline
from rlcs_jax.sampler import sampling
from rlcs_jax.trainers import grpo
from rlcs_jax.trainers import jobs
from rlcs_jax.trainers import rlcs
from rlcs_jax.trainers import rollouts
from rlcs_jax.trainers import setup
from rlcs_jax.trainers import sft
from rlcs_jax.trainers import state as state_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def test_truncated_jsonl_via_main_names_line_and_leaves_nothing_done(tmp_path):
  data = tmp_path / "sft.jsonl"
  good = [
      json.dumps({"id": f"r{i}", "prompt": "Once", "response": "upon"})
      for i in range(20)
  ]
  # A file cut off mid-write: the last line is half a JSON object.
  data.write_text(
      "\n".join(good) + '\n{"id": "r20", "prompt": "Onc', encoding="utf-8"
  )
  workdir = tmp_path / "w"
  env = dict(
      os.environ,
      JAX_PLATFORMS="cpu",
      XLA_FLAGS="--xla_force_host_platform_device_count=1",
  )
  out = subprocess.run(
      [
          sys.executable,
          "-m",
          "rlcs_jax.main",
          "--config=configs/tiny.py:test",
          f"--workdir={workdir}",
          "--config.data.source=jsonl",
          f"--config.data.files.sft_train={data}",
      ],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert out.returncode != 0
  assert f"{data}:21: invalid JSON" in out.stderr, out.stderr[-3000:]
  made = {
      os.path.relpath(os.path.join(d, f), workdir)
      for d, _, files in os.walk(workdir)
      for f in files
  }
  assert made <= {"config.json"}, made  # No tokenizer, dataset, checkpoint.


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("bad"))
  r = jobs.prepare(grpo_tiny.get_config("test"), root)
  return r


def test_user_jsonl_without_a_needed_split_names_the_config_key(run, tmp_path):
  config = grpo_tiny.get_config("test")
  config.data.source = "jsonl"
  config.data.files.sft_train = run.files["sft_train"]
  user_run = jobs.prepare(config, str(tmp_path))
  with pytest.raises(
      KeyError,
      match=r"needs data\.files\.pairs_train \(a 'pairs' JSONL file.*"
      r"set splits are \['sft_train'\]",
  ):
    rlcs.genrm_sft(user_run, None)


def _records_with_long_prompt(run, kind, path):
  records = jsonl.read_jsonl(run.files[f"{kind}_train"], kind)[:7]
  long = dict(records[0], id="too-long", prompt=" ".join(["word"] * 3000))
  return jsonl.write_jsonl(path, records + [long])


def test_sft_prompt_longer_than_seq_len_stops_naming_the_record(run, tmp_path):
  path = _records_with_long_prompt(run, "sft", str(tmp_path / "sft.jsonl"))
  source = setup.datasets("sft", {"train": path}, str(tmp_path))["train"]
  with pytest.raises(
      pipeline.PromptTooLongError,
      match=r"sft: record 'too-long' has a \d+-token prompt; " r"seq_len=320",
  ):
    sft.train(
        run.config,
        str(tmp_path),
        stage="sft",
        model_cfg=run.model_cfg,
        tokenizer=run.tokenizer,
        mesh=run.mesh,
        train_source=source,
    )
  assert not sft.stage_is_done(str(tmp_path), "sft")


def test_grpo_prompt_longer_than_context_names_the_record(run, tmp_path):
  path = _records_with_long_prompt(
      run, "contexts", str(tmp_path / "contexts.jsonl")
  )
  source = setup.datasets("contexts", {"train": path}, str(tmp_path))["train"]
  params = state_lib.init_params(
      run.model_cfg, jax.random.key(0), run.mesh, run.rules
  )
  config = run.config.copy_and_resolve_references()
  config.unlock()
  config.grpo.num_prompts = 8  # The first batch holds the long record.
  config.lock()
  trainer = grpo.GRPOTrainer(
      config,
      str(tmp_path),
      stage="grpo",
      model_cfg=run.model_cfg,
      tokenizer=run.tokenizer,
      mesh=run.mesh,
      init_params=params,
      reward_components=jobs.code_rewards(config.grpo),
  )
  # max_seq_len=512, max_new_tokens=12: the largest bucket that fits is 384.
  with pytest.raises(
      pipeline.PromptTooLongError,
      match=r"grpo: record 'too-long' of .*contexts\.jsonl \(split 'train'\) "
      r"has a \d+-token prompt; at most 384 tokens fit "
      r"\(model.max_seq_len=512 minus max_new_tokens=12",
  ):
    grpo.train(trainer, source, prompt_kind="contexts")
  assert not sft.stage_is_done(str(tmp_path), "grpo")
  ckpts = os.path.join(str(tmp_path), "grpo", "checkpoints")
  assert not os.path.exists(ckpts) or not os.listdir(ckpts)


@pytest.mark.parametrize(
    "max_seq_len,new,buckets",
    [(512, 12, (64, 128, 384)), (512, 12, (64, 128)), (100, 90, (32,))],
)
def test_grpo_prompt_limit_matches_the_sampler_buckets(
    max_seq_len, new, buckets
):
  limit = rollouts.max_prompt_tokens(max_seq_len, new, buckets)
  for n in range(1, max_seq_len + 1):
    fits = sampling.bucket_length(n, buckets) + new <= max_seq_len
    assert fits == (n <= limit), (n, limit)


def test_stage_params_of_another_model_name_the_path(run, tmp_path):
  params = state_lib.init_params(
      run.model_cfg, jax.random.key(0), run.mesh, run.rules
  )
  ckpt_lib.save_params(sft.final_params_dir(str(tmp_path), "sft"), params)
  config = run.config.copy_and_resolve_references()
  config.unlock()
  config.model.d_model = 48
  other = setup.model_config(config, run.tokenizer)
  with pytest.raises(
      ckpt_lib.CheckpointMismatchError,
      match=r"parameters at .*/sft/final_params do not match "
      r"the current model config.*shape",
  ):
    sft.load_stage_params(str(tmp_path), "sft", other, run.mesh, run.rules)
