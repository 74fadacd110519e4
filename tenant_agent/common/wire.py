"""JSON for the agent without the json package, which pulls in re and enum at import and so
costs milliseconds of every wake; the C accelerator does the work. (The box daemon does the
same in its own single file.)"""

from __future__ import annotations

import _json


def _no_default(obj: object) -> None:
    raise TypeError(f"cannot encode {type(obj).__name__}")


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"),
                      "-Infinity": float("-inf")}.__getitem__
    memo: dict[str, object] = {}  # read by the C scanner as an attribute


_encode = _json.make_encoder(None, _no_default, _json.encode_basestring_ascii, None,
                             ":", ",", False, False, True)
_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]


def dumps(obj: object) -> bytes:
    return "".join(_encode(obj, 0)).encode()


def loads(data: bytes | str) -> object:
    text = data.decode() if isinstance(data, bytes) else data
    text = text.strip()
    try:
        obj, end = _scan(text, 0)
    except (StopIteration, SystemError):
        # The C scanner's ways of saying "not JSON": StopIteration where no value starts, and
        # for a value cut short a SystemError, since it raises JSONDecodeError only when
        # json.decoder is already imported (which this module exists to avoid).
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError("trailing data after the JSON value")
    return obj
