"""Computes the SmolLM2-135M-Instruct reference values tests/test_llama.py checks against, with torch and
transformers on the CPU (independent of this project's Tensor, compiler and GGUF code), and writes them to
tests/data/smollm2_ref.json.

  pip install transformers accelerate torch tokenizers gguf      # or: pip install -e '.[ref]'
  python tools/ref_smollm2.py                          # the default model file (fetched like `sov run` does)
  python tools/ref_smollm2.py --model PATH.gguf --out tests/data/smollm2_ref.json

transformers loads the same GGUF (AutoModelForCausalLM.from_pretrained(dir, gguf_file=name, dtype=float32)
dequantizes every tensor to float32 and reverse-permutes attn_q/attn_k to the HF RoPE layout) and builds its tokenizer
from the file (AutoTokenizer.from_pretrained(dir, gguf_file=name)). Stored, a few KB of JSON:
  - tokenizer: the ids of each prompt in TOKENIZER_PROMPTS;
  - logits: for LOGITS_PROMPT, the last position's top-LOGITS_TOP ids and values, the values at SAMPLED_LOGITS
    seeded random ids, and the full vector's max |value|, mean and standard deviation;
  - greedy: the GREEDY_TOKENS argmax continuation of LOGITS_PROMPT (no stop token: exactly that many steps, each
    feeding the argmax back), with the decoded text and each step's top-1 minus top-2 logit margin;
  - provenance: the file's sha256 and the versions of torch, transformers and tokenizers.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from frontend.models.fetch import sha256_of, smollm2_gguf  # noqa: E402  (after the sys.path line, so it runs from a checkout)
from tools.reference_json import write_reference  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "data" / "smollm2_ref.json"
LOGITS_PROMPT = "The capital of France is"
GREEDY_TOKENS = 32
LOGITS_TOP = 32
SAMPLED_LOGITS = 64
# plain ASCII, leading and repeated spaces, numbers (multi-digit, decimals, grouping), non-ASCII scripts and emoji,
# control tokens written in the text, newlines and tabs
TOKENIZER_PROMPTS = [
  LOGITS_PROMPT,
  "  leading spaces and  double  spaces ",
  "In 2024, 3.14159 x 12345 = 38.7 and 1,000,000 people",
  "Zürich café — naïve résumé, 東京 and Привет 🙂",
  "<|im_start|>user\nWhat is 7 * 8?<|im_end|>\n<|im_start|>assistant\n",
  "tabs\tand\n\nnewlines   end\n",
  "x1 = y22 + 333z; don't won't I'm",
]




def _logits_summary(logits, torch) -> dict:
  values = logits.to(torch.float64)
  top = torch.topk(values, LOGITS_TOP)
  generator = torch.Generator().manual_seed(0)
  sampled = torch.randperm(values.numel(), generator=generator)[:SAMPLED_LOGITS].sort().values
  return {"prompt": LOGITS_PROMPT, "top_ids": top.indices.tolist(), "top_values": top.values.tolist(),
          "sampled_ids": sampled.tolist(), "sampled_values": values[sampled].tolist(),
          "max_abs": float(values.abs().max()), "mean": float(values.mean()), "std": float(values.std())}


def _greedy(model, ids: list[int], torch) -> tuple[list[int], list[float]]:
  """GREEDY_TOKENS argmax steps with transformers' KV cache; returns the tokens and each step's top-2 margin."""
  tokens, margins = [], []
  with torch.no_grad():
    out = model(torch.tensor([ids]), use_cache=True)
    for _ in range(GREEDY_TOKENS):
      logits = out.logits[0, -1]
      top2 = torch.topk(logits, 2).values
      token = int(torch.argmax(logits))
      tokens.append(token)
      margins.append(float(top2[0] - top2[1]))
      out = model(torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True)
  return tokens, margins


def compute(path: Path) -> dict:
  import tokenizers
  import torch
  import transformers
  from transformers import AutoModelForCausalLM, AutoTokenizer

  torch.manual_seed(0)
  tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
  model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
  model.eval()
  prompt_ids = {prompt: tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in TOKENIZER_PROMPTS}
  ids = prompt_ids[LOGITS_PROMPT]
  with torch.no_grad():
    last = model(torch.tensor([ids])).logits[0, -1]
  tokens, margins = _greedy(model, ids, torch)
  return {
    "provenance": {"file": path.name, "sha256": sha256_of(path), "torch": torch.__version__,
                   "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                   "script": "tools/ref_smollm2.py"},
    "tokenizer": [{"text": prompt, "ids": prompt_ids[prompt]} for prompt in TOKENIZER_PROMPTS],
    "logits": _logits_summary(last, torch),
    "greedy": {"prompt": LOGITS_PROMPT, "prompt_ids": ids, "tokens": tokens, "margins": margins,
               "text": tokenizer.decode(tokens)},
  }




def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", type=Path, default=None, help="the GGUF file (default: SmolLM2-135M-Instruct.Q4_1, "
                      "fetched into the cache like `sov run` does)")
  parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON file to write")
  args = parser.parse_args(argv)
  path = (args.model or smollm2_gguf()).resolve()
  reference = compute(path)
  write_reference(reference, args.out)
  print(f"wrote {args.out}: {len(reference['tokenizer'])} tokenized prompts, top-{LOGITS_TOP} logits, "
        f"{GREEDY_TOKENS} greedy tokens: {reference['greedy']['text']!r}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
