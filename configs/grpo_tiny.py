"""GRPO on the tiny StoryWorld SFT model with a code-checkable reward.

The reward is `target_length`: 1 when the continuation has exactly
`grpo.target_words` words, falling to 0 at 0 or twice that. SFT
continuations average ~55 words, so the policy must learn to stop earlier.

  python -m rlcs_jax.main --config configs/grpo_tiny.py --workdir /tmp/grpo
"""

from configs import tiny


def get_config(arg=None):
  c = tiny.get_config(arg)
  c.unlock()
  c.job = "grpo"
  if "test" in (arg or ""):
    c.grpo.steps = 3
    c.grpo.num_prompts = 4
    c.grpo.num_generations = 2
    c.grpo.max_new_tokens = 12
    c.grpo.target_words = 5
    c.grpo.eval_prompts = 4
    c.grpo.micro_batch = 4
    c.grpo.num_iterations = 2
  c.lock()
  return c


def sweep(add, arg=None):
  """Group size and KL weight."""
  del arg
  for r in (4, 8):
    for beta in (0.0, 0.04):
      add(**{"grpo.num_generations": r, "grpo.beta": beta})
