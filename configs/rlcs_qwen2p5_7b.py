"""RLCS at paper scale: Qwen2.5-7B-Instruct as policy and GenRM.

  python -m rlcs_jax.main --config configs/rlcs_qwen2p5_7b.py \
      --config.init.path=/checkpoints/Qwen2.5-7B-Instruct \
      --workdir gs://BUCKET/rlcs_7b
  python -m rlcs_jax.memory_plan --config configs/rlcs_qwen2p5_7b.py[:v4]

Args (after the colon, comma separated): the accelerator, which sets the
mesh, the micro-batches and `plan.*`:
  v5p   (default) TPU v5p-16: 8 chips x 95 GiB, fsdp=4 x tensor=2
  v4    TPU v4-32: 16 chips x 32 GiB, fsdp=8 x tensor=2
  h100  one node of 8 H100 80 GiB, fsdp=4 x tensor=2
and `test`: the same model and mesh, two tiny steps of every stage, to check
a slice end to end before the long run (e.g. `:v4,test`).

Weights: `init.kind=hf` reads a local Hugging Face safetensors directory
(download it on a machine with network; runs never touch the hub). The
checkpoint's shapes are checked against `model.preset`.

Tokenizer: `tokenizer.kind=hf` reads the checkpoint directory's
`tokenizer.json` + `tokenizer_config.json` (byte-level BPE with the Qwen2
pre-tokenizer and the ChatML template; ids match Hugging Face `tokenizers`,
see tests/bpe_tokenizer_hf_test.py).

Dtypes: `model.param_dtype=float32` on purpose. GRPO learning rates are
~1e-6; a bfloat16 weight keeps 8 mantissa bits, so any update smaller than
~0.4% of the weight rounds away and the policy never moves. Float32 master
weights (and AdamW moments, which follow the param dtype) cost 4 + 8 bytes
per parameter, which the memory plan shows fits; matmuls run in bfloat16
(`model.dtype`) with float32 accumulation, and `model.remat` recomputes each
block in the backward pass.

Data: StoryWorld (the embedded default) at larger sizes; point
`data.source=jsonl` and `data.files.*` at your own files instead.
"""

from configs import common

# arg -> (plan.chip, HBM GiB per device, mesh). v5p/v4 slice names count
# TensorCores; JAX sees one device per chip (megacore).
CHIPS = {
    "v5p": ("tpu_v5p", 95.0, dict(data=1, fsdp=4, tensor=2)),
    "v4": ("tpu_v4", 32.0, dict(data=1, fsdp=8, tensor=2)),
    "h100": ("h100", 80.0, dict(data=1, fsdp=4, tensor=2)),
}


def parse_arg(chips: dict, arg) -> tuple[tuple, bool]:
  """`chip[,test]` -> (the CHIPS entry, smoke test?), with a clear error."""
  words = [w for w in (arg or "").split(",") if w]
  smoke = "test" in words
  names = [w for w in words if w != "test"] or [next(iter(chips))]
  if len(names) > 1 or names[0] not in chips:
    raise ValueError(
        f"config arg {arg!r}: expected one of {sorted(chips)}, optionally "
        "with ',test'"
    )
  return chips[names[0]], smoke


def smoke_test(c) -> None:
  """Same model, mesh and dtypes; a few tiny steps of every stage.

  For checking a slice end to end in minutes before the long run.
  """
  div = c.mesh.data * c.mesh.fsdp
  c.data.storyworld.update({k: 64 for k in c.data.storyworld if k != "seed"})
  for section in (c.sft, c.genrm.sft):
    section.update(
        dict(
            steps=2,
            batch_size=div,
            grad_accum=1,
            eval_every=0,
            eval_batches=1,
            num_samples=1,
        )
    )
  for section in (c.grpo, c.genrm_grpo, c.rlcs_grpo, c.rlmr_grpo):
    section.update(
        dict(
            steps=2,
            num_prompts=div,
            num_generations=2,
            max_new_tokens=32,
            micro_batch=div,
            eval_prompts=min(section.eval_prompts, 4),
        )
    )
  c.sampler.max_new_tokens = 32
  c.genrm.update(dict(max_new_tokens=32, eval_pairs=8, win_prompts=8))
  c.ckpt.every_steps = 1


def set_accelerator(
    c, chip: tuple, *, sft_rows: int, genrm_sft_rows: int, grpo_rows: int
) -> None:
  """Mesh, plan.* and micro-batches from rows per device per micro-batch.

  The batch is split over (data, fsdp); tensor-parallel devices share rows.
  """
  name, hbm, mesh = chip
  c.plan.chip = name
  c.plan.chip_memory_gib = hbm
  c.mesh.update(mesh)
  div = mesh["data"] * mesh["fsdp"]
  for section, rows in ((c.sft, sft_rows), (c.genrm.sft, genrm_sft_rows)):
    section.grad_accum = max(section.batch_size // (rows * div), 1)
  for section in (c.grpo, c.genrm_grpo, c.rlcs_grpo, c.rlmr_grpo):
    section.micro_batch = grpo_rows * div


def paper_scale(c, preset: str, vocab_size: int, hf_dir: str) -> None:
  """Model, dtypes, sequence lengths and GRPO settings shared by the
  paper-scale configs (7B-32B, story contexts of ~2k tokens)."""
  c.model.preset = preset
  # The checkpoint's (padded) vocabulary, not the tokenizer's piece count.
  c.model.vocab_size = vocab_size
  c.model.max_seq_len = 8192  # Judge prompts: context + two stories + chain.
  c.model.param_dtype = "float32"  # Master weights; see the docstring.
  c.model.dtype = "bfloat16"
  c.model.cache_dtype = "bfloat16"
  c.model.remat = True
  c.init.kind = "hf"
  c.init.path = hf_dir
  c.tokenizer.kind = "hf"  # tokenizer.json of the init.path directory.
  c.tokenizer.path = ""
  c.data.storyworld.update(
      dict(
          sft_train=20000,
          sft_eval=500,
          pairs_train=20000,
          pairs_eval=1000,
          contexts_train=10000,
          contexts_eval=500,
          constraints_train=10000,
          constraints_eval=500,
          sft_constraints=5000,
      )
  )
  c.data.seq_len = 3072
  c.data.num_threads = 8
  c.sampler.max_new_tokens = 1024
  c.sampler.prompt_buckets = (512, 1024, 2048, 3072, 4096, 5120, 6144)
  c.sft.update(
      dict(
          steps=1000,
          batch_size=64,
          eval_every=200,
          eval_batches=8,
          num_samples=4,
          log_every=10,
      )
  )
  c.optim.update(
      dict(
          lr=1e-5,
          warmup_steps=50,
          min_lr_ratio=0.1,
          weight_decay=0.0,
          b1=0.9,
          b2=0.95,
          clip_norm=1.0,
      )
  )
  grpo = dict(
      steps=200,
      num_prompts=64,
      num_generations=8,
      num_iterations=1,
      max_new_tokens=1024,
      temperature=1.0,
      beta=0.04,
      lr=1e-6,
      warmup_steps=10,
      eval_prompts=200,
  )
  for section in (c.grpo, c.rlcs_grpo, c.rlmr_grpo):
    section.update(grpo)
  c.ckpt.update(dict(every_steps=50, max_to_keep=2))
  c.log.progress_bar = True


def get_config(arg=None):
  c = common.base_config()
  c.job = "rlcs"
  paper_scale(c, "qwen2p5_7b", 152064, "/checkpoints/Qwen2.5-7B-Instruct")
  # GenRM: judge prompt (context + two ~1k-token stories) + analysis chain.
  c.genrm.seq_len = 6144
  c.genrm.max_new_tokens = 1024
  c.genrm.eval_pairs = 1000
  c.genrm.win_prompts = 500
  c.genrm.sft.update(
      dict(
          steps=500,
          batch_size=64,
          eval_every=100,
          eval_batches=4,
          num_samples=2,
      )
  )
  c.genrm_grpo.update(
      dict(
          steps=200,
          num_prompts=64,
          num_generations=8,
          max_new_tokens=1024,
          beta=0.0,
          lr=1e-6,
          warmup_steps=10,
          eval_prompts=0,
      )
  )
  c.rlcs_grpo.prompt_split = "contexts_train"
  c.rlcs_grpo.eval_prompts = 0
  chip, smoke = parse_arg(CHIPS, arg)
  set_accelerator(c, chip, sft_rows=2, genrm_sft_rows=1, grpo_rows=2)
  if smoke:
    smoke_test(c)
  c.lock()
  return c


def sweep(add, arg=None):
  """Entropy shaping on/off (the paper's main GenRM ablation)."""
  del arg
  for target in ("none", "reward"):
    add(**{"genrm.shaping.target": target})
