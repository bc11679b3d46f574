"""Per-device memory plan of a config's training state, without allocating.

  python -m rlcs_jax.memory_plan --config configs/rlcs_qwen2p5_7b.py[:arg] \
      [--config.k=v ...] [--json] [--novirtual_devices]

`plan(config)` builds the config's mesh over its device count (the product of
`config.mesh`; all visible devices when an axis is -1), the abstract
parameters and AdamW state with their shardings exactly as the trainers
derive them (`trainers/state.py`: `jax.eval_shape`, nothing allocated), and
sums each leaf's per-device shard bytes. For every stage of `config.job` it
counts what that stage keeps on each device:

  params      the trained model (`model.param_dtype`)
  grads       the micro-batch gradient accumulator (same shapes and dtype)
  optimizer   AdamW's mu and nu (same dtype and sharding as the params)
  reference   the frozen KL reference, when the stage's `beta` > 0
  frozen      the other model copies the job holds on device meanwhile (e.g.
              RLCS's GenRM judge during policy GRPO; see `JOB_STAGES`)

and checks the peak stage's total against the chip:

  total <= (1 - plan.activation_headroom) * plan.chip_memory_gib

The headroom (default 0.3 of HBM) is what the state leaves for activations,
the rollout KV cache, XLA temporaries and fragmentation. Rough estimates of
the two largest of those are reported next to it (not part of the check):
`act` the micro-batch activations of one update (with `model.remat`, each
block's input is saved and one block is recomputed at a time; float32
attention logits and completion logits), `kv` the rollout KV cache, both
assuming the batch is sharded over (data, fsdp). A warning is printed when
total + max(act, kv) exceeds the chip.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rlcs_jax import sharding as shd
from rlcs_jax.model.config import ModelConfig, dtype_of
from rlcs_jax.model.transformer import Transformer
from rlcs_jax.trainers import state as state_lib

GIB = 1024**3


class MemoryPlanError(ValueError):
  """The config's state does not fit its chip, or its mesh can't be built."""


@dataclasses.dataclass(frozen=True)
class Stage:
  """What one stage trains, and which other model copies it keeps."""

  name: str
  section: str  # Config section with the stage's batch (and beta, for GRPO).
  kind: str  # sft | grpo
  held: tuple[str, ...] = ()  # Frozen copies on device besides the state.
  reference: int | None = None  # held[reference] is the KL ref when beta > 0.


# The copies each stage holds, as the jobs hold them today: trainers keep the
# parameters they were given alive while training (sft.train, grpo_job,
# rlmr_job), and rlcs.run_all keeps every stage's output for its final
# evaluation. Offloading those to host would save one copy each.
_SFT = Stage("sft", "sft", "sft", held=("SFT init",))
JOB_STAGES: dict[str, tuple[Stage, ...]] = {
    "sft": (_SFT,),
    "grpo": (_SFT, Stage("grpo", "grpo", "grpo", ("policy SFT",), 0)),
    "rlcs": (
        _SFT,
        Stage("genrm_sft", "genrm.sft", "sft", ("policy SFT",)),
        Stage(
            "genrm_grpo", "genrm_grpo", "grpo", ("policy SFT", "GenRM SFT"), 1
        ),
        Stage(
            "rlcs_grpo",
            "rlcs_grpo",
            "grpo",
            ("policy SFT", "GenRM SFT", "GenRM GRPO (judge)"),
            0,
        ),
    ),
    "rlmr": (_SFT, Stage("rlmr", "rlmr_grpo", "grpo", ("policy SFT",), 0)),
}
JOB_STAGES["pipeline"] = JOB_STAGES["rlcs"] + JOB_STAGES["rlmr"][1:]


def _section(config: ml_collections.ConfigDict, dotted: str):
  for part in dotted.split("."):
    config = config[part]
  return config


def num_devices(config: ml_collections.ConfigDict) -> int:
  """The config's device count: the mesh product, or all devices with -1."""
  sizes = [int(config.mesh[a]) for a in shd.MESH_AXES]
  return jax.device_count() if -1 in sizes else math.prod(sizes)


def _mesh(config: ml_collections.ConfigDict):
  n = num_devices(config)
  devices = jax.devices()
  if len(devices) < n:
    raise MemoryPlanError(
        f"mesh {dict(config.mesh)} needs {n} devices but {len(devices)} are "
        f"visible; plan on virtual CPU devices with XLA_FLAGS="
        f"--xla_force_host_platform_device_count={n} JAX_PLATFORMS=cpu (the "
        "memory_plan CLI does this by default)"
    )
  return shd.make_mesh(dict(config.mesh), devices[:n])


def tree_device_bytes(tree: Any) -> int:
  """Bytes of one device's shards of a tree of sharded ShapeDtypeStructs."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape)
    total += math.prod(shape) * np.dtype(leaf.dtype).itemsize
  return total


def _stage_shapes(
    config, model_cfg: ModelConfig, stage: Stage, mesh
) -> dict[str, int]:
  """Rows per device, sequence length and completion length of one update."""
  section = _section(config, stage.section)
  div = shd.batch_divisor(mesh)
  if stage.kind == "sft":
    rows = section.batch_size // section.grad_accum
    seq = (
        config.genrm.seq_len
        if stage.name == "genrm_sft"
        else (config.data.seq_len)
    )
    completion = seq  # SFT puts every position through the output head.
    rollout_rows, rollout_len = 0, 0
  else:
    all_rows = section.num_prompts * section.num_generations
    rows = section.micro_batch or all_rows
    completion = section.max_new_tokens
    seq = max(config.sampler.prompt_buckets) + completion
    rollout_rows, rollout_len = all_rows, seq
  cap = lambda n: min(n, model_cfg.max_seq_len)
  return dict(
      rows=math.ceil(rows / div),
      seq=cap(seq),
      completion=cap(completion),
      rollout_rows=math.ceil(rollout_rows / div),
      rollout_len=cap(rollout_len),
  )


def activation_bytes(
    cfg: ModelConfig, tensor: int, rows: int, seq: int, completion: int
) -> int:
  """Rough per-device activation peak of one micro-batch's forward+backward.

  With remat: every block's input [rows, seq, D] is saved, one block is
  recomputed at a time (its matmul outputs and float32 attention logits and
  probabilities), plus float32 logits, softmax and their gradient over the
  completion positions. Without remat, every block's working set is saved.
  """
  b = np.dtype(dtype_of(cfg.dtype)).itemsize
  heads, kv = max(cfg.num_heads // tensor, 1), max(
      cfg.num_kv_heads // tensor, 1
  )
  block = (
      rows
      * seq
      * b
      * (
          2 * cfg.d_model
          + (heads + 2 * kv) * cfg.head_dim * 2
          + 3 * cfg.mlp_dim // tensor
      )
      + 2 * rows * heads * seq * seq * 4
  )
  saved = rows * seq * cfg.d_model * b
  layers = (
      (cfg.num_layers * saved + block)
      if cfg.remat
      else (cfg.num_layers * (saved + block))
  )
  logits = 3 * rows * completion * (cfg.vocab_size // tensor) * 4
  return int(layers + logits)


def kv_cache_bytes(cfg: ModelConfig, tensor: int, rows: int, seq: int) -> int:
  """Per-device KV cache of a rollout batch (kv heads split over tensor)."""
  b = np.dtype(cfg.kv_dtype).itemsize
  kv = max(cfg.num_kv_heads // tensor, 1)
  return 2 * cfg.num_layers * rows * seq * kv * cfg.head_dim * b


def abstract_state(
    model_cfg: ModelConfig, tx, mesh, rules
) -> state_lib.TrainState:
  """The sharded abstract TrainState, as `trainers/state.py` derives it.

  Same logical specs, rules and optimizer-state shardings as
  `state.param_shardings` + `state.state_shardings`, but the model init is
  traced once (a 64-layer init takes seconds to trace), without remat
  (which changes no parameter).
  """
  boxed = jax.eval_shape(
      Transformer(dataclasses.replace(model_cfg, remat=False)).init,
      jax.random.key(0),
      jnp.zeros((1, 8), jnp.int32),
  )
  logical = nn.get_partition_spec(boxed)["params"]
  abstract = nn.meta.unbox(boxed)["params"]
  params_sh = shd.logical_to_sharding(logical, abstract, mesh, rules)
  shardings = state_lib.state_shardings(params_sh, tx, abstract, mesh)
  shapes = state_lib.TrainState(
      step=jax.ShapeDtypeStruct((), jnp.int32),
      params=abstract,
      opt_state=jax.eval_shape(tx.init, abstract),
  )
  return jax.tree.map(
      lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
      shapes,
      shardings,
  )


def plan(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Per-device bytes of every stage of `config.job`; the peak vs the chip.

  Returns a dict with `stages` (one dict of byte counts per stage), `peak`
  (the stage with the largest total), `budget_bytes`, `fits` (None when
  `plan.chip_memory_gib` is 0: no chip to check against) and a message.
  """
  if config.job not in JOB_STAGES:
    raise MemoryPlanError(
        f"no memory plan for job {config.job!r}; known: "
        f"{sorted(JOB_STAGES)}"
    )
  mesh = _mesh(config)
  # As trainers/setup.model_config does without a tokenizer: the preset's
  # vocabulary unless model.vocab_size is set.
  model_cfg = ModelConfig.from_config(config.model)
  rules = tuple(tuple(r) for r in config.sharding_rules)
  tx = state_lib.make_optimizer(
      state_lib.OptimConfig.from_config(config.optim, total_steps=1)
  )
  state = abstract_state(model_cfg, tx, mesh, rules)
  params = tree_device_bytes(state.params)
  optimizer = tree_device_bytes(state.opt_state)
  tensor = mesh.shape["tensor"]

  stages = []
  for stage in JOB_STAGES[config.job]:
    section = _section(config, stage.section)
    beta = section.beta if stage.kind == "grpo" else 0.0
    ref = params if (stage.reference is not None and beta > 0) else 0
    frozen = params * len(stage.held) - ref
    shapes = _stage_shapes(config, model_cfg, stage, mesh)
    stages.append(
        dict(
            stage=stage.name,
            held=list(stage.held),
            beta=beta,
            params=params,
            grads=params,
            optimizer=optimizer,
            reference=ref,
            frozen=frozen,
            total=2 * params + optimizer + ref + frozen,
            act=activation_bytes(
                model_cfg,
                tensor,
                shapes["rows"],
                shapes["seq"],
                shapes["completion"],
            ),
            kv=kv_cache_bytes(
                model_cfg, tensor, shapes["rollout_rows"], shapes["rollout_len"]
            ),
            **shapes,
        )
    )
  # The largest total; on a tie the later stage (it holds the reference).
  peak = max(reversed(stages), key=lambda s: s["total"])
  chip_gib = float(config.plan.chip_memory_gib)
  headroom = float(config.plan.activation_headroom)
  budget = int(chip_gib * (1 - headroom) * GIB)
  out = dict(
      job=config.job,
      chip=config.plan.chip,
      chip_memory_gib=chip_gib,
      activation_headroom=headroom,
      num_devices=mesh.size,
      mesh=dict(mesh.shape),
      model=config.model.preset,
      num_params=model_cfg.num_params(),
      param_dtype=model_cfg.param_dtype,
      stages=stages,
      peak=peak,
      budget_bytes=budget,
      fits=None if chip_gib <= 0 else peak["total"] <= budget,
  )
  if out["fits"] is False:
    out["message"] = (
        f"{config.job} does not fit: stage {peak['stage']} needs "
        f"{peak['total']} bytes ({peak['total'] / GIB:.2f} GiB) per device "
        f"(params {params / GIB:.2f}, grads {params / GIB:.2f}, optimizer "
        f"{optimizer / GIB:.2f}, reference {peak['reference'] / GIB:.2f}, "
        f"frozen {peak['frozen'] / GIB:.2f} GiB) but the limit is {budget} "
        f"bytes ({budget / GIB:.2f} GiB = {chip_gib:g} GiB "
        f"plan.chip_memory_gib of {config.plan.chip} minus "
        f"{headroom:.0%} activation headroom) on mesh {dict(mesh.shape)}; "
        "use more devices (mesh.fsdp), a smaller model or "
        "model.param_dtype=bfloat16"
    )
  elif out["fits"] and peak["total"] + max(peak["act"], peak["kv"]) > (
      chip_gib * GIB
  ):
    out["message"] = (
        f"warning: stage {peak['stage']}: state plus the activation estimate "
        f"({max(peak['act'], peak['kv']) / GIB:.2f} GiB) exceeds "
        f"{chip_gib:g} GiB; lower the micro-batch"
    )
  else:
    out["message"] = ""
  return out


def check(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """`plan(config)`, raising MemoryPlanError when the state does not fit."""
  result = plan(config)
  if result["fits"] is False:
    raise MemoryPlanError(result["message"])
  return result


TABLE_HEADER = (
    "| config | chip | devices | mesh (data×fsdp×tensor) | peak stage | "
    "params | grads | Adam | reference | frozen | total | budget | fits | "
    "est. act | est. KV |\n"
    "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
)


def table_row(name: str, result: dict[str, Any]) -> str:
  """One markdown row of the per-device table, in GiB."""
  p = result["peak"]
  g = lambda b: f"{b / GIB:.2f}"
  mesh = "×".join(str(result["mesh"][a]) for a in shd.MESH_AXES)
  fits = {True: "yes", False: "**no**", None: "n/a"}[result["fits"]]
  budget = g(result["budget_bytes"]) if result["fits"] is not None else "-"
  return (
      f"| {name} | {result['chip']} | {result['num_devices']} | {mesh} | "
      f"{p['stage']} | {g(p['params'])} | {g(p['grads'])} | "
      f"{g(p['optimizer'])} | {g(p['reference'])} | {g(p['frozen'])} | "
      f"{g(p['total'])} | {budget} | {fits} | {g(p['act'])} | "
      f"{g(p['kv'])} |"
  )


def _main():
  """CLI: the table (or JSON) for one config; exit 1 when it does not fit."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  config_flag = config_flags.DEFINE_config_file(
      "config", None, "Config file, e.g. configs/x.py[:arg].", lock_config=True
  )
  as_json = flags.DEFINE_bool("json", False, "Print the plan as JSON.")
  virtual = flags.DEFINE_bool(
      "virtual_devices",
      True,
      "Plan on the config's count of virtual CPU devices (nothing is "
      "allocated); false: on the devices of this host.",
  )

  def main(argv):
    del argv
    config = config_flag.value
    if virtual.value:
      # Before the first backend use (process settings belong in the CLI).
      sizes = [int(config.mesh[a]) for a in shd.MESH_AXES]
      n = math.prod(sizes) if -1 not in sizes else 8  # As the tests do.
      flag = "--xla_force_host_platform_device_count"
      if flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + f" {flag}={n}"
        ).strip()
      jax.config.update("jax_platforms", "cpu")
    try:
      result = plan(config)
    except MemoryPlanError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    if as_json.value:
      print(json.dumps(result, indent=2))
    else:
      name = next(
          (a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")),
          None,
      ) or (
          sys.argv[sys.argv.index("--config") + 1]
          if "--config" in sys.argv
          else "config"
      )
      print(
          f"{result['model']} ({result['num_params'] / 1e9:.2f}B params, "
          f"{result['param_dtype']}), job {result['job']}, per device GiB; "
          f"headroom {result['activation_headroom']:.0%}\n"
      )
      print(TABLE_HEADER)
      print(table_row(name, result))
      print(
          "\nstages: "
          + "; ".join(
              f"{s['stage']} {s['total'] / GIB:.2f} GiB"
              for s in result["stages"]
          )
      )
    if result["message"]:
      print(result["message"], file=sys.stderr)
    sys.exit(1 if result["fits"] is False else 0)

  app.run(main)


if __name__ == "__main__":
  _main()
