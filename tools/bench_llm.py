"""LLM decode benchmark: SmolLM2-135M-Instruct (Q4_1 GGUF) through Sovereign, beside torch + transformers on the same
device in the same run, and llama.cpp (llama-cpp-python) on the CPU when it is installed.

  python tools/bench_llm.py [--tokens 64] [--device CPU] [--repeat 3] [--weights float16]

Measures, after one warm-up generation per engine (kernel compiles, JIT capture, allocator warm-up):
  - time to first token: the prompt's prefill plus the first token, median of --repeat runs;
  - decode tokens/s: greedy tokens after the first one per second, median of --repeat runs of --tokens tokens.
Every engine generates exactly --tokens tokens greedily from the same prompt ids (no early stop); the text of the
first run is printed so a reader can see they agree up to the first end-of-turn token (transformers' min_new_tokens
masks that token's logit, so its text may go another way from there). Needs `pip install -e '.[models,ref]'`
(transformers, torch); transformers loads the same GGUF dequantized to float32, as our loader does. "ratio" is
ours / theirs for tokens/s and theirs / ours for time to first token: > 1 means Sovereign is faster. --weights float16
dequantizes our weights to float16 instead (the others keep theirs as they are).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

PROMPT = "The capital of France is"


def _median(values: list[float]) -> float:
  return statistics.median(values)


def ours(path, device: str, tokens: int, repeat: int, weights: str = "float32") -> dict:
  from frontend.models import GGUFTokenizer, load_llama
  model, metadata = load_llama(path, device=device, max_context=512, dtype=weights)
  tokenizer = GGUFTokenizer(metadata, source=str(path))
  ids = tokenizer.encode(PROMPT)

  def run() -> tuple[float, float, list[int]]:
    start = time.perf_counter()
    token = int(np.argmax(model.prefill(ids)))
    first = time.perf_counter()
    out = [token]
    for pos in range(len(ids), len(ids) + tokens - 1):
      token = int(np.argmax(model.decode(token, pos)))
      out.append(token)
    end = time.perf_counter()
    return first - start, (tokens - 1) / (end - first), out
  run()  # compiles the kernels and captures the decode step
  runs = [run() for _ in range(repeat)]
  return {"ttft": _median([r[0] for r in runs]), "tps": _median([r[1] for r in runs]),
          "text": tokenizer.decode(runs[0][2]), "device": device, "ids": ids}


def torch_side(path, device: str, tokens: int, repeat: int, ids: list[int]) -> dict:
  import torch
  from transformers import AutoModelForCausalLM
  torch_device = "cuda" if device.startswith("NV") else "cpu"
  model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                               dtype=torch.float32).to(torch_device).eval()
  inputs = torch.tensor([ids], device=torch_device)

  def generate(n: int) -> tuple[float, list[int]]:
    with torch.inference_mode():
      if torch_device == "cuda":
        torch.cuda.synchronize()
      start = time.perf_counter()
      out = model.generate(inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1,
                           pad_token_id=0, attention_mask=torch.ones_like(inputs))
      if torch_device == "cuda":
        torch.cuda.synchronize()
      return time.perf_counter() - start, out[0, len(ids):].tolist()
  generate(tokens)  # warm-up
  ttft = _median([generate(1)[0] for _ in range(repeat)])
  totals = [generate(tokens) for _ in range(repeat)]
  tps = _median([(tokens - 1) / max(t - ttft, 1e-9) for t, _ in totals])
  from frontend.models import GGUFTokenizer
  from frontend.nn.gguf import gguf_load
  _, metadata = gguf_load(path, device="CPU")
  text = GGUFTokenizer(metadata).decode(totals[0][1])
  return {"ttft": ttft, "tps": tps, "text": text, "device": f"torch {torch.__version__} {torch_device}, "
          f"{torch.get_num_threads()} threads"}


def llama_cpp_side(path, tokens: int, repeat: int, ids: list[int]) -> dict | None:
  try:
    from llama_cpp import Llama
  except ImportError:
    return None
  llm = Llama(model_path=str(path), n_ctx=512, n_threads=os.cpu_count(), verbose=False)

  def generate(n: int) -> tuple[float, list[int]]:
    llm.reset()
    out = []
    start = time.perf_counter()
    for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
      out.append(token)
      if len(out) == n:
        break
    return time.perf_counter() - start, out
  generate(tokens)
  ttft = _median([generate(1)[0] for _ in range(repeat)])
  totals = [generate(tokens) for _ in range(repeat)]
  tps = _median([(tokens - 1) / max(t - ttft, 1e-9) for t, _ in totals])
  return {"ttft": ttft, "tps": tps, "text": llm.detokenize(totals[0][1]).decode(errors="replace"),
          "device": f"llama.cpp CPU, {os.cpu_count()} threads"}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tokens", type=int, default=64, help="tokens generated per run")
  parser.add_argument("--repeat", type=int, default=3, help="timed runs per engine (the median is shown)")
  parser.add_argument("--device", default=None, help="our device (default: the best available, see `sov info`)")
  parser.add_argument("--weights", choices=("float32", "float16"), default="float32",
                      help="what our weights are dequantized to (default float32, as transformers does)")
  args = parser.parse_args()
  from frontend.device import Device
  from frontend.models import smollm2_gguf
  path = smollm2_gguf()
  device = Device.canonicalize(args.device)
  mine = ours(path, device, args.tokens, args.repeat, args.weights)
  rows = [("torch+transformers", torch_side(path, device, args.tokens, args.repeat, mine["ids"]))]
  if not device.startswith("NV"):
    cpp = llama_cpp_side(path, args.tokens, args.repeat, mine["ids"])
    rows.append(("llama.cpp", cpp) if cpp else ("llama.cpp", None))
  print(f"SmolLM2-135M-Instruct Q4_1, prompt {PROMPT!r} ({len(mine['ids'])} tokens), {args.tokens} greedy tokens, "
        f"median of {args.repeat}")
  print(f"  sovereign on {mine['device']} ({args.weights} weights): {mine['text']!r}")
  for name, r in rows:
    if r:
      print(f"  {name} ({r['device']}): {r['text']!r}")
  print(f"{'engine':22s} {'decode tok/s':>13s} {'ratio':>7s} {'TTFT ms':>9s} {'ratio':>7s}")
  print(f"{'sovereign':22s} {mine['tps']:13.1f} {'':>7s} {mine['ttft'] * 1e3:9.1f}")
  for name, r in rows:
    if r is None:
      print(f"{name:22s} {'not installed (pip install llama-cpp-python)':>40s}")
      continue
    print(f"{name:22s} {r['tps']:13.1f} {mine['tps'] / r['tps']:6.2f}x {r['ttft'] * 1e3:9.1f} "
          f"{r['ttft'] / mine['ttft']:6.2f}x")


if __name__ == "__main__":
  main()
