"""SentencePiece (Llama-2 style) tokenizers export as llama.cpp's "llama" vocab: pieces, scores, byte fallback,
space prefix, special tokens and chat template, all checked by llama.cpp itself against the HF tokenizer.

The tokenizer is trained here, offline, on a few English and Chinese sentences, with Llama-2's settings (BPE,
byte fallback, <unk> <s> </s> as ids 0 1 2, a "▁" prefix, digits split, no normalisation), and wrapped as HF
folders ship it: tokenizer.model beside a tokenizer.json in Llama-2's own layout (Prepend + Replace normaliser,
which gives text after a special token its "▁" too, as sentencepiece does per piece of text).
"""

from __future__ import annotations

import json
import shutil

import pytest
from gguf import GGUFReader

from engine.export.exporter import ExportRequest, export_gguf
from engine.export.quant_types import ExportError
from engine.export.vocab import build_vocab

# Llama-2's template starts each turn with bos_token, and verification tokenizes the rendered prompt with BOS added,
# on both sides alike; llama-cpp-python warns about the doubled BOS.
pytestmark = pytest.mark.filterwarnings("ignore:Detected duplicate leading:RuntimeWarning")

CORPUS = """The river rises in the hills north of the town and runs south through farmland before it reaches the sea.
In spring the snow melts and the water climbs the stone walls that the farmers built a century ago.
Children walk along the bank on their way to school, counting the boats and the herons in the shallows.
The old mill once ground wheat for the whole valley; now it is a small museum where visitors see the wheel.
Every autumn the town holds a market by the bridge, and people sell apples, cheese, honey and wool.
What is the capital of France? Paris is the capital of France. Name three colours: red, green and blue.
The year 1984 had 366 days, and 3.14159 is close to pi. Call 555-0123 before 10:30 on Monday.
河流发源于城镇北面的山丘，向南流经农田，然后汇入大海。
春天积雪融化，河水漫过农民一百年前修建的石墙。
孩子们沿着河岸走路去上学，数着船只和站在浅滩里的苍鹭。
你好，世界！今天天气很好，我们去公园散步吧。中文分词测试。
"""
CHAT_TEMPLATE = (  # Llama-2's: <s>[INST] <<SYS>> ... <</SYS>> user [/INST] answer </s>, per turn
    "{% if messages[0]['role'] == 'system' %}{% set system = '<<SYS>>\\n' + messages[0]['content'] + "
    "'\\n<</SYS>>\\n\\n' %}{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}{% endfor %}"
)
PADDING = 8  # embedding rows past the tokenizer, as models padded to a multiple have
TRICKY = [
    "Hello world", " leading space", "   three leading spaces", "trailing spaces   ", "中文分词测试：你好，世界！",
    "日本語とにほんご", "emoji 🙂👍🏽🇫🇷 and ñ, ü, é", "tabs\tand\nnew lines\n\n\n", "numbers 12345 and 3.14159",
    "<s>[INST] hi [/INST] hello </s>", "<s> after a special token", "a</s>b", "It's, we're — don't", "",
]


def train_sentencepiece(prefix, model_type: str):
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS.splitlines() * 4), model_prefix=str(prefix), model_type=model_type,
        vocab_size=600, hard_vocab_limit=False, character_coverage=1.0, byte_fallback=True, split_digits=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, add_dummy_prefix=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", allow_whitespace_only_pieces=True, minloglevel=2)
    return prefix.with_suffix(".model")


def hf_tokenizer(model_file, model_type: str = "bpe"):
    """A fast HF tokenizer laid out like Llama-2's tokenizer.json (transformers 5's LlamaTokenizer class builds a
    Metaspace one instead, which drops the "▁" before a text that starts with a space, unlike sentencepiece)."""
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE, Unigram
    from transformers import PreTrainedTokenizerFast

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    pieces = [sp.IdToPiece(i) for i in range(sp.vocab_size())]
    if model_type == "bpe":
        vocab = {p: i for i, p in enumerate(pieces)}
        # sentencepiece joins the pair making the best-scored (earliest learnt) piece: list every split of every
        # piece, in piece order, as the merges (what transformers' SentencePieceExtractor does)
        merges = [(p[:k], p[k:]) for i, p in enumerate(pieces) if not (sp.IsControl(i) or sp.IsByte(i) or
                  sp.IsUnknown(i)) for k in range(1, len(p)) if p[:k] in vocab and p[k:] in vocab]
        model = BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    else:
        model = Unigram([(p, sp.GetScore(i)) for i, p in enumerate(pieces)], unk_id=0, byte_fallback=True)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   chat_template=CHAT_TEMPLATE)


def make_model_folder(out, model_file):
    """The tokenizer (tokenizer.model and HF files) beside a tiny random llama whose vocab is PADDING rows longer."""
    import sentencepiece as spm
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = hf_tokenizer(model_file)
    tokenizer.save_pretrained(out)
    shutil.copy(model_file, out / "tokenizer.model")
    config = AutoConfig.for_model(
        "llama", vocab_size=len(tokenizer) + PADDING, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # A random model babbles: keep its greedy answers off raw bytes (half-characters), padding and end-of-text, so
    # verification's "the answer is text" check sees text, as it would from a trained model
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    quiet = [i for i in range(sp.vocab_size()) if sp.IsByte(i) or sp.IsControl(i) or sp.IsUnknown(i)]
    with torch.no_grad():
        model.lm_head.weight[quiet + list(range(len(tokenizer), config.vocab_size))] = 0
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("llama2-spm"), train_sentencepiece(
        tmp_path_factory.mktemp("spm-bpe") / "spm", "bpe"))


@pytest.fixture(scope="module")
def exported(spm_model, tmp_path_factory):
    """F16 and Q8_0 exports, both verified by llama.cpp against the HF model (the exporter's default)."""
    files = export_gguf(ExportRequest(str(spm_model), "f16,q8_0", str(tmp_path_factory.mktemp("spm-out")),
                                      name="spm"))
    return {f.quant: f for f in files}


@pytest.fixture(scope="module")
def tokenizers(spm_model, exported):
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    llm = Llama(model_path=str(exported["f16"].path), vocab_only=True, verbose=False)
    yield AutoTokenizer.from_pretrained(str(spm_model)), llm
    llm.close()


def field(reader: GGUFReader, key: str):
    return reader.fields[key].contents()


def detokenize(llm, ids: list[int]) -> str:
    """llama.cpp's own llama_detokenize, which drops the space prefix as the GGUF says (llama-cpp-python's
    Llama.detokenize joins pieces for streaming and keeps it)."""
    import ctypes

    import llama_cpp

    buf = ctypes.create_string_buffer(4096)
    n = llama_cpp.llama_detokenize(llm._model.vocab, (llama_cpp.llama_token * len(ids))(*ids), len(ids), buf,
                                   len(buf), False, True)
    return buf.raw[:n].decode()


def test_f16_export_is_verified_with_a_llama_vocab(spm_model, exported):
    f16 = exported["f16"]
    assert f16.metrics["top1_agreement"] >= 0.98 and f16.metrics["answers"]  # lossless, chat template checked
    reader = GGUFReader(str(f16.path))
    n_vocab = json.loads((spm_model / "config.json").read_text())["vocab_size"]
    assert field(reader, "tokenizer.ggml.model") == "llama" and field(reader, "tokenizer.ggml.pre") == "default"
    assert "tokenizer.ggml.merges" not in reader.fields  # SentencePiece merges by score
    tokens, scores = field(reader, "tokenizer.ggml.tokens"), field(reader, "tokenizer.ggml.scores")
    types = field(reader, "tokenizer.ggml.token_type")
    assert len(tokens) == len(scores) == len(types) == n_vocab
    assert tokens[:4] == ["<unk>", "<s>", "</s>", "<0x00>"] and types[:4] == [3, 3, 3, 6]  # specials, a byte
    assert tokens[-PADDING:] == [f"[PAD{i}]" for i in range(n_vocab - PADDING, n_vocab)]
    assert types[-PADDING:] == [5] * PADDING  # UNUSED
    normal = [s for s, t in zip(scores, types, strict=True) if t == 1]
    assert normal == sorted(normal, reverse=True) and normal[0] > normal[-1]  # learnt order, best first
    assert field(reader, "tokenizer.ggml.add_bos_token") is True
    assert field(reader, "tokenizer.ggml.add_eos_token") is False
    assert field(reader, "tokenizer.ggml.add_space_prefix") is True
    assert field(reader, "tokenizer.ggml.bos_token_id") == 1 and field(reader, "tokenizer.ggml.eos_token_id") == 2
    assert field(reader, "tokenizer.ggml.unknown_token_id") == 0
    assert field(reader, "tokenizer.chat_template") == CHAT_TEMPLATE


@pytest.mark.parametrize("text", TRICKY)
def test_llamacpp_tokenizes_like_hf(tokenizers, text):
    hf, llm = tokenizers
    want = hf(text, add_special_tokens=False)["input_ids"]
    got = llm.tokenize(text.encode(), add_bos=False, special=True)
    assert got == want
    assert detokenize(llm, got) == hf.decode(want)


def test_hf_tokenizer_is_sentencepiece(spm_model):
    """The fixture's own check: the HF tokenizer splits plain text exactly as sentencepiece does."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(spm_model))
    sp = spm.SentencePieceProcessor(model_file=str(spm_model / "tokenizer.model"))
    for text in [t for t in TRICKY if "<" not in t] + CORPUS.splitlines():
        assert hf(text, add_special_tokens=False)["input_ids"] == sp.encode(text)


def test_q8_0_export_is_verified(exported):
    q8 = exported["q8_0"]
    assert q8.path.stat().st_size < exported["f16"].path.stat().st_size
    assert 0 <= q8.metrics["top1_agreement"] <= 1 and q8.metrics["tokens_per_s"] > 0 and q8.metrics["answers"]


def test_tokenizer_json_alone_gives_the_same_pieces(spm_model, tmp_path):
    """Without tokenizer.model the pieces come from tokenizer.json, scored by merge rank; llama.cpp still splits
    like HF (verification on)."""
    folder = shutil.copytree(spm_model, tmp_path / "m", ignore=shutil.ignore_patterns("tokenizer.model"))
    n_vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    from_json, from_model = build_vocab(folder, n_vocab), build_vocab(spm_model, n_vocab)
    assert from_json.tokens == from_model.tokens and from_json.token_types == from_model.token_types
    files = export_gguf(ExportRequest(str(folder), "f16", str(tmp_path / "out")))
    assert files[0].metrics["top1_agreement"] >= 0.98


def test_unigram_is_refused(tmp_path):
    """llama.cpp's SentencePiece tokenizer merges greedily by score: on a unigram model (scores are piece
    log-probabilities, not merge order) it splits plain English differently from HF and sentencepiece, so such a
    tokenizer is refused, whether HF's tokenizer.json or only tokenizer.model says it."""
    model_file = train_sentencepiece(tmp_path / "spm", "unigram")
    folder = tmp_path / "m"
    hf_tokenizer(model_file, "unigram").save_pretrained(folder)
    shutil.copy(model_file, folder / "tokenizer.model")
    with pytest.raises(ExportError, match=r"tokenizer\.json: SentencePiece unigram tokenizers cannot be exported"):
        build_vocab(folder, 1000)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ExportError, match=r"tokenizer\.model: SentencePiece unigram tokenizers cannot be exported"):
        build_vocab(folder, 1000)


def test_not_a_sentencepiece_model_is_refused(tmp_path):
    (tmp_path / "tokenizer.model").write_bytes(b"not a model")
    with pytest.raises(ExportError, match=r"tokenizer\.model: not a SentencePiece model"):
        build_vocab(tmp_path, 1000)


def test_a_llama2_config_is_exported_as_sentencepiece_splits(spm_model, tmp_path):
    """Llama-2 and Mistral folders name transformers' LlamaTokenizer class (legacy false), which in transformers 5
    drops the "▁" before a leading space and after a special token. The export follows tokenizer.json as written,
    i.e. sentencepiece, and verification compares llama.cpp with that, so the export passes."""
    import sentencepiece as spm
    from llama_cpp import Llama

    folder = shutil.copytree(spm_model, tmp_path / "m")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps(config | {"tokenizer_class": "LlamaTokenizer",
                                                                       "legacy": False}))
    files = export_gguf(ExportRequest(str(folder), "f16", str(tmp_path / "out")))
    assert files[0].metrics["top1_agreement"] >= 0.98
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    llm = Llama(model_path=str(files[0].path), vocab_only=True, verbose=False)
    try:
        for text in ("   three leading spaces", " one", "plain text"):
            assert llm.tokenize(text.encode(), add_bos=False) == sp.encode(text)
    finally:
        llm.close()
