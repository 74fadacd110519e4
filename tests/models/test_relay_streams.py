"""The CLIs' JSON output read as run chunks, for the events the scripted runs in
test_relay_clis.py do not reach: failures, file changes, calls reported only when done. The
lines are as the pinned CLIs print them (recorded, trimmed to the fields read)."""

from __future__ import annotations

import json
from typing import Any

from models.chat import AssistantMessage, ChatRequest, ChatResponse, FunctionCall, ToolCall
from models.relay import small
from tenant_agent.runs.clistreams import ClaudeStream, CodexStream, OpenCodeStream, StreamParser


def feed(parser: StreamParser, *events: dict[str, Any]) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    for event in events:
        chunks += parser.feed(json.dumps(event) + "\n")
    return chunks


def test_claude_code_api_errors_are_the_runs_error_not_its_text() -> None:
    parser = ClaudeStream()
    chunks = feed(parser, {"type": "system", "subtype": "init", "session_id": "s1"}, {
        "type": "assistant", "is_api_error_message": True, "session_id": "s1",
        "message": {"content": [{"type": "text", "text": "API Error: 502 host down"}]}}, {
        "type": "result", "subtype": "success", "is_error": True, "session_id": "s1",
        "result": "API Error: 502 host down", "usage": {"input_tokens": 0}})
    assert chunks == [] and parser.final is None
    assert parser.error == "API Error: 502 host down" and parser.session == "s1"
    assert parser.feed("not json at all\n") == []


def test_claude_code_tool_results_carry_the_name_of_their_call() -> None:
    parser = ClaudeStream()
    chunks = feed(parser, {"type": "assistant", "message": {"content": [
        {"type": "thinking", "thinking": "…"},
        {"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/a"}}]}},
        {"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t1",
                                                  "is_error": True, "content": [
                                                      {"type": "text", "text": "no such file"}]}]}},
        {"type": "result", "subtype": "success", "is_error": False, "result": "Gone.",
         "usage": {"input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 3}})
    assert chunks == [{"type": "tool_call", "name": "Read", "input": {"file_path": "/a"}},
                      {"type": "tool_result", "name": "Read", "output": "no such file",
                       "is_error": True}]
    assert parser.final == "Gone." and parser.usage == {"input_tokens": 105, "output_tokens": 3}


def test_codex_file_changes_and_calls_seen_only_when_done_become_call_and_result() -> None:
    parser = CodexStream()
    chunks = feed(parser, {"type": "thread.started", "thread_id": "th1"},
                  {"type": "item.completed", "item": {"id": "i0", "type": "error",
                                                      "message": "model metadata not found"}},
                  {"type": "item.completed", "item": {
                      "id": "i1", "type": "file_change", "status": "completed",
                      "changes": [{"path": "/w/a.py", "kind": "add"}]}},
                  {"type": "item.completed", "item": {
                      "id": "i2", "type": "command_execution", "command": "false",
                      "aggregated_output": "", "exit_code": 1, "status": "failed"}},
                  {"type": "turn.completed", "usage": {"input_tokens": 10, "output_tokens": 2}},
                  {"type": "turn.failed", "error": {"message": "stream disconnected"}})
    assert [c["type"] for c in chunks] == ["tool_call", "tool_result", "tool_call",
                                           "tool_result"]
    assert chunks[0] == {"type": "tool_call", "name": "apply_patch",
                         "input": {"changes": [{"path": "/w/a.py", "kind": "add"}]}}
    assert chunks[1]["output"] == "add /w/a.py" and not chunks[1]["is_error"]
    assert chunks[3]["is_error"] and chunks[3]["output"].startswith("exit code 1")
    assert parser.session == "th1" and parser.error == "stream disconnected"
    assert parser.final is None and parser.tool_calls == 2


def test_opencode_keeps_the_last_steps_text_as_the_answer_and_reads_errors() -> None:
    parser = OpenCodeStream()
    chunks = feed(parser, {"type": "step_start", "sessionID": "ses_1", "part": {}},
                  {"type": "text", "part": {"text": "Let me look."}},
                  {"type": "tool_use", "part": {"tool": "read", "state": {
                      "status": "error", "input": {"filePath": "x"}, "error": "not found"}}},
                  {"type": "step_finish", "part": {"reason": "tool-calls",
                                                   "tokens": {"input": 7, "output": 1}}},
                  {"type": "step_start", "part": {}},
                  {"type": "text", "part": {"text": "It is not there."}},
                  {"type": "step_finish", "part": {"reason": "stop",
                                                   "tokens": {"input": 9, "output": 4}}})
    assert [c["type"] for c in chunks] == ["text", "tool_call", "tool_result", "text"]
    assert chunks[2] == {"type": "tool_result", "name": "read", "output": "not found",
                         "is_error": True}
    assert parser.final == "It is not there." and parser.session == "ses_1"
    assert parser.usage == {"input_tokens": 16, "output_tokens": 5}
    failed = OpenCodeStream()
    feed(failed, {"type": "error", "error": {"name": "APIError",
                                             "data": {"message": "Cannot connect to API"}}})
    assert failed.error == "Cannot connect to API" and failed.final is None


def _call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id="c", function=FunctionCall(name=name, arguments=json.dumps(arguments)))


def test_only_the_same_call_again_counts_as_a_repeat() -> None:
    chat = ChatRequest.model_validate({"model": "local/x", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [_call("Bash", command="ls", timeout=5).model_dump()]},
        {"role": "tool", "tool_call_id": "c", "content": "a.txt"}]})

    def answer(call: ToolCall) -> ChatResponse:
        return ChatResponse(model="local/x", message=AssistantMessage(tool_calls=[call]))

    assert small.repeats(chat, answer(_call("Bash", command="ls")))
    assert not small.repeats(chat, answer(_call("Bash", command="ls -la")))
    assert not small.repeats(chat, answer(_call("Read", command="ls")))
    text = ChatResponse(model="local/x", message=AssistantMessage(content="done"))
    assert not small.repeats(chat, text)
