"""The API's JSON shapes (they also document themselves in the OpenAPI schema at /docs)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from inference.classes import COUNTERFEIT, Verdict
from inference.quality import NOT_RECOGNISED, REASONS

# Control characters other than tab, line feed and carriage return: NUL breaks storage (PostgreSQL refuses
# it in text), the others forge lines in logs and exports. One rule for every text field a caller sends.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
WITHOUT_CONTROL_CHARACTERS = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"  # the same rule, for OpenAPI clients


def refuse_control_characters(value: str) -> str:
    found = CONTROL_CHARACTERS.search(value)
    if found is not None:
        raise ValueError(f"contains the control character U+{ord(found.group()):04X}; send plain text "
                         "(tabs and line breaks are fine)")
    return value


class _DocumentRule:
    """Shows the rule in the OpenAPI schema as a `pattern`, while refuse_control_characters enforces it
    with a message that says which character was wrong (a pydantic pattern would only quote the regex)."""

    def __get_pydantic_json_schema__(self, core_schema, handler):
        schema = handler(core_schema)
        schema["pattern"] = WITHOUT_CONTROL_CHARACTERS
        return schema


# Text a caller sends (location, case, note, ids, record ids, file names): validated before anything runs.
PlainText = Annotated[str, AfterValidator(refuse_control_characters), _DocumentRule()]


class ThresholdsOut(BaseModel):
    low: float = Field(description="genuine when score <= low")
    high: float = Field(description="counterfeit when score >= high")


class ModelRef(BaseModel):
    name: str
    version: str = Field(description="content hash of the model that produced this answer")
    demo: bool | None = Field(None, description="true: the model was never validated on real photos (GET "
                              "/v1/model, provenance); its verdicts show the product working, they are not evidence")


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
    verdict: Verdict = Field(
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
    product: str | None = Field(None, description="the catalogue product (side) the photo was recognised as: "
                                "show its reference image (GET /v1/model `catalogue`) beside the photo; None when "
                                "the photo was not registered (retake) or the model has no catalogue")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "verdict": COUNTERFEIT,
                    "score": 0.97,
                    "thresholds": {"low": 0.2, "high": 0.8},
                    "model": {"name": "demo", "version": "3f2a9c1d0b7e4a65"},
                    "image": {"sha256": "9b74c9897bac770ffc029102a200c5de" * 2, "width": 640, "height": 480},
                    "quality": {"ok": True, "reasons": [], "message": "Good photo.",
                                "measures": {"sharpness": 412.0, "brightness": 118.0, "min_side": 480.0}},
                    "id": "01JB8Z3M6Q4T2V9X7C5N1K0PRD",
                    "recorded_at": "2025-01-31T09:30:00.000000Z",
                }
            ]
        }
    }


class ItemPhoto(Inspection):
    """One photo of an item, answered as an inspection (its `product` names the side it shows)."""


class Item(BaseModel):
    """Several photos of one item, one verdict (POST /v1/items)."""

    id: str | None = Field(None, description="the item: GET /v1/items/{id}; its photos are kept under it")
    verdict: Verdict = Field(description="retake: see `reason` and `message` for what to photograph")
    score: float | None = Field(None, ge=0, le=1, description="calibrated probability that the item is "
                                "counterfeit, combined from its photos (see `combination`)")
    thresholds: ThresholdsOut
    model: ModelRef
    combination: Literal["calibrated", "worst_photo"] = Field(
        description="calibrated: a fit on val items stored in the model file; worst_photo: the item is "
                    "scored as its highest-scoring photo (the model has no item calibration)")
    reason: Literal["photo_retake", "mixed_products", "missing_side", "repeated_photo"] | None = Field(
        None, description="why the item must be retaken (verdict retake)")
    message: str = Field(description="what to do, for the person holding the phone")
    missing_sides: list[str] = Field(default_factory=list, description="sides the catalogue lists for this "
                                     "product that no photo shows")
    photos: list[ItemPhoto] = Field(description="each photo's own answer, in the order sent")
    recorded_at: str | None = Field(None, description="UTC time the item was stored")


class ScreeningResult(BaseModel):
    index: int = Field(description="position of the image in the request")
    id: str | None = Field(None, description="the caller's id for this image (listing or seller id), if sent")
    verdict: Verdict | None = None
    score: float | None = None
    image: ImageInfo | None = None
    quality: Quality | None = None
    error: "ErrorBody | None" = Field(None, description="why this image could not be scored; the others still are")
    record_id: str | None = Field(None, description="the evidence record of this image, when screenings are kept")
    product: str | None = Field(None, description="the catalogue product (side) the photo was recognised as")


class Screenings(BaseModel):
    results: list[ScreeningResult]
    thresholds: ThresholdsOut
    model: ModelRef


class ModelReload(BaseModel):
    # 255: the longest file name most file systems take; longer, or with NUL, the OS refuses it (a 500 before).
    path: PlainText = Field(min_length=1, max_length=255, examples=["model.onnx"],
                            description="model file, relative to the server's model directory")


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable slug, e.g. unsupported_format")
    message: str = Field(description="what is wrong and how to fix it")


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok", "loading"]


ScreeningResult.model_rebuild()


# What each error status means, for the OpenAPI schema; routes list the statuses they can answer
# with error_responses(...), so the spec names every answer a client can get (schemathesis checks it).
ERROR_DESCRIPTIONS = {
    400: "Malformed body: broken multipart, form or JSON encoding",
    401: "Missing or unknown API key (X-API-Key)",
    403: "The key's role may not call this endpoint",
    404: "No such inspection in the evidence log",
    408: "The request body stalled longer than body_timeout_seconds; the connection is closed",
    413: "Request body, image (bytes or pixels) or number of images too large",
    415: "Not a supported image format (JPEG, PNG, WebP, HEIC)",
    422: "Invalid request: a missing or malformed field, or an empty, truncated or corrupt image",
    503: "Model not loaded yet, busy decoding other photos (server_busy, with Retry-After), or the evidence store is unavailable (nothing was recorded)",
}


def error_responses(*statuses: int) -> dict:
    """FastAPI's `responses=` for these error statuses, each with the API's error body."""
    return {status: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[status]} for status in statuses}
