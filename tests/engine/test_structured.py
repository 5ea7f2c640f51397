"""Grammar-constrained decoding in the engine, with the bundled model: schemas, regex, choices, tool calls, and the
engine features a constraint must survive (mixed batches, preemption, chunked prefill, n > 1, logprobs, GGUF)."""

from __future__ import annotations

import json
import math
import re

import jsonschema
import pytest

from engine.infer import EngineConfig, LLMEngine, SamplingParams
from engine.infer.structured import StructuredOutput, ToolCalls, ToolFunction

SCHEMAS = {
    "nested": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "address": {
                "type": "object",
                # Bounded: an unbounded integer lets a 135M model write digits until max_tokens.
                "properties": {"city": {"type": "string", "maxLength": 12},
                               "zip": {"type": "integer", "minimum": 0, "maximum": 99999}},
                "required": ["city", "zip"],
            },
        },
        "required": ["name", "address"],
    },
    "bounded_array": {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 8},
                                "minItems": 1, "maxItems": 3}},
        "required": ["tags"],
    },
    "enum_and_range": {
        "type": "object",
        "properties": {
            "color": {"enum": ["red", "green", "blue"]},
            "score": {"type": "integer", "minimum": 0, "maximum": 10},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["color", "score", "ratio"],
    },
    "optional_fields": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 20},
            "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
            "done": {"type": "boolean"},
        },
        "required": ["title"],
    },
    "chinese": {
        "type": "object",
        "properties": {
            "城市": {"type": "string", "maxLength": 6},
            "天气": {"enum": ["晴", "多云", "下雨"]},
            "描述": {"type": "string", "maxLength": 10},
        },
        "required": ["城市", "天气", "描述"],
    },
}

SUBJECTS = ["a cat", "the weather in Paris", "a book about space", "my favourite song", "a rainy day",
            "北京的天气", "一本小说", "a football match", "a new phone", "an old castle"]
FORMS = ["Describe {} as JSON.", "Give me data about {}.", "JSON for {}:", "Fill in the record for {}.",
         "请用 JSON 描述{}。"]
PROMPTS = [form.format(subject) for form in FORMS for subject in SUBJECTS]  # 50 prompts
assert len(PROMPTS) == 50


@pytest.fixture(scope="module")
def engine(bundled_model_dir):
    return LLMEngine(str(bundled_model_dir), EngineConfig(device="cpu", dtype="float32", num_kv_blocks=512,
                                                          max_model_len=512, enforce_eager=True))


def schema_params(schema: dict, **kw) -> SamplingParams:
    return SamplingParams(temperature=kw.pop("temperature", 0), max_tokens=kw.pop("max_tokens", 80),
                          structured_output=StructuredOutput.from_schema(schema), **kw)


@pytest.mark.slow  # 250 constrained sequences in one batch: a few minutes on 2 busy cores
def test_fifty_prompts_against_five_schemas_all_parse_and_validate(engine):
    names = list(SCHEMAS)
    prompts = [p for p in PROMPTS for _ in names]
    # Room for the longest valid answer: Chinese characters at the length bounds take 2-3 tokens each.
    params = [schema_params(SCHEMAS[name], max_tokens=128) for _ in PROMPTS for name in names]
    results = engine.generate(prompts, params)
    for i, result in enumerate(results):
        schema = SCHEMAS[names[i % len(names)]]
        assert result.finish_reason == "stop", (prompts[i], result.text)
        jsonschema.validate(json.loads(result.text), schema)


def test_mixed_batch_gives_each_request_the_tokens_it_gets_alone(bundled_model_dir):
    # An engine of its own without prefix caching: with it, the runs alone would reuse the blocks the batch
    # cached and prefill only their tail, whose float sums can differ in the last bit from a whole prefill and
    # flip a near-tie. What this test compares is the masks, not the cache.
    engine = LLMEngine(str(bundled_model_dir), EngineConfig(device="cpu", dtype="float32", num_kv_blocks=256,
                                                            max_model_len=512, enforce_eager=True,
                                                            enable_prefix_caching=False))
    requests = [
        ("Describe a cat as JSON.", schema_params(SCHEMAS["nested"], max_tokens=40)),
        ("Once upon a time", SamplingParams(temperature=0, max_tokens=24)),
        ("Give me data about Paris.", schema_params(SCHEMAS["enum_and_range"], max_tokens=40)),
        ("Pick a colour:", SamplingParams(temperature=0, max_tokens=8,
                                          structured_output=StructuredOutput(choice=("red", "green", "blue")))),
    ]
    together = engine.generate([p for p, _ in requests], [s for _, s in requests])
    alone = [engine.generate([p], s)[0] for p, s in requests]
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    jsonschema.validate(json.loads(together[0].text), SCHEMAS["nested"])
    jsonschema.validate(json.loads(together[2].text), SCHEMAS["enum_and_range"])
    assert together[3].text in ("red", "green", "blue")


def test_preemption_and_chunked_prefill_mid_constraint_resume_where_they_were(bundled_model_dir):
    # 10 blocks of 16 tokens for 4 sequences that each need ~5: the newest is preempted and recomputed, and its
    # prompt (longer than the step budget) is prefilled in chunks.
    prompts = [f"Fill in the record number {i} for a long list of books, films and songs:" for i in range(4)]
    params = schema_params(SCHEMAS["optional_fields"], max_tokens=40)
    roomy = LLMEngine(str(bundled_model_dir), EngineConfig(device="cpu", dtype="float32", max_model_len=256,
                                                           enforce_eager=True))
    expected = roomy.generate(prompts, params)
    tight = LLMEngine(str(bundled_model_dir), EngineConfig(device="cpu", dtype="float32", num_kv_blocks=10,
                                                           max_model_len=96, max_num_batched_tokens=8,
                                                           enforce_eager=True))
    got = tight.generate(prompts, params)
    assert tight.stats()["preemptions"] > 0
    assert [r.token_ids for r in got] == [r.token_ids for r in expected]
    for r in got:
        jsonschema.validate(json.loads(r.text), SCHEMAS["optional_fields"])


def test_n_samples_each_follow_the_schema_on_their_own(engine):
    results = engine.generate(["Describe a cat as JSON."],
                              schema_params(SCHEMAS["bounded_array"], temperature=1.0, seed=3, n=4))
    assert len({r.text for r in results}) > 1
    for r in results:
        jsonschema.validate(json.loads(r.text), SCHEMAS["bounded_array"])


def test_regex_and_choice(engine):
    regex = StructuredOutput(regex=r"[A-Z]{2}-\d{3}")
    choice = StructuredOutput(choice=("yes", "no", "不知道"))
    results = engine.generate(["The code is", "Is the sky green? Answer:", "你知道吗？"], [
        SamplingParams(temperature=0.8, seed=1, max_tokens=12, structured_output=regex),
        SamplingParams(temperature=0, max_tokens=12, structured_output=choice),
        SamplingParams(temperature=0.8, seed=2, max_tokens=12, structured_output=choice),
    ])
    assert re.fullmatch(r"[A-Z]{2}-\d{3}", results[0].text)
    assert results[1].text in choice.choice and results[2].text in choice.choice
    assert all(r.finish_reason == "stop" for r in results)


@pytest.mark.slow  # the auto half decodes free text until its call: minutes on 2 busy cores
def test_tool_calls_required_and_auto(engine):
    weather = ToolFunction("get_weather", json.dumps({
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                         "unit": {"enum": ["c", "f"]}}, "required": ["city", "unit"]}))
    add = ToolFunction("add", json.dumps({
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"]}))
    # A small model allowed several calls repeats them until max_tokens: one call, then the grammar ends.
    required = StructuredOutput(tool_calls=ToolCalls((weather, add), at_most_one=True))
    [result] = engine.generate(["What is the weather in Oslo?"],
                               SamplingParams(temperature=0, max_tokens=80, structured_output=required))
    [call] = re.findall(r"<tool_call>\n(.*?)\n</tool_call>", result.text, re.S)
    assert result.finish_reason == "stop" and result.text == f"<tool_call>\n{call}\n</tool_call>"
    schemas = {"get_weather": json.loads(weather.parameters), "add": json.loads(add.parameters)}
    obj = json.loads(call)
    jsonschema.validate(obj["arguments"], schemas[obj["name"]])
    # auto: free text; a call, once the model opens one (here it copies the pattern of the prompt), is completed
    # under the grammar: the copied example names a function that is not declared, the constrained one does.
    auto = StructuredOutput(tool_calls=ToolCalls((weather,), required=False))
    shot = '<tool_call>\n{"name": "lookup", "arguments": {"query": "Oslo"}}\n</tool_call>\n'
    [result] = engine.generate([f"Question: weather?\n{shot}Question: weather?\n{shot}Question: weather?\n"],
                               SamplingParams(temperature=0, max_tokens=40, structured_output=auto))
    calls = re.findall(r"<tool_call>\n(.*?)\n</tool_call>", result.text, re.S)
    assert calls, result.text
    obj = json.loads(calls[0])
    assert obj["name"] == "get_weather"
    jsonschema.validate(obj["arguments"], schemas["get_weather"])


def test_logprobs_are_of_the_masked_distribution(engine):
    choice = StructuredOutput(choice=("yes", "no"))
    rid = engine.add_request("Is water wet?", SamplingParams(temperature=0, max_tokens=4, logprobs=5,
                                                              structured_output=choice))
    outputs = []
    while engine.has_unfinished_requests():
        outputs.extend(o for o in engine.step() if o.request_id == rid)
    first = outputs[0].logprobs[0]
    # Only tokens the grammar allows appear (prefixes of "yes" or "no"), and they hold all the probability.
    pieces = [engine.tokenizer.decode([t]) for t, _ in first.top]
    assert pieces and all("yes".startswith(p) or "no".startswith(p) for p in pieces), pieces
    assert sum(math.exp(lp) for _, lp in first.top) == pytest.approx(1.0, abs=1e-3)
    assert "".join(o.new_text for o in outputs) in ("yes", "no")


def test_stop_string_and_streaming_under_a_constraint(engine):
    params = schema_params(SCHEMAS["nested"], max_tokens=60, stop=['"address"'])
    [whole] = engine.generate(["Describe a cat as JSON."], params)
    assert whole.finish_reason == "stop" and '"address"' not in whole.text and whole.text.startswith('{"name": ')


def test_unsupported_or_malformed_constraints_are_refused_with_the_field(engine):
    with pytest.raises(ValueError, match="structured_output.json_schema: not valid JSON"):
        engine.add_request("x", SamplingParams(structured_output=StructuredOutput(json_schema="{nope")))
    with pytest.raises(ValueError, match="structured_output.regex"):
        engine.add_request("x", SamplingParams(structured_output=StructuredOutput(regex="(unclosed")))
    with pytest.raises(ValueError, match="structured_output.grammar"):
        engine.add_request("x", SamplingParams(structured_output=StructuredOutput(grammar="root ::= missing")))
    with pytest.raises(ValueError, match="exactly one of"):
        SamplingParams(structured_output=StructuredOutput(regex="a", json_object=True)).validate()
    assert not engine.has_unfinished_requests()


def test_a_reference_outside_the_schema_is_refused_with_where_it_sits():
    """xgrammar would let any value stand in for it; the request is refused instead, before any work."""
    remote = {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "https://x.test/s.json"}}}}
    with pytest.raises(ValueError, match=r"json_schema: \$ref 'https://x.test/s.json' at properties.items.items "
                                         r"points outside the schema"):
        StructuredOutput.from_schema(remote).validate()
    with pytest.raises(ValueError, match=r"functions\[0\].parameters: \$ref 'other.json#/a' at the top level"):
        StructuredOutput(tool_calls=ToolCalls((ToolFunction("f", '{"$ref": "other.json#/a"}'),))).validate()
    local = {"$defs": {"n": {"type": "integer"}}, "type": "object", "properties": {
        "n": {"$ref": "#/$defs/n"}, "$ref": {"type": "string"},  # a property named $ref is not a reference
        "tag": {"const": {"$ref": "https://x.test/not-a-reference"}}}}  # data, not a schema
    StructuredOutput.from_schema(local).validate()


@pytest.mark.slow  # loads the bundled GGUF into llama.cpp
def test_gguf_path_gets_the_same_masks():
    from engine.models.bundled import bundled_gguf_path

    gguf = LLMEngine(str(bundled_gguf_path()), EngineConfig(device="cpu", max_model_len=512))
    results = gguf.generate(["Describe a cat as JSON.", "Is the sky green? Answer:"], [
        schema_params(SCHEMAS["enum_and_range"], max_tokens=40),
        SamplingParams(temperature=0, max_tokens=6, structured_output=StructuredOutput(choice=("yes", "no"))),
    ])
    jsonschema.validate(json.loads(results[0].text), SCHEMAS["enum_and_range"])
    assert results[1].text in ("yes", "no")
