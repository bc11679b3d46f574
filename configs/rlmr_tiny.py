"""RLMR at small scale on StoryWorld (CPU): writing score x constraints.

Policy SFT on StoryWorld continuations plus constraint-bearing demos, a
Bradley-Terry scalar RM trained on `pairs_train` from that policy (the
writing score), then GRPO on `constraints_train` prompts with the per-group
mixed reward of SPEC §4, evaluated before/after on `constraints_eval`
(IFEval metrics). Results in W/rlmr/results.json; per-step
`constraint/<id>` pass rates in W/metrics.jsonl.

  python -m rlcs_jax.main --config configs/rlmr_tiny.py --workdir /tmp/rlmr
  ... --config.rlmr.rule=fixed_mix --config.rlmr.alpha=0.7   # a baseline
  ... --config.rlmr.violation=fraction --config.rlmr.delta=0.2
  ... --config.rlmr.writing_score=heuristic   # no reward model

Score any model's responses against IFEval prompts with the same config:

  python -m rlcs_jax.main --config configs/rlmr_tiny.py \\
      --config.job=ifeval_eval --config.eval.prompts=P.jsonl \\
      --config.eval.responses=R.jsonl --workdir /tmp/ifeval

Args: `test` shrinks everything for the test suite.
"""

from configs import tiny


def get_config(arg=None):
  c = tiny.get_config(arg)
  c.unlock()
  c.job = "rlmr"
  # Writing score: a Bradley-Terry RM trained on StoryWorld pairs_train.
  c.rlmr.writing_score = "scalar_rm"
  c.rlmr_grpo.update(
      dict(
          steps=40,
          num_prompts=8,
          num_generations=4,
          max_new_tokens=128,  # SFT continuations are ~55 words (~80 tokens).
          eval_prompts=64,
      )
  )
  if "test" in (arg or ""):
    c.rlmr_grpo.update(
        dict(
            steps=2,
            num_prompts=4,
            num_generations=2,
            max_new_tokens=12,
            eval_prompts=8,
            micro_batch=4,
        )
    )
    c.rlmr.heuristic_words = 8
    c.scalar_rm.update(dict(steps=2, batch_size=8, seq_len=512, eval_pairs=4))
    # The 400-piece test tokenizer makes constraint prompts ~475 tokens long
    # (the 4096-piece one: prompt + demo <= ~290, within data.seq_len=320).
    c.model.max_seq_len = 640
    c.data.seq_len = 512
    # One prompt bucket and the rollout's sampling settings for evaluation:
    # evaluation reuses the rollout's compiled sampler (fewer compiles).
    c.sampler.prompt_buckets = (512,)
    c.eval.temperature = 1.0
    c.sft.update(dict(steps=2, grad_accum=1, eval_every=0, num_samples=0))
  c.lock()
  return c


def sweep(add, arg=None):
  """The RLMR rule against the single-reward and fixed-mix baselines."""
  del arg
  for rule in (
      "rlmr",
      "single_writing",
      "single_constraint",
      "fixed_mix",
      "floor",
  ):
    add(**{"rlmr.rule": rule})
