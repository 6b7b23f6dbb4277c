"""The tokenizer a GGUF file carries: byte-level BPE (`tokenizer.ggml.model` = "gpt2") built with the `tokenizers`
library from the file's own vocabulary and merges, and the chat template from its metadata.

  tok = GGUFTokenizer(metadata)
  ids = tok.encode("The capital of France is")
  text = tok.decode(ids)
  prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}])

Byte-level BPE (GPT-2, Radford et al. 2019): text is split into chunks by a regular expression (the pre-tokenizer),
each chunk's UTF-8 bytes are spelled with one printable character per byte (GPT-2's bytes_to_unicode, the alphabet
the vocabulary is written in) and merged pairwise by the merge list's ranks. The chunking differs per model family;
llama.cpp names it in `tokenizer.ggml.pre` and implements each in llama-vocab.cpp (llm_tokenizer_bpe, regex_exprs).
The families implemented here, with llama.cpp's expressions:
  smollm, starcoder, refact, command-r, codeshell, exaone, minerva: every numeric character (\\p{N}) alone, then the
    GPT-2 expression;
  gpt-2, mpt, olmo, jais, trillion: the GPT-2 expression (also taken for files without the key, where llama.cpp
    would use its "default" expressions: an approximation);
  llama3 / llama-v3 / llama-bpe, smaug-bpe, dbrx: the Llama 3 expression.
Control tokens (`tokenizer.ggml.token_type` 3, e.g. <|im_start|>) and user-defined ones (4) match whole wherever
they occur in the text.

transformers 5.x, building a tokenizer from a GGUF (integrations/gguf/gguf_tokenizer_mapping.py), has no entry for
"smollm" and so does not split numerics; on ASCII digits the two agree (no merge of SmolLM2's contains a digit
0-9), but a non-ASCII numeric after a space (" ½", " ①") becomes one chunk there and two here, as in llama.cpp.
"""
from __future__ import annotations

from frontend.nn.gguf import GGUFError

_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_DIGITS_FAMILY = ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva")
_GPT2_FAMILY = ("gpt-2", "gpt2", "mpt", "olmo", "jais", "trillion")
_LLAMA3_FAMILY = ("llama3", "llama-v3", "llama-bpe", "smaug-bpe", "dbrx")
CONTROL, USER_DEFINED = 3, 4  # tokenizer.ggml.token_type values (llama.cpp's LLAMA_TOKEN_TYPE_CONTROL, _USER_DEFINED)

# ChatML (what SmolLM2's tokenizer.chat_template renders): one block per message, then the assistant's header
_CHATML_MESSAGE = "<|im_start|>{role}\n{content}<|im_end|>\n"
_CHATML_GENERATION = "<|im_start|>assistant\n"


class TokenizerError(ValueError):
  """The GGUF's tokenizer cannot be built here (a kind or pre-tokenizer this module lacks, missing metadata)."""


def _tokenizers():
  try:
    import tokenizers
  except ImportError as e:
    raise ImportError("the model's tokenizer needs the tokenizers package: pip install tokenizers (or pip install -e "
                      "'.[models]')") from e
  return tokenizers


def _pre_tokenizer(pre: str, source: str):
  tk = _tokenizers()
  gpt2 = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)  # the GPT-2 expression, then bytes
  if pre in _DIGITS_FAMILY:
    return tk.pre_tokenizers.Sequence([tk.pre_tokenizers.Digits(individual_digits=True), gpt2])
  if pre in _GPT2_FAMILY:
    return gpt2
  if pre in _LLAMA3_FAMILY:
    split = tk.pre_tokenizers.Split(tk.Regex(_LLAMA3_SPLIT), behavior="isolated")
    return tk.pre_tokenizers.Sequence([split, tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  known = ", ".join(_DIGITS_FAMILY + _GPT2_FAMILY + _LLAMA3_FAMILY)
  raise TokenizerError(f"{source}: tokenizer.ggml.pre = {pre!r} is a pre-tokenizer this module does not implement "
                       f"(implemented: {known}); the text would be split differently from the model's training")


class GGUFTokenizer:
  """Byte-level BPE from a GGUF file's metadata (see the module docstring).

  Args:
    metadata: as gguf_load returns it.
    source: names the model in error messages.

  Raises:
    ImportError: the tokenizers package is missing.
    TokenizerError: the file's tokenizer is not byte-level BPE, or its pre-tokenizer is not implemented here.
    GGUFError: the vocabulary or merges are missing.
  """

  def __init__(self, metadata: dict[str, object], source: str = "model"):
    tk = _tokenizers()
    kind = metadata.get("tokenizer.ggml.model")
    if kind != "gpt2":
      raise TokenizerError(f"{source}: tokenizer.ggml.model = {kind!r}; only byte-level BPE ('gpt2', as SmolLM2, "
                           "Llama 3 and Qwen files use) is implemented, not SentencePiece ('llama') vocabularies")
    tokens, merges = metadata.get("tokenizer.ggml.tokens"), metadata.get("tokenizer.ggml.merges")
    if not isinstance(tokens, list) or not isinstance(merges, list):
      raise GGUFError(f"{source}: the GGUF metadata lacks tokenizer.ggml.tokens or tokenizer.ggml.merges")
    self.tokens: list[str] = tokens
    vocab = {token: i for i, token in enumerate(tokens)}
    pairs = [tuple(merge.split(" ", 1)) for merge in merges]
    self.backend = tk.Tokenizer(tk.models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
    self.backend.pre_tokenizer = _pre_tokenizer(str(metadata.get("tokenizer.ggml.pre", "gpt-2")), source)
    self.backend.decoder = tk.decoders.ByteLevel()
    types = metadata.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    self.control_ids = {i for i, t in enumerate(types) if t == CONTROL}
    self.backend.add_special_tokens([tk.AddedToken(tokens[i], special=True, normalized=False)
                                     for i in sorted(self.control_ids)])
    # user-defined tokens (llama.cpp matches these whole too, e.g. <think>) are added, not special: decode keeps them
    self.backend.add_tokens([tk.AddedToken(tokens[i], special=False, normalized=False)
                             for i, t in enumerate(types) if t == USER_DEFINED])
    self.bos_id = metadata.get("tokenizer.ggml.bos_token_id")
    self.eos_id = metadata.get("tokenizer.ggml.eos_token_id")
    self.add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", False)) and self.bos_id is not None
    self.chat_template = metadata.get("tokenizer.chat_template")
    self.stop_ids = self._stop_ids(metadata)

  def _stop_ids(self, metadata: dict[str, object]) -> frozenset[int]:
    """The tokens that end a generation: eos, eot (llama.cpp's end of turn) and <|endoftext|> when present."""
    ids = {metadata.get("tokenizer.ggml.eos_token_id"), metadata.get("tokenizer.ggml.eot_token_id")}
    if "<|endoftext|>" in self.tokens:
      ids.add(self.tokens.index("<|endoftext|>"))
    return frozenset(i for i in ids if isinstance(i, int))

  @property
  def vocab_size(self) -> int:
    return len(self.tokens)

  def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
    """Token ids of text; control tokens written in the text (<|im_start|>) become their ids. add_bos defaults to
    the file's tokenizer.ggml.add_bos_token."""
    ids = self.backend.encode(text, add_special_tokens=False).ids
    if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
      ids = [self.bos_id] + ids
    return ids

  def decode(self, ids: list[int], skip_control: bool = True) -> str:
    """The text of ids (bytes that do not form whole UTF-8 characters yet come out as U+FFFD)."""
    return self.backend.decode(list(ids), skip_special_tokens=skip_control)

  def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """The prompt text for a conversation: the file's tokenizer.chat_template rendered with jinja2 when jinja2 is
    installed, else ChatML written directly (<|im_start|>role\\ncontent<|im_end|>\\n per message, then
    <|im_start|>assistant\\n), which is what SmolLM2's template renders, minus the default system message that
    template adds when the conversation has none.

    Args:
      messages: [{"role": "system" | "user" | "assistant", "content": text}, ...].
      add_generation_prompt: end with the assistant's header, so the model answers.
    """
    jinja = _jinja_environment() if self.chat_template else None
    if jinja is None:
      return chatml(messages, add_generation_prompt)
    env, template_error = jinja
    special = {name: self.tokens[i] if isinstance(i, int) else "" for name, i in
               (("bos_token", self.bos_id), ("eos_token", self.eos_id))}
    try:
      return env.from_string(self.chat_template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                        **special)
    except template_error as e:
      raise TokenizerError(f"the model's tokenizer.chat_template failed to render: {type(e).__name__}: {e}") from e


def _jinja_environment():
  """(a sandboxed jinja2 environment set up as transformers renders chat templates: trim_blocks, lstrip_blocks,
  raise_exception; jinja2.TemplateError), or None when jinja2 is not installed."""
  try:
    import jinja2.sandbox
  except ImportError:
    return None

  def raise_exception(message):
    raise jinja2.TemplateError(message)

  env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
  env.globals["raise_exception"] = raise_exception
  return env, jinja2.TemplateError


def chatml(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
  """ChatML written directly: <|im_start|>role\\ncontent<|im_end|>\\n per message, then <|im_start|>assistant\\n."""
  text = "".join(_CHATML_MESSAGE.format(role=m["role"], content=m["content"]) for m in messages)
  return text + (_CHATML_GENERATION if add_generation_prompt else "")


__all__ = ["GGUFTokenizer", "TokenizerError", "chatml"]
