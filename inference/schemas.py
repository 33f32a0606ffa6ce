"""The API's JSON shapes (they also document themselves in the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from inference.quality import NOT_RECOGNISED, REASONS


class ThresholdsOut(BaseModel):
    low: float = Field(description="genuine when score <= low")
    high: float = Field(description="counterfeit when score >= high")


class ModelRef(BaseModel):
    name: str
    version: str = Field(description="content hash of the model that produced this answer")


class ImageInfo(BaseModel):
    sha256: str = Field(description="SHA-256 of the uploaded bytes, as received")
    width: int = Field(description="pixels, upright (after EXIF orientation)")
    height: int


class Quality(BaseModel):
    ok: bool
    reasons: list[str] = Field(description=" | ".join((*REASONS, NOT_RECOGNISED)))
    message: str = Field(description="what to do, for the person holding the phone")
    measures: dict[str, float]


class Inspection(BaseModel):
    verdict: Literal["genuine", "counterfeit", "inconclusive", "retake"] = Field(
        description="retake: the photo is too poor to judge (see quality); no score is given then")
    score: float | None = Field(None, ge=0, le=1, description="calibrated probability that the item is counterfeit")
    thresholds: ThresholdsOut
    model: ModelRef
    image: ImageInfo
    quality: Quality
    heatmap: str | None = Field(None, description="with ?explain=true: PNG (base64) of where the model looked, "
                                "the size of the photo as scored")
    id: str | None = Field(None, description="the evidence record: GET /v1/inspections/{id}")
    recorded_at: str | None = Field(None, description="UTC time the record was stored")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "verdict": "counterfeit",
                    "score": 0.97,
                    "thresholds": {"low": 0.2, "high": 0.8},
                    "model": {"name": "demo", "version": "3f2a9c1d0b7e4a65"},
                    "image": {"sha256": "9b74c9897bac770ffc029102a200c5de" * 2, "width": 640, "height": 480},
                }
            ]
        }
    }


class ScreeningResult(BaseModel):
    index: int = Field(description="position of the image in the request")
    id: str | None = Field(None, description="the caller's id for this image (listing or seller id), if sent")
    verdict: Literal["genuine", "counterfeit", "inconclusive", "retake"] | None = None
    score: float | None = None
    image: ImageInfo | None = None
    quality: Quality | None = None
    error: "ErrorBody | None" = Field(None, description="why this image could not be scored; the others still are")
    record_id: str | None = Field(None, description="the evidence record of this image, when screenings are kept")


class Screenings(BaseModel):
    results: list[ScreeningResult]
    thresholds: ThresholdsOut
    model: ModelRef


class ModelReload(BaseModel):
    path: str = Field(description="model file, relative to the server's model directory",
                      examples=["model-v2.onnx"])


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable slug, e.g. unsupported_format")
    message: str = Field(description="what is wrong and how to fix it")


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok", "loading"]


ScreeningResult.model_rebuild()
