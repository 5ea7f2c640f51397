"""Verification built into every export: llama.cpp itself loads the GGUF and is compared with the HF model.

Checks, per file:
- tokenizer: llama.cpp's tokenization of tricky strings (Chinese, emoji, leading spaces, special tokens)
  equals HF's;
- chat template: the template embedded in the GGUF, rendered by llama-cpp-python, gives the same prompt text
  and tokens as HF's apply_chat_template — the usual cause of "the export answers in gibberish";
- generation: greedy answers to fixed chat prompts are non-empty and mostly printable text (no stray bytes);
- fidelity: teacher-forced next-token logits on a fixed text, same token ids fed to both: top-1 agreement
  and perplexity delta against HF; plus llama.cpp's decode speed.

Lossless exports (F32/F16) must match HF: top-1 >= 0.98 and |ppl delta| <= 0.5%. F16 rounding moves logits by
~1e-3 relative, which flips only near-ties (well under 1% of positions) and moves perplexity by hundredths
of a percent; a wrong permutation, norm epsilon, rope setting or vocab puts top-1 far below and perplexity
far above those bounds. Quantized types are reported, not judged: their loss is the user's trade-off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.export.quant_types import ExportError

MIN_TOP1_LOSSLESS = 0.98
MAX_PPL_DELTA_LOSSLESS = 0.005
MIN_PRINTABLE = 0.9

# About 1,000 tokens of plain English, a little code and Chinese: perplexity over a few hundred tokens moves by
# whole percents between runs of nearly equal models, which would drown the differences between quant types.
EVAL_TEXT_PATH = Path(__file__).resolve().parents[2] / "assets" / "eval" / "export_fidelity.txt"
EVAL_TEXT = EVAL_TEXT_PATH.read_text(encoding="utf-8")
CHAT_PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer briefly."},
     {"role": "user", "content": "Name three colours of the rainbow."}],
]
TRICKY_STRINGS = [
    "Hello world", "   three leading spaces", "中文分词测试：你好，世界！", "emoji 🙂👍🏽 and ñ, ü, é",
    "tabs\tand\nnew lines\n\n", "numbers 12345 and 3.14159", "<|im_start|>user\nhi<|im_end|>",
]


class VerificationError(ExportError):
    """An export that llama.cpp does not run like the source model: a bug, not a quantization loss."""


@dataclass
class Reference:
    """What the HF model says, computed once and compared with every exported file."""

    ids: list[int]
    logits: np.ndarray
    tokenizer: object


def _nll(logits: np.ndarray, ids: list[int]) -> np.ndarray:
    logits = logits[:-1].astype(np.float64)
    logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    return logz - logits[np.arange(len(ids) - 1), ids[1:]]


def hf_reference(model_dir: str | Path) -> Reference:
    import torch
    from transformers import AutoModelForCausalLM

    from engine.export.vocab import reference_tokenizer

    tokenizer = reference_tokenizer(Path(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    ids = tokenizer(EVAL_TEXT)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].numpy()
    return Reference(ids=ids, logits=logits, tokenizer=tokenizer)


def _printable_share(text: str) -> float:
    return sum(c.isprintable() or c.isspace() for c in text if c != "\ufffd") / max(1, len(text))


def _check_tokenizer(llm, ref: Reference) -> None:
    for text in TRICKY_STRINGS:
        hf = ref.tokenizer(text, add_special_tokens=False)["input_ids"]
        ours = llm.tokenize(text.encode(), add_bos=False, special=True)
        if hf != ours:
            raise VerificationError(f"tokenizer mismatch on {text!r}: HF {hf[:16]} vs llama.cpp {ours[:16]}")


def _check_chat(llm, ref: Reference) -> list[str]:
    """Template and generation checks; returns the greedy answers."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    tok = ref.tokenizer
    formatter = Jinja2ChatFormatter(template, eos_token=tok.eos_token or "", bos_token=tok.bos_token or "")
    answers = []
    for messages in CHAT_PROMPTS:
        hf_text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        cpp_text = formatter(messages=messages).prompt
        if hf_text != cpp_text:
            raise VerificationError(f"chat template renders differently in llama.cpp: {cpp_text[:200]!r} vs "
                                    f"HF {hf_text[:200]!r}")
        hf_ids = tok(hf_text, add_special_tokens=True)["input_ids"]
        cpp_ids = llm.tokenize(cpp_text.encode(), add_bos=llm.metadata.get("tokenizer.ggml.add_bos_token") ==
                               "true", special=True)
        if hf_ids != cpp_ids:
            raise VerificationError(f"chat prompt tokenizes differently in llama.cpp: {cpp_ids[:24]} vs HF "
                                    f"{hf_ids[:24]}")
        llm.reset()
        out = llm.create_completion(cpp_ids, max_tokens=24, temperature=0.0, top_k=1)
        text = out["choices"][0]["text"]
        if not text or _printable_share(text) < MIN_PRINTABLE:  # blank lines are text; a random model says them
            raise VerificationError(f"greedy answer to {messages[-1]['content']!r} is empty or not text: {text!r}")
        answers.append(text)
    return answers


def _decode_speed(llm, ref: Reference, n: int = 32) -> float:
    """Greedy decode tokens/s, timed after the prompt is processed."""
    start = 0.0
    for i, _token in enumerate(llm.generate(ref.ids[:16], top_k=1, temp=0.0, reset=True)):
        if i == 0:
            start = time.perf_counter()  # the first token includes the prompt's processing
        elif i == n:
            break
    return n / (time.perf_counter() - start)


def verify_gguf(path: str | Path, ref: Reference, *, lossless: bool, threads: int = 2) -> dict:
    """Load path with llama.cpp and compare it with ref; returns metrics, raises VerificationError."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=max(512, len(ref.ids) + 64), n_batch=512, n_threads=threads,
                logits_all=True, verbose=False)
    try:
        _check_tokenizer(llm, ref)
        llm.reset()
        llm.eval(ref.ids)
        cpp_logits = np.asarray(llm.scores[: len(ref.ids)], dtype=np.float32)
        ppl_hf = float(np.exp(_nll(ref.logits, ref.ids).mean()))
        ppl = float(np.exp(_nll(cpp_logits, ref.ids).mean()))
        metrics = {
            "top1_agreement": float((cpp_logits.argmax(-1) == ref.logits.argmax(-1)).mean()),
            "ppl": ppl, "ppl_hf": ppl_hf, "ppl_delta_pct": 100 * (ppl - ppl_hf) / ppl_hf,
            "max_abs_logit_diff": float(np.abs(cpp_logits - ref.logits).max()),
            "eval_tokens": len(ref.ids),
        }
        if lossless and (metrics["top1_agreement"] < MIN_TOP1_LOSSLESS
                         or abs(metrics["ppl_delta_pct"]) > 100 * MAX_PPL_DELTA_LOSSLESS):
            raise VerificationError(
                f"{Path(path).name} disagrees with the HF model (top-1 {metrics['top1_agreement']:.3f}, "
                f"ppl delta {metrics['ppl_delta_pct']:+.3f}%): a conversion bug, not quantization loss")
        if llm.metadata.get("tokenizer.chat_template"):
            metrics["answers"] = _check_chat(llm, ref)
        metrics["tokens_per_s"] = _decode_speed(llm, ref)
        return metrics
    finally:
        llm.close()
