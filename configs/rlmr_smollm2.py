"""RLMR on SmolLM2-135M-Instruct with the bundled creative-writing prompts.

Starts from the pretrained GGUF (no SFT: `sft.steps=0`), holds out
`rlmr.holdout` of the 124 bundled IFEval-format prompts for the before/after
evaluation and runs GRPO on the rest with the RLMR mixed reward. The
defaults are a short CPU run (minutes per step on 2 cores); the same config
scales on a mesh by overriding sizes and the mesh, e.g. on 8 accelerators:

  python -m rlcs_jax.main --config configs/rlmr_smollm2.py --workdir W \\
      --config.mesh.data=2 --config.mesh.fsdp=4 \\
      --config.rlmr_grpo.num_prompts=32 --config.rlmr_grpo.num_generations=8

Mesh: batch rows shard over (data, fsdp) and must divide by their product;
weights' embed dim (576) shards over fsdp; heads over tensor, which must
divide SmolLM2's 9 query and 3 kv heads (tensor = 1 or 3). Multi-host runs
use the same flags on every host (see README).

The writing score is `rlmr.writing_score` (default: the text heuristic).

Args: `test` shrinks everything for the test suite.
"""

from configs import smollm2


def get_config(arg=None):
  c = smollm2.get_config(arg)
  c.unlock()
  c.job = "rlmr"
  c.sft.steps = 0  # Start from the instruction-tuned weights.
  c.rlmr.holdout = 24  # Held-out bundled prompts for evaluation.
  c.rlmr.heuristic_words = 80
  c.rlmr_grpo.update(
      dict(
          steps=10,
          num_prompts=2,
          num_generations=4,
          micro_batch=4,
          max_new_tokens=160,
          temperature=0.9,
          beta=0.0,  # No reference model: halves the log-prob passes on CPU.
          lr=1e-6,
          warmup_steps=1,
          eval_prompts=24,
      )
  )
  c.ckpt.every_steps = 5
  if "test" in (arg or ""):
    c.rlmr.holdout = 4
    c.rlmr_grpo.update(
        dict(
            steps=1,
            num_prompts=2,
            num_generations=2,
            micro_batch=2,
            max_new_tokens=8,
            eval_prompts=2,
        )
    )
  c.lock()
  return c


def sweep(add, arg=None):
  """RLMR against the single-reward baselines."""
  del arg
  for rule in ("rlmr", "single_writing", "single_constraint"):
    add(**{"rlmr.rule": rule})
