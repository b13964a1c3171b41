"""The judge's side of the wire: strict checks of every frame the program server sends back.

Everything that comes out of the sandbox is untrusted data. A reply is one JSON object per line;
``parse_frame`` turns a line into a dict or raises ``WireError`` (never anything else), and
``expect`` checks that a frame has exactly the shape its request allows. Values are tagged JSON,
decoded by ``decode_value`` into built-in types only:

- ``null``/``true``/``false``/strings/ints stand for themselves (JSON floats are refused);
- ``["L", ...]`` list, ``["T", ...]`` tuple, ``["S", ...]`` set, ``["Z", ...]`` frozenset,
  ``["D", [k, v], ...]`` dict, ``["F", hex]`` float, ``["I", hex]`` big int, ``["B", hex]`` bytes,
  ``["C", hex, hex]`` complex, ``["R", start, stop, step]`` range.

Values sent *to* the sandbox are checked by ``check_plain`` and marshalled (host to sandbox only).
Decoded values are compared by ``values_equal``, the judge's rule, which the host uses too
(selection by behaviour, ``scorers/agreement.py``).

>>> decode_value(["L", 1, ["F", "0x1.8000000000000p+0"], ["T", "a", None]])
[1, 1.5, ('a', None)]
>>> try:
...     parse_frame(b'{"t": "v", "q": 1, "v": ' + b'[' * 100_000)
... except WireError as e:
...     print(e)
not a JSON object line: RecursionError
"""

from __future__ import annotations

# The judge imports this module at every start: no json, re, typing or collections here (each pulls
# in enum, functools, ... for milliseconds of CPU per judge); the C scanner and encoder of json only.
import math

try:
    import _json as _c_json
except ImportError:  # pragma: no cover - an interpreter without the C accelerator
    _c_json = None  # type: ignore[assignment]


def _py_quote(text: str) -> str:  # pragma: no cover
    import json

    return json.dumps(text)


_quote = _c_json.encode_basestring_ascii if _c_json is not None else _py_quote


TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

MAX_DEPTH = 64
MAX_INT_HEX_DIGITS = 100_000
MAX_TEXT = 2000
MAX_HASH_COLLISIONS = 1000
_HEX = "0123456789abcdef"
_JSON_SPACE = " \t\n\r"
PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)


class WireError(ValueError):
    """A reply from the sandbox that does not fit the protocol."""


def _refuse_constant(name: str) -> Any:
    raise WireError(f"JSON constant {name} is not allowed")


def _refuse_float(text: str) -> Any:
    raise WireError("bare JSON floats are not allowed (floats are tagged)")


class _ScanContext:
    """What json's C scanner reads off a ``json.JSONDecoder``: no bare floats, no NaN/Infinity."""

    def __init__(self) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = None
        self.parse_float = _refuse_float
        self.parse_int = int
        self.parse_constant = _refuse_constant
        self.memo: dict[str, str] = {}


_scan = _c_json.make_scanner(_ScanContext()) if _c_json is not None else None  # type: ignore[arg-type]


def _json_loads(data: bytes | str) -> Any:
    """``json.loads(data, parse_constant=..., parse_float=...)`` on UTF-8 input, without importing json."""
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(data, parse_constant=_refuse_constant, parse_float=_refuse_float)
    text = data if isinstance(data, str) else data.decode("utf-8", "surrogatepass")
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        obj, end = _scan(text, start)
    except StopIteration:
        raise ValueError("Expecting value") from None
    if text[end:].strip(_JSON_SPACE):
        raise ValueError("Extra data")
    return obj


def loads_plain(data: bytes | str) -> Any:
    """A JSON text from a trusted side (the host's notices to the judge): ``ValueError`` if malformed."""
    return _json_loads(data)


def dumps_plain(x: Any) -> str:
    """JSON (ASCII only) of a frame built from dicts with string keys, lists, strings, ints, bools and None.

    >>> dumps_plain({"t": "verdict", "i": 1, "em": "é", "x": [None, True]})
    '{"t":"verdict","i":1,"em":"\\\\u00e9","x":[null,true]}'
    """
    t = type(x)
    if t is str:
        return _quote(x)
    if x is None:
        return "null"
    if t is bool:
        return "true" if x else "false"
    if t is int:
        return int.__repr__(x)
    if t is list or t is tuple:
        return "[" + ",".join([dumps_plain(v) for v in x]) + "]"
    if t is dict:
        parts = []
        for k, v in x.items():
            if type(k) is not str:
                raise TypeError("a frame's keys are strings")
            parts.append(_quote(k) + ":" + dumps_plain(v))
        return "{" + ",".join(parts) + "}"
    raise TypeError(f"a {t.__name__} in a frame")


def parse_frame(line: bytes) -> dict[str, Any]:
    """One reply line as a dict; ``WireError`` for anything else (bad JSON, too deep, not an object)."""
    try:
        obj = _json_loads(line)
    except WireError:
        raise
    except (ValueError, RecursionError, MemoryError, TypeError) as e:
        raise WireError(f"not a JSON object line: {type(e).__name__}") from None
    if not isinstance(obj, dict):
        raise WireError("not a JSON object line: a " + type(obj).__name__)
    return obj


def _hashable(items: list[Any], what: str) -> None:
    """``WireError`` for an unhashable member, or for many members sharing hashes (a set or dict of
    deliberately colliding ints would take the judge quadratic time to build)."""
    try:
        hashes = [hash(x) for x in items]
    except TypeError:
        raise WireError(f"unhashable member in a {what}") from None
    if len(hashes) - len(set(hashes)) > MAX_HASH_COLLISIONS:
        raise WireError(f"too many hash collisions in a {what}")


def _is_hex_int(text: str) -> bool:
    """``re.fullmatch(r"-?0x[0-9a-f]+", text)``."""
    body = text[1:] if text[:1] == "-" else text
    return len(body) > 2 and body[:2] == "0x" and not body[2:].strip(_HEX)


def _is_name(text: str) -> bool:
    """``re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]{0,99}", text)``."""
    if not 0 < len(text) <= 100 or not text.isascii() or not (text[0] == "_" or text[0].isalpha()):
        return False
    rest = text[1:].replace("_", "").replace(".", "")
    return not rest or rest.isalnum()


def _one_str(rest: list[Any], tag: str) -> str:
    if len(rest) != 1 or not isinstance(rest[0], str):
        raise WireError(f"tag {tag} takes one string")
    return rest[0]


def _hex_float(text: Any) -> float:
    if not isinstance(text, str) or len(text) > 40:
        raise WireError("a float is a hex string")
    try:
        return float.fromhex(text)
    except (ValueError, OverflowError):
        raise WireError("bad hex float") from None


def decode_value(x: Any, depth: int = 0) -> Any:
    """A tagged-JSON value as built-in Python values; ``WireError`` if it is not one."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return x
    if not isinstance(x, list) or not x or not isinstance(x[0], str):
        raise WireError(f"not a tagged value: {type(x).__name__}")
    if depth >= MAX_DEPTH:
        raise WireError("value nested too deep")
    tag, rest = x[0], x[1:]
    if tag in ("L", "T", "S", "Z"):
        items = [decode_value(v, depth + 1) for v in rest]
        if tag == "L":
            return items
        if tag == "T":
            return tuple(items)
        _hashable(items, "set")
        return set(items) if tag == "S" else frozenset(items)
    if tag == "D":
        if not all(isinstance(pair, list) and len(pair) == 2 for pair in rest):
            raise WireError("a dict item is a [key, value] pair")
        keys = [decode_value(pair[0], depth + 1) for pair in rest]
        _hashable(keys, "dict")
        return dict(zip(keys, (decode_value(pair[1], depth + 1) for pair in rest), strict=True))
    if tag == "F":
        return _hex_float(_one_str(rest, tag))
    if tag == "I":
        text = _one_str(rest, tag)
        if len(text) > MAX_INT_HEX_DIGITS or not _is_hex_int(text):
            raise WireError("a big int is a hex string")
        return int(text, 16)
    if tag == "B":
        text = _one_str(rest, tag)
        if len(text) % 2 or text.strip(_HEX):
            raise WireError("bytes are a hex string")
        return bytes.fromhex(text)
    if tag == "C":
        if len(rest) != 2:
            raise WireError("a complex is two hex floats")
        return complex(_hex_float(rest[0]), _hex_float(rest[1]))
    if tag == "R":
        if len(rest) != 3 or not all(type(v) is int for v in rest) or rest[2] == 0:
            raise WireError("a range is three ints, step not 0")
        return range(rest[0], rest[1], rest[2])
    raise WireError(f"unknown value tag {tag[:10]!r}")


def encode_value(x: Any, depth: int = 0) -> Any:
    """The tagged JSON of a decoded value (the inverse of ``decode_value``): how the judge sends a
    probed call's value to the host. ``TypeError`` for anything but built-in plain values.

    >>> encode_value([1, 1.5, ("a", None), {2}])
    ['L', 1, ['F', '0x1.8000000000000p+0'], ['T', 'a', None], ['S', 2]]
    >>> decode_value(encode_value({"k": b"x", "r": range(3)}))
    {'k': b'x', 'r': range(0, 3)}
    """
    if depth >= MAX_DEPTH:
        raise TypeError("value nested too deep")
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if -(1 << 62) < x < (1 << 62) else ["I", hex(x)]
    if t is float:
        return ["F", x.hex()]
    tags: dict[type, str] = {list: "L", tuple: "T", set: "S", frozenset: "Z"}
    if t in tags:
        return [tags[t]] + [encode_value(v, depth + 1) for v in x]
    if t is dict:
        return ["D"] + [[encode_value(k, depth + 1), encode_value(v, depth + 1)] for k, v in x.items()]
    if t is bytes:
        return ["B", x.hex()]
    if t is complex:
        return ["C", x.real.hex(), x.imag.hex()]
    if t is range:
        return ["R", x.start, x.stop, x.step]
    raise TypeError(f"a {t.__name__} is not a plain value")


def values_equal(a: Any, b: Any) -> bool:
    """``==`` with floats compared within 1e-6 (relative or absolute), containers element-wise.

    >>> values_equal(0.1 + 0.2, 0.3), values_equal([1, 2], (1, 2))
    (True, False)
    """
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
                return True
            try:
                return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
            except OverflowError:
                return False
        return False
    if type(a) in (list, tuple) or type(b) in (list, tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(values_equal, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:
        return False


def text_field(x: Any, limit: int = MAX_TEXT) -> str:
    """A message from the sandbox: a string, cut to ``limit`` characters."""
    if not isinstance(x, str):
        raise WireError("a message is a string")
    return x if len(x) <= limit else x[: limit - 3] + "..."


def name_field(x: Any) -> str:
    """An exception type name from the sandbox: a dotted identifier of at most 100 characters."""
    if not isinstance(x, str) or not _is_name(x):
        raise WireError("an exception name is a dotted identifier")
    return x


if TYPE_CHECKING:
    Check = Callable[[Any], bool]
    Shape = tuple[dict[str, Check], dict[str, Check]]
    """A frame's required fields and optional fields, each with the check its value must pass."""


def is_bool(x: Any) -> bool:
    return isinstance(x, bool)


def is_str(x: Any) -> bool:
    return isinstance(x, str)


def is_int(x: Any) -> bool:
    return type(x) is int


def any_value(x: Any) -> bool:
    return True


def str_list(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(s, str) for s in x)


def is_dict(x: Any) -> bool:
    return isinstance(x, dict)


def one_of(*options: str) -> Check:
    return lambda x: isinstance(x, str) and x in options


def expect(frame: dict[str, Any], required: Mapping[str, Check], optional: Mapping[str, Check]) -> None:
    """``WireError`` unless ``frame`` has every required key, no unknown key, and each value fits."""
    for key, ok in required.items():
        if key not in frame or not ok(frame[key]):
            raise WireError(f"frame field {key!r} missing or mistyped")
    for key, value in frame.items():
        if key in required:
            continue
        check = optional.get(key)
        if check is None:
            raise WireError(f"unexpected frame field {str(key)[:20]!r}")
        if not check(value):
            raise WireError(f"frame field {key!r} mistyped")


def check_plain(x: Any, depth: int = 0) -> None:
    """``TypeError`` unless ``x`` is built from exact built-in plain types (sent to the sandbox)."""
    if depth > MAX_DEPTH:
        raise TypeError("value nested too deep to send to the program")
    t = type(x)
    if t is bytearray:
        return
    if t not in PLAIN_TYPES:
        raise TypeError(f"cannot pass a {t.__name__} to the program (plain values only)")
    if t is dict:
        for k, v in x.items():
            check_plain(k, depth + 1)
            check_plain(v, depth + 1)
    elif t in (list, tuple, set, frozenset):
        for v in x:
            check_plain(v, depth + 1)
