"""The in-box relay (tenant_agent/runs/relay.py) in front of a host relay route
(tests/relay_host.py) and a scripted provider: what a CLI sends reaches the provider with the
server's key and the box's model, the provider's stream comes back byte for byte, and the relay
counts model calls and host failures."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from tenant_agent.runs.relay import Relay
from tests.fakes import FakeOpenAI, anthropic_events, text_reply, tool_reply
from tests.relay_host import RelayHost

KEY = "sk-ant-test-9c8b7a6f5e4d3c2b1a09"
TOKEN = "box-token-for-relay-tests"
DUMMY = "sk-dummy-the-cli-holds"


@pytest.fixture
def host(tmp_path: Path, fake: FakeOpenAI) -> Iterator[RelayHost]:
    settings = Settings(anthropic_api_key=KEY, anthropic_url=fake.root_url)
    with RelayHost(tmp_path / "host.sock", TOKEN, "anthropic/claude-box-model", settings) as h:
        yield h


def post(relay: Relay, path: str, body: Any, headers: dict[str, str] | None = None,
         method: str = "POST", chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", int(relay.base_url.rsplit(":", 1)[1]),
                                            timeout=30)
    data = json.dumps(body).encode()
    sent = {"content-type": "application/json", "x-api-key": DUMMY,
            "authorization": f"Bearer {DUMMY}", "anthropic-version": "2023-06-01",
            **(headers or {})}
    if chunked:
        connection.putrequest(method, path)
        for k, v in {**sent, "transfer-encoding": "chunked"}.items():
            connection.putheader(k, v)
        connection.endheaders()
        for i in range(0, len(data), 10):
            piece = data[i:i + 10]
            connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        connection.send(b"0\r\n\r\n")
    else:
        connection.request(method, path, body=data, headers=sent)
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, answer


MESSAGES = {"model": "claude-haiku-side-call", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}


def test_a_stream_comes_back_byte_for_byte_and_the_key_stays_on_the_host(
        host: RelayHost, fake: FakeOpenAI) -> None:
    fake.script = [tool_reply("Write", file_path="a.txt", content="hi")]
    relay = Relay("anthropic", str(host.socket_path), TOKEN, run_id="run_1")
    relay.start()
    try:
        status, headers, body = post(relay, "/v1/messages?beta=true", MESSAGES,
                                     {"anthropic-beta": "claude-code-20250219"})
    finally:
        relay.close()
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert body == b"".join(anthropic_events(tool_reply("Write", file_path="a.txt",
                                                        content="hi"), "claude-box-model"))
    seen = host.calls[0].headers
    assert host.calls[0].path == "/v1/relay/anthropic/v1/messages"
    assert seen["authorization"] == f"Bearer {TOKEN}" and seen["x-burrow-run"] == "run_1"
    assert DUMMY not in json.dumps(seen) and "x-api-key" not in seen
    assert fake.headers[0]["x-api-key"] == KEY and DUMMY not in json.dumps(fake.headers[0])
    assert seen["anthropic-beta"] == "claude-code-20250219"  # the CLI's header reached the host
    assert "anthropic-beta" not in fake.headers[0]  # beta flags: only those the policy names
    assert fake.requests[0]["model"] == "claude-box-model"  # pinned, not the side call's
    assert relay.calls == 1 and relay.failures_in_row == 0
    assert host.calls[0].usage == {"input_tokens": 11, "output_tokens": 7}


def test_a_chunked_request_body_is_relayed_whole(host: RelayHost, fake: FakeOpenAI) -> None:
    fake.script = [text_reply("ok")]
    relay = Relay("anthropic", str(host.socket_path), TOKEN)
    relay.start()
    try:
        status, _, body = post(relay, "/v1/messages", {**MESSAGES, "stream": False},
                               chunked=True)
    finally:
        relay.close()
    assert status == 200 and json.loads(body)["content"] == [{"type": "text", "text": "ok"}]
    assert fake.requests[0]["messages"] == MESSAGES["messages"]


def test_model_calls_past_max_calls_are_refused_in_the_clients_error_shape(
        host: RelayHost, fake: FakeOpenAI) -> None:
    fake.script = [text_reply("one"), text_reply("two"), text_reply("three")]
    relay = Relay("anthropic", str(host.socket_path), TOKEN, max_calls=2)
    relay.start()
    try:
        statuses = [post(relay, "/v1/messages", MESSAGES)[0] for _ in range(2)]
        status, _, body = post(relay, "/v1/messages", MESSAGES)
        other = post(relay, "/v1/models", {}, method="GET")
    finally:
        relay.close()
    assert statuses == [200, 200] and status == 400 and relay.limit_reached
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert "max_turns" in json.loads(body)["error"]["message"]
    assert len(fake.requests) == 2
    assert other[0] == 404 and b"only inference is relayed" in other[2]  # by the host
    assert relay.calls == 2


def test_an_unreachable_host_is_a_502_and_counted_as_a_failure(tmp_path: Path) -> None:
    relay = Relay("openai", str(tmp_path / "no.sock"), TOKEN)
    relay.start()
    try:
        answers = [post(relay, "/v1/responses", {"input": "hi"}) for _ in range(3)]
    finally:
        relay.close()
    assert [a[0] for a in answers] == [502] * 3
    error = json.loads(answers[0][2])["error"]
    assert "host services socket did not answer" in error["message"]
    assert relay.failures_in_row == 3 and "did not answer" in relay.last_failure


def test_a_wrong_box_token_is_the_hosts_refusal_passed_back(host: RelayHost) -> None:
    relay = Relay("anthropic", str(host.socket_path), "not-the-token")
    relay.start()
    try:
        status, headers, body = post(relay, "/v1/messages", MESSAGES)
    finally:
        relay.close()
    assert status == 401 and headers["content-length"] == str(len(body))
    assert json.loads(body)["error"]["message"] == "box token"
