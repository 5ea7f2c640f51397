"""/v1/completions: text and token prompts, streaming, n, stop, and echo + logprobs against HF teacher forcing."""

from __future__ import annotations

import pytest

from tests.serve.conftest import SERVED_NAME

TEXT = "The quick brown fox jumps over the lazy dog because it was"


def complete(client, **kwargs):
    kwargs.setdefault("prompt", TEXT)
    return client.completions.create(model=SERVED_NAME, **kwargs)


def test_echo_logprobs_match_hf_teacher_forcing(client, served):
    import torch
    from transformers import AutoModelForCausalLM

    reply = complete(client, max_tokens=0, echo=True, logprobs=3)
    choice = reply.choices[0]
    ids = served.tokenizer.encode(TEXT)
    assert choice.text == TEXT and choice.finish_reason == "length"
    assert reply.usage.prompt_tokens == len(ids) and reply.usage.completion_tokens == 0
    lp = choice.logprobs
    assert lp.tokens == [served.tokenizer.decode([t]) for t in ids]
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert lp.text_offset[0] == 0 and lp.text_offset[1] == len(lp.tokens[0])

    model = AutoModelForCausalLM.from_pretrained(served.model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    expected = torch.log_softmax(logits, dim=-1)
    for pos in range(1, len(ids)):
        assert lp.token_logprobs[pos] == pytest.approx(expected[pos - 1, ids[pos]].item(), abs=1e-4)
        top_values = sorted(lp.top_logprobs[pos].values(), reverse=True)
        assert top_values == pytest.approx(expected[pos - 1].topk(3).values.tolist(), abs=1e-4)


def test_token_prompts_and_several_prompts(client, served):
    ids = served.tokenizer.encode(TEXT)
    by_text = complete(client, temperature=0, max_tokens=5)
    by_ids = complete(client, prompt=ids, temperature=0, max_tokens=5)
    assert by_ids.choices[0].text == by_text.choices[0].text
    many = complete(client, prompt=[TEXT, "Once upon a time"], temperature=0, max_tokens=5, n=2)
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    assert many.choices[0].text == many.choices[1].text == by_text.choices[0].text
    assert many.usage.prompt_tokens == len(ids) + len(served.tokenizer.encode("Once upon a time"))
    assert many.usage.completion_tokens == 20
    batch_of_ids = complete(client, prompt=[ids, ids[:4]], temperature=0, max_tokens=5)
    assert batch_of_ids.choices[0].text == by_text.choices[0].text


def test_echo_with_generation_and_logprobs(client, served):
    reply = complete(client, temperature=0, max_tokens=4, echo=True, logprobs=1)
    choice = reply.choices[0]
    assert choice.text.startswith(TEXT)
    n_prompt = len(served.tokenizer.encode(TEXT))
    assert len(choice.logprobs.tokens) == n_prompt + 4
    assert "".join(choice.logprobs.tokens[n_prompt:]) == choice.text[len(TEXT):]


def test_stream_matches_non_stream(client):
    whole = complete(client, temperature=0, max_tokens=8, echo=True, logprobs=2)
    chunks = list(complete(client, temperature=0, max_tokens=8, echo=True, logprobs=2, stream=True,
                           stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    tokens = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.tokens]
    assert tokens == whole.choices[0].logprobs.tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == 8


def test_echo_zero_tokens_for_several_samples(client):
    reply = complete(client, prompt=[TEXT, "Hello world"], max_tokens=0, echo=True, logprobs=0, n=2)
    assert [c.text for c in reply.choices] == [TEXT, TEXT, "Hello world", "Hello world"]
    assert reply.choices[0].logprobs.token_logprobs == reply.choices[1].logprobs.token_logprobs
    assert all(c.logprobs.top_logprobs[1] == {} for c in reply.choices)


def test_stop_and_seed(client):
    text = complete(client, temperature=0, max_tokens=12, extra_body={"ignore_eos": True}).choices[0].text
    stop = text[len(text) // 2: len(text) // 2 + 2]
    cut = complete(client, temperature=0, max_tokens=12, stop=stop, extra_body={"ignore_eos": True}).choices[0]
    assert cut.finish_reason == "stop" and cut.text == text[: text.index(stop)]
    seeded = [complete(client, seed=11, max_tokens=6).choices[0].text for _ in range(2)]
    assert seeded[0] == seeded[1]
