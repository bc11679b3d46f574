"""grain input pipelines: SFT batches and prompt batches, with checkpointable
iterator state.

Sources are TFDS data sources (`data/builders.py`). Each process reads a
disjoint slice (`process_index::process_count`), shuffles with the config
seed (a new permutation each epoch), tokenizes on threads, and batches. The
iterator's `get_state()` is a small JSON-able dict saved with checkpoints, so
a resumed run sees exactly the batches an uninterrupted run would have.

SFT example layout (right padded to `seq_len`):
  tokens   = [bos] prompt_formatted response [eos] pad...
  loss_mask marks the positions whose *next* token is a response token, i.e.
  the model input is tokens[:-1] and targets are tokens[1:].
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import grain
import jax
import numpy as np

from rlcs_jax.data import builders
from rlcs_jax.tokenizer import Tokenizer


class PromptTooLongError(ValueError):
  """A prompt that does not fit the model context."""


@dataclasses.dataclass(frozen=True)
class SftFeaturizer:
  """Record -> fixed-length token arrays with a response-only loss mask."""

  tokenizer: Tokenizer
  seq_len: int
  source_name: str = "sft"

  def __call__(self, raw: dict[str, Any]) -> dict[str, np.ndarray]:
    record = builders.decode_record("sft", raw)
    tok = self.tokenizer
    prompt = tok.encode_prompt(record["prompt"])
    response = tok.encode(record["response"]) + [tok.eos_id]
    if len(prompt) >= self.seq_len:
      raise PromptTooLongError(
          f"{self.source_name}: record {record['id']!r} has a {len(prompt)}-"
          f"token prompt; seq_len={self.seq_len} leaves no room for the "
          "response (raise the stage's seq_len or shorten the prompt)"
      )
    ids = (prompt + response)[: self.seq_len]  # Long responses are cut.
    tokens = np.full(self.seq_len, tok.pad_id, np.int32)
    tokens[: len(ids)] = ids
    valid = np.zeros(self.seq_len, bool)
    valid[: len(ids)] = True
    # Position t predicts token t+1: mark t where t+1 is a response token.
    loss_mask = np.zeros(self.seq_len, np.float32)
    loss_mask[len(prompt) - 1 : len(ids) - 1] = 1.0
    return {"tokens": tokens, "valid": valid, "loss_mask": loss_mask}


def _process_slice(ds: grain.MapDataset) -> grain.MapDataset:
  if jax.process_count() > 1:
    ds = ds[jax.process_index() :: jax.process_count()]
  return ds


def batched_iterator(
    source,
    *,
    featurize: Callable[[Any], Any],
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    num_threads: int = 2,
):
  """Builds a checkpointable grain iterator of numpy batches.

  `batch_size` is the per-process batch. Epochs are reshuffled with
  `seed + epoch`; `num_epochs=None` repeats forever.
  """
  ds = _process_slice(grain.MapDataset.source(source))
  if len(ds) < batch_size:
    raise ValueError(
        f"dataset has {len(ds)} records on this process, fewer "
        f"than the batch size {batch_size}"
    )
  if shuffle:
    ds = ds.shuffle(seed=seed)
  ds = (
      ds.repeat(num_epochs)
      .map(featurize)
      .batch(batch_size, drop_remainder=True)
  )
  return iter(
      ds.to_iter_dataset(
          grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4)
      )
  )


def records_iterator(
    source,
    kind: str,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
):
  """Iterator of lists of decoded records (for prompts fed to the sampler)."""
  ds = _process_slice(grain.MapDataset.source(source))
  if len(ds) < batch_size:
    raise ValueError(
        f"dataset has {len(ds)} records on this process, fewer "
        f"than the batch size {batch_size}"
    )
  if shuffle:
    ds = ds.shuffle(seed=seed)
  ds = (
      ds.repeat(num_epochs)
      .map(lambda raw: builders.decode_record(kind, raw))
      .batch(batch_size, drop_remainder=True, batch_fn=list)
  )
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=1)))
