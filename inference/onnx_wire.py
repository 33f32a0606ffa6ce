"""The two facts serving reads from an ONNX file's bytes itself, before onnxruntime opens it: the content
version the file must carry, and whether its tensors point at external data. Serving has no `onnx`
package, so the protobuf wire format is walked by hand, only as deep as these facts need.

Version rule: a model file's `version` metadata is the first 16 hex digits of the SHA-256 of the file's
bytes with that entry's value set to `""` (a hash cannot contain itself). The exporter and `counterfeit
calibrate` stamp it with `content_version`; the Predictor recomputes it, so a file edited by hand is caught.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

VERSION_KEY = "version"
VERSION_DIGITS = 16  # hex digits kept of the SHA-256: 64 bits, as shown in GET /v1/model and the evidence log
BLANK_VERSION = json.dumps("")  # metadata values are JSON-encoded (inference/metadata.py)

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5  # protobuf wire types (groups, 3 and 4, do not occur in ONNX)
_MODEL_METADATA_PROPS = 14  # ModelProto.metadata_props: StringStringEntryProto {key = 1, value = 2}
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 13, 14, 1  # TensorProto fields, DataLocation.EXTERNAL

# Where a TensorProto can sit (onnx.proto3, onnx 1.23): message -> {field number: message type}. Only
# these fields are followed; tests/test_model_validation.py checks this table against onnx's own schema.
TENSOR_PATHS: dict[str, dict[int, str]] = {
    "ModelProto": {7: "GraphProto", 20: "TrainingInfoProto", 25: "FunctionProto"},
    "GraphProto": {1: "NodeProto", 5: "TensorProto", 15: "SparseTensorProto"},
    "NodeProto": {5: "AttributeProto"},
    "AttributeProto": {5: "TensorProto", 6: "GraphProto", 10: "TensorProto", 11: "GraphProto",
                       22: "SparseTensorProto", 23: "SparseTensorProto"},
    "FunctionProto": {7: "NodeProto", 11: "AttributeProto"},
    "TrainingInfoProto": {1: "GraphProto", 2: "GraphProto"},
    "SparseTensorProto": {1: "TensorProto", 2: "TensorProto"},
}


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message (truncated, or not ONNX at all)."""


def content_version(data: bytes) -> str:
    """The version a model file with these bytes must carry (module docstring). WireError when the
    file has no single `version` metadata entry to blank."""
    entries = [(start, end) for start, end, key, _ in _metadata_entries(data) if key == VERSION_KEY]
    if len(entries) != 1:
        raise WireError(f"the file has {len(entries)} '{VERSION_KEY}' metadata entries, not one")
    start, end = entries[0]
    blanked = data[:start] + _metadata_entry(VERSION_KEY, BLANK_VERSION) + data[end:]
    return hashlib.sha256(blanked).hexdigest()[:VERSION_DIGITS]


def external_tensors(data: bytes) -> int:
    """How many tensors of the model (initializers, constants, subgraphs, functions) keep their data in
    another file rather than inside this one."""
    count, pending = 0, [("ModelProto", 0, len(data))]  # a stack, not recursion: nesting depth is the file's
    while pending:
        message, start, end = pending.pop()
        if message == "TensorProto":
            count += _is_external(data, start, end)
            continue
        children = TENSOR_PATHS[message]
        for number, wire, value in _fields(data, start, end):
            if wire == _LEN and number in children:
                pending.append((children[number], *value))
    return count


def _is_external(data: bytes, start: int, end: int) -> bool:
    for number, wire, value in _fields(data, start, end):
        if number == _TENSOR_EXTERNAL_DATA or (number == _TENSOR_DATA_LOCATION and wire == _VARINT
                                               and value == _EXTERNAL):
            return True
    return False


def _metadata_entries(data: bytes) -> Iterator[tuple[int, int, str, str]]:
    """(start, end, key, value) of each ModelProto.metadata_props entry, start..end spanning its tag too."""
    position = 0
    while position < len(data):
        start = position
        number, wire, value, position = _field(data, position, len(data))
        if number == _MODEL_METADATA_PROPS and wire == _LEN:
            strings = {n: data[s:e] for n, w, (s, e) in _fields(data, *value) if w == _LEN}
            yield start, position, _text(strings.get(1, b"")), _text(strings.get(2, b""))


def _metadata_entry(key: str, value: str) -> bytes:
    """One metadata_props entry as protobuf serialises it: key (field 1), then value (field 2)."""
    payload = _len_field(1, key.encode()) + _len_field(2, value.encode())
    return _len_field(_MODEL_METADATA_PROPS, payload)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint_bytes(number << 3 | _LEN) + _varint_bytes(len(payload)) + payload


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of one message's fields; a LEN value is its (start, end) span."""
    position = start
    while position < end:
        number, wire, value, position = _field(data, position, end)
        yield number, wire, value


def _field(data: bytes, position: int, end: int) -> tuple[int, int, object, int]:
    key, position = _varint(data, position, end)
    number, wire = key >> 3, key & 7
    if wire == _VARINT:
        value, position = _varint(data, position, end)
        return number, wire, value, position
    if wire == _LEN:
        length, position = _varint(data, position, end)
        value, position = (position, position + length), position + length
    elif wire in (_I64, _I32):
        value, position = None, position + (8 if wire == _I64 else 4)
    else:
        raise WireError(f"unknown protobuf wire type {wire} at byte {position}")
    if position > end:
        raise WireError(f"a field runs past the end of its message (byte {position} of {end}): truncated?")
    return number, wire, value, position


def _varint(data: bytes, position: int, end: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if position >= end:
            raise WireError(f"a number runs past the end of its message at byte {position}: truncated?")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
    raise WireError(f"a number longer than 10 bytes at byte {position}")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
