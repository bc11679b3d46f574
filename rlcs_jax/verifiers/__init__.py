"""IFEval-style constraint verifiers for creative-writing rewards and eval.

Modules:
  rules: one check per IFEval instruction id (`RULES`), kwargs validation
    and the instruction text that states each rule in a prompt.
  scoring: strict and loose checking, violation flags, IFEval metrics.
  ifeval_io: IFEval JSONL prompts and responses; the bundled prompts.
  text: offline word, sentence, paragraph and line counting.
  language: offline language identification.
  rule_examples: positive and negative examples for every rule.

Import the modules directly, e.g. `from rlcs_jax.verifiers import scoring`.
"""
