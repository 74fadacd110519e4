"""How tiny local models are made to call tools: one JSON action per turn, held to a JSON schema
by llama.cpp's grammar, with worked examples in the prompt. The servers that run them are in
models/servers.py."""

from __future__ import annotations

import json
from typing import Any

from tenant_agent.runs.jsonschema import untitled

# -- tool calling by constrained JSON ------------------------------------------------------------

FINAL_NAMES = ("final_answer", "finish", "answer_user")


def final_name(tools: list[dict[str, Any]]) -> str:
    """The pseudo-tool that ends a turn with an answer (one the caller's tools don't use)."""
    names = {t["name"] for t in tools}
    return next(n for n in FINAL_NAMES if n not in names)


def _arguments_schema(parameters: dict[str, Any]) -> dict[str, Any]:
    schema = dict(parameters or {})
    schema.setdefault("type", "object")
    if schema.get("type") == "object" and "properties" not in schema:
        schema["properties"] = {}
    return schema


def action_schema(tools: list[dict[str, Any]],
                  answer: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JSON action: a call of one of `tools`, or the final answer (text, or an object
    matching `answer` when the caller asked for structured output)."""
    final = final_name(tools)
    variants: list[dict[str, Any]] = [
        {"type": "object",
         "properties": {"tool": {"const": t["name"]},
                        "arguments": _arguments_schema(t.get("parameters") or {})},
         "required": ["tool", "arguments"], "additionalProperties": False}
        for t in tools]
    key, value = ("answer", answer) if answer is not None else ("text", {"type": "string"})
    variants.append({"type": "object", "properties": {"tool": {"const": final}, key: value},
                     "required": ["tool", key], "additionalProperties": False})
    return {"anyOf": variants}


# The grammar gets an upper bound on every unbounded array: a tiny model otherwise repeats
# list items until max_tokens, and the cut-off JSON is lost (measured: the PR review's findings
# list ran to 2,800 characters and three retries, ~75 s, before failing). String lengths stay
# out of the grammar: llama.cpp spells maxLength N as N nested rules, and at a few hundred its
# server fails the request; the harness still checks them.
MAX_ITEMS = 12


def bounded(schema: Any) -> Any:
    """`schema` for the grammar: arrays bounded, string lengths left to the validator."""
    if isinstance(schema, list):
        return [bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded(v) for k, v in schema.items() if k not in ("maxLength", "minLength")}
    if out.get("type") == "array" and "maxItems" not in out:
        out["maxItems"] = MAX_ITEMS
    return out


def json_format(schema: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp's schema-constrained JSON (its server takes `json_object` with a `schema`; other
    OpenAI-compatible servers read it as plain JSON mode), bounded so that it ends."""
    return {"type": "json_object", "schema": bounded(schema)}


def _signature(tool: dict[str, Any]) -> str:
    props = (tool.get("parameters") or {}).get("properties") or {}
    args = ", ".join(f"{name}: {spec.get('type', 'any') if isinstance(spec, dict) else 'any'}"
                     for name, spec in props.items())
    description = " ".join(str(tool.get("description") or "").split())
    return f"- {tool['name']}({args})" + (f": {description}" if description else "")


# Worked examples for the tool shapes agents use most, phrased as people ask: tiny models copy
# the pattern of an example far better than they follow a description. Measured with SmolLM2
# 135M, a generic example ("<description>: path path-1, ...") picked write_file 10/10 but put
# the request's values in 3/10; these got the right tool 10/10 and the exact values 4/10.
_KNOWN_EXAMPLES: dict[frozenset[str], tuple[str, dict[str, Any]]] = {
    frozenset({"path", "content"}): ("Create the file notes.txt containing buy milk",
                                     {"path": "notes.txt", "content": "buy milk"}),
    frozenset({"path"}): ("Show me what is in plan.md", {"path": "plan.md"}),
    frozenset({"command"}): ("Run the command ls -la", {"command": "ls -la"}),
}


def _example_value(name: str, spec: Any, n: int) -> Any:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if isinstance(spec, dict) and spec.get("enum"):
        return spec["enum"][0]
    return {"integer": n, "number": n, "boolean": True, "array": [],
            "object": {}}.get(str(kind), f"{name}-{n}")


# By tool name first: two tools of the same shape (read_file and list_dir both take a path)
# with the same example leave a tiny model guessing between them.
_NAMED_EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "write_file": _KNOWN_EXAMPLES[frozenset({"path", "content"})],
    "read_file": ("Show me what is in plan.md", {"path": "plan.md"}),
    "list_dir": ("Which files are in the folder src?", {"path": "src"}),
    "shell": _KNOWN_EXAMPLES[frozenset({"command"})],
}


def _example_call(tool: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    props = (tool.get("parameters") or {}).get("properties") or {}
    named = _NAMED_EXAMPLES.get(str(tool.get("name")))
    if named is not None and set(named[1]) <= set(props):
        return named
    known = _KNOWN_EXAMPLES.get(frozenset(props))
    if known is not None and all(
            (props[k] or {}).get("type", "string") == "string" for k in props):
        return known
    arguments = {name: _example_value(name, spec, i + 1)
                 for i, (name, spec) in enumerate(props.items())}
    what = " ".join(str(tool.get("description") or tool["name"]).split()).rstrip(".")
    return what + ": " + ", ".join(f"{k} {v}" for k, v in arguments.items()), arguments


def _examples(tools: list[dict[str, Any]], final: str) -> list[dict[str, Any]]:
    """Few-shot turns: for each tool a request, its call, the result and the final answer."""
    turns: list[dict[str, Any]] = []
    for tool in tools:
        ask, arguments = _example_call(tool)
        turns += [
            {"role": "user", "content": ask},
            {"role": "assistant", "content": json.dumps({"tool": tool["name"],
                                                         "arguments": arguments})},
            {"role": "user", "content": "Result: ok"},
            {"role": "assistant", "content": json.dumps({"tool": final, "text": "Done."})},
        ]
    return turns


def plain_message(message: dict[str, Any]) -> dict[str, Any]:
    """A chat message as plain text turns (tiny models' templates know user and assistant)."""
    role = message.get("role")
    if role == "tool":
        return {"role": "user", "content": f"Result: {message.get('content') or ''}"}
    if role == "assistant" and message.get("tool_calls"):
        call = message["tool_calls"][0]["function"]
        try:
            arguments = json.loads(call.get("arguments") or "{}")
        except ValueError:
            arguments = {}
        return {"role": "assistant",
                "content": json.dumps({"tool": call["name"], "arguments": arguments})}
    return {"role": role, "content": message.get("content") or ""}


def emulation_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                       answer: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The conversation rewritten for a model that knows no function calling: the tools in the
    system prompt, a worked example, then the conversation with calls and results as text."""
    final = final_name(tools)
    done = (f'{{"tool": "{final}", "answer": {{...}}}} with the answer matching '
            f"{json.dumps(untitled(answer))}" if answer is not None
            else f'{{"tool": "{final}", "text": "<your answer>"}}')
    system = "\n".join([
        *(m.get("content") or "" for m in messages if m.get("role") == "system"),
        "You act by calling tools. The tools:",
        *(_signature(t) for t in tools),
        "Reply with exactly one JSON object and nothing else.",
        'To call a tool: {"tool": "<tool name>", "arguments": {...}}',
        f"When the task is done, or to answer without a tool: {done}",
    ]).strip()
    rest = [plain_message(m) for m in messages if m.get("role") != "system"]
    return [{"role": "system", "content": system}, *_examples(tools, final), *rest]


def read_action(text: str, tools: list[str]) -> tuple[str | None, tuple[str, str] | None]:
    """(content, None) for an answer, or (None, (tool, arguments JSON)) for a call. Text that
    is no action (a server without grammar support) is taken as the answer."""
    try:  # strict=False: raw newlines inside strings, as small models write them
        action = json.loads(text, strict=False)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        try:
            action = (json.loads(text[start:end + 1], strict=False) if 0 <= start < end
                      else None)
        except ValueError:
            action = None
    if not isinstance(action, dict):
        return text, None
    tool = action.get("tool")
    if tool in tools:
        arguments = action.get("arguments")
        return None, (str(tool), json.dumps(arguments if isinstance(arguments, dict) else {}))
    if "answer" in action:
        return json.dumps(action["answer"]), None
    value = action.get("text")
    return (value if isinstance(value, str) else text), None
