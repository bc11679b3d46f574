"""GGUF import: dequantisation, q/k un-permutation, metadata, end to end."""

import struct

import gguf
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from rlcs_jax import bpe_tokenizer
from rlcs_jax.model import gguf_import
from rlcs_jax.model import pretrained
from rlcs_jax.model import transformer

Q = gguf.GGMLQuantizationType

# ----------------------------------------------------------------------------
# Dequantisation against blocks built by hand from the ggml block layouts.


def f16(x):
  return struct.pack("<e", x)


def test_q8_0_hand_built():
  # block_q8_0: fp16 d, then 32 int8; x = d * q.
  q1 = np.arange(-16, 16, dtype=np.int8)
  q2 = np.arange(31, -33, -2, dtype=np.int8)
  raw = f16(0.5) + q1.tobytes() + f16(-2.0) + q2.tobytes()
  data = np.frombuffer(raw, np.uint8).reshape(1, 68)
  out = gguf_import.dequantize(data, Q.Q8_0)
  assert out.shape == (1, 64) and out.dtype == np.float32
  np.testing.assert_array_equal(out[0, :32], 0.5 * q1)
  np.testing.assert_array_equal(out[0, 32:], -2.0 * q2)


def nibbles(values):
  """Packs 32 values in [0, 16): byte j = v[j] | v[j + 16] << 4."""
  values = np.asarray(values, np.uint8)
  return (values[:16] | (values[16:] << 4)).astype(np.uint8).tobytes()


def test_q4_0_hand_built():
  # block_q4_0: fp16 d, 16 bytes; element j < 16 is the low nibble of byte
  # j, element j + 16 the high nibble; x = d * (q - 8).
  q = np.array([(3 * j + 5) % 16 for j in range(32)])
  raw = f16(0.25) + nibbles(q) + f16(3.0) + nibbles(q[::-1])
  data = np.frombuffer(raw, np.uint8).reshape(2, 18)
  out = gguf_import.dequantize(data, Q.Q4_0)
  assert out.shape == (2, 32)
  np.testing.assert_array_equal(out[0], 0.25 * (q - 8))
  np.testing.assert_array_equal(out[1], 3.0 * (q[::-1] - 8))


def test_q4_1_hand_built():
  # block_q4_1: fp16 d, fp16 m, 16 bytes; x = d * q + m.
  q = np.array([(7 * j + 2) % 16 for j in range(32)])
  raw = f16(0.125) + f16(-1.0) + nibbles(q)
  data = np.frombuffer(raw, np.uint8).reshape(1, 20)
  out = gguf_import.dequantize(data, Q.Q4_1)
  np.testing.assert_array_equal(out[0], 0.125 * q - 1.0)


def test_float_types():
  x = np.linspace(-3, 3, 64, dtype=np.float32).reshape(2, 32)
  np.testing.assert_array_equal(gguf_import.dequantize(x, Q.F32), x)
  np.testing.assert_array_equal(
      gguf_import.dequantize(x.astype(np.float16), Q.F16),
      x.astype(np.float16).astype(np.float32),
  )
  bf16 = x.astype(ml_dtypes.bfloat16)
  raw = bf16.view(np.uint8)  # GGUFReader hands BF16 over as bytes.
  np.testing.assert_array_equal(
      gguf_import.dequantize(raw, Q.BF16), bf16.astype(np.float32)
  )


def test_unsupported_type_rejected():
  with pytest.raises(ValueError, match="Q5_0 is not supported"):
    gguf_import.dequantize(np.zeros((1, 22), np.uint8), Q.Q5_0)


# ----------------------------------------------------------------------------
# q/k permutation.


def convert_permute(weights_, n_head, n_head_kv):
  """convert_hf_to_gguf.py's LlamaModel.permute, verbatim in numpy."""
  if n_head_kv is not None and n_head != n_head_kv:
    n_head = n_head_kv
  return (
      weights_.reshape(
          n_head, 2, weights_.shape[0] // n_head // 2, *weights_.shape[1:]
      )
      .swapaxes(1, 2)
      .reshape(weights_.shape)
  )


def test_unpermute_inverts_llama_cpp_permutation():
  w = np.arange(3 * 8 * 5, dtype=np.float32).reshape(24, 5)
  p = convert_permute(w, 6, 3)
  assert not np.array_equal(p, w)
  np.testing.assert_array_equal(gguf_import.unpermute_qk(p, 3), w)
  np.testing.assert_array_equal(gguf_import.permute_qk(w, 3), p)
  # Row order within one head (H = 8): pairs (i, i + 4) become adjacent.
  np.testing.assert_array_equal(p[:8, 0], w[[0, 4, 1, 5, 2, 6, 3, 7], 0])


# ----------------------------------------------------------------------------
# End to end: a random HF Llama written to GGUF as llama.cpp would.

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

_GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] "
    "!= 'system' %}{{ '<|im_start|>system\nYou are a test model<|im_end|>\n' "
    "}}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_vocab():
  """Specials, the 256 byte tokens and two merges (vocab 261)."""
  byte_tokens = list(bpe_tokenizer.bytes_to_unicode().values())
  tokens = SPECIALS + byte_tokens + ["Ġt", "Ġth"]
  types = [3] * 3 + [1] * (len(tokens) - 3)
  return tokens, types, ["Ġ t", "Ġt h"]


def gguf_name(hf):
  if hf in _GGUF_NAMES:
    return _GGUF_NAMES[hf]
  _, _, i, rest = hf.split(".", 3)
  return f"blk.{i}.{_LAYER[rest]}"


def make_llama(tied, vocab, seed=0):
  hf_cfg = transformers.LlamaConfig(
      vocab_size=vocab,
      hidden_size=64,
      num_hidden_layers=2,
      num_attention_heads=4,
      num_key_value_heads=2,
      head_dim=16,
      intermediate_size=128,
      max_position_embeddings=128,
      rms_norm_eps=1e-5,
      tie_word_embeddings=tied,
      attn_implementation="eager",
      rope_parameters={"rope_type": "default", "rope_theta": 5000.0},
  )
  torch.manual_seed(seed)
  model = transformers.LlamaForCausalLM(hf_cfg).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("norm.weight"):
        p.uniform_(0.5, 1.5)
      else:
        p.normal_(0.0, 0.5 if "embed" in name else 0.2)
  return model


def write_gguf(path, model, qtype, drop=()):
  """Writes `model` like convert_hf_to_gguf.py; returns the quantised HF
  state dict (what an exact reader must reproduce)."""
  c = model.config
  n_head, n_kv = c.num_attention_heads, c.num_key_value_heads
  writer = gguf.GGUFWriter(path, "llama")
  writer.add_block_count(c.num_hidden_layers)
  writer.add_context_length(c.max_position_embeddings)
  writer.add_embedding_length(c.hidden_size)
  writer.add_feed_forward_length(c.intermediate_size)
  writer.add_head_count(n_head)
  writer.add_head_count_kv(n_kv)
  writer.add_rope_freq_base(c.rope_parameters["rope_theta"])
  writer.add_layer_norm_rms_eps(c.rms_norm_eps)
  writer.add_rope_dimension_count(c.head_dim)
  tokens, types, merges = tiny_vocab()
  writer.add_tokenizer_model("gpt2")
  writer.add_tokenizer_pre("smollm")
  writer.add_token_list(tokens)
  writer.add_token_types(types)
  writer.add_token_merges(merges)
  writer.add_bos_token_id(1)
  writer.add_eos_token_id(2)
  writer.add_unk_token_id(0)
  writer.add_pad_token_id(2)
  writer.add_add_bos_token(False)
  writer.add_chat_template(TEMPLATE)
  expected = {}
  for name, tensor in model.state_dict().items():
    if name in drop or (name == "lm_head.weight" and c.tie_word_embeddings):
      continue
    data = tensor.float().numpy()
    if name.endswith("q_proj.weight"):
      data = convert_permute(data, n_head, n_head)
    elif name.endswith("k_proj.weight"):
      data = convert_permute(data, n_head, n_kv)
    if data.ndim == 1 or qtype == Q.F32:
      writer.add_tensor(gguf_name(name), data.astype(np.float32))
      stored = data
    elif qtype == Q.F16:
      writer.add_tensor(gguf_name(name), data.astype(np.float16))
      stored = data.astype(np.float16).astype(np.float32)
    else:
      raw = gguf.quants.quantize(data, qtype)
      writer.add_tensor(gguf_name(name), raw, raw_dtype=qtype)
      stored = gguf.quants.dequantize(raw, qtype)
    # Quantisation works row by row and the permutation only moves rows, so
    # the expected HF weight is quantise(w) without any permutation.
    if name.endswith("q_proj.weight") or name.endswith("k_proj.weight"):
      h = c.head_dim
      heads = stored.shape[0] // h
      stored = (
          stored.reshape(heads, h // 2, 2, -1)
          .swapaxes(1, 2)
          .reshape(stored.shape)
      )
    expected[name] = torch.tensor(np.asarray(stored, np.float32))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return expected


def logits_of(model, tokens):
  with torch.no_grad():
    return (
        model(input_ids=torch.tensor(tokens, dtype=torch.long))
        .logits.float()
        .numpy()
    )


TOKENS = np.random.default_rng(0).integers(3, 261, (2, 10))


# Random 2-layer models amplify weight noise, so agreement with the float
# model is measured by correlation (4-bit is coarse); exactness is checked
# against HF running the dequantised weights.
@pytest.mark.parametrize(
    "qtype, tied, min_corr",
    [
        (Q.F32, False, None),
        (Q.F32, True, None),
        (Q.F16, False, 0.99999),
        (Q.BF16, True, 0.9999),
        (Q.Q8_0, False, 0.999),
        (Q.Q4_0, True, 0.8),
        (Q.Q4_1, False, 0.8),
    ],
)
def test_gguf_logits_match_transformers(tmp_path, qtype, tied, min_corr):
  model = make_llama(tied, vocab=261)
  path = str(tmp_path / "m.gguf")
  expected = write_gguf(path, model, qtype)
  cfg, params, tok = gguf_import.load_gguf(path)
  assert cfg.tie_embeddings == tied and cfg.vocab_size == 261
  assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (4, 2, 16)
  assert cfg.rope_theta == 5000.0 and cfg.max_seq_len == 128
  ours = np.asarray(
      transformer.Transformer(cfg).apply(
          {"params": params}, jnp.asarray(TOKENS)
      )[0]
  )
  # Exact up to float32 noise against HF running the dequantised weights.
  quantised = make_llama(tied, vocab=261)
  missing, unexpected = quantised.load_state_dict(expected, strict=False)
  assert not unexpected and set(missing) <= {"lm_head.weight"}
  diff = np.abs(ours - logits_of(quantised, TOKENS)).max()
  print(f"{qtype.name}: max |logit diff| vs dequantised HF = {diff:.2e}")
  assert diff < 1e-4
  float_logits = logits_of(model, TOKENS)
  if min_corr is None:  # F32 is the float model itself.
    assert np.abs(ours - float_logits).max() < 1e-4
  else:
    corr = np.corrcoef(ours.ravel(), float_logits.ravel())[0, 1]
    print(f"{qtype.name}: correlation with float HF logits = {corr:.6f}")
    assert corr > min_corr
  # The embedded tokenizer came along.
  assert tok.vocab_size == 261 and tok.stop_ids == (2, 0)
  assert tok.decode(tok.encode("the thin tin")) == "the thin tin"
  assert tok.encode(" th") == [260]


def test_wrong_unpermute_would_be_caught(tmp_path):
  """Guards the guard: without un-permuting, logits clearly differ."""
  model = make_llama(False, vocab=261)
  path = str(tmp_path / "m.gguf")
  write_gguf(path, model, Q.F32)
  cfg, params, _ = gguf_import.load_gguf(path)
  for i in range(cfg.num_layers):
    attn = params[f"layers_{i}"]["attn"]
    for name, heads in (("q", cfg.num_heads), ("k", cfg.num_kv_heads)):
      w = np.asarray(attn[name]).reshape(cfg.d_model, -1).T
      attn[name] = jnp.asarray(
          gguf_import.permute_qk(w, heads).T.reshape(attn[name].shape)
      )
  ours = np.asarray(
      transformer.Transformer(cfg).apply(
          {"params": params}, jnp.asarray(TOKENS)
      )[0]
  )
  assert np.abs(ours - logits_of(model, TOKENS)).max() > 1e-2


def test_missing_tensor_error(tmp_path):
  model = make_llama(False, vocab=261)
  path = str(tmp_path / "m.gguf")
  write_gguf(path, model, Q.F32, drop=("model.layers.1.mlp.up_proj.weight",))
  with pytest.raises(
      ValueError,
      match=r"missing tensors " r"\['model.layers.1.mlp.up_proj.weight'\]",
  ):
    gguf_import.load_gguf(path)


def test_load_pretrained_gguf(tmp_path):
  model = make_llama(True, vocab=261)
  path = str(tmp_path / "m.gguf")
  write_gguf(path, model, Q.Q8_0)
  out = pretrained.load_pretrained("gguf", path, param_dtype="bfloat16")
  assert out.params["layers_0"]["attn"]["q"].dtype == jnp.bfloat16
  assert out.tokenizer.format_prompt("hi") == (
      "<|im_start|>system\nYou are a test model<|im_end|>\n"
      "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
  )


def test_metadata_mapping_errors():
  meta = {
      "general.architecture": "llama",
      "llama.block_count": 2,
      "llama.embedding_length": 64,
      "llama.attention.head_count": 4,
      "llama.feed_forward_length": 128,
      "llama.context_length": 32,
      "llama.attention.layer_norm_rms_epsilon": 1e-5,
  }
  cfg = gguf_import.gguf_to_model_config(meta, vocab_size=10, tied=True)
  assert (cfg.num_kv_heads, cfg.head_dim, cfg.rope_theta) == (4, 16, 1e4)
  with pytest.raises(ValueError, match="rope scaling 'yarn'"):
    gguf_import.gguf_to_model_config(
        {**meta, "llama.rope.scaling.type": "yarn"}, vocab_size=10, tied=True
    )
  with pytest.raises(ValueError, match="architecture 'qwen2'"):
    gguf_import.gguf_to_model_config(
        {**meta, "general.architecture": "qwen2"}, vocab_size=10, tied=True
    )
  with pytest.raises(ValueError, match="partial RoPE"):
    gguf_import.gguf_to_model_config(
        {**meta, "llama.rope.dimension_count": 8}, vocab_size=10, tied=True
    )
  bad = dict(meta)
  del bad["llama.block_count"]
  with pytest.raises(ValueError, match="llama.block_count is missing"):
    gguf_import.gguf_to_model_config(bad, vocab_size=10, tied=True)


def test_hf_names():
  assert gguf_import.hf_name("blk.12.attn_q.weight") == (
      "model.layers.12.self_attn.q_proj.weight"
  )
  assert gguf_import.hf_name("output.weight") == "lm_head.weight"
  assert gguf_import.hf_name("rope_freqs.weight") is None
