"""Round trips and rejections of the cache value codecs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from search.cache.codec import (
    CodecError,
    decode_json,
    decode_next_token,
    decode_rollout,
    encode_json,
    encode_next_token,
    encode_rollout,
)

token_ids = st.integers(min_value=-(2**31), max_value=2**31 - 1)
logprob32 = st.floats(width=32, allow_nan=False)  # exactly representable in float32
entropy64 = st.floats(allow_nan=False)


@st.composite
def distributions(draw: st.DrawFn) -> tuple[list[int], list[float], float]:
    k = draw(st.integers(min_value=0, max_value=40))
    ids = draw(st.lists(token_ids, min_size=k, max_size=k))
    lps = draw(st.lists(logprob32, min_size=k, max_size=k))
    return ids, lps, draw(entropy64)


@st.composite
def rollouts(draw: st.DrawFn) -> tuple[list[int], list[float], str, list | None]:
    ids, lps, _ = draw(distributions())
    reason = draw(st.text(max_size=20))
    steps = draw(st.none() | st.lists(distributions(), max_size=8))
    return ids, lps, reason, steps


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _all_encodings() -> list[tuple[bytes, object]]:
    return [
        (encode_next_token([3, 1, 4], [-0.1, -1.5, -3.0], 0.9), decode_next_token),
        (encode_rollout([3, 1], [-0.1, -1.5], "stop", [([3, 9], [-0.1, -2.5], 0.4)] * 2), decode_rollout),
        (encode_rollout([3, 1], [-0.1, -1.5], "length", None), decode_rollout),
        (encode_json({"passed": [True, False], "stdout": "ok"}), decode_json),
    ]


@given(distributions())
def test_next_token_round_trip_is_exact_for_float32_logprobs(dist):
    ids, lps, entropy = dist
    assert decode_next_token(encode_next_token(ids, lps, entropy)) == (ids, lps, entropy)


def test_next_token_logprobs_are_rounded_to_float32():
    _, lps, entropy = decode_next_token(encode_next_token([1], [-0.1], 0.1))
    assert lps == [float(np.float32(-0.1))]
    assert entropy == 0.1


def test_next_token_keeps_negative_infinity_for_masked_tokens():
    assert decode_next_token(encode_next_token([7], [float("-inf")], 0.0)).logprobs == [float("-inf")]


def test_next_token_size_is_compact():
    assert len(encode_next_token(list(range(20)), [-1.0] * 20, 1.0)) == 2 + 4 + 20 * 8 + 8


@given(rollouts())
def test_rollout_round_trip(roll):
    ids, lps, reason, steps = roll
    assert decode_rollout(encode_rollout(ids, lps, reason, steps)) == (ids, lps, reason, steps)


@given(json_values)
def test_json_round_trip(obj):
    assert decode_json(encode_json(obj)) == obj


@given(distributions(), st.data())
def test_truncated_next_token_is_rejected(dist, data):
    b = encode_next_token(*dist)
    cut = data.draw(st.integers(min_value=0, max_value=len(b) - 1))
    with pytest.raises(CodecError):
        decode_next_token(b[:cut])


@given(rollouts(), st.data())
def test_truncated_rollout_is_rejected(roll, data):
    b = encode_rollout(*roll)
    cut = data.draw(st.integers(min_value=0, max_value=len(b) - 1))
    with pytest.raises(CodecError):
        decode_rollout(b[:cut])


@given(json_values, st.data())
def test_truncated_json_is_rejected(obj, data):
    b = encode_json(obj)
    cut = data.draw(st.integers(min_value=0, max_value=len(b) - 1))
    with pytest.raises(CodecError):
        decode_json(b[:cut])


@pytest.mark.parametrize("decode", [decode_next_token, decode_rollout, decode_json])
def test_trailing_bytes_are_rejected(decode):
    for b, dec in _all_encodings():
        if dec is decode:
            with pytest.raises(CodecError, match="trailing"):
                decode(b + b"\x00")


def test_each_decoder_rejects_the_other_kinds():
    decoders = [decode_next_token, decode_rollout, decode_json]
    for b, own in _all_encodings():
        for decode in decoders:
            if decode is not own:
                with pytest.raises(CodecError, match="wrong type tag"):
                    decode(b)


@given(st.binary(max_size=200))
def test_foreign_bytes_never_decode_silently_wrong(raw):
    """Arbitrary bytes either raise CodecError or decode to a value that survives a round trip."""
    for decode, encode in [
        (decode_next_token, lambda v: encode_next_token(*v)),
        (decode_rollout, lambda v: encode_rollout(*v)),
        (decode_json, encode_json),
    ]:
        try:
            value = decode(raw)
        except CodecError:
            continue
        assert repr(decode(encode(value))) == repr(value)  # repr: NaN-tolerant equality


def test_unknown_version_is_rejected():
    b = bytearray(encode_next_token([1], [-1.0], 0.0))
    b[1] = 99
    with pytest.raises(CodecError, match="version 99"):
        decode_next_token(bytes(b))


def test_unknown_rollout_flags_are_rejected():
    b = bytearray(encode_rollout([1], [-1.0], "stop"))
    b[2] = 0x80
    with pytest.raises(CodecError, match="flags"):
        decode_rollout(bytes(b))


def test_invalid_utf8_json_is_rejected():
    with pytest.raises(CodecError):
        decode_json(b"\x03\x01\x02\x00\x00\x00\xff\xfe")


def test_not_bytes_is_rejected():
    with pytest.raises(CodecError, match="expected bytes"):
        decode_json("{}")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "call",
    [
        lambda: encode_next_token([1, 2], [-1.0], 0.0),
        lambda: encode_next_token([2**31], [-1.0], 0.0),
        lambda: encode_next_token([1.5], [-1.0], 0.0),  # type: ignore[list-item]
        lambda: encode_rollout([1], [-1.0], "x" * 256),
        lambda: encode_rollout([1], [-1.0], "stop", [([1, 2], [-1.0], 0.0)]),
        lambda: encode_json({"f": object()}),
    ],
    ids=["length-mismatch", "id-overflow", "float-id", "long-reason", "step-mismatch", "not-json"],
)
def test_invalid_values_are_refused_at_encode(call):
    with pytest.raises(CodecError):
        call()
