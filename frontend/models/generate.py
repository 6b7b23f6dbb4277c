"""Text generation with a Llama: sampling on the host, streaming decoded text, timing.

  sampler = Sampler(temperature=0.7, top_k=40, top_p=0.9, seed=0)    # Sampler() is greedy
  stats = GenerationStats()
  for token in generate(model, tokenizer.encode(prompt), 64, sampler, tokenizer.stop_ids, stats):
    print(stream.push(token), end="", flush=True)                    # stream = TextStream(tokenizer)

The model returns next-token logits to the host (a (vocab,) float32 array, 192 KB for SmolLM2); the choice among
them is made here with numpy, so greedy, temperature, top-k and top-p cost no kernels.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Iterator

import numpy as np

from frontend.models.llama import ContextError, Llama


class Sampler:
  """Picks the next token from logits: greedy (temperature 0), or a draw from softmax(logits / temperature)
  restricted to the top_k largest (0: all) and then to the smallest set of most likely tokens whose probability
  reaches top_p (1: all), as in Holtzman et al. 2019 ("nucleus sampling").

  Args:
    temperature: >= 0; 0 picks the largest logit (the first one on ties).
    top_k: >= 0; 0 keeps every token.
    top_p: in (0, 1].
    seed: seeds the draws (numpy's default_rng); None draws from fresh entropy.

  Raises:
    ValueError: an argument outside its range.
  """

  def __init__(self, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None):
    if not temperature >= 0 or not np.isfinite(temperature):
      raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    if top_k < 0:
      raise ValueError(f"top_k must be >= 0 (0 keeps every token), got {top_k}")
    if not 0 < top_p <= 1:
      raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    self.temperature, self.top_k, self.top_p = float(temperature), int(top_k), float(top_p)
    self.rng = np.random.default_rng(seed)

  @property
  def greedy(self) -> bool:
    return self.temperature == 0

  def probabilities(self, logits: np.ndarray) -> np.ndarray:
    """The distribution a draw is made from (float64, sums to 1), after temperature, top_k and top_p."""
    z = logits.astype(np.float64) / self.temperature
    if 0 < self.top_k < z.size:
      kth = np.partition(z, -self.top_k)[-self.top_k]
      z = np.where(z >= kth, z, -np.inf)
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    if self.top_p < 1:
      order = np.argsort(-probs, kind="stable")
      before = np.cumsum(probs[order]) - probs[order]  # mass of the more likely tokens
      dropped = order[before >= self.top_p]  # the most likely token always stays (before = 0)
      probs[dropped] = 0.0
      probs /= probs.sum()
    return probs

  def __call__(self, logits: np.ndarray) -> int:
    if self.greedy:
      return int(np.argmax(logits))
    probs = self.probabilities(logits)
    return int(self.rng.choice(probs.size, p=probs))


@dataclasses.dataclass
class GenerationStats:
  """Timings of one generate() call (seconds, time.perf_counter)."""
  prompt_tokens: int = 0
  generated: int = 0  # tokens yielded (the stop token is not counted)
  time_to_first_token: float = 0.0  # prompt prefill plus the first sampling
  decode_steps: int = 0  # model.decode calls
  decode_time: float = 0.0  # their total time, sampling included
  replay_steps: int = 0  # of those, the ones that replayed a captured TinyJit (the others built and captured it)
  replay_time: float = 0.0
  stopped_by: str = ""  # "stop token", "max tokens" or "context full"

  @property
  def tokens_per_second(self) -> float:
    """Decode speed: tokens produced per second after the first one, JIT capture steps included."""
    return self.decode_steps / self.decode_time if self.decode_time > 0 else 0.0

  @property
  def replay_tokens_per_second(self) -> float:
    """Decode speed of the steps that replayed a captured JIT (the steady state of a long generation)."""
    return self.replay_steps / self.replay_time if self.replay_time > 0 else 0.0


def check_prompt(n_tokens: int, model: Llama) -> None:
  """Raises ContextError unless a prompt of n_tokens leaves room for at least one generated token."""
  if n_tokens == 0:
    raise ContextError("the prompt is empty (0 tokens); give some text")
  if n_tokens >= model.max_context:
    raise ContextError(f"the prompt is {n_tokens} tokens but the context holds {model.max_context} (max_context), "
                       f"which leaves no room for an answer; shorten the prompt or raise max_context (--max-context, "
                       f"up to the model's {model.config.context_length})")


def generate(model: Llama, prompt: list[int], max_tokens: int, sampler: Sampler | None = None,
             stop_ids=frozenset(), stats: GenerationStats | None = None) -> Iterator[int]:
  """Yields up to max_tokens tokens continuing prompt, stopping early at a stop token (not yielded) or when the
  context is full. The model's KV cache is overwritten from position 0.

  Raises:
    ContextError: the prompt is empty or does not leave room for one token in model.max_context.
  """
  sampler = sampler or Sampler()
  stats = stats if stats is not None else GenerationStats()
  check_prompt(len(prompt), model)
  stats.prompt_tokens = len(prompt)
  start = time.perf_counter()
  token = sampler(model.prefill(prompt))
  stats.time_to_first_token = time.perf_counter() - start
  pos = len(prompt)
  while True:
    if token in stop_ids:
      stats.stopped_by = "stop token"
      return
    stats.generated += 1
    yield token
    if stats.generated >= max_tokens or pos >= model.max_context:
      stats.stopped_by = "max tokens" if stats.generated >= max_tokens else "context full"
      return
    replay = model.is_captured(pos)
    step_start = time.perf_counter()
    token = sampler(model.decode(token, pos))
    elapsed = time.perf_counter() - step_start
    stats.decode_time += elapsed
    stats.decode_steps += 1
    stats.replay_time += elapsed if replay else 0.0
    stats.replay_steps += int(replay)
    pos += 1


class TextStream:
  """Turns tokens into text as they come: push(token) returns the new text, holding back an incomplete UTF-8
  character (a token may end inside one) until the token that completes it."""

  def __init__(self, tokenizer):
    self.tokenizer = tokenizer
    self.ids: list[int] = []
    self.text = ""

  def push(self, token: int) -> str:
    self.ids.append(token)
    text = self.tokenizer.decode(self.ids)
    if text.endswith("\ufffd"):
      return ""
    new, self.text = text[len(self.text):], text
    return new


__all__ = ["GenerationStats", "Sampler", "TextStream", "check_prompt", "generate"]
