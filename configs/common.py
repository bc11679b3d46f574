"""Shared config pieces: every key any job reads is declared here.

Experiment files (`configs/<name>.py`) call `base_config()` and change values;
they never add keys, so a typo in an override fails loudly (the config is
locked) with the nearest valid key names.
"""

import ml_collections
from ml_collections import config_dict

_ph = config_dict.placeholder

# Logical axis -> mesh axes. Batch over (data, fsdp); weights' embed dim over
# fsdp (ZeRO-3 style); heads / mlp / vocab over tensor (Megatron style).
DEFAULT_SHARDING_RULES = (
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_mlp", "tensor"),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("norm", None),
)


def base_config() -> ml_collections.ConfigDict:
  """All keys with defaults for the tiny StoryWorld setting."""
  c = ml_collections.ConfigDict()
  c.job = "sft"  # sft | sample | grpo | rlcs | rlmr | pipeline | ifeval_eval
  c.seed = 0

  c.model = ml_collections.ConfigDict(
      dict(
          preset="tiny",  # A name in model/config.py PRESETS; keys below override.
          # Typed placeholders (None = take the preset's value), so each can be
          # overridden from the command line.
          vocab_size=_ph(int),
          d_model=_ph(int),
          num_layers=_ph(int),
          num_heads=_ph(int),
          num_kv_heads=_ph(int),
          head_dim=_ph(int),
          mlp_dim=_ph(int),
          max_seq_len=_ph(int),
          rope_theta=_ph(float),
          rms_eps=_ph(float),
          tie_embeddings=_ph(bool),
          qkv_bias=_ph(bool),
          qk_norm=_ph(bool),
          param_dtype="float32",
          dtype="float32",  # bfloat16 = bf16 matmul inputs, f32 accumulation.
          cache_dtype="",  # "": the compute dtype (`dtype`).
          remat=False,
      )
  )
  # Where initial weights come from: "" (random init), or a pretrained
  # checkpoint of `init.kind` ("hf" directory or "gguf" file). kind=gguf with
  # path="" is SmolLM2-135M-Instruct from the local cache (model/smollm2.py).
  c.init = ml_collections.ConfigDict(dict(kind="", path=""))

  c.tokenizer = ml_collections.ConfigDict(
      dict(
          kind="sentencepiece",  # sentencepiece (trained into workdir) | gguf
          path="",  # Existing .model (or .gguf); "" trains one in the workdir.
          vocab_size=4096,
          max_train_texts=30000,  # Texts sampled from the data to train it.
      )
  )

  c.data = ml_collections.ConfigDict(
      dict(
          source="storyworld",  # storyworld | jsonl
          storyworld=ml_collections.ConfigDict(
              dict(
                  seed=0,
                  # Split sizes; 0 keeps the generator's default.
                  sft_train=20000,
                  sft_eval=500,
                  pairs_train=6000,
                  pairs_eval=400,
                  contexts_train=2000,
                  contexts_eval=200,
                  constraints_train=2000,
                  constraints_eval=200,
                  sft_constraints=3000,
              )
          ),
          # User JSONL files (data.source=jsonl); see README "Data formats".
          files=ml_collections.ConfigDict(
              dict(
                  sft_train="",
                  sft_eval="",
                  pairs_train="",
                  pairs_eval="",
                  contexts_train="",
                  contexts_eval="",
                  constraints_train="",
                  constraints_eval="",
              )
          ),
          seq_len=256,  # SFT sequence length (prompt + response).
          num_threads=2,  # grain read/featurize threads.
      )
  )

  c.sampler = ml_collections.ConfigDict(
      dict(
          max_new_tokens=160,
          temperature=1.0,
          top_k=0,
          top_p=1.0,
          prompt_buckets=(64, 128, 192, 256, 384, 512),
      )
  )

  c.sft = ml_collections.ConfigDict(
      dict(
          steps=300,
          batch_size=16,  # Global batch (all processes).
          grad_accum=1,  # Micro-batches per step (batch_size must divide).
          eval_every=100,
          eval_batches=4,
          sample_every=0,  # 0: only at the end.
          num_samples=4,  # Continuations written to samples_<step>.txt.
          log_every=10,
          # Updates with a non-finite loss/gradient are skipped (the batch is
          # saved to <stage>/bad_batch_step<N>.npz); stop after this many in
          # a row.
          max_consecutive_skips=5,
      )
  )

  c.optim = ml_collections.ConfigDict(
      dict(
          lr=3e-3,
          warmup_steps=30,
          min_lr_ratio=0.1,  # Cosine decays to lr * min_lr_ratio.
          weight_decay=0.01,  # Not applied to norms and biases.
          b1=0.9,
          b2=0.98,
          eps=1e-8,
          clip_norm=1.0,
      )
  )

  c.grpo = ml_collections.ConfigDict(
      dict(
          steps=40,
          num_prompts=8,  # P prompts per step (global).
          num_generations=4,  # R completions per prompt (the group).
          num_iterations=1,  # Update passes per rollout (>1 reuses old logps).
          micro_batch=0,  # Rows per micro-batch; 0 = the whole P*R batch.
          # Log-prob and update passes run each group's prompt once (its keys
          # and values shared by the R completions): (1 - 1/R) * Lp / (Lp + T)
          # fewer tokens through the model, for a second model pass to
          # compile (the sampler's prefill always runs a prompt once).
          share_prompt_pass=True,
          max_new_tokens=128,
          temperature=1.0,
          beta=0.04,  # KL weight; 0 drops the reference model entirely.
          kl_estimator="k3",  # k1 | k2 | k3 | none
          clip_eps_low=0.2,
          clip_eps_high=0.28,  # DAPO's clip-higher.
          aggregation="seq_mean_token_mean",  # | token_mean | ..._sum_norm
          scale_by_std=True,  # False: Dr. GRPO (no std normalisation).
          adv_eps=1e-6,
          dynamic_sampling=False,  # Drop groups with reward std < min_group_std.
          min_group_std=1e-6,
          max_draws=3,  # Prompt batches drawn per step at most.
          overlong="none",  # none | mask (drop from loss) | penalty
          overlong_penalty=-1.0,
          max_consecutive_skips=5,  # Non-finite updates tolerated in a row.
          prompt_split="contexts_train",  # Which split supplies prompts.
          eval_prompts=64,  # Held-out prompts scored before and after.
          # Reward components and weights (0 = off); see trainers/rewards.py.
          rewards=ml_collections.ConfigDict(
              dict(target_length=1.0, constraint_pass=0.0)
          ),
          target_words=30,  # For the target_length reward.
          lr=1e-4,
          warmup_steps=5,
      )
  )

  # RLCS: the generative reward model (GenRM) and pivot-judged policy RL.
  c.genrm = ml_collections.ConfigDict(
      dict(
          seq_len=576,  # Judge prompt + reasoning chain.
          max_new_tokens=160,  # Judgement length budget.
          eval_pairs=200,  # Held-out pairs for agreement (both orders).
          win_prompts=100,  # Held-out prompts for policy win rates.
          sft=ml_collections.ConfigDict(
              dict(
                  steps=300,
                  batch_size=16,
                  grad_accum=1,
                  eval_every=100,
                  eval_batches=2,
                  sample_every=0,
                  num_samples=2,
                  log_every=10,
                  max_consecutive_skips=5,
              )
          ),
          shaping=ml_collections.ConfigDict(
              dict(
                  lambda_min=0.5,  # Floor of the shaping factor.
                  target="reward",  # reward | advantage | loss_weight | none
                  entropy_source="verdict",  # verdict | response_mean | group_vote
                  format_failure_reward=-1.0,
              )
          ),
          pivot_mode="pivot",  # pivot | pivot_both_orders | fixed_reference
          #                      | round_robin
      )
  )
  # GenRM GRPO: same keys as `grpo` (read by the same trainer).
  c.genrm_grpo = ml_collections.ConfigDict(c.grpo.to_dict())
  c.genrm_grpo.update(
      dict(
          steps=30,
          num_prompts=8,
          num_generations=4,
          max_new_tokens=160,
          prompt_split="pairs_train",
          beta=0.0,
          lr=5e-5,
          eval_prompts=0,
      )
  )
  # Policy GRPO with GenRM pivot rewards: same keys as `grpo`.
  c.rlcs_grpo = ml_collections.ConfigDict(c.grpo.to_dict())
  c.rlcs_grpo.update(
      dict(
          steps=30,
          num_prompts=8,
          num_generations=4,
          max_new_tokens=128,
          prompt_split="contexts_train",
          lr=5e-5,
          eval_prompts=0,
      )
  )

  # Scalar Bradley–Terry reward model (RLCS baseline, RLMR writing score).
  c.scalar_rm = ml_collections.ConfigDict(
      dict(
          steps=200,
          batch_size=16,  # Pairs per step (global); each is 2 sequences.
          grad_accum=1,  # Micro-batches per step (batch_size must divide).
          lr=3e-4,  # Replaces optim.lr; the rest of `optim` applies.
          seq_len=320,  # Prompt + response; the response tail is cut to fit.
          eval_pairs=200,  # Held-out pairs for eval loss/accuracy and agreement.
      )
  )

  # RLMR: a writing score mixed with constraint violations (SPEC §4).
  c.rlmr = ml_collections.ConfigDict(
      dict(
          # rlmr | single_writing | single_constraint | fixed_mix | floor
          # | naive_range (grpo/mixing.py).
          rule="rlmr",
          delta=0.1,  # Margin below the group mean, in writing-score units.
          alpha=0.5,  # Writing weight of fixed_mix.
          violation="any",  # any: 1 if any instruction fails | fraction failed.
          # No contrast in the group (k=0 or k=G): raw (r = w) | zero_advantage.
          all_violate_mode="raw",
          verifier_mode="strict",  # strict | loose checks in the training reward.
          # heuristic | scalar_rm (a BT reward model trained on pairs_train):
          # trainers/rlmr.py WRITING_SCORERS.
          writing_score="heuristic",
          heuristic_words=40,  # heuristic: word count where the length term is 1.
          sft_include_constraints=True,  # Policy SFT also on sft_constraints.
          # >0: hold out this many prompts of rlmr_grpo.prompt_split for the
          # before/after evaluation (one prompt file, e.g. the bundled prompts);
          # 0: evaluate on the matching *_eval split.
          holdout=0,
      )
  )
  # RLMR policy GRPO: same keys as `grpo`; eval_prompts = held-out prompts
  # scored before and after.
  c.rlmr_grpo = ml_collections.ConfigDict(c.grpo.to_dict())
  c.rlmr_grpo.update(dict(prompt_split="constraints_train", eval_prompts=64))
  # IFEval evaluation (job ifeval_eval; RLMR's before/after generations).
  c.eval = ml_collections.ConfigDict(
      dict(
          prompts="",  # IFEval prompts JSONL; "" = the bundled creative prompts.
          responses="",  # JSONL of {"prompt": ..., "response": ...} to score.
          skip_missing=False,  # Score only prompts that have a response.
          temperature=0.0,  # Sampling of evaluation generations; 0 = greedy.
          max_new_tokens=0,  # 0 = rlmr_grpo.max_new_tokens.
      )
  )
  # The `pipeline` job (trainers/pipeline.py): both papers in one workdir.
  c.pipeline = ml_collections.ConfigDict(
      dict(
          # Extra stages from the same SFT policy, GenRM SFT and scalar RM:
          # GenRM GRPO without entropy shaping, and the RLMR baselines.
          ablations=False,
          # rlmr.rule values run as baselines (each with the rlmr_grpo budget).
          rlmr_baselines=("single_writing", "single_constraint", "fixed_mix"),
      )
  )
  # The sample job: a few prompts through the sampler (`sampler` settings).
  c.sample = ml_collections.ConfigDict(
      dict(
          prompts="",  # IFEval-format JSONL; "" = the bundled creative prompts.
          num_prompts=4,
      )
  )

  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  c.sharding_rules = DEFAULT_SHARDING_RULES

  c.ckpt = ml_collections.ConfigDict(
      dict(
          every_steps=100,
          max_to_keep=2,
      )
  )
  c.log = ml_collections.ConfigDict(dict(progress_bar=True))
  # Memory planning (`python -m rlcs_jax.memory_plan`): the accelerator the
  # config is sized for. Runs never read it.
  c.plan = ml_collections.ConfigDict(
      dict(
          chip="cpu",  # Label, e.g. tpu_v5p | tpu_v4 | h100.
          chip_memory_gib=0.0,  # HBM per device; 0 = nothing to check against.
          # Fraction of HBM left for activations, the rollout KV cache and XLA
          # temporaries; params + grads + AdamW + frozen copies get the rest.
          activation_headroom=0.3,
      )
  )
  return c
