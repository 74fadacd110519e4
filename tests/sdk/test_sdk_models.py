"""The Python SDK's models (burrow/_models.py, written by hand) checked against the OpenAPI
document the server serves at /openapi.json, as the TypeScript SDK's generated types are
(tests/sdk/test_sdk_typescript.py). Each SDK model stands for one or more of the document's
schemas (a streamed chunk for the variants of its `oneOf`); the check fails when

- a field is in the schema and not in the SDK, or in the SDK and not in the schema (added,
  renamed or removed on one side only);
- a field's type differs (with null set aside: string, integer, number, boolean, arrays,
  maps, enums, and a schema the SDK has a model for);
- the SDK would refuse what the API may send: a field the API may leave out that has no
  default in the SDK, a null where the SDK's type takes no None, an enum value that the
  SDK's Literal lacks.

The SDK may be more lenient than the schema (a default for a field the API always sends,
None for one it never leaves null): that keeps an older SDK working against a newer server.
The schemas the SDK hands over as dicts (memories, recall, stats, policy) are not its
models, and are not checked here."""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal, TypeVar

import pytest
from pydantic import BaseModel

from burrow import _models
from burrow._models import (
    AgentAnswer,
    AgentConfig,
    BoxInfo,
    ExecChunk,
    ExecResult,
    FileEntry,
    FileEvent,
    GitChange,
    GitStatus,
    Insight,
    McpServer,
    Process,
    ProcessChunk,
    ProcessLogPiece,
    ProcessLogs,
    PublicUrl,
    Run,
    RunChunk,
    RunUsage,
    Snapshot,
    TenantInfo,
)
from core.settings import Settings
from gateway.app import create_app

# Each SDK model, and the schemas of the document it reads.
SCHEMAS: dict[type[BaseModel], tuple[str, ...]] = {
    AgentConfig: ("AgentConfig",),
    McpServer: ("McpServer",),
    BoxInfo: ("BoxPublic",),
    ExecResult: ("ExecOut",),
    ExecChunk: ("ExecChunk",),
    FileEntry: ("FileEntryOut",),
    Snapshot: ("SnapshotPublic",),
    RunUsage: ("RunUsage",),
    Run: ("RunPublic",),
    RunChunk: ("RunChunk",),
    TenantInfo: ("TenantPublic", "TenantCreated"),  # created: with its key; read: with its state
    Insight: ("InsightOut",),
    PublicUrl: ("PortPublic",),
    FileEvent: ("FileEvent",),
    Process: ("ProcessPublic",),
    ProcessLogPiece: ("ProcessLogPiece",),
    ProcessLogs: ("ProcessLogs",),
    ProcessChunk: ("ProcessChunk",),
}
# SDK models that are no schema of the API: what the SDK puts together itself.
SDK_ONLY = {
    AgentAnswer,  # the tenant agent's own answer (any body), with its status and request id
    GitStatus, GitChange,  # git's porcelain output, read from an exec in the box
}
JSON_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The document GET /openapi.json answers (FastAPI's route returns app.openapi())."""
    settings = Settings(redis_url="redis://127.0.0.1:1", dev=True,
                        data_dir=tmp_path_factory.mktemp("openapi"))
    return create_app(settings).openapi()


# --- the check ------------------------------------------------------------------------------

def _options(annotation: Any) -> tuple[list[Any], bool]:
    """An annotation's alternatives other than None, and whether it takes None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = list(typing.get_args(annotation))
    else:
        args = [annotation]
    rest = [a for a in args if a is not type(None)]
    return rest, len(rest) < len(args)


def _schema_options(schema: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """A property's schemas other than null, and whether it may be null."""
    if "anyOf" in schema:
        rest = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return rest, len(rest) < len(schema["anyOf"])
    return [schema], schema.get("type") == "null"


def _model_of(name: str) -> type[BaseModel] | None:
    found = [model for model, names in SCHEMAS.items() if names == (name,)]
    return found[0] if found else None


def _describe(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_describe(s) for s in schema["anyOf"])
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "enum" in schema or "const" in schema:
        return f"one of {schema.get('enum', [schema.get('const')])}"
    if schema.get("type") == "array":
        return f"array of {_describe(schema.get('items', {}))}"
    if schema.get("type") == "object":
        values = schema.get("additionalProperties")
        return "object" + (f" of {_describe(values)}" if isinstance(values, dict) else "")
    return str(schema.get("type", "anything"))


def _reads(schema: dict[str, Any], annotation: Any) -> bool:
    """Whether an SDK annotation (None set aside) reads exactly what a schema describes."""
    options, _ = _schema_options(schema)
    python, _ = _options(annotation)
    if len(options) != 1:
        return len(options) == len(python) and all(
            any(_reads(s, p) for p in python) for s in options)
    schema = options[0]
    if len(python) == 1 and (python[0] is Any or isinstance(python[0], TypeVar)):
        return True  # the SDK takes anything (a run's result: what its schema makes it)
    if "$ref" in schema:
        model = _model_of(schema["$ref"].rsplit("/", 1)[-1])
        if model is None:  # a schema the SDK keeps as a dict
            return python == [dict[str, Any]]
        # the model itself, or a parametrised generic of it (Run[Any])
        generic = getattr(python[0], "__pydantic_generic_metadata__", {}).get("origin")
        return len(python) == 1 and model in (python[0], generic)
    if not schema:
        return python == [Any]
    kind = schema.get("type")
    if kind == "string" and ("enum" in schema or "const" in schema):
        values = set(schema.get("enum", [schema.get("const")]))
        literal = {v for p in python if typing.get_origin(p) is Literal
                   for v in typing.get_args(p)}
        return str in python or values <= literal
    if kind in JSON_TYPES:
        return python == [JSON_TYPES[kind]]
    if kind == "array":
        return (len(python) == 1 and typing.get_origin(python[0]) is list
                and _reads(schema.get("items", {}), typing.get_args(python[0])[0]))
    if kind == "object" and "properties" not in schema:
        values = schema.get("additionalProperties", True)
        if len(python) != 1 or typing.get_origin(python[0]) is not dict:
            return False
        key, value = typing.get_args(python[0])
        return key is str and (value is Any if values is True else _reads(values, value))
    return False


def _variants(document: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """A schema, or the variants of a `oneOf` (a streamed chunk), resolved."""
    schemas = document["components"]["schemas"]
    schema = schemas.get(name)
    if schema is None:
        return []
    refs = schema.get("oneOf", [])
    if refs:
        return [schemas[r["$ref"].rsplit("/", 1)[-1]] for r in refs]
    return [schema]


def drift(document: dict[str, Any], model: type[BaseModel],
          names: tuple[str, ...]) -> Iterator[str]:
    """What differs between an SDK model and the schemas it reads, one line per difference."""
    variants = [v for name in names for v in _variants(document, name)]
    where = " / ".join(names)
    missing = [name for name in names if not _variants(document, name)]
    if missing:
        yield f"{model.__name__}: the document has no schema {', '.join(missing)} (renamed?)"
        return
    api = {f: [v for v in variants if f in v.get("properties", {})]
           for v in variants for f in v.get("properties", {})}
    sdk = model.model_fields
    for field in sorted(api.keys() - sdk.keys()):
        kinds = {_describe(v["properties"][field]) for v in api[field]}
        yield (f"{model.__name__}: {where} has `{field}` ({', '.join(sorted(kinds))}), which "
               "the SDK lacks")
    for field in sorted(sdk.keys() - api.keys()):
        yield f"{model.__name__}.{field}: not in {where} (renamed or removed?)"
    for field in sorted(api.keys() & sdk.keys()):
        info, found = sdk[field], api[field]
        _, takes_none = _options(info.annotation)
        for variant in found:
            prop = variant["properties"][field]
            if not _reads(prop, info.annotation):
                yield (f"{model.__name__}.{field}: {where} says {_describe(prop)}, the SDK "
                       f"reads {info.annotation}")
            if _schema_options(prop)[1] and not takes_none:
                yield f"{model.__name__}.{field}: {where} may send null; the SDK takes no None"
        always = len(found) == len(variants) and all(
            field in v.get("required", ()) for v in found)
        if not always and info.is_required():
            yield (f"{model.__name__}.{field}: {where} may leave it out; the SDK has no "
                   "default")


def all_drift(document: dict[str, Any]) -> list[str]:
    return [line for model, names in SCHEMAS.items() for line in drift(document, model, names)]


# --- the tests ------------------------------------------------------------------------------

def test_the_sdk_models_read_what_the_openapi_document_says(document: dict[str, Any]) -> None:
    found = all_drift(document)
    assert not found, "burrow/_models.py differs from the API's schemas:\n" + "\n".join(found)


def test_every_sdk_model_is_checked_or_said_to_be_the_sdks_own() -> None:
    models = {m for m in vars(_models).values()
              if isinstance(m, type) and issubclass(m, _models._Model) and m is not _models._Model}
    assert models == SCHEMAS.keys() | SDK_ONLY


def test_the_check_sees_a_field_added_renamed_retyped_or_made_optional(
        document: dict[str, Any]) -> None:
    changed = copy.deepcopy(document)
    schemas = changed["components"]["schemas"]
    schemas["BoxPublic"]["properties"]["region"] = {"type": "string"}               # added
    out = schemas["ExecOut"]["properties"]
    out["exit_status"] = out.pop("exit_code")                                        # renamed
    schemas["ExecOut"]["required"] = ["exit_status" if r == "exit_code" else r
                                      for r in schemas["ExecOut"]["required"]]
    schemas["FileEntryOut"]["properties"]["size"] = {"type": "number"}              # retyped
    schemas["SnapshotPublic"]["required"].remove("box_id")                           # optional
    schemas["InsightOut"]["properties"]["kind"] = {"anyOf": [{"type": "string"},
                                                            {"type": "null"}]}      # nullable
    schemas["ExecOutputChunk"]["properties"]["type"]["enum"].append("stdin")        # widened
    schemas["RunPublic"]["properties"]["status"]["enum"].append("paused")  # Literal[…] | str
    schemas["TenantCreated"]["properties"]["key_id"] = {"type": "string"}  # in one of two
    schemas["SnapshotOut"] = schemas.pop("SnapshotPublic")                           # schema
    assert all_drift(changed) == [
        "BoxInfo: BoxPublic has `region` (string), which the SDK lacks",
        "ExecResult: ExecOut has `exit_status` (integer), which the SDK lacks",
        "ExecResult.exit_code: not in ExecOut (renamed or removed?)",
        "ExecChunk.type: ExecChunk says one of ['stdout', 'stderr', 'stdin'], the SDK reads "
        "typing.Literal['stdout', 'stderr', 'exit']",
        "FileEntry.size: FileEntryOut says number, the SDK reads <class 'int'>",
        "Snapshot: the document has no schema SnapshotPublic (renamed?)",
        "TenantInfo: TenantPublic / TenantCreated has `key_id` (string), which the SDK lacks",
        "Insight.kind: InsightOut may send null; the SDK takes no None",
    ]
    # a field made optional: the SDK needs a default for it
    schemas["FileEntryOut"]["properties"]["size"] = {"type": "integer"}
    schemas["FileEntryOut"]["required"].remove("path")
    assert list(drift(changed, FileEntry, ("FileEntryOut",))) == [
        "FileEntry.path: FileEntryOut may leave it out; the SDK has no default"]
