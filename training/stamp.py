"""Stamp a model file's metadata and its content version: onnx only, no torch, so that `counterfeit
calibrate` (training/calibrate.py), which only rewrites metadata, runs without it."""

from __future__ import annotations

from dataclasses import replace

import onnx

from inference.metadata import ModelMetadata
from inference.onnx_wire import content_version


def stamp_metadata(proto: onnx.ModelProto, metadata: ModelMetadata) -> ModelMetadata:
    """Write the metadata; its version is the content hash of the model serialised with an empty version,
    computed by the very function the Predictor checks it with (inference.onnx_wire.content_version)."""
    _set_props(proto, replace(metadata, version="").to_props())
    version = content_version(proto.SerializeToString())
    metadata = replace(metadata, version=version)
    _set_props(proto, metadata.to_props())
    return metadata


def _set_props(proto: onnx.ModelProto, props: dict[str, str]) -> None:
    del proto.metadata_props[:]
    for key, value in sorted(props.items()):
        proto.metadata_props.add(key=key, value=value)
