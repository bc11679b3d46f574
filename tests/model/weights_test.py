"""Hugging Face import/export: numerical equivalence, errors, sharding."""

import json
import os

import jax
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors
import safetensors.numpy

from rlcs_jax.model import hf_checkpoint
from rlcs_jax.model import kv_cache
from rlcs_jax.model import pretrained
from rlcs_jax.model import transformer
from rlcs_jax.model import weights
from rlcs_jax.model.config import ModelConfig
from rlcs_jax.sampler import sampling

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

_KINDS = {
    # kind: (config class, model class, tied embeddings)
    "llama": ("LlamaConfig", "LlamaForCausalLM", False),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", True),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", False),
}
RULES = (
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("norm", None),
)
VOCAB = 256


def make_hf_model(kind: str, seed: int = 0):
  """A tiny random HF model; every weight (norms and biases too) is random."""
  cfg_cls, model_cls, tied = _KINDS[kind]
  hf_cfg = getattr(transformers, cfg_cls)(
      vocab_size=VOCAB,
      hidden_size=64,
      num_hidden_layers=2,
      num_attention_heads=4,
      num_key_value_heads=2,
      head_dim=16,
      intermediate_size=128,
      max_position_embeddings=256,
      rms_norm_eps=1e-5,
      tie_word_embeddings=tied,
      attn_implementation="eager",
      rope_parameters={"rope_type": "default", "rope_theta": 5000.0},
  )
  torch.manual_seed(seed)
  model = getattr(transformers, model_cls)(hf_cfg).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("norm.weight"):
        p.uniform_(0.5, 1.5)
      elif "embed_tokens" in name:
        p.normal_(0.0, 0.5)
      else:
        p.normal_(0.0, 0.2)
  return model


def save_hf(model, path, max_shard_size="100KB"):
  model.save_pretrained(path, max_shard_size=max_shard_size)
  return path


@pytest.fixture(scope="module", params=sorted(_KINDS))
def checkpoint(request, tmp_path_factory):
  model = make_hf_model(request.param)
  path = save_hf(model, str(tmp_path_factory.mktemp(request.param)))
  return request.param, model, path


def padded_batch(lengths, total, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(3, VOCAB, (len(lengths), total))
  valid = np.arange(total)[None, :] >= total - np.asarray(lengths)[:, None]
  return np.where(valid, tokens, 0).astype(np.int32), valid


def hf_logits(model, tokens, valid):
  mask = torch.tensor(valid.astype(np.int64))
  positions = torch.clamp(mask.cumsum(-1) - 1, min=0)
  with torch.no_grad():
    out = model(
        input_ids=torch.tensor(tokens, dtype=torch.long),
        attention_mask=mask,
        position_ids=positions,
    )
  return out.logits.float().numpy()


def test_sharded_index_is_exercised(checkpoint):
  _, _, path = checkpoint
  with open(os.path.join(path, "model.safetensors.index.json")) as f:
    files = set(json.load(f)["weight_map"].values())
  assert len(files) >= 2


def test_config_mapping(checkpoint):
  kind, model, path = checkpoint
  cfg, _ = hf_checkpoint.load_hf_checkpoint(path)
  assert (
      cfg.d_model,
      cfg.num_layers,
      cfg.num_heads,
      cfg.num_kv_heads,
      cfg.head_dim,
      cfg.mlp_dim,
      cfg.vocab_size,
  ) == (64, 2, 4, 2, 16, 128, VOCAB)
  assert cfg.rope_theta == 5000.0 and cfg.rms_eps == 1e-5
  assert cfg.max_seq_len == 256
  assert cfg.tie_embeddings == model.config.tie_word_embeddings
  assert cfg.qkv_bias == (kind == "qwen2")
  assert cfg.qk_norm == (kind == "qwen3")
  back = hf_checkpoint.hf_config_to_model_config(
      hf_checkpoint.model_config_to_hf_config(cfg)
  )
  assert back == cfg


def test_logits_match_hf_with_left_padding(checkpoint):
  _, model, path = checkpoint
  cfg, params = hf_checkpoint.load_hf_checkpoint(path)
  tokens, valid = padded_batch([12, 7, 3], 12)
  ours, _ = transformer.Transformer(cfg).apply(
      {"params": params}, jnp.asarray(tokens), valid_BL=jnp.asarray(valid)
  )
  theirs = hf_logits(model, tokens, valid)
  diff = np.abs(np.asarray(ours) - theirs)[valid]
  print(f"max |logit diff| = {diff.max():.2e}")
  assert diff.max() < 1e-4
  # Random logits are O(1), so 1e-4 is a real bound, not a vacuous one.
  assert np.abs(theirs[valid]).mean() > 0.3


def greedy_loop(params, cfg, tokens, valid, steps):
  """Minimal cached greedy decoding, independent of the sampler."""
  model = transformer.Transformer(cfg)
  b, p = tokens.shape

  @jax.jit
  def run(params, tokens, valid):
    cache = kv_cache.init_cache(cfg, b, p + steps)
    logits, cache = model.apply(
        {"params": params}, tokens, valid_BL=valid, cache=cache
    )
    nxt = jnp.argmax(logits[:, -1], -1)

    def body(carry, _):
      nxt, cache = carry
      logits, cache = model.apply({"params": params}, nxt[:, None], cache=cache)
      return (jnp.argmax(logits[:, -1], -1), cache), nxt

    _, out = jax.lax.scan(body, (nxt, cache), None, length=steps)
    return out.T

  return np.asarray(run(params, jnp.asarray(tokens), jnp.asarray(valid)))


def test_greedy_generation_matches_hf(checkpoint):
  _, model, path = checkpoint
  cfg, params = hf_checkpoint.load_hf_checkpoint(path)
  steps = 32
  tokens, valid = padded_batch([9, 4, 6], 9, seed=1)
  with torch.no_grad():
    out = model.generate(
        input_ids=torch.tensor(tokens, dtype=torch.long),
        attention_mask=torch.tensor(valid.astype(np.int64)),
        max_new_tokens=steps,
        min_new_tokens=steps,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
        bos_token_id=None,
    )
  theirs = out[:, tokens.shape[1] :].numpy()
  ours = greedy_loop(params, cfg, tokens, valid, steps)
  np.testing.assert_array_equal(ours, theirs)
  assert len(np.unique(theirs)) > 8  # Not a degenerate constant sequence.
  # The project's sampler agrees too.
  prompts = [list(t[v]) for t, v in zip(tokens, valid)]
  sample = sampling.generate(
      params,
      cfg,
      prompts,
      sampling.SamplingConfig(
          max_new_tokens=steps, greedy=True, pad_id=0, prompt_buckets=(16,)
      ),
      jax.random.key(0),
  )
  np.testing.assert_array_equal(sample.tokens, theirs)


def test_round_trip_is_bit_exact(checkpoint, tmp_path):
  _, _, path = checkpoint
  cfg, params = hf_checkpoint.load_hf_checkpoint(path)
  files = hf_checkpoint.save_hf_checkpoint(
      params, cfg, str(tmp_path), max_shard_bytes=60_000
  )
  assert len(files) >= 3
  assert os.path.exists(tmp_path / "model.safetensors.index.json")
  cfg2, params2 = hf_checkpoint.load_hf_checkpoint(str(tmp_path))
  assert cfg2 == cfg
  leaves = jax.tree_util.tree_leaves_with_path(params)
  leaves2 = dict(jax.tree_util.tree_leaves_with_path(params2))
  assert len(leaves) == len(leaves2)
  for key, leaf in leaves:
    assert np.array_equal(np.asarray(leaf), np.asarray(leaves2[key])), key
  # The exported tensors are exactly the ones transformers wrote.
  original = read_all(path)
  exported = read_all(str(tmp_path))
  assert sorted(original) == sorted(exported)
  for name, tensor in original.items():
    assert exported[name].dtype == tensor.dtype
    assert np.array_equal(exported[name], tensor), name
  # Re-saving into the same directory as one shard leaves no stale shards.
  hf_checkpoint.save_hf_checkpoint(params, cfg, str(tmp_path))
  assert [p.name for p in tmp_path.glob("*.safetensors")] == [
      "model.safetensors"
  ]
  assert not (tmp_path / "model.safetensors.index.json").exists()
  assert hf_checkpoint.load_hf_checkpoint(str(tmp_path))[0] == cfg


def read_all(path):
  out = {}
  for file in sorted(os.listdir(path)):
    if file.endswith(".safetensors"):
      out.update(safetensors.numpy.load_file(os.path.join(path, file)))
  return out


def test_export_loads_in_transformers(checkpoint, tmp_path):
  kind, model, path = checkpoint
  cfg, params = hf_checkpoint.load_hf_checkpoint(path)
  hf_checkpoint.save_hf_checkpoint(params, cfg, str(tmp_path))
  assert os.path.exists(tmp_path / "model.safetensors")  # One shard.
  reloaded = (
      getattr(transformers, _KINDS[kind][1])
      .from_pretrained(str(tmp_path), attn_implementation="eager")
      .eval()
  )
  tokens, valid = padded_batch([10, 5], 10, seed=2)
  np.testing.assert_array_equal(
      hf_logits(reloaded, tokens, valid), hf_logits(model, tokens, valid)
  )


def test_bfloat16_round_trip(tmp_path):
  model = make_hf_model("llama").to(torch.bfloat16)
  src = save_hf(model, str(tmp_path / "src"))
  cfg, params = hf_checkpoint.load_hf_checkpoint(src, param_dtype="bfloat16")
  assert params["layers_0"]["attn"]["q"].dtype == jnp.bfloat16
  hf_checkpoint.save_hf_checkpoint(
      params, cfg, str(tmp_path / "out"), max_shard_bytes=50_000
  )
  original, exported = read_all(src), read_all(str(tmp_path / "out"))
  assert sorted(original) == sorted(exported)
  for name, tensor in original.items():
    assert tensor.dtype == exported[name].dtype == jnp.bfloat16
    assert np.array_equal(
        tensor.view(np.uint16), exported[name].view(np.uint16)
    ), name
  # bf16 on disk, float32 in memory: an exact upcast.
  _, params32 = hf_checkpoint.load_hf_checkpoint(src)
  np.testing.assert_array_equal(
      np.asarray(params32["embed"]["embedding"]),
      np.asarray(params["embed"]["embedding"]).astype(np.float32),
  )


def rewrite_single_file(src_path, dst_path, edit):
  tensors = edit(read_all(src_path))
  os.makedirs(dst_path, exist_ok=True)
  safetensors.numpy.save_file(
      tensors,
      os.path.join(dst_path, "model.safetensors"),
      metadata={"format": "pt"},
  )
  with open(os.path.join(src_path, "config.json")) as f:
    hf_cfg = json.load(f)
  return hf_cfg


def write_config(path, hf_cfg):
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(hf_cfg, f)


@pytest.fixture(scope="module")
def llama_path(tmp_path_factory):
  return save_hf(make_hf_model("llama"), str(tmp_path_factory.mktemp("l")))


def test_missing_tensor_error(llama_path, tmp_path):
  name = "model.layers.1.mlp.up_proj.weight"
  hf_cfg = rewrite_single_file(
      llama_path,
      str(tmp_path),
      lambda t: {k: v for k, v in t.items() if k != name},
  )
  write_config(str(tmp_path), hf_cfg)
  with pytest.raises(ValueError, match=rf"missing tensors \['{name}'\]"):
    hf_checkpoint.load_hf_checkpoint(str(tmp_path))


def test_unexpected_tensor_error(llama_path, tmp_path):
  name = "model.layers.0.mlp.extra.weight"
  hf_cfg = rewrite_single_file(
      llama_path,
      str(tmp_path),
      lambda t: {**t, name: np.zeros((2,), np.float32)},
  )
  write_config(str(tmp_path), hf_cfg)
  with pytest.raises(ValueError, match=rf"unexpected tensors \['{name}'\]"):
    hf_checkpoint.load_hf_checkpoint(str(tmp_path))


def test_shape_mismatch_error(llama_path, tmp_path):
  hf_cfg = rewrite_single_file(llama_path, str(tmp_path), lambda t: t)
  hf_cfg["intermediate_size"] = 96
  write_config(str(tmp_path), hf_cfg)
  with pytest.raises(
      ValueError,
      match=(
          r"tensor model\.layers\.0\.mlp\.gate_proj\.weight has shape "
          r"\(128, 64\), expected \(96, 64\)"
      ),
  ):
    hf_checkpoint.load_hf_checkpoint(str(tmp_path))


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {
                "rope_parameters": {
                    "rope_type": "llama3",
                    "rope_theta": 1e4,
                    "factor": 8.0,
                }
            },
            "rope scaling 'llama3'",
        ),
        (
            {"rope_scaling": {"type": "linear", "factor": 2.0}},
            "rope scaling 'linear'",
        ),
        ({"model_type": "mistral"}, "unsupported model_type 'mistral'"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
        ({"attention_bias": True}, "attention_bias=True"),
    ],
)
def test_unsupported_configs_rejected(llama_path, change, message):
  with open(os.path.join(llama_path, "config.json")) as f:
    hf_cfg = json.load(f)
  hf_cfg.update(change)
  with pytest.raises(ValueError, match=message):
    hf_checkpoint.hf_config_to_model_config(hf_cfg)


def test_old_style_config_keys():
  hf_cfg = {
      "model_type": "llama",
      "vocab_size": 10,
      "hidden_size": 8,
      "num_hidden_layers": 1,
      "num_attention_heads": 2,
      "intermediate_size": 16,
      "rope_theta": 500000.0,
      "rope_scaling": None,
  }
  cfg = hf_checkpoint.hf_config_to_model_config(hf_cfg, dtype="bfloat16")
  assert cfg.rope_theta == 500000.0
  assert cfg.num_kv_heads == 2 and cfg.head_dim == 4
  assert cfg.max_seq_len == 2048 and not cfg.tie_embeddings
  assert cfg.dtype == "bfloat16"


def test_specs_cover_the_model_exactly():
  for kw in (
      {},
      {"qkv_bias": True},
      {"qk_norm": True},
      {"tie_embeddings": False},
  ):
    cfg = ModelConfig(
        vocab_size=32,
        d_model=16,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=4,
        mlp_dim=32,
        max_seq_len=16,
        **kw,
    )
    weights.check_against_model(weights.tensor_specs(cfg), cfg)


def test_sharded_load(llama_path):
  mesh = jax.make_mesh(
      (2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3
  )
  cfg, params = hf_checkpoint.load_hf_checkpoint(llama_path)
  cfg_s, sharded = hf_checkpoint.load_hf_checkpoint(
      llama_path, mesh=mesh, rules=RULES
  )
  assert cfg_s == cfg
  q = sharded["layers_0"]["attn"]["q"]
  assert q.sharding == NamedSharding(mesh, P("fsdp", "tensor", None))
  # Each device holds only its slice: [64, 4, 16] / (fsdp=2, tensor=2).
  assert {s.data.shape for s in q.addressable_shards} == {(32, 2, 16)}
  assert sharded["embed"]["embedding"].sharding.spec == P("tensor", "fsdp")
  assert sharded["layers_1"]["mlp"]["down"].sharding.spec == P("tensor", "fsdp")
  assert sharded["final_norm"]["scale"].sharding.spec == P(None)
  expected = weights.param_shardings(cfg, mesh, RULES)
  for (key, leaf), want in zip(
      jax.tree_util.tree_leaves_with_path(sharded),
      jax.tree_util.tree_leaves(expected),
  ):
    assert leaf.sharding == want, key
    np.testing.assert_array_equal(
        np.asarray(leaf), np.asarray(_get(params, key))
    )
  # Explicit pytree (as a function of the config) gives the same placement.
  _, explicit = hf_checkpoint.load_hf_checkpoint(
      llama_path, shardings=lambda c: weights.param_shardings(c, mesh, RULES)
  )
  jax.tree.map(lambda a, b: assert_same_sharding(a, b), explicit, sharded)
  # And the sharded model computes the same logits.
  tokens, valid = padded_batch([8, 5], 8)
  fwd = jax.jit(
      lambda p, t, v: transformer.Transformer(cfg).apply(
          {"params": p}, t, valid_BL=v
      )[0]
  )
  # Sharding changes float32 summation order (~1e-5 on logits ~3).
  np.testing.assert_allclose(
      np.asarray(fwd(sharded, tokens, valid)),
      np.asarray(fwd(params, tokens, valid)),
      rtol=1e-4,
      atol=1e-4,
  )


def assert_same_sharding(a, b):
  assert a.sharding == b.sharding


def _get(tree, key_path):
  for k in key_path:
    tree = tree[k.key]
  return tree


def test_load_pretrained_dispatch(llama_path):
  out = pretrained.load_pretrained("hf", llama_path, param_dtype="bfloat16")
  assert out.tokenizer is None
  assert out.config.param_dtype == "bfloat16"
  assert out.params["embed"]["embedding"].dtype == jnp.bfloat16
  with pytest.raises(ValueError, match="unknown pretrained kind 'onnx'"):
    pretrained.load_pretrained("onnx", llama_path)
