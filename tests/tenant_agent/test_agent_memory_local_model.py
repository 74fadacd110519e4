"""The tenant agent with a bundled local model, for real: Gemma 3 270M in llama.cpp's server,
reached through the gateway's own provider code behind the host socket, extracting memories
in the background pass and answering /ask.

What the 270M model manages, measured (bench/memory.py and this test): its extraction
answers are valid JSON (the schema holds it) but rarely right, and the agent's checks reject
most of what it proposes (ungrounded text, the wrong memory); the rules do the learning. So
this shows the pipeline with a real model end to end: a memory added, superseded and
forgotten, the model called once per batch, nothing the model says accepted unless it is
grounded in what the tenant said, and the answer given from the memory that holds now. What
rests on the model, and fails if its answers do: every extraction answer is readable under
the schema, and the answer to "Where do I live?" names the city the memory holds."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from models.chat import ChatRequest
from models.providers import Providers
from models.servers import LocalModelServer, bundled_models
from tenant_agent.memory.extract import grounded
from tests.fakes import FakeHost
from tests.tenant_agent.test_agent_memory_process import Agent, said

pytestmark = pytest.mark.local_model

MODEL = "local/gemma-3-270m"


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("gemma")
    models = [m for m in bundled_models(data / "models") if m.alias == MODEL.split("/")[1]]
    server = LocalModelServer(data, models=models)
    url = server.start()
    yield url
    server.stop()


def through(url: str) -> Any:
    """A host-socket script step that asks the local model, through the gateway's provider."""
    def answer(body: dict[str, Any]) -> str:
        async def chat() -> str:
            providers = Providers(Settings(dev=True, local_model_url=url))
            try:
                response = await providers.chat(ChatRequest.model_validate(body))
            finally:
                await providers.aclose()
            return response.message.content or ""
        return asyncio.run(chat())
    return answer


@pytest.mark.timeout(1800)
def test_with_gemma_a_memory_is_added_superseded_and_forgotten(gemma: str,
                                                               tmp_path: Path) -> None:
    host = FakeHost(str(tmp_path / "host.sock"))
    # a model pass takes minutes on a busy 2-core host, and so may the answer
    agent = Agent(tmp_path, {**host.env, "BURROW_AGENT_ANSWER_TIMEOUT_S": "900"},
                  timeout=900).start()
    try:
        for n, text in enumerate(["I live in Berlin and I love techno.",
                                  "I moved from Berlin to Paris last month.",
                                  "Forget that I live in Berlin."], start=1):
            host.script.append(through(gemma))
            agent.observe(said(n, text), x_burrow_model=MODEL)
            report = agent.ok("POST", "/_burrow/extract", {}, x_burrow_model=MODEL)
            # the rules forget at delivery: a turn that asks to forget is not kept, so it
            # never reaches the model
            assert report["pending"] == 0 and report["model_calls"] == min(n, 2), report
            assert report["errors"] == [], report  # the model's answer was readable
            if n == 1:
                assert "Lives in Berlin" in {m["text"] for m in agent.ok("GET", "/memories")[
                    "items"]}
            if n == 2:
                versions = {m["text"]: m for m in agent.ok("GET", "/memories?status=all")[
                    "items"] if m["subject"] == "location"}
                assert versions["Lives in Paris"]["current"]
                assert versions["Lives in Berlin"]["superseded_by"] == \
                    versions["Lives in Paris"]["id"]
        assert len(host.requests) == 2  # one call per batch, never per pair
        export = agent.ok("GET", "/memories/export")
        assert not [m for m in export["memories"] if "Berlin" in m["text"]]
        assert not [e for e in export["episodes"] if "Berlin" in e["text"]]
        turns = {"req-1": "I live in Berlin and I love techno.",
                 "req-2": "I moved from Berlin to Paris last month."}
        for m in export["memories"]:  # whatever the model added is grounded in what was said
            if m["source"] == f"model:{MODEL}":
                assert grounded(m["text"], [turns[r] for r in m["request_ids"]]), m
        host.script.append(through(gemma))
        answer = agent.ok("POST", "/ask", {"question": "Where do I live?", "explain": True},
                          x_burrow_model=MODEL)
        assert answer["model"] == MODEL and "paris" in answer["answer"].lower(), answer["answer"]
        assert "Lives in Paris" in answer["context"] and "Berlin" not in answer["context"]
        assert "Lives in Paris" in host.requests[-1]["messages"][-1]["content"]
    finally:
        agent.stop()
        host.close()
