"""Inkstone's continuous-batching inference engine: paged KV cache, prefix caching, chunked prefill."""

from engine.infer.config import EngineConfig
from engine.infer.llm_engine import LLMEngine
from engine.infer.outputs import GenerationResult, RequestOutput, TokenLogprob
from engine.infer.sampling_params import SamplingParams

__all__ = ["EngineConfig", "GenerationResult", "LLMEngine", "RequestOutput", "SamplingParams", "TokenLogprob"]
