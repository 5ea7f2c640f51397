"""Benchmark data read from the installed wheels, prompts in lm-evaluation-harness's exact formats, and users'
own test sets (shapes, Chinese, errors naming file, line and field)."""

from __future__ import annotations

import json

import pytest

from engine.eval.prompts import PromptSettings, build_prompt, choice_requests, shots_for
from engine.eval.sources import DataError
from engine.eval.tasks import expand, get_task
from engine.eval.tasks.custom import load_custom_task
from engine.eval.tasks.hellaswag import preprocess


def test_every_builtin_task_reads_its_data():
    counts = {"mmlu_anatomy": 135, "arc_easy": 2376, "arc_challenge": 1172, "hellaswag": 10042, "winogrande": 1267,
              "piqa": 1838, "gsm8k": 1319, "math500": 500, "humaneval": 164, "mbpp": 500}
    for name, n in counts.items():
        task = get_task(name)
        docs = task.docs(task.splits[0])
        assert len(docs) == n, name
        assert task.licence
    assert len(get_task("arc_easy").docs("validation")) == 570
    assert len(expand("mmlu")) == 57 and expand("mmlu")[0] == ("mmlu", "mmlu_abstract_algebra")


def test_mmlu_five_shot_prompt_is_lm_eval_default():
    task = get_task("mmlu_anatomy")
    doc = task.docs("test")[0]
    settings = PromptSettings(mode="ppl", shots=5)
    shots = shots_for(task, doc, task.fewshot_pool("test"), settings)
    assert shots == task.docs("dev")[:5]  # first_n of dev, as lm-eval's mmlu
    reqs = choice_requests(task, doc, shots, settings)
    text = reqs[0][0].text
    assert text.startswith("The following are multiple choice questions (with answers) about anatomy.\n\n")
    first = shots[0]
    assert (f"{first['question'].strip()}\nA. {first['choices'][0]}\nB. {first['choices'][1]}\nC. "
            f"{first['choices'][2]}\nD. {first['choices'][3]}\nAnswer: {'ABCD'[first['gold']]}\n\n") in text
    assert text.endswith(f"D. {doc['choices'][3]}\nAnswer:")
    assert [cont for _, cont in reqs] == [" A", " B", " C", " D"]


def test_arc_and_piqa_score_option_texts_after_question_answer():
    task = get_task("arc_easy")
    doc = task.docs("validation")[0]
    reqs = choice_requests(task, doc, [], PromptSettings())
    assert reqs[0][0].text == f"Question: {doc['question']}\nAnswer:"
    assert [c for _, c in reqs] == [" " + c for c in doc["choices"]]
    piqa = get_task("piqa")
    pdoc = piqa.docs("validation")[0]
    assert choice_requests(piqa, pdoc, [], PromptSettings())[1][1] == " " + pdoc["choices"][1]


def test_hellaswag_preprocessing_and_winogrande_partial_contexts():
    assert preprocess(" Man is [title] fishing [step] now ") == "Man is. fishing now"
    wino = get_task("winogrande")
    doc = wino.docs("validation")[0]
    reqs = choice_requests(wino, doc, [], PromptSettings())
    blank = doc["question"].index("_")
    assert [p.text for p, _ in reqs] == [doc["question"][:blank] + o for o in doc["choices"]]
    assert reqs[0][1] == reqs[1][1] == " " + doc["question"][blank + 1:].strip()


def test_gsm8k_fewshot_are_cot_exemplars_and_chat_style_makes_turns():
    task = get_task("gsm8k")
    doc = task.docs("test")[0]
    settings = PromptSettings(mode="gen", shots=2)
    shots = shots_for(task, doc, task.fewshot_pool("test"), settings)
    prompt = build_prompt(task, doc, shots, settings)
    assert prompt.text.startswith("Question: There are 15 trees in the grove.")
    assert "So the answer is 6.\n\nQuestion:" in prompt.text and prompt.text.endswith("\nAnswer:")
    chat = build_prompt(task, doc, shots, PromptSettings(mode="gen", shots=2, style="chat"))
    assert [m["role"] for m in chat.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert "[assistant]" in chat.preview()


def test_custom_multiple_choice_csv_in_chinese(tmp_path):
    path = tmp_path / "ceval_like.csv"
    path.write_text("question,A,B,C,D,answer\n中国的首都是哪里？,上海,北京,广州,深圳,B\n一加一等于几？,一,二,三,四,b\n",
                    encoding="utf-8")
    (tmp_path / "ceval_like.csv.eval.json").write_text(json.dumps({"licence": "CC BY-NC-SA 4.0", "name": "小测"}))
    task = load_custom_task(str(path))
    docs = task.docs("test")
    assert task.licence == "CC BY-NC-SA 4.0" and task.title == "小测"
    assert docs[0]["choices"][1] == "北京" and docs[0]["gold"] == 1 and docs[1]["gold"] == 1
    reqs = choice_requests(task, docs[0], [], PromptSettings())
    assert reqs[0][0].text == "中国的首都是哪里？\nA. 上海\nB. 北京\nC. 广州\nD. 深圳\nAnswer:"


def test_custom_open_and_chat_jsonl(tmp_path):
    open_set = tmp_path / "open.jsonl"
    open_set.write_text('{"question": "2+2?", "answer": "4"}\n', encoding="utf-8")
    assert load_custom_task(str(open_set)).docs("test")[0]["answer"] == "4"
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "你好"},
                                             {"role": "assistant", "content": "你好！"}]}, ensure_ascii=False) + "\n")
    task = load_custom_task(str(chat))
    doc = task.docs("test")[0]
    assert doc["answer"] == "你好！"
    assert build_prompt(task, doc, [], PromptSettings(mode="gen")).messages == [{"role": "user", "content": "你好"}]


@pytest.mark.parametrize("content, where", [
    ("question,A,B,answer\nq1,x,y,A\nq2,x,y,E\n", "line 3: field 'answer'"),
    ("question,A,B,answer\n,x,y,A\n", "line 2: field 'question'"),
    ("question,A,C,answer\nq,x,y,A\n", "line 2: options must be consecutive"),
    ("prompt,response\nq,a\n", "line 1: columns"),
])
def test_malformed_csv_names_file_line_and_field(tmp_path, content, where):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_custom_task(str(path))
    assert str(path) in str(err.value) and where in str(err.value)


def test_malformed_jsonl_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n{"question": "q2", "answer": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl: line 2: not valid JSON"):
        load_custom_task(str(path))
    chat = tmp_path / "chat.jsonl"
    chat.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1: field 'messages': the last message must be the assistant"):
        load_custom_task(str(chat))


def test_unknown_task_and_split_are_named():
    with pytest.raises(ValueError, match="unknown task 'mmlu_cooking'"):
        expand("arc_easy,mmlu_cooking")
    with pytest.raises(ValueError, match="split: hellaswag has validation locally, not 'test'"):
        get_task("hellaswag").check_split("test")
