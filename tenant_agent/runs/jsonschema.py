"""Checks a JSON value against a JSON schema, for structured agent results inside a box,
where no third-party package is available. It covers what pydantic's model_json_schema()
and hand-written schemas use: types, properties/required/additionalProperties, items,
enum/const, anyOf/oneOf/allOf, local $ref, and the common size and range bounds."""

from __future__ import annotations

from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),),
}


class SchemaError(ValueError):
    """Where the value breaks the schema, as a path and a reason a model can act on."""


def validate(value: Any, schema: dict[str, Any]) -> None:
    """Raise SchemaError naming the first place `value` breaks `schema`."""
    _check(value, schema, schema, "$")


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in schema and seen < 32:
        ref = str(schema["$ref"])
        if not ref.startswith("#/"):
            raise SchemaError(f"unsupported $ref {ref!r} (only local references)")
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) \
                if isinstance(node, dict) else {}
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
        seen += 1
    return schema


def _type_ok(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(name, (object,)))


def _check(value: Any, schema: Any, root: dict[str, Any], path: str) -> None:
    if schema is True or schema == {}:
        return
    if schema is False:
        raise SchemaError(f"{path}: no value is allowed here")
    if not isinstance(schema, dict):
        return
    schema = _resolve(schema, root)
    _check_combinators(value, schema, root, path)
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_type_ok(value, n) for n in names):
            raise SchemaError(f"{path}: expected {' or '.join(names)}, got "
                              f"{type(value).__name__} {_short(value)}")
    _check_values(value, schema, path)
    if isinstance(value, dict):
        _check_object(value, schema, root, path)
    elif isinstance(value, list):
        _check_array(value, schema, root, path)
    elif isinstance(value, str):
        _bounds(len(value), schema, "minLength", "maxLength", path, "characters")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _range(value, schema, path)


def _range(value: float, schema: dict[str, Any], path: str) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        raise SchemaError(f"{path}: {value} is below the minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise SchemaError(f"{path}: {value} is above the maximum {schema['maximum']}")


def _check_combinators(value: Any, schema: dict[str, Any], root: dict[str, Any],
                       path: str) -> None:
    for sub in schema.get("allOf", []):
        _check(value, sub, root, path)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if not options:
            continue
        errors = []
        for sub in options:
            try:
                _check(value, sub, root, path)
                break
            except SchemaError as exc:
                errors.append(str(exc))
        else:
            raise SchemaError(f"{path}: matches none of the allowed forms ({'; '.join(errors)})")


def _check_values(value: Any, schema: dict[str, Any], path: str) -> None:
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{path}: {_short(value)} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        raise SchemaError(f"{path}: must be {schema['const']!r}")


def _check_object(value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any],
                  path: str) -> None:
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            raise SchemaError(f"{path}: the field {name!r} is required")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], root, f"{path}.{name}")
        elif extra is False:
            raise SchemaError(f"{path}: unexpected field {name!r}; allowed: "
                              f"{', '.join(properties) or 'none'}")
        elif isinstance(extra, dict):
            _check(item, extra, root, f"{path}.{name}")


def _check_array(value: list[Any], schema: dict[str, Any], root: dict[str, Any],
                 path: str) -> None:
    _bounds(len(value), schema, "minItems", "maxItems", path, "items")
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _check(item, items, root, f"{path}[{i}]")


def _bounds(size: int, schema: dict[str, Any], low: str, high: str, path: str,
            unit: str) -> None:
    if low in schema and size < schema[low]:
        raise SchemaError(f"{path}: needs at least {schema[low]} {unit}, has {size}")
    if high in schema and size > schema[high]:
        raise SchemaError(f"{path}: allows at most {schema[high]} {unit}, has {size}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def untitled(schema: Any) -> Any:
    """The schema as the model reads it: without pydantic's titles, which small models copy
    into their answers."""
    if isinstance(schema, dict):
        return {k: untitled(v) for k, v in schema.items()
                if not (k == "title" and isinstance(v, str))}
    if isinstance(schema, list):
        return [untitled(v) for v in schema]
    return schema
