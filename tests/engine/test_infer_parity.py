"""Greedy output of our engine must equal HF `generate` token for token (CPU, fp32); bf16 must stay near it.

Covers the llama family as it appears in checkpoints (SmolLM2, and tiny random llama with llama3 rope scaling,
qwen2 with qkv bias and tied embeddings, mistral with a single KV head), batches of mixed-length prompts, and
the scheduler paths that must not change results: prefix caching on/off, chunked prefill, preemption.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine.infer import EngineConfig, LLMEngine, SamplingParams

GREEDY = SamplingParams(temperature=0, max_tokens=24)
TINY_ARCHS = ["llama", "qwen2", "mistral"]
_HF_CACHE: dict[tuple, list[int]] = {}


def hf_greedy(model_dir, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """HF's greedy continuation of one prompt (batch 1, no padding, stops after EOS), cached."""
    key = (str(model_dir), tuple(prompt_ids), max_new_tokens)
    if key not in _HF_CACHE:
        model = _hf_model(str(model_dir))
        ids = torch.tensor([prompt_ids])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=0)
        _HF_CACHE[key] = out[0, len(prompt_ids):].tolist()
    return _HF_CACHE[key]


_MODELS: dict[str, torch.nn.Module] = {}


def _hf_model(path: str):
    if path not in _MODELS:
        _MODELS[path] = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return _MODELS[path]


def mixed_prompts(tokenizer, count: int = 5) -> list[list[int]]:
    texts = [
        "Hello",
        "The capital of France is",
        "Once upon a time, in a land far away, there lived a dragon who loved",
        "def fibonacci(n):\n    " * 3,
        "Rain fell on the quiet city while the lights of a hundred windows flickered one by one " * 4,
        "1, 2, 3, 5, 8, 13,",
    ]
    return [tokenizer.encode(t) for t in texts[:count]]


def assert_matches_hf(engine: LLMEngine, model_dir, prompts: list[list[int]], params=GREEDY):
    results = engine.generate(prompts, params)
    for prompt, result in zip(prompts, results, strict=True):
        assert result.token_ids == hf_greedy(model_dir, prompt, params.max_tokens), engine.tokenizer.decode(prompt)
    return results


@pytest.mark.parametrize("arch", TINY_ARCHS)
@pytest.mark.parametrize("prefix_caching", [True, False])
def test_tiny_models_match_hf(tiny_model_dir, arch, prefix_caching):
    path = tiny_model_dir(arch)
    engine = LLMEngine(str(path), EngineConfig(device="cpu", dtype="float32", enable_prefix_caching=prefix_caching,
                                               num_kv_blocks=128))
    prompts = mixed_prompts(engine.tokenizer, 6)
    assert_matches_hf(engine, path, prompts)
    # Run again: with caching on, the repeat is served from cached blocks and must not change anything.
    results = assert_matches_hf(engine, path, prompts)
    cached = sum(r.num_cached_tokens for r in results)
    assert (cached > 0) == prefix_caching


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_chunked_prefill_and_preemption_match_hf(tiny_model_dir, arch):
    path = tiny_model_dir(arch)
    # 7 tokens per step forces every prompt into chunks mixed with decodes; 12 blocks of 4 tokens hold about
    # two sequences, so the rest are preempted and recomputed.
    engine = LLMEngine(str(path), EngineConfig(device="cpu", dtype="float32", max_num_batched_tokens=7, block_size=4,
                                               num_kv_blocks=40, max_model_len=160))
    prompts = mixed_prompts(engine.tokenizer, 6)
    assert_matches_hf(engine, path, prompts)
    assert engine.stats()["preemptions"] > 0
    assert engine.stats()["kv_blocks_used"] == 0


def test_smollm2_matches_hf_in_a_mixed_batch(bundled_model_dir):
    engine = LLMEngine(str(bundled_model_dir), EngineConfig(device="cpu", dtype="float32", num_kv_blocks=64,
                                                            max_num_batched_tokens=48))
    tok = engine.tokenizer
    chats = [[{"role": "user", "content": "What is the capital of France?"}],
             [{"role": "user", "content": "Write a haiku about autumn leaves falling in the park."}],
             [{"role": "user", "content": "List three prime numbers."}]]
    prompts = [tok.encode(tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False)) for c in chats]
    params = SamplingParams(temperature=0, max_tokens=16)
    results = engine.generate(prompts, params)
    for prompt, result in zip(prompts, results, strict=True):
        expected = hf_greedy(bundled_model_dir, prompt, 16)
        assert result.token_ids == expected
        assert result.text == tok.decode(expected, skip_special_tokens=True)


def test_prefix_cache_hit_reports_cached_tokens_and_matches_hf(tiny_model_dir):
    path = tiny_model_dir("llama")
    engine = LLMEngine(str(path), EngineConfig(device="cpu", dtype="float32", block_size=8, num_kv_blocks=64))
    prefix = engine.tokenizer.encode("A long shared system prompt that tells the model how to behave. " * 3)
    first = prefix + engine.tokenizer.encode(" Question one?")
    second = prefix + engine.tokenizer.encode(" A different question two?")
    [r1] = assert_matches_hf(engine, path, [first])
    assert r1.num_cached_tokens == 0
    [r2] = assert_matches_hf(engine, path, [second])
    assert r2.num_cached_tokens == len(prefix) // 8 * 8
    # The whole prompt cached: the last token is still computed, so logits exist and nothing changes.
    [r3] = assert_matches_hf(engine, path, [first])
    assert r3.num_cached_tokens == (len(first) - 1) // 8 * 8


def test_multi_turn_chat_reuses_earlier_turns(bundled_model_dir):
    engine = LLMEngine(str(bundled_model_dir), EngineConfig(device="cpu", dtype="float32", num_kv_blocks=64))
    tok = engine.tokenizer
    chat = [{"role": "user", "content": "Name a fruit that is red."}]
    params = SamplingParams(temperature=0, max_tokens=12)
    first = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    [r1] = engine.generate([first], params)
    chat += [{"role": "assistant", "content": r1.text}, {"role": "user", "content": "And a yellow one?"}]
    second = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    second_ids = tok.encode(second)
    [r2] = engine.generate([second_ids], params)
    # The first turn's prompt and answer are in cached blocks (all full blocks of the shared prefix).
    shared = 0
    first_ids = tok.encode(first) + r1.token_ids
    while shared < min(len(first_ids), len(second_ids)) and first_ids[shared] == second_ids[shared]:
        shared += 1
    assert r2.num_cached_tokens == shared // 16 * 16 > len(tok.encode(first)) // 16 * 16 - 16
    assert r2.token_ids == hf_greedy(bundled_model_dir, second_ids, 12)


def test_bf16_on_cpu_follows_the_fp32_model(bundled_model_dir):
    """bf16 (the CPU default where the CPU has native bf16) cannot match fp32 bit for bit; instead every greedy
    token it picks must be one fp32 HF ranks near the top, teacher-forced on the same text, in a mixed batch."""
    engine = LLMEngine(str(bundled_model_dir), EngineConfig(device="cpu", dtype="bfloat16", num_kv_blocks=64))
    assert engine.runner.dtype == torch.bfloat16
    prompts = mixed_prompts(engine.tokenizer) + [engine.tokenizer.encode("用一句话介绍长城。")]
    results = engine.generate(prompts, SamplingParams(temperature=0, max_tokens=16, ignore_eos=True))
    model = _hf_model(str(bundled_model_dir))
    for prompt, result in zip(prompts, results, strict=True):
        ids = torch.tensor([prompt + result.token_ids])
        with torch.inference_mode():
            logprobs = model(ids).logits[0, len(prompt) - 1:-1].log_softmax(-1)
        chosen = logprobs.gather(1, torch.tensor(result.token_ids)[:, None])[:, 0]
        # Near-ties flip under bf16 rounding; anything else would be a wrong kernel, not rounding.
        assert (logprobs.max(-1).values - chosen).max() < 1.0, engine.tokenizer.decode(prompt)


def test_fp16_weights_on_cpu_follow_the_fp32_model(bundled_model_dir):
    """dtype auto on a CPU without native bf16 keeps fp32 compute over fp16 weights: every greedy token
    must be one fp32 HF ranks at or next to the top, and nearly all must be HF's own choice."""
    engine = LLMEngine(str(bundled_model_dir), EngineConfig(device="cpu", num_kv_blocks=64))
    if not engine.runner.fp16_weights:
        pytest.skip("this CPU runs bf16 natively or has no FBGEMM: dtype auto does not use fp16 weights")
    assert engine.runner.dtype == torch.float32
    prompts = mixed_prompts(engine.tokenizer) + [engine.tokenizer.encode("用一句话介绍长城。")]
    results = engine.generate(prompts, SamplingParams(temperature=0, max_tokens=16, ignore_eos=True))
    model = _hf_model(str(bundled_model_dir))
    agree = total = 0
    for prompt, result in zip(prompts, results, strict=True):
        ids = torch.tensor([prompt + result.token_ids])
        with torch.inference_mode():
            logprobs = model(ids).logits[0, len(prompt) - 1:-1].log_softmax(-1)
        chosen = logprobs.gather(1, torch.tensor(result.token_ids)[:, None])[:, 0]
        assert (logprobs.max(-1).values - chosen).max() < 0.5, engine.tokenizer.decode(prompt)
        agree += int((logprobs.argmax(-1) == torch.tensor(result.token_ids)).sum())
        total += len(result.token_ids)
    assert agree >= 0.95 * total
