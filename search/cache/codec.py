"""Compact binary encodings of the engine's cached values (no pickle: struct, numpy, json only).

Every encoding starts with a 1-byte type tag and a 1-byte version, all numbers are little-endian,
and decoders check every length exactly: anything else raises ``CodecError``, which callers
treat as a cache miss. Layouts (version 1)::

    next-token  0x01 0x01 | k:u32 | ids:i32[k] | logprobs:f32[k] | entropy:f64
    rollout     0x02 0x01 | flags:u8 (bit0 = has step dists) | len(reason):u8 | n:u32
                | reason:utf-8 | ids:i32[n] | logprobs:f32[n]
                [ | s:u32 | k:u32[s] | ids:i32[sum k] | logprobs:f32[sum k] | entropy:f64[s] ]
    json        0x03 0x01 | len:u32 | utf-8 JSON (compact)

Log-probabilities are stored as float32 (decoding returns the float32 value as a Python
float); entropies as float64; token ids must fit in int32.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

TAG_NEXT_TOKEN = 0x01
TAG_ROLLOUT = 0x02
TAG_JSON = 0x03
VERSION = 1

_I32 = np.dtype("<i4")
_U32 = np.dtype("<u4")
_F32 = np.dtype("<f4")
_F64 = np.dtype("<f8")
_NEXT_HEAD = struct.Struct("<BBI")
_ROLL_HEAD = struct.Struct("<BBBBI")
_JSON_HEAD = struct.Struct("<BBI")
_U32_ONE = struct.Struct("<I")
_F64_ONE = struct.Struct("<d")
_FLAG_STEPS = 0x01
_MAX_REASON_BYTES = 255
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1


class CodecError(ValueError):
    """Bytes that are not a valid encoding of the expected kind, or a value that cannot be encoded."""


StepDist = tuple[list[int], list[float], float]


class NextToken(NamedTuple):
    """A decoded next-token distribution (unpacks like the plain tuple)."""

    token_ids: list[int]
    logprobs: list[float]
    entropy: float


class Rollout(NamedTuple):
    """A decoded rollout (unpacks like the plain tuple)."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    step_dists: list[StepDist] | None


def _ids(values: Sequence[int], what: str) -> bytes:
    arr = np.asarray(values).reshape(-1)
    if arr.size and arr.dtype.kind not in "iu":
        raise CodecError(f"{what}: token ids must be integers, got {arr.dtype}")
    if arr.size and (arr.min() < _I32_MIN or arr.max() > _I32_MAX):
        raise CodecError(f"{what}: token ids must fit in int32")
    return arr.astype(_I32).tobytes()


def _floats(values: Sequence[float], dtype: np.dtype[Any], what: str) -> bytes:
    try:
        with np.errstate(over="ignore"):
            return np.asarray(values, dtype=np.float64).reshape(-1).astype(dtype).tobytes()
    except (TypeError, ValueError) as exc:
        raise CodecError(f"{what}: values must be numbers ({exc})") from None


class _Reader:
    """Consumes ``data`` front to back; every read checks that the bytes are there."""

    def __init__(self, data: bytes, kind: str) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError(f"{kind}: expected bytes, got {type(data).__name__}")
        self.data = bytes(data)
        self.pos = 0
        self.kind = kind

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CodecError(f"{self.kind}: truncated ({len(self.data)} bytes)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: struct.Struct) -> tuple[Any, ...]:
        return fmt.unpack(self.take(fmt.size))

    def array(self, dtype: np.dtype[Any], count: int) -> np.ndarray[Any, Any]:
        return np.frombuffer(self.take(count * dtype.itemsize), dtype=dtype)

    def header(self, fmt: struct.Struct, tag: int) -> tuple[Any, ...]:
        values = self.unpack(fmt)
        if values[0] != tag:
            raise CodecError(f"{self.kind}: wrong type tag 0x{values[0]:02x} (expected 0x{tag:02x})")
        if values[1] != VERSION:
            raise CodecError(f"{self.kind}: unsupported version {values[1]}")
        return values[2:]

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise CodecError(f"{self.kind}: {len(self.data) - self.pos} trailing bytes")


def encode_next_token(token_ids: Sequence[int], logprobs: Sequence[float], entropy: float) -> bytes:
    """Encode a top-k next-token distribution.

    >>> decode_next_token(encode_next_token([5, 7], [-0.5, -1.25], 0.75))
    NextToken(token_ids=[5, 7], logprobs=[-0.5, -1.25], entropy=0.75)
    """
    if len(token_ids) != len(logprobs):
        raise CodecError(f"next-token: {len(token_ids)} token ids but {len(logprobs)} logprobs")
    return b"".join(
        (
            _NEXT_HEAD.pack(TAG_NEXT_TOKEN, VERSION, len(token_ids)),
            _ids(token_ids, "next-token"),
            _floats(logprobs, _F32, "next-token"),
            _F64_ONE.pack(float(entropy)),
        )
    )


def decode_next_token(b: bytes) -> NextToken:
    r = _Reader(b, "next-token")
    (k,) = r.header(_NEXT_HEAD, TAG_NEXT_TOKEN)
    ids = r.array(_I32, k).tolist()
    lps = r.array(_F32, k).tolist()
    (entropy,) = r.unpack(_F64_ONE)
    r.finish()
    return NextToken(ids, lps, entropy)


def encode_rollout(
    token_ids: Sequence[int],
    logprobs: Sequence[float],
    finish_reason: str,
    step_dists: Sequence[tuple[Sequence[int], Sequence[float], float]] | None = None,
) -> bytes:
    """Encode a rollout: generated ids, their logprobs, why it stopped, optional per-step top-k.

    >>> r = decode_rollout(encode_rollout([1, 2], [-0.5, -0.25], "stop", [([1, 9], [-0.5, -2.0], 0.5)]))
    >>> r.token_ids, r.logprobs, r.finish_reason, r.step_dists
    ([1, 2], [-0.5, -0.25], 'stop', [([1, 9], [-0.5, -2.0], 0.5)])
    """
    if len(token_ids) != len(logprobs):
        raise CodecError(f"rollout: {len(token_ids)} token ids but {len(logprobs)} logprobs")
    reason = finish_reason.encode("utf-8")
    if len(reason) > _MAX_REASON_BYTES:
        raise CodecError(f"rollout: finish reason longer than {_MAX_REASON_BYTES} bytes")
    flags = _FLAG_STEPS if step_dists is not None else 0
    parts = [
        _ROLL_HEAD.pack(TAG_ROLLOUT, VERSION, flags, len(reason), len(token_ids)),
        reason,
        _ids(token_ids, "rollout"),
        _floats(logprobs, _F32, "rollout"),
    ]
    if step_dists is not None:
        parts.append(_steps(step_dists))
    return b"".join(parts)


def _steps(step_dists: Sequence[tuple[Sequence[int], Sequence[float], float]]) -> bytes:
    ks: list[int] = []
    ids: list[int] = []
    lps: list[float] = []
    ents: list[float] = []
    for i, (step_ids, step_lps, entropy) in enumerate(step_dists):
        if len(step_ids) != len(step_lps):
            raise CodecError(f"rollout: step {i} has {len(step_ids)} token ids but {len(step_lps)} logprobs")
        ks.append(len(step_ids))
        ids.extend(step_ids)
        lps.extend(step_lps)
        ents.append(entropy)
    return b"".join(
        (
            _U32_ONE.pack(len(ks)),
            np.asarray(ks, dtype=_U32).tobytes(),
            _ids(ids, "rollout"),
            _floats(lps, _F32, "rollout"),
            _floats(ents, _F64, "rollout"),
        )
    )


def decode_rollout(b: bytes) -> Rollout:
    r = _Reader(b, "rollout")
    flags, reason_len, n = r.header(_ROLL_HEAD, TAG_ROLLOUT)
    if flags & ~_FLAG_STEPS:
        raise CodecError(f"rollout: unknown flags 0x{flags:02x}")
    try:
        reason = r.take(reason_len).decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError("rollout: finish reason is not utf-8") from None
    ids = r.array(_I32, n).tolist()
    lps = r.array(_F32, n).tolist()
    steps: list[StepDist] | None = None
    if flags & _FLAG_STEPS:
        (s,) = r.unpack(_U32_ONE)
        ks = r.array(_U32, s).astype(np.int64)
        total = int(ks.sum())
        all_ids = r.array(_I32, total).tolist()
        all_lps = r.array(_F32, total).tolist()
        ents = r.array(_F64, s).tolist()
        bounds = np.concatenate(([0], np.cumsum(ks))).tolist()
        steps = [
            (all_ids[a:z], all_lps[a:z], e) for a, z, e in zip(bounds[:-1], bounds[1:], ents, strict=True)
        ]
    r.finish()
    return Rollout(ids, lps, reason, steps)


def encode_json(obj: Any) -> bytes:
    """Encode a JSON-serialisable value (execution results); tuples come back as lists.

    >>> decode_json(encode_json({"passed": 3, "stderr": "é"}))
    {'passed': 3, 'stderr': 'é'}
    """
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise CodecError(f"json: cannot encode ({exc})") from None
    body = text.encode("utf-8")
    return _JSON_HEAD.pack(TAG_JSON, VERSION, len(body)) + body


def decode_json(b: bytes) -> Any:
    r = _Reader(b, "json")
    (length,) = r.header(_JSON_HEAD, TAG_JSON)
    body = r.take(length)
    r.finish()
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"json: invalid payload ({exc})") from None
