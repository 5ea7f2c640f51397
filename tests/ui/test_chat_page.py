"""The Chat page against a real data dir: empty and registered-model states, resume and delete of stored chats,
and one end-to-end conversation with a real job consumer serving the tiny llama model over HTTP (streamed
answer, stats, the prefix cache on the second turn, Stop of the server).
"""

from __future__ import annotations

import ast
import asyncio
import json
from urllib.parse import quote

import pytest
from nicegui import ui
from nicegui.testing import User

from app import chat
from app.db import session
from app.registry import register_folder
from app.tables import Export, Job
from jobs import api
from jobs import status as st
from jobs.servers import server_for
from tests.helpers import REPO, one, start_consumer, until
from ui import i18n


async def idle(user: User) -> None:
    """The answer is stored a moment before the page re-enables its input: wait for that too."""
    await until(lambda: one(user, "chat-input").enabled, 10, "input enabled again")


def last_answer_text(user: User) -> str:
    bubbles = sorted(user.find(marker="answer-0").elements, key=lambda e: e.id)
    if not bubbles:
        return ""
    return next((e.content for e in bubbles[-1].descendants() if isinstance(e, ui.markdown)), "")


@pytest.fixture
def tiny(home, tiny_model_dir):
    return register_folder(home, tiny_model_dir("llama"), name="tiny-llama")


@pytest.fixture
def consumer(home, tmp_path):
    """A real job consumer (it starts the servers); afterwards every server still up is stopped, then it."""
    proc = start_consumer(home, tmp_path / "consumer.log")
    yield proc
    for job in api.list_jobs(home, kind="serve"):
        if job.status in st.ACTIVE:
            api.cancel(home, job.id)
    proc.terminate()
    proc.wait(30)


async def test_no_models_says_to_register_one(home, user: User):
    await user.open("/chat")
    await user.should_see("No models registered yet. Register one on the Models page to chat with it.")
    await user.should_see("Open the Models page")
    await user.should_see("New chat")


async def test_registered_model_is_offered_without_a_server(home, tiny, user: User):
    await user.open("/chat")
    assert one(user, "model-0").value == "tiny-llama"
    await user.should_see("No server")
    await user.should_see(marker="server-start-0")
    await user.should_not_see(marker="server-stop-0")
    await user.should_see(marker="chat-settings")


async def test_a_server_job_nobody_runs_says_the_consumer_is_needed(home, tiny, user: User):
    await user.open("/chat")
    user.find(marker="server-start-0").click()
    job = await until(lambda: server_for(home, "tiny-llama"), 10, "serve job submitted")
    assert job.status == st.QUEUED and job.params == {"model": "tiny-llama", "device": "auto"}
    await user.should_see("Queued")
    with session(home) as s:  # as if it had waited a minute
        row = s.get(Job, job.id)
        row.created_at -= 60
        s.add(row)
    await user.should_see("Chat needs the job consumer", retries=30)
    user.find(marker="server-stop-0").click()
    await user.should_see("No server", retries=30)
    assert api.get_job(home, job.id).status == st.CANCELLED


async def test_unknown_session_says_so(home, user: User):
    await user.open("/chat/999")
    await user.should_see("There is no chat with id 999.")


async def test_resume_shows_old_messages_and_delete_removes_them(home, tiny, user: User):
    old = chat.create_session(home, ["tiny-llama"], system_prompt="Answer in haiku.",
                              params={"temperature": 0.2, "stop": ["###"]})
    chat.add_message(home, old.id, "user", "写一首关于墨砚的诗")
    chat.add_message(home, old.id, "assistant", "**墨** 砚 静 无 声", model_name="tiny-llama", completion_tokens=7,
                     prompt_tokens=20, cached_tokens=16, tokens_per_s=12.5, finish_reason="stop")
    other = chat.create_session(home, ["tiny-llama"], title="Another chat")
    stored = chat.get_session(home, old.id)

    await user.open(f"/chat/{old.id}")
    await user.should_see("写一首关于墨砚的诗")  # the session's title (first user line) and the user bubble
    await user.should_see("**墨** 砚 静 无 声")  # markdown source of the answer bubble
    await user.should_see("12.5 tokens/s · 7 tokens · prefix cache 16 of 20 prompt tokens")
    await user.should_see("Another chat")
    assert one(user, "system-prompt").value == "Answer in haiku."
    assert one(user, "param-temperature").value == 0.2
    assert one(user, "param-stop").value == ["###"]
    assert not one(user, "side-by-side").enabled  # the layout of a chat with turns is fixed
    # Showing the stored settings writes nothing back. The fields' change handlers run as tasks a moment after
    # the page is built, so give them that moment; a write-back can race a user's change and undo it.
    await asyncio.sleep(1)
    assert chat.get_session(home, old.id) == stored

    # A settings change is saved into the session.
    one(user, "param-temperature").value = 0.9
    await until(lambda: chat.get_session(home, old.id).params["temperature"] == 0.9, 5, "params saved")

    user.find(marker=f"delete-session-{other.id}").click()
    user.find(marker="confirm-delete-session").click()
    await user.should_see("Chat deleted.")
    await user.should_not_see(marker=f"session-{other.id}")
    assert [s.id for s in chat.list_sessions(home)] == [old.id]

    user.find(marker=f"delete-session-{old.id}").click()
    user.find(marker="confirm-delete-session").click()
    await until(lambda: not chat.list_sessions(home), 5, "session deleted")
    assert chat.messages(home, old.id) == []


def test_every_chat_string_has_a_chinese_translation():
    from ui.components.chat_settings import NUMBERS
    from ui.locales.zh_chat import ZH
    from ui.locales.zh_frame import ZH as ZH_FRAME
    from ui.locales.zh_jobs import ZH as ZH_JOBS
    from ui.locales.zh_models import ZH as ZH_MODELS

    known = {**ZH_FRAME, **ZH_JOBS, **ZH_MODELS, **ZH}
    texts = {label for _, label, *_rest in NUMBERS} | {tip for *_rest, tip in NUMBERS}
    for path in [REPO / "ui/pages/chat.py", *sorted((REPO / "ui/components").glob("chat_*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "t" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                texts.add(node.args[0].value)
    assert sorted(texts - known.keys()) == []


async def test_page_in_chinese(home, tiny, user: User):
    i18n.set_language("zh")
    try:
        await user.open("/chat")
        await user.should_see("新对话")
        await user.should_see("无服务")
        await user.should_see("并排对比")
    finally:
        i18n.set_language("en")


async def test_chat_end_to_end_with_a_real_server(home, tiny, consumer, user: User):
    await user.open("/chat")
    one(user, "device").value = "cpu"
    user.find(marker="server-start-0").click()
    await until(lambda: server_for(home, "tiny-llama"), 10, "serve job submitted")
    chip = one(user, "server-status-0")
    await until(lambda: chip.text == "Ready", 240, "server ready")

    one(user, "param-max_tokens").value = 12
    user.find(marker="chat-input").type("你好, who are you?").trigger("keydown.enter.exact.prevent")
    session_id = await until(lambda: [s.id for s in chat.list_sessions(home)], 10, "session created")
    session_id = session_id[0]
    await until(lambda: len(chat.messages(home, session_id)) == 2, 60, "first answer saved")
    await idle(user)
    await user.should_see("你好, who are you?")
    await user.should_see(marker="answer-0")
    await user.should_see("prefix cache 0 of")
    first = chat.messages(home, session_id)
    assert [m.role for m in first] == ["user", "assistant"]
    assert first[1].content and first[1].completion_tokens > 0 and first[1].model_name == "tiny-llama"
    assert first[1].tokens_per_s > 0 and first[1].finish_reason in ("stop", "length")
    assert chat.get_session(home, session_id).params["max_tokens"] == 12

    user.find(marker="chat-input").type("Tell me more.")
    user.find(marker="send").click()
    await until(lambda: len(chat.messages(home, session_id)) == 4, 60, "second answer saved")
    await idle(user)
    second = chat.messages(home, session_id)[-1]
    assert second.role == "assistant" and second.completion_tokens > 0
    assert second.cached_tokens > 0, "the second turn should reuse the first turn's KV cache"
    assert second.prompt_tokens > first[1].prompt_tokens

    user.find(marker="regenerate").click()
    # SQLite may reuse the deleted row's id: a newer timestamp tells the new answer apart.
    await until(lambda: (msgs := chat.messages(home, session_id)) and len(msgs) == 4
                and msgs[-1].created_at > second.created_at, 60, "answer regenerated")
    await idle(user)

    # A prompt the server refuses (max_tokens beyond the context) shows as a notice, not a crash.
    one(user, "param-max_tokens").value = 100000
    user.find(marker="chat-input").type("again")
    user.find(marker="send").click()
    await user.should_see(marker="chat-error-0", retries=50)
    await user.should_see("maximum context length")
    await idle(user)

    # Stop mid-answer: what came so far is kept, marked stopped, and the server serves the next request.
    one(user, "param-max_tokens").value = 1800
    answers_before = len(user.find(marker="answer-0").elements)
    user.find(marker="chat-input").type("a long one")
    user.find(marker="send").click()
    await until(lambda: len(user.find(marker="answer-0").elements) > answers_before and last_answer_text(user),
                30, "first tokens")
    user.find(marker="stop").click()
    await idle(user)
    stopped = chat.messages(home, session_id)[-1]
    assert stopped.role == "assistant" and stopped.finish_reason == "stopped" and stopped.content
    await user.should_see("Stopped")

    # Side by side: a new chat whose two panes (here the same server twice) answer the same turn.
    await user.open("/chat")
    one(user, "side-by-side").value = True
    await user.should_see(marker="model-1")
    assert one(user, "model-1").value == "tiny-llama"
    await until(lambda: one(user, "server-status-1").text == "Ready", 10, "second pane ready")
    one(user, "param-max_tokens").value = 8
    user.find(marker="chat-input").type("both of you")
    user.find(marker="send").click()
    newest = await until(lambda: [s for s in chat.list_sessions(home) if s.id != session_id], 10, "new chat")
    await until(lambda: len(chat.messages(home, newest[0].id)) == 4, 60, "both answers saved")
    await idle(user)
    both = chat.messages(home, newest[0].id)
    assert sorted((m.pane, m.role) for m in both) == [(0, "assistant"), (0, "user"), (1, "assistant"), (1, "user")]
    assert newest[0].models == ["tiny-llama", "tiny-llama"]

    user.find(marker="server-stop-0").click()
    await until(lambda: server_for(home, "tiny-llama") is None, 60, "server stopped")
    served = api.list_jobs(home, kind="serve")[0]  # a server asked to stop ends cleanly
    assert served.status == st.CANCELLED and served.result["url"]


async def test_exported_gguf_is_offered_and_a_link_preselects_it(home, tiny, user: User):
    from engine.models.bundled import bundled_gguf_path
    from jobs.tasks.serve import _target

    gguf = str(bundled_gguf_path())
    with session(home) as s:
        s.add(Export(model_id=tiny.id, quant="q4_1", path=gguf, size_bytes=1))
        s.add(Export(model_id=tiny.id, quant="f16", path="/gone/tiny.F16.gguf", size_bytes=1))  # deleted since
    assert _target(home, gguf) == (gguf, gguf, tiny.id), "a served export is linked to its source model"
    await user.open("/chat")
    options = one(user, "model-0").options
    assert options[gguf] == "SmolLM2-135M-Instruct.Q4_1.gguf · llama.cpp"
    assert "/gone/tiny.F16.gguf" not in options
    await user.open(f"/chat?model={quote(gguf)}")
    assert one(user, "model-0").value == gguf
    await user.should_see("SmolLM2-135M-Instruct.Q4_1.gguf · llama.cpp")


async def test_chat_with_a_gguf_through_llama_cpp(home, tiny, consumer, user: User):
    from engine.models.bundled import bundled_gguf_path

    gguf = str(bundled_gguf_path())
    await user.open(f"/chat?model={quote(gguf)}")
    user.find(marker="server-start-0").click()
    job = await until(lambda: server_for(home, gguf), 10, "serve job submitted")
    assert job.gpus == 0, "llama.cpp here runs on the CPU: no GPU slot"
    chip = one(user, "server-status-0")
    await until(lambda: chip.text == "Ready", 120, "server ready")
    one(user, "param-max_tokens").value = 10
    for turn, text in enumerate(["What is the capital of France?", "And of Italy?"]):
        user.find(marker="chat-input").type(text).trigger("keydown.enter.exact.prevent")
        sessions = await until(lambda: chat.list_sessions(home), 10, "session created")
        want = 2 * turn + 2
        await until(lambda n=want, sid=sessions[0].id: len(chat.messages(home, sid)) == n, 60, "answer saved")
        await idle(user)
    first, second = chat.messages(home, sessions[0].id)[1::2]
    assert first.content and first.model_name == gguf and first.completion_tokens > 0
    assert second.cached_tokens >= first.prompt_tokens, "llama.cpp's context keeps the first turn"


async def test_structured_output_setting_saves_a_valid_schema_and_refuses_a_broken_one(home, tiny, user: User):
    row = chat.create_session(home, ["tiny-llama"], params={"temperature": 0.0})
    await user.open(f"/chat/{row.id}")
    await user.should_see(marker="structured-output")
    one(user, "structured-output").value = "json_object"
    await until(lambda: chat.get_session(home, row.id).params.get("response_format") == {"type": "json_object"}, 5,
                "json_object saved")

    one(user, "structured-output").value = "json_schema"
    one(user, "structured-schema").value = '{"type": "object", "properties": {"名字": {"type": "strin'
    await user.should_see("Schema not used: not JSON")
    one(user, "structured-schema").value = '{"type": "object", "properties": {"n": {"type": 5}}}'
    await user.should_see("not a valid JSON Schema at properties/n/type")
    # Neither broken schema was saved: the session still has the last valid choice.
    assert chat.get_session(home, row.id).params.get("response_format") == {"type": "json_object"}

    schema = {"type": "object", "properties": {"名字": {"type": "string", "maxLength": 8}}, "required": ["名字"]}
    one(user, "structured-schema").value = json.dumps(schema, ensure_ascii=False)
    def saved_schema():
        return (chat.get_session(home, row.id).params.get("response_format") or {}).get("json_schema")

    saved = await until(saved_schema, 5, "schema saved")
    assert saved == {"name": "answer", "schema": schema, "strict": True}
    await user.should_not_see("Schema not used")

    # A resumed chat shows the schema it had.
    await user.open(f"/chat/{row.id}")
    await user.should_see(marker="structured-schema")
    assert one(user, "structured-output").value == "json_schema"
    assert json.loads(one(user, "structured-schema").value) == schema
