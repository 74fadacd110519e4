"""The seed's Agent Server: every tenant has its own agent in its own box; the agents learn
from their tenants' requests without slowing them down, and what several tenants agree on
fills the shared knowledge base that every agent can use.

    burrow serve --local-model          # in another terminal (the README's `make serve`)
    BURROW_API_KEY=<operator key> python examples/agent_server.py

It creates three tenants (or reuses them), sends each a few requests through the product API
(`/v1/tenants/{id}/agent/ask`, with the tenant's own key, as a product backend would), waits
until the agents have learned, then shows each tenant's profile, the shared insights, and a
fourth tenant's answer that uses what the others taught. When the server sets
BURROW_AGENT_MODEL (for example local/smollm2-135m), the agents answer through that model;
without one they answer from what they know.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import httpx

TENANTS = {
    "ana": ["I prefer dark mode.", "Postgres 16 vacuums faster than Postgres 12.",
            "How do I tune autovacuum?"],
    "ben": ["I prefer short answers.", "Postgres 16 vacuums faster than Postgres 12.",
            "Kubernetes pods restart when their liveness probe fails."],
    "cho": ["I prefer metric units.", "Kubernetes pods restart when their liveness probe fails.",
            "What is a good liveness probe period?"],
}
NEWCOMER = "dee"
QUESTION = "Which Postgres version vacuums faster?"


class Demo:
    def __init__(self, url: str, operator_key: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=120)
        self.operator = {"Authorization": f"Bearer {operator_key}"}
        self.keys: dict[str, dict[str, str]] = {}

    def call(self, method: str, path: str, headers: dict[str, str],
             **kwargs: Any) -> Any:
        try:
            r = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            sys.exit(f"error: cannot reach Burrow at {self.http.base_url} ({exc}); start it "
                     "with `burrow serve --local-model` or set BURROW_URL")
        if r.status_code >= 400:
            sys.exit(f"error: {method} {path}: {r.json().get('error', {}).get('message')}")
        return r.json() if r.content else None

    def tenant(self, tenant: str) -> None:
        """A tenant of this demo, made afresh so its key can be shown once and used."""
        r = self.http.get(f"/v1/tenants/{tenant}", headers=self.operator)
        if r.status_code == 200:
            self.call("DELETE", f"/v1/tenants/{tenant}", self.operator)
        # The policy counts a tenant's contributions to the shared knowledge base only once it
        # is a day old and has said 20 things; this demo's tenants are trusted at once.
        created = self.call("POST", "/v1/tenants", self.operator, json={"id": tenant, "policy": {
            "contribute_min_age_s": 0, "contribute_min_turns": 0}})
        self.keys[tenant] = {"Authorization": f"Bearer {created['api_key']}"}

    def ask(self, tenant: str, question: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.call("POST", f"/v1/tenants/{tenant}/agent/ask",
                                           self.keys[tenant], json={"question": question})
        return answer

    def wait_for(self, what: str, check: Any, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                sys.exit(f"error: {what} did not happen within {timeout_s:.0f} s; is the "
                         "worker running (burrow serve runs one)?")
            time.sleep(0.5)

    def learned(self, tenant: str) -> bool:
        profile = self.call("GET", f"/v1/tenants/{tenant}/agent/profile", self.keys[tenant])
        return bool(profile["preferences"])

    def shared(self) -> list[dict[str, Any]]:
        hits: list[dict[str, Any]] = self.call("POST", "/v1/knowledge/search",
                                               self.keys[NEWCOMER],
                                               json={"query": QUESTION, "limit": 3})
        return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("BURROW_URL", "http://127.0.0.1:8420"))
    args = parser.parse_args()
    key = os.environ.get("BURROW_API_KEY")
    if not key:
        sys.exit("error: set BURROW_API_KEY to the operator key `burrow serve` printed")
    demo = Demo(args.url, key)
    for tenant in [*TENANTS, NEWCOMER]:
        demo.tenant(tenant)
    print(f"tenants: {', '.join([*TENANTS, NEWCOMER])} (each has its own box and agent)")
    started = time.perf_counter()
    for tenant, texts in TENANTS.items():
        for text in texts:
            demo.ask(tenant, text)
    took = (time.perf_counter() - started) * 1000 / sum(map(len, TENANTS.values()))
    print(f"sent {sum(map(len, TENANTS.values()))} requests ({took:.0f} ms each on average); "
          "the agents learn after answering")
    for tenant in TENANTS:
        demo.wait_for(f"{tenant}'s agent learning", lambda t=tenant: demo.learned(t))
        profile = demo.call("GET", f"/v1/tenants/{tenant}/agent/profile", demo.keys[tenant])
        prefs = ", ".join(f"{p['polarity']} {p['value']}" for p in profile["preferences"])
        topics = ", ".join(t["topic"] for t in profile["topics"][:4]) or "none yet"
        print(f"  {tenant}: {prefs}; recurring topics: {topics}")
    demo.wait_for("two tenants agreeing in the knowledge base", lambda: bool(demo.shared()))
    print(f"\nshared knowledge for {NEWCOMER!r}, who has never said a word:")
    for hit in demo.shared():
        print(f"  [{hit['support']} tenants, score {hit['score']:.2f}] {hit['text']}")
    answer = demo.ask(NEWCOMER, QUESTION)
    print(f"\n{NEWCOMER} asks: {QUESTION}\nits agent answers"
          f"{' with ' + answer['model'] if answer.get('model') else ''}: {answer['answer']}")


if __name__ == "__main__":
    main()
