"""Tiny StoryWorld story model trained by SFT on CPU in a few minutes.

  python -m rlcs_jax.main --config configs/tiny.py --workdir /tmp/tiny
  python -m rlcs_jax.main --config configs/tiny.py:test --workdir /tmp/t

Args (after the colon, comma separated): `test` shrinks everything for the
test suite.
"""

from configs import common


def get_config(arg=None):
  c = common.base_config()
  c.job = "sft"
  args = set((arg or "").split(",")) - {""}
  if "test" in args:
    c.model.preset = "test"
    c.model.vocab_size = None
    c.tokenizer.vocab_size = 400
    c.tokenizer.max_train_texts = 3000
    for split in (
        "sft_train",
        "sft_eval",
        "pairs_train",
        "pairs_eval",
        "contexts_train",
        "contexts_eval",
        "constraints_train",
        "constraints_eval",
        "sft_constraints",
    ):
      c.data.storyworld[split] = 40
    c.data.storyworld.sft_train = 200
    c.model.max_seq_len = 512
    c.data.seq_len = 320
    c.sft.steps = 6
    c.sft.batch_size = 8
    c.sft.grad_accum = 2
    c.sft.eval_every = 3
    c.sft.eval_batches = 1
    c.sft.num_samples = 2
    c.sampler.max_new_tokens = 16
    # At test sizes compiling dominates: the shared prompt pass's second
    # model pass costs more than it saves (tests/trainers/grpo_test.py
    # covers it).
    for section in ("grpo", "genrm_grpo", "rlcs_grpo", "rlmr_grpo"):
      c[section].share_prompt_pass = False
    c.ckpt.every_steps = 3
    c.log.progress_bar = False
  c.lock()
  return c


def sweep(add, arg=None):
  """Learning-rate sweep of the SFT stage."""
  del arg
  for lr in (1e-3, 3e-3):
    add(**{"optim.lr": lr})
