"""The tokenizer part of a GGUF: tokens, token types, merges, special ids, add-BOS/EOS flags, chat template.

llama.cpp re-implements the HF tokenizer from this metadata, so every piece must match what the HF tokenizer
really does: a wrong pre-tokenizer name or add-BOS flag gives a model that loads fine and answers in
gibberish. The pre-tokenizer is recognised from tokenizer.json's own structure (the regex it splits with);
one we do not recognise is refused rather than guessed. Verification then checks llama.cpp's tokenization
against HF's on tricky strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.export.quant_types import ExportError

# llama.cpp's names for the HF pre-tokenizer regexes (llama-vocab.cpp), keyed by what tells them apart.
_LLAMA3_DIGITS = r"\p{N}{1,3}"
_QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"

# GGUF token types (llama.cpp's llama_token_type).
NORMAL, UNUSED, USER_DEFINED, CONTROL = 1, 5, 4, 3


@dataclass
class GgufVocab:
    model: str
    """tokenizer.ggml.model: "gpt2" for byte-level BPE."""
    pre: str
    """tokenizer.ggml.pre: the pre-tokenizer llama.cpp must use."""
    tokens: list[str] = field(default_factory=list)
    """Every token string by id, padded to the model's vocab size."""
    token_types: list[int] = field(default_factory=list)
    """NORMAL, CONTROL (special), USER_DEFINED (added) or UNUSED (padding) per id."""
    add_bos: bool = False
    """Whether the HF tokenizer puts BOS in front of a text (measured, not read from a flag)."""
    add_eos: bool = False
    """Whether the HF tokenizer appends EOS to a text (measured)."""


def _pre_tokenizer_name(tokenizer_json: dict, path: Path) -> str:
    pre = tokenizer_json.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm"
    if kinds and kinds[0] == "Split":
        regex = (parts[0].get("pattern") or {}).get("Regex", "")
        if _LLAMA3_DIGITS in regex:
            return "llama-bpe"
        if regex.startswith(_QWEN2_SPLIT):
            return "qwen2"
    raise ExportError(f"{path}: pre-tokenizer {json.dumps(pre)[:200]} is not one llama.cpp is known to "
                      "reproduce (supported: GPT-2, SmolLM, Llama-3, Qwen2 byte-level BPE)")


def build_vocab(folder: Path, vocab_size: int) -> GgufVocab:
    """Read the HF tokenizer in folder; ExportError when it is missing or not a byte-level BPE."""
    from transformers import AutoTokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        if (folder / "tokenizer.model").is_file():
            raise ExportError(f"{folder}: SentencePiece tokenizers (tokenizer.model without tokenizer.json) are "
                              "not supported for export yet")
        raise ExportError(f"{folder}: missing tokenizer (no tokenizer.json)")
    tokenizer_json = json.loads(path.read_text(encoding="utf-8"))
    if tokenizer_json.get("model", {}).get("type") != "BPE" or tokenizer_json["model"].get("byte_fallback"):
        raise ExportError(f"{path}: only byte-level BPE tokenizers are supported for export")
    pre = _pre_tokenizer_name(tokenizer_json, path)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    reverse = {i: tok for tok, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    if max(reverse) >= vocab_size:
        raise ExportError(f"{path}: token id {max(reverse)} is beyond the model's vocab_size {vocab_size}")
    vocab = GgufVocab(model="gpt2", pre=pre)
    for i in range(vocab_size):
        if i not in reverse:  # embedding rows the tokenizer never produces
            vocab.tokens.append(f"[PAD{i}]")
            vocab.token_types.append(UNUSED)
        elif i in added:
            vocab.tokens.append(reverse[i])
            vocab.token_types.append(CONTROL if added[i].special else USER_DEFINED)
        else:
            vocab.tokens.append(reverse[i])
            vocab.token_types.append(NORMAL)
    probe = tokenizer("a")["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    vocab.add_bos = tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id] != bare[:1]
    vocab.add_eos = tokenizer.eos_token_id is not None and probe[-1:] == [tokenizer.eos_token_id] != bare[-1:]
    return vocab


def add_vocab(writer, folder: Path, vocab: GgufVocab) -> None:
    """Write the tokenizer keys: ours for tokens and flags, gguf's SpecialVocab for merges, ids, template."""
    import gguf

    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(vocab.tokens))
    if not special.merges:
        raise ExportError(f"{folder / 'tokenizer.json'}: no BPE merges found")
    special.add_special_token = {"bos": vocab.add_bos, "eos": vocab.add_eos}
    special.add_to_gguf(writer, quiet=True)
