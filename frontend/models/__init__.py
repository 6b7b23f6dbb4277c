"""Pretrained models: LLaMA-architecture language models from GGUF files, their tokenizer, text generation, and the
default model's download (SmolLM2-135M-Instruct).

  from frontend.models import GGUFTokenizer, generate, load_llama, smollm2_gguf
"""
from frontend.models.llama import ContextError, Llama, LlamaConfig, load_llama
from frontend.models.tokenizer import GGUFTokenizer, TokenizerError
from frontend.models.generate import GenerationStats, Sampler, TextStream, generate
from frontend.models.fetch import ModelUnavailable, smollm2_gguf

__all__ = ["ContextError", "GGUFTokenizer", "GenerationStats", "Llama", "LlamaConfig", "ModelUnavailable", "Sampler",
           "TextStream", "TokenizerError", "generate", "load_llama", "smollm2_gguf"]
