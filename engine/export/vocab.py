"""The tokenizer part of a GGUF: tokens, scores, token types, merges, special ids, add-BOS/EOS flags, chat template.

llama.cpp re-implements the HF tokenizer from this metadata, so every piece must match what the HF tokenizer
really does: a wrong pre-tokenizer name or add-BOS flag gives a model that loads fine and answers in
gibberish. Two kinds are written, the way llama.cpp's own convert_hf_to_gguf.py writes them:

- byte-level BPE (GPT-2, SmolLM, Llama-3, Qwen2): tokenizer.ggml.model "gpt2" with the merges. The
  pre-tokenizer is recognised from tokenizer.json's own structure (the regex it splits with); one we do not
  recognise is refused rather than guessed.
- SentencePiece BPE with byte fallback (Llama-2, Mistral v0.1, TinyLlama): "llama", no merges but a score per
  piece, because llama.cpp, like sentencepiece, joins the adjacent pair whose joined piece scores highest.
  Pieces and scores come from tokenizer.model when there is one (as llama.cpp prefers), else from tokenizer.json,
  scoring each piece by the rank of the merge that makes it.

SentencePiece unigram models are refused: llama.cpp's "llama" tokenizer merges greedily by score, which is not
unigram's search for the likeliest segmentation, so it splits many words differently. Verification then checks
llama.cpp's tokenization against HF's on tricky strings.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.export.quant_types import ExportError

# llama.cpp's names for the HF pre-tokenizer regexes (llama-vocab.cpp), keyed by what tells them apart.
_LLAMA3_DIGITS = r"\p{N}{1,3}"
_QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"

# GGUF token types (llama.cpp's llama_token_type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")  # sentencepiece's byte-fallback pieces
_ADDED_SCORE = -1000.0  # llama.cpp's score for added tokens and padding: never chosen by a merge
_UNIGRAM_REFUSAL = ("SentencePiece unigram tokenizers cannot be exported: llama.cpp's SentencePiece tokenizer merges "
                    "by score like BPE and would split text differently (supported: byte-level BPE, SentencePiece BPE)")


@dataclass
class GgufVocab:
    model: str
    """tokenizer.ggml.model: "gpt2" for byte-level BPE, "llama" for SentencePiece."""
    pre: str
    """tokenizer.ggml.pre: the pre-tokenizer llama.cpp must use ("default" for SentencePiece)."""
    tokens: list[str] = field(default_factory=list)
    """Every token string by id, padded to the model's vocab size."""
    token_types: list[int] = field(default_factory=list)
    """NORMAL, UNKNOWN, CONTROL (special), USER_DEFINED (added), UNUSED (padding) or BYTE per id."""
    scores: list[float] = field(default_factory=list)
    """SentencePiece only: each piece's score, which orders llama.cpp's merges."""
    add_space_prefix: bool = False
    """SentencePiece only: whether the HF tokenizer puts "▁" in front of a text (measured)."""
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
    """Read the HF tokenizer in folder; ExportError when it is missing or of a kind llama.cpp cannot reproduce."""
    path, spm_path = folder / "tokenizer.json", folder / "tokenizer.model"
    if not path.is_file() and not spm_path.is_file():
        raise ExportError(f"{folder}: missing tokenizer (no tokenizer.json or tokenizer.model)")
    tokenizer_json = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    model = (tokenizer_json or {}).get("model", {})
    # tokenizer.json is what HF runs, so it decides the kind; a tokenizer.model beside a byte-level BPE is ignored.
    if tokenizer_json is None or _is_sentencepiece_bpe(model):
        pieces = _tokenizer_model_pieces(spm_path) if spm_path.is_file() else _tokenizer_json_pieces(model)
        tokenizer = reference_tokenizer(folder)
        vocab = _sentencepiece_vocab(pieces, tokenizer, folder, vocab_size)
    elif model.get("type") == "BPE":
        pre = _pre_tokenizer_name(tokenizer_json, path)
        tokenizer = reference_tokenizer(folder)
        vocab = _byte_level_vocab(pre, tokenizer, path, vocab_size)
    elif model.get("type") == "Unigram":
        raise ExportError(f"{path}: {_UNIGRAM_REFUSAL}")
    else:
        raise ExportError(f"{path}: {model.get('type')} tokenizers are not supported for export "
                          "(supported: byte-level BPE, SentencePiece BPE with byte fallback)")
    probe = tokenizer("a")["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    vocab.add_bos = tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id] != bare[:1]
    vocab.add_eos = tokenizer.eos_token_id is not None and probe[-1:] == [tokenizer.eos_token_id] != bare[-1:]
    return vocab


def _is_sentencepiece_bpe(model: dict) -> bool:
    """Whether tokenizer.json's model section is SentencePiece BPE (byte fallback) rather than byte-level BPE."""
    return model.get("type") == "BPE" and bool(model.get("byte_fallback"))


def reference_tokenizer(folder: Path):
    """The HF tokenizer an export must reproduce (and verification compares llama.cpp with).

    For a SentencePiece folder that is tokenizer.json run as written: it reproduces sentencepiece, which the
    model was trained with. transformers 5's LlamaTokenizer class (named by Llama-2 and Mistral configs)
    rebuilds its own pre-tokenizer instead, which drops the "▁" before a text that starts with a space or
    follows a special token; llama.cpp, like sentencepiece, keeps it.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = folder / "tokenizer.json"
    as_written = path.is_file() and _is_sentencepiece_bpe(json.loads(path.read_text(encoding="utf-8")).get("model", {}))
    try:
        return (PreTrainedTokenizerFast if as_written else AutoTokenizer).from_pretrained(str(folder))
    except (OSError, ValueError, ImportError) as e:
        raise ExportError(f"{folder}: transformers cannot load the tokenizer: {e}") from e


def _byte_level_vocab(pre: str, tokenizer, path: Path, vocab_size: int) -> GgufVocab:
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
    return vocab


def _tokenizer_model_pieces(path: Path) -> dict[int, tuple[str, float, int]]:
    """{id: (piece, score, type)} from a sentencepiece model, typed as llama.cpp's converter types them."""
    from sentencepiece import SentencePieceProcessor, sentencepiece_model_pb2

    try:
        sp = SentencePieceProcessor(model_file=str(path))
    except RuntimeError as e:
        raise ExportError(f"{path}: not a SentencePiece model ({e})") from e
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(sp.serialized_model_proto())
    if proto.trainer_spec.model_type == proto.trainer_spec.UNIGRAM:
        raise ExportError(f"{path}: {_UNIGRAM_REFUSAL}")

    def kind(i: int) -> int:
        if sp.IsUnknown(i):
            return UNKNOWN
        if sp.IsControl(i):
            return CONTROL
        return UNUSED if sp.IsUnused(i) else BYTE if sp.IsByte(i) else NORMAL

    return {i: (sp.IdToPiece(i), sp.GetScore(i), kind(i)) for i in range(sp.vocab_size())}


def _tokenizer_json_pieces(model: dict) -> dict[int, tuple[str, float, int]]:
    """{id: (piece, score, type)} from a byte-fallback BPE tokenizer.json, which has merges but no scores.

    A sentencepiece BPE piece scores higher the earlier it was learnt, so minus the rank of the first merge that
    makes it orders llama.cpp's merges as HF's merge ranks do. (gguf's LlamaHfVocab gives every piece -1000, and
    llama.cpp then joins pairs left to right: it splits many words unlike HF.) Characters and bytes are never a
    merge's result, so their score is unused; they, and pieces no merge makes, get the lowest.
    """
    rank: dict[str, int] = {}
    for r, merge in enumerate(model.get("merges", [])):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank.setdefault(left + right, r)
    unk = model.get("unk_token")

    def kind(piece: str) -> int:
        return UNKNOWN if piece == unk else BYTE if _BYTE_PIECE.fullmatch(piece) else NORMAL

    return {i: (p, -float(rank.get(p, len(rank))), kind(p)) for p, i in model.get("vocab", {}).items()}


def _sentencepiece_vocab(pieces: dict[int, tuple[str, float, int]], tokenizer, folder: Path,
                         vocab_size: int) -> GgufVocab:
    added = tokenizer.added_tokens_decoder
    top = max([*pieces, *added])
    if top >= vocab_size:
        raise ExportError(f"{folder}: token id {top} is beyond the model's vocab_size {vocab_size}")
    reverse = {i: tok for tok, i in tokenizer.get_vocab().items()}
    wrong = next((i for i, (piece, _, _) in sorted(pieces.items()) if i not in added and reverse.get(i) != piece), None)
    if wrong is not None:  # tokenizer.model and tokenizer.json disagree: we would export another tokenizer than HF's
        raise ExportError(f"{folder}: tokenizer.model has {pieces[wrong][0]!r} as token {wrong} but the HF tokenizer "
                          f"has {reverse.get(wrong)!r}")
    vocab = GgufVocab(model="llama", pre="default", tokens=[f"[PAD{i}]" for i in range(vocab_size)],
                      token_types=[UNUSED] * vocab_size, scores=[_ADDED_SCORE] * vocab_size)
    for i, (piece, score, kind) in pieces.items():
        vocab.tokens[i], vocab.scores[i], vocab.token_types[i] = piece, score, kind
    # Added tokens override the pieces, as in llama.cpp's converter: special ones become CONTROL (found in a text
    # only when parsing specials), the others USER_DEFINED, always found, with "▁" as the space it stands for.
    for i, token in added.items():
        vocab.tokens[i] = token.content if token.special else token.content.replace("▁", " ")
        vocab.token_types[i] = CONTROL if token.special else USER_DEFINED
        vocab.scores[i] = _ADDED_SCORE
    # "▁" is a piece of every SentencePiece vocab, so a text gets the prefix iff its first piece starts with one.
    first = tokenizer.convert_ids_to_tokens(tokenizer("a", add_special_tokens=False)["input_ids"][:1])
    vocab.add_space_prefix = bool(first) and first[0].startswith("▁")
    return vocab


def add_vocab(writer, folder: Path, vocab: GgufVocab) -> None:
    """Write the tokenizer keys: ours for tokens and flags, gguf's SpecialVocab for merges, ids, template."""
    import gguf

    sentencepiece = vocab.model == "llama"
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    if sentencepiece:
        writer.add_token_scores(vocab.scores)
        writer.add_add_space_prefix(vocab.add_space_prefix)
    writer.add_token_types(vocab.token_types)
    special = gguf.SpecialVocab(folder, load_merges=not sentencepiece, n_vocab=len(vocab.tokens))
    if not sentencepiece and not special.merges:
        raise ExportError(f"{folder / 'tokenizer.json'}: no BPE merges found")
    special.add_special_token = {"bos": vocab.add_bos, "eos": vocab.add_eos}
    special.add_to_gguf(writer, quiet=True)
