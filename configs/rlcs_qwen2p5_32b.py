"""RLCS at paper scale with Qwen2.5-32B-Instruct as policy and GenRM.

  python -m rlcs_jax.main --config configs/rlcs_qwen2p5_32b.py \
      --config.init.path=/checkpoints/Qwen2.5-32B-Instruct \
      --workdir gs://BUCKET/rlcs_32b
  python -m rlcs_jax.memory_plan --config configs/rlcs_qwen2p5_32b.py[:v4]

Args (after the colon, comma separated): the accelerator (mesh,
micro-batches, `plan.*`) and optionally `test` (see rlcs_qwen2p5_7b.py):
  v5p   (default) TPU v5p-64: 32 chips x 95 GiB, fsdp=8 x tensor=4
  v4    TPU v4-128: 64 chips x 32 GiB, fsdp=16 x tensor=4
  h100  4 nodes of 8 H100 80 GiB, fsdp=4 x tensor=8 (tensor within a node)

Everything else (float32 master weights, bfloat16 matmuls, remat, GRPO
settings, `tokenizer.kind=hf` from the checkpoint directory) is
`configs/rlcs_qwen2p5_7b.py`; its docstring explains the choices. Multi-host
slices: launch the same command on every host; `rlcs_jax.main` calls
`jax.distributed.initialize()` (`--distributed`).
"""

from configs import rlcs_qwen2p5_7b as paper

CHIPS = {
    "v5p": ("tpu_v5p", 95.0, dict(data=1, fsdp=8, tensor=4)),
    "v4": ("tpu_v4", 32.0, dict(data=1, fsdp=16, tensor=4)),
    "h100": ("h100", 80.0, dict(data=1, fsdp=4, tensor=8)),
}


def get_config(arg=None):
  c = paper.get_config()
  c.unlock()
  c.model.preset = "qwen2p5_32b"
  c.model.vocab_size = 152064
  c.init.path = "/checkpoints/Qwen2.5-32B-Instruct"
  chip, smoke = paper.parse_arg(CHIPS, arg)
  paper.set_accelerator(c, chip, sft_rows=1, genrm_sft_rows=1, grpo_rows=1)
  if smoke:
    paper.smoke_test(c)
  c.lock()
  return c


def sweep(add, arg=None):
  """Entropy shaping on/off."""
  paper.sweep(add, arg)
