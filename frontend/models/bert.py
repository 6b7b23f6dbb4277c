"""BERT sentence encoders (all-MiniLM-L6-v2 and other sentence-transformers BERT models) from a model directory.

  encoder = load_sentence_encoder(minilm_dir())               # config.json, model.safetensors, tokenizer.json
  vectors = encoder.embed(["hello world", "hi there world"])  # (2, 384) float32 numpy, each of unit length
  cosine = float(vectors[0] @ vectors[1])                     # 0.7337

The network (Devlin et al. 2019, "BERT"; transformers' BertModel, eval mode), on token ids [CLS] ... [SEP]:
  x = LayerNorm(word_embeddings[id] + token_type_embeddings[0] + position_embeddings[position])
then per layer, with post-LayerNorm (the residual sum is normalised, as in the original BERT):
  x = LayerNorm(x + Wo attention(Wq x + bq, Wk x + bk, Wv x + bv) + bo)          multi-head, keys masked to real tokens
  x = LayerNorm(x + W2 gelu(W1 x + b1) + b2)                                      exact (erf) GELU
and the sentence embedding is what sentence-transformers' Pooling (pooling_mode_mean_tokens) and Normalize modules
compute: the mean of the last hidden states over the real tokens, divided by its L2 norm (max(norm, 1e-12), as
torch.nn.functional.normalize). BertModel's pooler (tanh(W x[CLS])) is not used by sentence embeddings and not loaded.

Batches: texts of different lengths are padded on the right to a common length (the longest, rounded up to a
multiple of PAD_ALIGN so similar lengths share compiled kernels). Padding is masked out of every softmax (its keys get
-inf, exp(-inf) = 0 exactly) and out of the mean, so a text's embedding in a batch equals its embedding alone up to
float32 summation order. The word/position/type lookup happens on the host (numpy row indexing), as in
frontend.models.llama.

GELU. transformers' "gelu" is x/2 (1 + erf(x / sqrt 2)) (ACT2FN["gelu"] = GELUActivation, torch's exact gelu).
Tensor.erf is Abramowitz & Stegun 7.1.26, |error| < 1.5e-7 in exact arithmetic; measured in float32 against
math.erf over [-12, 12] (200001 points): erf within 4.7e-7, gelu within 4.7e-7 absolute (2.3e-7 |x|), against the
2.4e-7 of rounding the exact gelu to float32 there. Through six layers the embeddings stay within 1e-5 of torch's
(tests/test_bert.py).

Length. The model has max_position_embeddings (512) positions; the tokenizer config's model_max_length can only lower
that. A text with more tokens is refused (ContextError, with the numbers) unless truncate=True, which keeps the first
max_tokens - 1 tokens and the final [SEP], as transformers' truncation=True does. sentence-transformers itself cuts
all-MiniLM-L6-v2 inputs at 256 tokens (sentence_bert_config.json, max_seq_length); up to 256 tokens the two agree,
from 257 to 512 tokens this module embeds the whole text.

The tokenizer is the checkpoint's tokenizer.json (BERT WordPiece, lowercasing and accent stripping, [CLS] ... [SEP])
run by the `tokenizers` library. all-MiniLM-L6-v2's tokenizer.json asks for truncation and padding to 128 tokens;
both are switched off, this module pads and checks lengths itself.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from compiler.dtypes import dtypes
from frontend.device import Device
from frontend.models.llama import ContextError
from frontend.nn.state import safe_load
from frontend.tensor import Tensor

PAD_ALIGN = 16  # batches are padded to a multiple of this many tokens, so similar lengths share compiled kernels
NORM_EPS = 1e-12  # torch.nn.functional.normalize's eps: the embedding is v / max(|v|, NORM_EPS)
CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "config.json", "model.safetensors", "tokenizer.json"
TOKENIZER_CONFIG_FILE, POOLING_CONFIG_FILE = "tokenizer_config.json", "1_Pooling/config.json"


class BertError(ValueError):
  """A model directory that cannot be used: a missing file, a config that is not a BERT this module runs, a weight
  that is missing or has the wrong shape, a pooling other than the mean."""


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Hyperparameters of a BERT encoder, as transformers' config.json names them."""
  vocab_size: int  # vocab_size
  hidden_size: int  # hidden_size
  n_layers: int  # num_hidden_layers
  n_heads: int  # num_attention_heads
  intermediate_size: int  # intermediate_size
  max_positions: int  # max_position_embeddings
  type_vocab_size: int = 2  # type_vocab_size
  layer_norm_eps: float = 1e-12  # layer_norm_eps

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.n_heads

  @staticmethod
  def from_json(config: dict, source: str = "config.json") -> BertConfig:
    """The config of a transformers BERT checkpoint (config.json's dict).

    Raises:
      BertError: not a BERT (model_type), an activation other than the exact gelu, relative position embeddings, a
        missing or non-positive size, or heads that do not divide the hidden size (the message names source).
    """
    if config.get("model_type") != "bert":
      raise BertError(f"{source}: model_type is {config.get('model_type')!r}; only 'bert' encoders run here")
    if config.get("hidden_act", "gelu") != "gelu":
      raise BertError(f"{source}: hidden_act {config.get('hidden_act')!r} is not implemented; only 'gelu' (exact, erf)")
    if config.get("position_embedding_type", "absolute") != "absolute":
      raise BertError(f"{source}: position_embedding_type {config.get('position_embedding_type')!r} is not "
                      "implemented; only 'absolute'")

    def number(key: str, default=None, kind=int):
      value = config.get(key, default)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise BertError(f"{source}: {key} = {value!r}, expected a positive number")
      return kind(value)

    parsed = BertConfig(vocab_size=number("vocab_size"), hidden_size=number("hidden_size"),
                        n_layers=number("num_hidden_layers"), n_heads=number("num_attention_heads"),
                        intermediate_size=number("intermediate_size"),
                        max_positions=number("max_position_embeddings"),
                        type_vocab_size=number("type_vocab_size", 2),
                        layer_norm_eps=number("layer_norm_eps", 1e-12, float))
    if parsed.hidden_size % parsed.n_heads:
      raise BertError(f"{source}: {parsed.n_heads} heads do not divide hidden_size {parsed.hidden_size}")
    return parsed


# ---------------------------------------------------------------------------------------------------------------------
# the pieces, as Tensor functions (tests/test_bert.py checks each against numpy/torch)


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
  """(x - mean) / sqrt(var + eps) * weight + bias over the last axis (Ba et al. 2016; torch's LayerNorm, biased
  variance)."""
  return x.layernorm(-1, eps) * weight + bias


def gelu_exact(x: Tensor) -> Tensor:
  """x/2 (1 + erf(x / sqrt 2)): torch's gelu (approximate='none'), transformers' "gelu". Tensor.erf's accuracy is
  in the module docstring."""
  return 0.5 * x * (1 + (x * (1 / math.sqrt(2))).erf())


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, n_heads: int) -> Tensor:
  """Multi-head self-attention of a padded batch, no causal mask.

  Args:
    q, k, v: (B, T, n_heads * head_dim), projected (biases added).
    mask: bool (B, T), True at real tokens: padding is never attended to.
    n_heads: how the last axis splits into heads (head h is columns [h * head_dim, (h + 1) * head_dim)).

  Returns:
    (B, T, n_heads * head_dim), heads in order.
  """
  batch, length, dim = q.shape
  head_dim = dim // n_heads

  def heads(t: Tensor) -> Tensor:
    return t.reshape(batch, length, n_heads, head_dim).permute(0, 2, 1, 3)  # (B, heads, T, head_dim)

  scores = heads(q).matmul(heads(k).transpose(-1, -2)) * (1 / math.sqrt(head_dim))  # (B, heads, T, T)
  probs = mask.reshape(batch, 1, 1, length).where(scores, float("-inf")).softmax(-1)
  return probs.matmul(heads(v)).permute(0, 2, 1, 3).reshape(batch, length, dim)


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
  """The mean of hidden (B, T, dim) over the positions where mask (B, T) is True: (B, dim). sentence-transformers'
  Pooling (pooling_mode_mean_tokens) divides by max(count, 1e-9); a row has at least [CLS] and [SEP]."""
  weights = mask.cast(hidden.dtype).reshape(*mask.shape, 1)
  return (hidden * weights).sum(1) / weights.sum(1).maximum(1e-9)


def l2_normalize(x: Tensor) -> Tensor:
  """x / max(|x|, 1e-12) over the last axis (torch.nn.functional.normalize, p=2)."""
  return x / (x * x).sum(-1, keepdim=True).sqrt().maximum(NORM_EPS)


# ---------------------------------------------------------------------------------------------------------------------
# weights


def _expected_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
  """HF checkpoint name -> shape ((out, in) for a matrix), without the `bert.` prefix some checkpoints carry."""
  dim, inner = config.hidden_size, config.intermediate_size
  shapes = {"embeddings.word_embeddings.weight": (config.vocab_size, dim),
            "embeddings.position_embeddings.weight": (config.max_positions, dim),
            "embeddings.token_type_embeddings.weight": (config.type_vocab_size, dim),
            "embeddings.LayerNorm.weight": (dim,), "embeddings.LayerNorm.bias": (dim,)}
  per_layer = {"attention.self.query": (dim, dim), "attention.self.key": (dim, dim),
               "attention.self.value": (dim, dim), "attention.output.dense": (dim, dim),
               "attention.output.LayerNorm": None, "intermediate.dense": (inner, dim), "output.dense": (dim, inner),
               "output.LayerNorm": None}
  for i in range(config.n_layers):
    for name, matrix in per_layer.items():
      rows = (dim,) if matrix is None else matrix
      shapes[f"encoder.layer.{i}.{name}.weight"] = rows
      shapes[f"encoder.layer.{i}.{name}.bias"] = rows[:1]
  return shapes


def _check_weights(weights: dict[str, Tensor], config: BertConfig, source: str) -> dict[str, Tensor]:
  """The weights under their plain names (a `bert.` prefix, as BertForMaskedLM checkpoints have, is dropped).

  Raises:
    BertError: a weight is missing or has the wrong shape.
  """
  plain = {name.removeprefix("bert."): t for name, t in weights.items()}
  for name, shape in _expected_shapes(config).items():
    if name not in plain:
      raise BertError(f"{source}: tensor {name!r} is missing; a BERT with {config.n_layers} layers needs it")
    if plain[name].shape != shape:
      raise BertError(f"{source}: tensor {name!r} has shape {plain[name].shape}, expected {shape} from config.json")
    if not plain[name].dtype.is_float:
      raise BertError(f"{source}: tensor {name!r} has dtype {plain[name].dtype.name}, expected a float type")
  return plain


def _realize(t: Tensor) -> Tensor:
  """The weight computed once into its own float32 buffer."""
  out = t.cast(dtypes.float32).contiguous().realize()
  out.requires_grad = False
  return out


@dataclasses.dataclass
class _Layer:
  """One encoder layer's weights, (out, in) matrices; query, key and value are stacked into one matrix (one matmul
  instead of three)."""
  qkv: Tensor  # rows: query, key, value (hidden_size each)
  qkv_bias: Tensor
  attn_out: Tensor
  attn_out_bias: Tensor
  attn_norm: tuple[Tensor, Tensor]  # attention.output.LayerNorm weight, bias
  ffn_in: Tensor  # intermediate.dense
  ffn_in_bias: Tensor
  ffn_out: Tensor  # output.dense
  ffn_out_bias: Tensor
  ffn_norm: tuple[Tensor, Tensor]  # output.LayerNorm weight, bias

  @staticmethod
  def load(weights: dict[str, Tensor], i: int) -> _Layer:
    def w(name: str) -> Tensor:
      return weights[f"encoder.layer.{i}.{name}"]
    projections = ("attention.self.query", "attention.self.key", "attention.self.value")
    return _Layer(qkv=_realize(Tensor.cat(*[w(f"{p}.weight") for p in projections])),
                  qkv_bias=_realize(Tensor.cat(*[w(f"{p}.bias") for p in projections])),
                  attn_out=_realize(w("attention.output.dense.weight")),
                  attn_out_bias=_realize(w("attention.output.dense.bias")),
                  attn_norm=(_realize(w("attention.output.LayerNorm.weight")),
                             _realize(w("attention.output.LayerNorm.bias"))),
                  ffn_in=_realize(w("intermediate.dense.weight")), ffn_in_bias=_realize(w("intermediate.dense.bias")),
                  ffn_out=_realize(w("output.dense.weight")), ffn_out_bias=_realize(w("output.dense.bias")),
                  ffn_norm=(_realize(w("output.LayerNorm.weight")), _realize(w("output.LayerNorm.bias"))))


class Bert:
  """A BERT encoder with mean pooling and L2 normalisation: token ids in, sentence embeddings out.

  Args:
    config: the hyperparameters.
    weights: {HF checkpoint name: Tensor} as safe_load returns them (a `bert.` prefix is allowed; the pooler and
      other extra tensors are ignored).
    device: where the model runs (Device.DEFAULT when None).
    source: names the model in error messages.

  Raises:
    BertError: a weight is missing or has the wrong shape or dtype.
  """

  def __init__(self, config: BertConfig, weights: dict[str, Tensor], device: str | None = None,
               source: str = "model"):
    self.config = config
    self.device = Device.canonicalize(device)
    plain = _check_weights(weights, config, source)
    # host copies for the row lookups (see the module docstring)
    self.word_rows = plain["embeddings.word_embeddings.weight"].float().numpy()
    self.position_rows = plain["embeddings.position_embeddings.weight"].float().numpy()
    self.type_rows = plain["embeddings.token_type_embeddings.weight"].float().numpy()
    self.embed_norm = (_realize(plain["embeddings.LayerNorm.weight"]), _realize(plain["embeddings.LayerNorm.bias"]))
    self.layers = [_Layer.load(plain, i) for i in range(config.n_layers)]

  def _embed(self, batch: list[list[int]], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Host (B, length, dim) float32 input embeddings of the padded batch, and the (B, length) bool mask of real
    tokens. Summed in transformers' order: (word + token type 0) + position."""
    config = self.config
    ids = np.zeros((len(batch), length), np.int64)
    mask = np.zeros((len(batch), length), bool)
    for row, tokens in enumerate(batch):
      ids[row, :len(tokens)] = tokens
      mask[row, :len(tokens)] = True
    bad = ids[(ids < 0) | (ids >= config.vocab_size)]
    if bad.size:
      raise BertError(f"token id {int(bad[0])} is outside the vocabulary of {config.vocab_size} (config.json's "
                      "vocab_size); the tokenizer does not belong to this model")
    x = (self.word_rows[ids] + self.type_rows[0]) + self.position_rows[:length]
    return x.astype(np.float32), mask

  def hidden_states(self, x: Tensor, mask: Tensor) -> Tensor:
    """The last layer's hidden states (B, T, dim) of input embeddings x (B, T, dim) under mask (B, T) bool."""
    config = self.config
    batch, length, dim = x.shape
    x = layer_norm(x, *self.embed_norm, config.layer_norm_eps).reshape(batch * length, dim)
    for layer in self.layers:
      qkv = x.matmul(layer.qkv.T) + layer.qkv_bias
      q, k, v = (qkv.shrink(((0, batch * length), (j * dim, (j + 1) * dim))).reshape(batch, length, dim)
                 for j in range(3))
      attended = attention(q, k, v, mask, config.n_heads).reshape(batch * length, dim)
      x = layer_norm(x + attended.matmul(layer.attn_out.T) + layer.attn_out_bias, *layer.attn_norm,
                     config.layer_norm_eps)
      inner = gelu_exact(x.matmul(layer.ffn_in.T) + layer.ffn_in_bias)
      # realized per layer: the next layer's kernels are scheduled against this buffer, not the whole graph so far
      x = layer_norm(x + inner.matmul(layer.ffn_out.T) + layer.ffn_out_bias, *layer.ffn_norm,
                     config.layer_norm_eps).realize()
    return x.reshape(batch, length, dim)

  def embed_ids(self, batch: list[list[int]]) -> np.ndarray:
    """Sentence embeddings (B, dim) float32 of token-id lists ([CLS] ... [SEP] each), unit length.

    Raises:
      ValueError: an empty batch or an empty id list.
      BertError: an id outside the vocabulary.
      ContextError: a list longer than the model's positions.
    """
    if not batch:
      raise ValueError("embed_ids needs at least one list of token ids")
    longest = max(len(tokens) for tokens in batch)
    if min(len(tokens) for tokens in batch) == 0:
      raise ValueError("an empty list of token ids has no embedding; a tokenized text has at least [CLS] and [SEP]")
    if longest > self.config.max_positions:
      raise ContextError(f"{longest} tokens do not fit the model's {self.config.max_positions} positions")
    length = min(-(-longest // PAD_ALIGN) * PAD_ALIGN, self.config.max_positions)
    x, mask = self._embed(batch, length)
    mask_t = Tensor(mask, device=self.device)
    hidden = self.hidden_states(Tensor(x, device=self.device), mask_t)
    return l2_normalize(mean_pool(hidden, mask_t)).numpy()


# ---------------------------------------------------------------------------------------------------------------------
# tokenizer and the whole encoder


def _tokenizers():
  try:
    import tokenizers
  except ImportError as e:
    raise ImportError("the model's tokenizer needs the tokenizers package: pip install tokenizers (or pip install -e "
                      "'.[models]')") from e
  return tokenizers


class BertTokenizer:
  """The checkpoint's tokenizer.json (WordPiece, [CLS] ... [SEP]) through the `tokenizers` library, without the
  truncation and padding the file may ask for.

  Raises:
    BertError: the file cannot be read by `tokenizers`, or its encodings are not wrapped in [CLS] ... [SEP].
  """

  def __init__(self, path: str | Path):
    tk = _tokenizers()
    try:
      self.backend = tk.Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
      raise BertError(f"{path}: not a tokenizer.json the tokenizers library can read ({e})") from e
    self.backend.no_truncation()
    self.backend.no_padding()
    self.cls_id, self.sep_id = self.backend.token_to_id("[CLS]"), self.backend.token_to_id("[SEP]")
    if self.cls_id is None or self.sep_id is None or self.encode("") != [self.cls_id, self.sep_id]:
      raise BertError(f"{path}: the tokenizer does not wrap texts in [CLS] ... [SEP] (no such tokens, or no "
                      "post-processor adding them); not a BERT tokenizer")

  def encode(self, text: str) -> list[int]:
    """The token ids of text, [CLS] first and [SEP] last."""
    return self.backend.encode(text).ids


@dataclasses.dataclass
class SentenceEncoder:
  """A BERT, its tokenizer and its length limit: texts in, unit-length sentence embeddings out."""
  model: Bert
  tokenizer: BertTokenizer
  max_tokens: int  # min(max_position_embeddings, the tokenizer config's model_max_length)

  def tokenize(self, texts: list[str], truncate: bool = False) -> tuple[list[list[int]], list[int]]:
    """The token ids of each text, and each text's full token count (more than max_tokens where truncated).

    Raises:
      ContextError: a text has more than max_tokens tokens and truncate is False.
    """
    batch, counts = [], []
    for i, text in enumerate(texts):
      ids = self.tokenizer.encode(text)
      counts.append(len(ids))
      if len(ids) > self.max_tokens:
        if not truncate:
          raise ContextError(f"text {i + 1} ({_preview(text)}) is {len(ids)} tokens but the model takes at most "
                             f"{self.max_tokens} ({self.max_tokens - 2} plus [CLS] and [SEP]); shorten it or pass "
                             "truncate=True (`sov embed --truncate`) to embed its first tokens")
        ids = ids[:self.max_tokens - 1] + [self.tokenizer.sep_id]
      batch.append(ids)
    return batch, counts

  def embed(self, texts: list[str], truncate: bool = False) -> np.ndarray:
    """Sentence embeddings (len(texts), dim) float32, unit length, computed as one padded batch.

    Args:
      texts: one or more texts ("" is allowed: [CLS] [SEP]).
      truncate: cut texts longer than max_tokens (else they raise ContextError).

    Raises:
      ValueError: no texts.
      ContextError: a text longer than max_tokens without truncate.
    """
    if isinstance(texts, str) or not texts:
      raise ValueError(f"embed needs a non-empty list of texts, got {texts!r}")
    batch, _ = self.tokenize(list(texts), truncate)
    return self.model.embed_ids(batch)


def _preview(text: str, limit: int = 32) -> str:
  return repr(text if len(text) <= limit else text[:limit] + "...")


def _read_json(path: Path, what: str) -> dict:
  try:
    value = json.loads(path.read_text(encoding="utf-8"))
  except OSError as e:
    raise BertError(f"{path}: cannot read the {what} ({e})") from e
  except ValueError as e:
    raise BertError(f"{path}: the {what} is not valid JSON ({e})") from e
  if not isinstance(value, dict):
    raise BertError(f"{path}: the {what} is a JSON {type(value).__name__}, expected an object")
  return value


def _max_tokens(directory: Path, config: BertConfig) -> int:
  """min(max_position_embeddings, tokenizer_config.json's model_max_length when present)."""
  path = directory / TOKENIZER_CONFIG_FILE
  if not path.is_file():
    return config.max_positions
  limit = _read_json(path, "tokenizer config").get("model_max_length")
  if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 2:
    return min(limit, config.max_positions)
  return config.max_positions


def _check_pooling(directory: Path) -> None:
  """Refuses a sentence-transformers pooling config (1_Pooling/config.json) that is not the plain mean."""
  path = directory / POOLING_CONFIG_FILE
  if not path.is_file():
    return
  pooling = _read_json(path, "pooling config")
  modes = sorted(key for key, value in pooling.items() if key.startswith("pooling_mode_") and value is True)
  if modes != ["pooling_mode_mean_tokens"]:
    raise BertError(f"{path}: pooling {modes or 'none'} is not implemented; only pooling_mode_mean_tokens")


def load_sentence_encoder(directory, device: str | None = None) -> SentenceEncoder:
  """A sentence-transformers BERT directory as a ready encoder.

  Args:
    directory: holds config.json, model.safetensors and tokenizer.json (tokenizer_config.json and
      1_Pooling/config.json are read when present), e.g. fetch.minilm_dir().
    device: where the model runs (Device.DEFAULT when None).

  Raises:
    BertError: the directory or a file is missing or unusable (the message names it and what is wrong).
    ImportError: the safetensors or tokenizers package is not installed (the message says how to install it).
  """
  directory = Path(directory)
  if not directory.is_dir():
    raise BertError(f"{directory}: no such model directory; it should hold {CONFIG_FILE}, {WEIGHTS_FILE} and "
                    f"{TOKENIZER_FILE}")
  for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE):
    if not (directory / name).is_file():
      raise BertError(f"{directory}: {name} is missing; a BERT model directory holds {CONFIG_FILE}, {WEIGHTS_FILE} "
                      f"and {TOKENIZER_FILE}")
  config = BertConfig.from_json(_read_json(directory / CONFIG_FILE, "model config"), str(directory / CONFIG_FILE))
  _check_pooling(directory)
  tokenizer = BertTokenizer(directory / TOKENIZER_FILE)
  weights_path = directory / WEIGHTS_FILE
  try:
    weights = safe_load(weights_path, device=device)
  except ValueError as e:
    raise BertError(str(e)) from e
  model = Bert(config, weights, device, source=str(weights_path))
  return SentenceEncoder(model, tokenizer, _max_tokens(directory, config))


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
  """Cosine similarities (N, N), float64, of N embeddings (unit length or not)."""
  v = vectors.astype(np.float64)
  v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), NORM_EPS)
  return v @ v.T


__all__ = ["Bert", "BertConfig", "BertError", "BertTokenizer", "ContextError", "PAD_ALIGN", "SentenceEncoder",
           "attention", "cosine_matrix", "gelu_exact", "l2_normalize", "layer_norm", "load_sentence_encoder",
           "mean_pool"]
