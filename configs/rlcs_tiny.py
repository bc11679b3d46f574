"""RLCS at small scale on StoryWorld (CPU).

Stages: policy SFT -> GenRM SFT (teacher chains, consistency filter) ->
GenRM GRPO (entropy-shaped correctness reward) -> policy GRPO rewarded by
GenRM pivot judging -> evaluation against the hidden rater.

  python -m rlcs_jax.main --config configs/rlcs_tiny.py --workdir /tmp/rlcs
  ... --config.genrm.shaping.target=none        # ablation: no shaping
  ... --config.genrm.pivot_mode=pivot_both_orders
"""

from configs import tiny


def get_config(arg=None):
  c = tiny.get_config(arg)
  c.unlock()
  c.job = "rlcs"
  if "test" in (arg or ""):
    c.tokenizer.vocab_size = 1500  # Judge prompts ~2x shorter than at 400.
    c.genrm.seq_len = 768
    c.model.max_seq_len = 1024
    c.sampler.prompt_buckets = (128, 256, 512, 768)
    c.genrm.max_new_tokens = 16
    c.genrm.eval_pairs = 4
    c.genrm.win_prompts = 4
    c.genrm.sft.update(dict(steps=2, batch_size=8, eval_every=0))
    for section in (c.genrm_grpo, c.rlcs_grpo):
      section.update(
          dict(steps=2, num_prompts=4, num_generations=2, max_new_tokens=16)
      )
    c.rlcs_grpo.max_new_tokens = 12
    c.scalar_rm.update(dict(steps=2, batch_size=8, eval_pairs=4))
  c.lock()
  return c


def sweep(add, arg=None):
  """Entropy shaping on/off and lambda_min."""
  del arg
  add(**{"genrm.shaping.target": "none"})
  for lam in (0.25, 0.5, 0.75):
    add(**{"genrm.shaping.target": "reward", "genrm.shaping.lambda_min": lam})
