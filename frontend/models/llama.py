"""LLaMA-architecture language models (SmolLM2, TinyLlama, Llama 3, ...) from GGUF files.

  model = load_llama("SmolLM2-135M-Instruct.Q4_1.gguf", max_context=512)
  logits = model.prefill([504, 3575, 282, 4649, 314])   # (vocab,) float32 numpy: next-token logits of the prompt
  logits = model.decode(token, pos=5)                     # one TinyJit replay per token once captured

The network (Touvron et al. 2023, "LLaMA"; llama.cpp's llm_build_llama): token embedding, then per block
  h = x + Wo attention(rope(Wq rmsnorm(x)), rope(Wk rmsnorm(x)), Wv rmsnorm(x))
  x = h + Wdown (silu(Wgate rmsnorm(h)) * Wup rmsnorm(h))                      SwiGLU feed-forward
then rmsnorm and the output projection (`output.weight`, or `token_embd.weight` when the file has none: tied
embeddings). Attention is grouped-query: query head j reads key/value head j // (n_heads / n_kv_heads), as
transformers' repeat_kv and llama.cpp's ggml_mul_mat broadcast do.

RoPE convention. HF checkpoints rotate the pairs (x[i], x[i + d/2]) of each head (transformers' rotate_half).
llama.cpp's convert_hf_to_gguf.py permutes the rows of attn_q/attn_k per head (LlamaModel.permute: reshape
(n_head, 2, d/2, ...), swap axes 1 and 2) so that the same rotation acts on adjacent pairs (x[2i], x[2i+1]), which is
what llama.cpp's ggml_rope computes for llama (LLAMA_ROPE_TYPE_NORM). transformers, loading a GGUF, undoes that
permutation (modeling_gguf_pytorch_utils.py, _reverse_permute_weights) to use rotate_half again. This module takes the
file's weights as they are and rotates adjacent pairs, the GGUF convention: no permutation at load time, and the same
numbers llama.cpp computes. Both conventions give identical attention, since q.k is unchanged when one permutation
of the head dimension is applied to q and k alike; tests/test_llama.py checks this against a reference written in
the HF convention. Angle of pair i at position p: p * rope_base ** (-2i / head_dim).

Decoding runs as one TinyJit replay per token. Its two inputs are Variables, `token` and `pos`: the step's kernels
read them as scalar parameters, and each replay patches the new values into the captured launches, so a token copies
nothing to the device. The token's embedding is a view of the table that starts at row `token`; the new key/value row
is assigned through a view of the cache that starts at `pos`; cos/sin are the tables' rows at `pos`. Shapes are not
symbolic, so the KV cache holds `max_context` rows per layer and attention runs over a fixed window of it, with the
rows past `pos` masked to -inf. The step is captured per attention window (a power of two >= 128, or max_context) so
that a short conversation does not pay for max_context rows in every step; the window that covers `pos` is picked per
token, and each window's JIT compiles and captures once.

The prompt's embedding lookup happens on the host (one table row per prompt token, copied in as one tensor).

Weights are dequantized once at load (to `dtype`, float32 by default), which costs memory (SmolLM2-135M:
~540 MB of float32 for a 98 MB file) and buys speed on the CPU backend: there a 1536x576 matrix-vector product that
dequantizes Q4_1 inside its kernel measured ~1.8 ms against ~0.55 ms reading float32 (the uint8 unpacking keeps the
kernel off the vector path), and a whole SmolLM2 decode step ~62 ms against ~40 ms. float16 weights halve the memory
but the casts run scalar too (~0.6 ms for the same product).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from compiler.dtypes import dtypes, to_dtype
from compiler.ir import BoundVariable, Variable
from frontend.device import Device
from frontend.jit import TinyJit
from frontend.nn.gguf import GGUFError, gguf_architecture, gguf_load
from frontend.tensor import Tensor

DECODE_WINDOWS = (128, 256, 512, 1024, 2048, 4096, 8192)  # attention windows the decode step is captured for
PREFILL_ALIGN = 16  # prompts are padded to a multiple of this many tokens, so prompt lengths share compiled kernels


class ContextError(ValueError):
  """Tokens that do not fit the model's context (max_context rows of KV cache), or an invalid max_context."""


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
  """Hyperparameters of a LLaMA-architecture model, as the GGUF metadata states them (`llama.*` keys)."""
  n_layers: int  # llama.block_count
  dim: int  # llama.embedding_length
  n_heads: int  # llama.attention.head_count
  n_kv_heads: int  # llama.attention.head_count_kv (n_heads when absent)
  hidden_dim: int  # llama.feed_forward_length
  vocab_size: int  # rows of token_embd.weight
  context_length: int  # llama.context_length: the longest context the model was trained for
  rope_base: float = 10000.0  # llama.rope.freq_base
  norm_eps: float = 1e-5  # llama.attention.layer_norm_rms_epsilon

  @property
  def head_dim(self) -> int:
    return self.dim // self.n_heads

  @staticmethod
  def from_metadata(metadata: dict[str, object], vocab_size: int, source: str = "model") -> LlamaConfig:
    """The config of a `llama` GGUF file.

    Raises:
      GGUFError: a required key is missing or not a positive number, the heads do not divide the embedding, or the
        file asks for a RoPE variant this module does not implement (the message names `source`).
    """
    def number(key: str, default=None, kind=int):
      value = metadata.get(key, default)
      if value is None:
        raise GGUFError(f"{source}: the GGUF metadata lacks {key!r}, which a llama model needs; the file is incomplete")
      if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise GGUFError(f"{source}: GGUF metadata {key} = {value!r}, expected a positive number")
      return kind(value)

    config = LlamaConfig(
      n_layers=number("llama.block_count"), dim=number("llama.embedding_length"),
      n_heads=number("llama.attention.head_count"),
      n_kv_heads=number("llama.attention.head_count_kv", metadata.get("llama.attention.head_count")),
      hidden_dim=number("llama.feed_forward_length"), vocab_size=vocab_size,
      context_length=number("llama.context_length"),
      rope_base=number("llama.rope.freq_base", 10000.0, float),
      norm_eps=number("llama.attention.layer_norm_rms_epsilon", 1e-5, float))
    config._check(metadata, source)
    return config

  def _check(self, metadata: dict[str, object], source: str) -> None:
    if self.dim % self.n_heads or self.n_heads % self.n_kv_heads or self.head_dim % 2:
      raise GGUFError(f"{source}: {self.n_heads} heads and {self.n_kv_heads} key/value heads do not split an "
                      f"embedding of {self.dim} into even-sized heads shared by whole groups")
    rope_dims = metadata.get("llama.rope.dimension_count", self.head_dim)
    if rope_dims != self.head_dim:
      raise GGUFError(f"{source}: RoPE over {rope_dims} of {self.head_dim} head dimensions (partial rotary) is not "
                      "implemented; only full-head RoPE llama models run here")
    scaling = metadata.get("llama.rope.scaling.type", "none")
    if scaling != "none":
      raise GGUFError(f"{source}: RoPE scaling {scaling!r} is not implemented; use a model without "
                      "llama.rope.scaling.type (SmolLM2, TinyLlama, Llama 2)")


# ---------------------------------------------------------------------------------------------------------------------
# the pieces, as Tensor functions (tests/test_llama.py checks each against numpy)


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
  """x / sqrt(mean(x^2) + eps) * weight over the last axis (Zhang & Sennrich 2019; LlamaRMSNorm)."""
  return x.rms_norm(-1, eps) * weight


def rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
  """Rotates the adjacent pairs (x[2i], x[2i+1]) of each head by the angles whose cos/sin are given (the GGUF
  convention, see the module docstring).

  Args:
    x: (T, heads, head_dim).
    cos, sin: (T, head_dim // 2): per row of x, pair i's cos and sin.
  """
  n, heads, head_dim = x.shape
  pairs = x.reshape(n, heads, head_dim // 2, 2)
  even = pairs.shrink(((0, n), (0, heads), (0, head_dim // 2), (0, 1))).reshape(n, heads, head_dim // 2)
  odd = pairs.shrink(((0, n), (0, heads), (0, head_dim // 2), (1, 2))).reshape(n, heads, head_dim // 2)
  c, s = cos.reshape(n, 1, head_dim // 2), sin.reshape(n, 1, head_dim // 2)
  rotated = Tensor.stack([even * c - odd * s, even * s + odd * c], dim=-1)
  return rotated.reshape(n, heads, head_dim)


def attention(q: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> Tensor:
  """Grouped-query attention of T queries over L cached positions.

  Args:
    q: (T, n_heads, head_dim), already rotated.
    keys, values: (n_kv_heads, L, head_dim); query head j reads key/value head j // (n_heads // n_kv_heads).
    mask: bool (T, L), True where query t may attend to position l.

  Returns:
    (T, n_heads * head_dim), heads in order.
  """
  n, n_heads, head_dim = q.shape
  n_kv, length, _ = keys.shape
  group = n_heads // n_kv
  grouped = q.reshape(n, n_kv, group, head_dim).permute(1, 2, 0, 3)  # (n_kv, group, T, head_dim)
  scores = grouped.matmul(keys.reshape(n_kv, 1, length, head_dim).transpose(-1, -2)) * (1 / math.sqrt(head_dim))
  probs = mask.reshape(1, 1, n, length).where(scores, float("-inf")).softmax(-1)
  out = probs.matmul(values.reshape(n_kv, 1, length, head_dim))  # (n_kv, group, T, head_dim)
  return out.permute(2, 0, 1, 3).reshape(n, n_heads * head_dim)


def swiglu(gate: Tensor, up: Tensor) -> Tensor:
  """silu(gate) * up: the SwiGLU activation (Shazeer 2020, "GLU Variants Improve Transformer") between a block's
  gate/up projections and its down projection."""
  return gate.silu() * up


def rope_tables(config: LlamaConfig, length: int, freq_factors: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
  """cos and sin of p * rope_base ** (-2i / head_dim) for positions p < length, pairs i: two (length, head_dim // 2)
  float32 arrays, computed in float64. freq_factors (llama.cpp's rope_freqs.weight, Llama 3.1) divide the
  frequencies."""
  half = config.head_dim // 2
  inv_freq = config.rope_base ** (-np.arange(half, dtype=np.float64) * 2 / config.head_dim)
  if freq_factors is not None:
    inv_freq = inv_freq / freq_factors.astype(np.float64)
  angles = np.arange(length, dtype=np.float64).reshape(-1, 1) * inv_freq
  return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# weights


def _expected_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
  """GGUF weight name -> shape in numpy order ((out, in) for a matrix)."""
  kv_dim = config.n_kv_heads * config.head_dim
  per_block = {"attn_norm": (config.dim,), "attn_q": (config.dim, config.dim), "attn_k": (kv_dim, config.dim),
               "attn_v": (kv_dim, config.dim), "attn_output": (config.dim, config.dim), "ffn_norm": (config.dim,),
               "ffn_gate": (config.hidden_dim, config.dim), "ffn_up": (config.hidden_dim, config.dim),
               "ffn_down": (config.dim, config.hidden_dim)}
  shapes = {"token_embd.weight": (config.vocab_size, config.dim), "output_norm.weight": (config.dim,)}
  for i in range(config.n_layers):
    shapes.update({f"blk.{i}.{name}.weight": shape for name, shape in per_block.items()})
  return shapes


def _check_weights(weights: dict[str, Tensor], config: LlamaConfig, source: str) -> None:
  for name, shape in _expected_shapes(config).items():
    if name not in weights:
      raise GGUFError(f"{source}: tensor {name!r} is missing; a llama model with {config.n_layers} blocks needs it")
    if weights[name].shape != shape:
      raise GGUFError(f"{source}: tensor {name!r} has shape {weights[name].shape}, expected {shape} from the metadata")
  output = weights.get("output.weight")
  if output is not None and output.shape != (config.vocab_size, config.dim):
    raise GGUFError(f"{source}: tensor 'output.weight' has shape {output.shape}, expected "
                    f"{(config.vocab_size, config.dim)}")


def _realize(t: Tensor, dtype) -> Tensor:
  """The weight computed once into its own buffer (dequantized, cast), so later kernels read plain values."""
  out = t.cast(dtype).contiguous().realize()
  out.requires_grad = False
  return out


@dataclasses.dataclass
class _Block:
  """One block's weights, (out, in) matrices. Projections that read the same input are stacked into one matrix
  (q, k, v; gate, up): one matrix-vector kernel instead of three or two, each reading a longer weight."""
  attn_norm: Tensor
  attn_qkv: Tensor  # rows: q (n_heads * head_dim), k, v (n_kv_heads * head_dim each)
  attn_output: Tensor
  ffn_norm: Tensor
  ffn_gate_up: Tensor  # rows: gate (hidden_dim), up (hidden_dim)
  ffn_down: Tensor

  @staticmethod
  def load(weights: dict[str, Tensor], i: int, dtype) -> _Block:
    def w(name: str) -> Tensor:
      return weights[f"blk.{i}.{name}.weight"]
    return _Block(attn_norm=_realize(w("attn_norm"), dtypes.float32),
                  attn_qkv=_realize(w("attn_q").cat(w("attn_k"), w("attn_v")), dtype),
                  attn_output=_realize(w("attn_output"), dtype), ffn_norm=_realize(w("ffn_norm"), dtypes.float32),
                  ffn_gate_up=_realize(w("ffn_gate").cat(w("ffn_up")), dtype), ffn_down=_realize(w("ffn_down"), dtype))


class Llama:
  """A LLaMA-architecture model with a KV cache of `max_context` rows, for one sequence at a time.

  Args:
    config: the hyperparameters.
    weights: {GGUF tensor name: Tensor} (numpy shape order), as gguf_load returns them; `output.weight` is optional
      (tied embeddings), `rope_freqs.weight` is used when present.
    max_context: rows of the KV cache, the longest prompt + generation; default min(context_length, 2048).
    device: where the model runs (Device.DEFAULT when None).
    dtype: the float type the weights are dequantized to once (float32 default; float16 halves their memory).
    source: names the model in error messages.

  Raises:
    GGUFError: a weight is missing or has the wrong shape.
    ContextError: max_context is not in 1..context_length.
  """

  def __init__(self, config: LlamaConfig, weights: dict[str, Tensor], max_context: int | None = None,
               device: str | None = None, dtype=dtypes.float32, source: str = "model"):
    self.config = config
    self.device = Device.canonicalize(device)
    self.max_context = min(config.context_length, 2048) if max_context is None else int(max_context)
    if not 1 <= self.max_context <= config.context_length:
      raise ContextError(f"max_context {self.max_context} must be within 1..{config.context_length} (the model's "
                         "llama.context_length)")
    _check_weights(weights, config, source)
    dtype = to_dtype(dtype)
    self.blocks = [_Block.load(weights, i, dtype) for i in range(config.n_layers)]
    self.output_norm = _realize(weights["output_norm.weight"], dtypes.float32)
    embedding = _realize(weights["token_embd.weight"], dtypes.float32)
    self.embedding = embedding  # the decode step reads its token's row in place (a view at the token Variable)
    self.embedding_rows = embedding.numpy()  # host copy for the prompt's row lookup (see the module docstring)
    self.output = _realize(weights.get("output.weight", embedding), dtype)  # tied: the embedding's own buffer
    self._init_cache(weights.get("rope_freqs.weight"))
    self._decoders: dict[int, TinyJit] = {}
    self._prefills: dict[int, TinyJit] = {}  # padded prompt length -> the jitted prompt step at position 0

  def _init_cache(self, freq_factors: Tensor | None) -> None:
    config, length = self.config, self.max_context
    # per block one buffer for keys (index 0) and values (index 1): one write kernel per block and token
    zeros = np.zeros((2, config.n_kv_heads, length, config.head_dim), np.float32)
    self.kv_cache = [Tensor(zeros, device=self.device) for _ in range(config.n_layers)]
    cos, sin = rope_tables(config, length, None if freq_factors is None else freq_factors.numpy())
    self.rope_cos, self.rope_sin = Tensor(cos, device=self.device), Tensor(sin, device=self.device)
    self.positions = Tensor(np.arange(length, dtype=np.int32), device=self.device)
    self.position = Variable("pos", 0, length - 1)  # the decode step's token position
    self.token = Variable("token", 0, self.config.vocab_size - 1)  # the decode step's input token

  # ---- the network --------------------------------------------------------------------------------------------
  def _layers(self, x: Tensor, cos: Tensor, sin: Tensor, write_kv, length: int, mask: Tensor) -> Tensor:
    """The blocks over hidden states x (T, dim) at positions whose RoPE cos/sin are given; write_kv(layer, k, v)
    stores the new keys/values (n_kv_heads, T, head_dim) in the cache, then attention reads cache rows [0, length)
    under mask (T, length). Returns the final-normed hidden states (T, dim)."""
    config = self.config
    n = x.shape[0]
    q_dim, kv_dim = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    for i, block in enumerate(self.blocks):
      qkv = rms_norm(x, block.attn_norm, config.norm_eps).matmul(block.attn_qkv.T)
      q = qkv.shrink(((0, n), (0, q_dim))).reshape(n, config.n_heads, config.head_dim)
      k = qkv.shrink(((0, n), (q_dim, q_dim + kv_dim))).reshape(n, config.n_kv_heads, config.head_dim)
      v = qkv.shrink(((0, n), (q_dim + kv_dim, q_dim + 2 * kv_dim))).reshape(n, config.n_kv_heads, config.head_dim)
      q, k = rope(q, cos, sin), rope(k, cos, sin)
      write_kv(i, k.permute(1, 0, 2), v.permute(1, 0, 2))
      keys, values = (self._cached(i, j, length) for j in (0, 1))
      # contiguous: the heads come back permuted (T, kv head, group, dim), and the output projection's kernel reads
      # that view 576 times per row; through the two-view load the lowering finds no vector axis (prefill's Wo ran
      # scalar, ~14 ms a block for 16 tokens), while one small copy makes it a plain row-major read (~1 ms)
      attended = attention(q, keys, values, mask).contiguous()
      x = x + attended.matmul(block.attn_output.T)
      gate_up = rms_norm(x, block.ffn_norm, config.norm_eps).matmul(block.ffn_gate_up.T)
      gate = gate_up.shrink(((0, n), (0, config.hidden_dim)))
      up = gate_up.shrink(((0, n), (config.hidden_dim, 2 * config.hidden_dim)))
      # realized per block: the residual stream's buffer, not a graph reaching back through every block, is what the
      # next block's kernels are scheduled against (the kernel is the down projection's either way)
      x = (x + swiglu(gate, up).matmul(block.ffn_down.T)).realize()
    return rms_norm(x, self.output_norm, config.norm_eps)

  def _cached(self, layer: int, kind: int, length: int) -> Tensor:
    """Cached keys (kind 0) or values (kind 1) of rows [0, length): (n_kv_heads, length, head_dim)."""
    _, n_kv, _, head_dim = self.kv_cache[layer].shape
    view = self.kv_cache[layer].shrink(((kind, kind + 1), (0, n_kv), (0, length), (0, head_dim)))
    return view.reshape(n_kv, length, head_dim)

  def _logits(self, hidden: Tensor) -> Tensor:
    return hidden.matmul(self.output.T).float()

  def _embed(self, tokens: list[int]) -> Tensor:
    ids = np.asarray(tokens, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
      bad = int(ids[(ids < 0) | (ids >= self.config.vocab_size)][0])
      raise ValueError(f"token id {bad} is outside the vocabulary of {self.config.vocab_size}")
    return Tensor(self.embedding_rows[ids], device=self.device)

  # ---- prompt -------------------------------------------------------------------------------------------------
  def forward(self, tokens: list[int], start: int = 0, all_logits: bool = False) -> np.ndarray:
    """Runs tokens at positions start, start + 1, ... (their keys and values go into the cache) and returns the
    logits: of the last token (vocab,), or of every token (T, vocab) with all_logits. The prompt is padded to a
    multiple of PREFILL_ALIGN tokens (the padding's cache rows are overwritten by later tokens before anything
    attends to them), so prompts of similar length share compiled kernels. At start 0 (a fresh prompt) the step is a
    TinyJit per padded length, replayed from the third prompt of that length on (a one-hot input picks the last
    token's row, so the logits need no per-length shrink); other calls run eagerly.

    Raises:
      ValueError: no tokens or a token outside the vocabulary.
      ContextError: start + len(tokens) > max_context.
    """
    n = len(tokens)
    if n == 0:
      raise ValueError("forward needs at least one token")
    if start < 0 or start + n > self.max_context:
      raise ContextError(f"{n} tokens at position {start} do not fit the context of {self.max_context} "
                       f"(max_context): {start + n} > {self.max_context}")
    padded = min(-(-n // PREFILL_ALIGN) * PREFILL_ALIGN, self.max_context - start)
    x = self._embed(list(tokens) + [0] * (padded - n))
    if start == 0 and not all_logits:  # a fresh prompt: the jitted step for its padded length
      select = np.zeros((padded, 1), np.float32)
      select[n - 1] = 1
      if padded not in self._prefills:
        self._prefills[padded] = TinyJit(self._prompt_step)
      return self._prefills[padded](x, Tensor(select, device=self.device)).numpy()[0]
    hidden = self._prompt_hidden(x, start)
    keep = hidden.shrink(((0, n), (0, self.config.dim))) if all_logits else \
      hidden.shrink(((n - 1, n), (0, self.config.dim)))
    logits = self._logits(keep).numpy()
    return logits if all_logits else logits[0]

  def _prompt_hidden(self, x: Tensor, start: int) -> Tensor:
    """The final-normed hidden states (T, dim) of the embedded tokens x (T, dim) at positions start.., with their
    keys and values written to the cache."""
    padded = x.shape[0]
    rows = ((start, start + padded), (0, self.config.head_dim // 2))
    cos, sin = self.rope_cos.shrink(rows), self.rope_sin.shrink(rows)
    length = start + padded
    mask = np.arange(length).reshape(1, -1) <= np.arange(start, length).reshape(-1, 1)
    return self._layers(x, cos, sin, functools.partial(self._write_rows, start), length,
                        Tensor(mask, device=self.device))

  def _prompt_step(self, x: Tensor, select: Tensor) -> Tensor:
    """A prompt at position 0: x (T, dim) embedded tokens (padded), select (T, 1) one-hot on the last real token.
    Returns its logits (1, vocab). Traced by TinyJit once per padded length."""
    hidden = self._prompt_hidden(x, 0)
    return self._logits((hidden * select).sum(0, keepdim=True))

  prefill = forward

  def _write_rows(self, start: int, layer: int, k: Tensor, v: Tensor) -> None:
    """Stores keys/values (n_kv_heads, T, head_dim) at rows [start, start + T) (static positions)."""
    rows = ((0, 2), (0, k.shape[0]), (start, start + k.shape[1]), (0, k.shape[2]))
    self.kv_cache[layer].shrink(rows).assign(Tensor.stack([k, v])).realize()

  # ---- one token ----------------------------------------------------------------------------------------------
  def decode(self, token: int, pos: int) -> np.ndarray:
    """The logits (vocab,) after `token` at position `pos` (the cache must hold positions < pos). One TinyJit
    replay once the step for pos's attention window is captured (its first two calls run and capture it).

    Raises:
      ContextError: pos outside 0..max_context-1.
      ValueError: a token outside the vocabulary.
    """
    if not 0 <= pos < self.max_context:
      raise ContextError(f"position {pos} is outside the context of {self.max_context} (max_context)")
    if not 0 <= token < self.config.vocab_size:
      raise ValueError(f"token id {token} is outside the vocabulary of {self.config.vocab_size}")
    return self.decoder_for(pos)(self.token.bind(token), self.position.bind(pos)).numpy()[0]

  def window_for(self, pos: int) -> int:
    """The attention window (cache rows read) of the decode step at position pos."""
    return next((w for w in DECODE_WINDOWS if pos < w < self.max_context), self.max_context)

  def is_captured(self, pos: int) -> bool:
    """Whether decode(token, pos) replays a captured JIT (else it runs the step eagerly, or captures it)."""
    jit = self._decoders.get(self.window_for(pos))
    return jit is not None and jit.cnt >= 2

  def decoder_for(self, pos: int) -> TinyJit:
    """The jitted decode step whose attention window covers pos: step(token bound, position bound) -> logits."""
    window = self.window_for(pos)
    if window not in self._decoders:
      self._decoders[window] = TinyJit(functools.partial(self._decode_step, window=window))
    return self._decoders[window]

  def _decode_step(self, token: BoundVariable, position: BoundVariable, window: int) -> Tensor:
    """One token (self.token bound) at `position` (self.position bound). Traced once per window by TinyJit; replays
    pass both as kernel parameters, so a step copies nothing in."""
    x = self.embedding.shrink(((token, token + 1), (0, self.config.dim)))  # (1, dim): the token's row
    half = self.config.head_dim // 2
    row = ((position, position + 1), (0, half))  # the table row at the position: a view that starts there
    cos, sin = self.rope_cos.shrink(row), self.rope_sin.shrink(row)
    mask = (self.positions.shrink(((0, window),)) <= position).reshape(1, window)
    hidden = self._layers(x, cos, sin, functools.partial(self._write_at, position), window, mask)
    return self._logits(hidden)

  def _write_at(self, position: BoundVariable, layer: int, k: Tensor, v: Tensor) -> None:
    """Stores keys/values (n_kv_heads, 1, head_dim) in cache row `position`, in place: the cache's view starts at
    the position, so one row is written whatever the window."""
    rows = ((0, 2), (0, k.shape[0]), (position, position + 1), (0, k.shape[2]))
    self.kv_cache[layer].shrink(rows).assign(Tensor.stack([k, v])).realize()


def load_llama(path, device: str | None = None, max_context: int | None = None,
               dtype=dtypes.float32) -> tuple[Llama, dict[str, object]]:
  """A llama-architecture GGUF file as a ready model, and the file's metadata (the tokenizer is built from it).

  Args:
    path: the .gguf file.
    device: where the model runs (Device.DEFAULT when None).
    max_context: KV cache rows (the longest prompt + generation); default min(llama.context_length, 2048).
    dtype: what the weights are dequantized to, once, at load.

  Raises:
    GGUFError: the file is missing, damaged, not a llama model, or lacks a tensor or key the model needs; the
      message names the file.
    ContextError: max_context outside 1..llama.context_length.
  """
  tensors, metadata = gguf_load(path, device=device)
  source = str(path)
  try:
    gguf_architecture(metadata, require="llama")
  except GGUFError as e:
    raise GGUFError(f"{source}: {e}") from None
  embedding = tensors.get("token_embd.weight")
  if embedding is None or embedding.ndim != 2:
    raise GGUFError(f"{source}: no 2-D 'token_embd.weight' tensor; a llama model needs its token embedding")
  config = LlamaConfig.from_metadata(metadata, embedding.shape[0], source)
  return Llama(config, tensors, max_context, device, dtype, source), metadata


__all__ = ["ContextError", "DECODE_WINDOWS", "Llama", "LlamaConfig", "attention", "load_llama", "rms_norm", "rope",
           "rope_tables", "swiglu"]
