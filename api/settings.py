"""All server settings in one place: COUNTERFEIT_* environment variables or a .env file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.auth import ApiKey
from evidence_store.retention import MAX_DAYS
from inference.assets import DEMO_MODEL
from inference.images import Limits
from inference.predictor import MAX_BATCH
from inference.quality import QualityThresholds


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COUNTERFEIT_", env_file=".env", extra="ignore")

    model_path: Path = Field(DEMO_MODEL, description="The ONNX model file to serve.")
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    max_upload_bytes: int = Field(25_000_000, gt=0, description="Largest accepted upload, bytes (413 above).")
    max_image_pixels: int = Field(80_000_000, gt=0, description="Largest accepted width*height (413 above).")
    decode_budget_mb: int = Field(512, ge=16, description="Memory for decoding photos, MB, shared by all requests: "
                                  "a photo whose decoding alone needs more is refused (413); beyond it, decodes wait.")
    decode_wait_s: float = Field(5.0, ge=0, le=60, description="How long a decode waits for budget before the "
                                 "request is answered 503 server_busy, seconds.")
    threads: int = Field(0, ge=0, description="onnxruntime threads per call; 0 = one per core.")
    model_dir: Path | None = Field(None, description="Folder that POST /v1/admin/model may load models from; "
                                   "default: the folder of model_path.")
    api_keys: list[ApiKey] = Field([], description="JSON list of {subject, role, sha256}; make entries with "
                                   "`counterfeit keys new`. Empty: open API, loopback only.")
    data_dir: Path = Field(Path("evidence"), description="Evidence store folder: the SQLite database (default) "
                           "and the original photos. Shared storage when several replicas use PostgreSQL.")
    database_url: SecretStr | None = Field(None, description="postgresql://user:password@host/db for several "
                                           "replicas; unset: SQLite in data_dir.")
    evidence_retain_originals_days: int | None = Field(None, ge=1, le=MAX_DAYS, description="Retention policy: "
                                                       "`counterfeit evidence retire` (run it daily, e.g. from cron) "
                                                       "deletes the original photos of evidence records older than "
                                                       "this many days, each deletion a chain entry of its own; "
                                                       "records, verdicts and hashes stay. The server itself never "
                                                       "deletes. Unset: originals are kept for ever.")
    record_screenings: bool = Field(True, description="Keep screened listing photos in the evidence log too, "
                                    "so seizures can be linked to the listings that show the same goods.")
    max_batch: int = Field(MAX_BATCH, ge=1, le=256, description="Most images in one batch; each onnxruntime call "
                           "takes at most 4 x 640 x 480 px of model input.")
    batch_wait_ms: float = Field(4.0, ge=0, le=1000, description="How long the first request of a batch "
                                 "waits for others to join it, milliseconds.")
    max_screening_images: int = Field(64, ge=1, le=1024, description="Most images in one POST /v1/screenings.")
    drain_seconds: float = Field(2.0, ge=0, description="On shutdown, /readyz answers 503 this long before the "
                                 "server stops accepting, so load balancers move traffic away first.")
    header_timeout_seconds: float = Field(10.0, gt=0, description="A request head (request line and headers) "
                                          "must arrive within this many seconds of the connection opening or of "
                                          "the previous answer on it; else the connection is closed (slowloris).")
    body_timeout_seconds: float = Field(30.0, gt=0, description="Longest pause between two chunks of a request "
                                        "body, seconds: longer, and the answer is 408 and the connection is closed. "
                                        "Between chunks, not in total, so a large photo on a slow link still "
                                        "arrives.")
    quality_min_side: int = Field(QualityThresholds.min_side, description="Shorter side below this, pixels: retake.")
    quality_min_sharpness: float = Field(QualityThresholds.min_sharpness, description="Sharpness below: blurry.")
    quality_min_brightness: float = Field(QualityThresholds.min_brightness, description="Mean luma below: too dark.")
    quality_max_brightness: float = Field(QualityThresholds.max_brightness, description="Mean luma above: overexposed.")
    quality_max_clipped: float = Field(QualityThresholds.max_clipped, description="Share of blown-out pixels above: "
                                       "overexposed.")
    quality_max_glare: float = Field(QualityThresholds.max_glare, description="Largest blown-out blob in the "
                                     "frame's central 60% x 60%, as a share of it, above: glare.")
    quality_min_chroma: float = Field(QualityThresholds.min_chroma, description="99th-percentile chroma (levels "
                                      "0..128) below: grayscale.")
    quality_min_jpeg_quality: int = Field(QualityThresholds.min_jpeg_quality, description="JPEG quality the upload "
                                          "was last saved at, below: compressed (send the original).")

    @property
    def resolved_model_dir(self) -> Path:
        return self.model_dir or self.model_path.parent

    @property
    def quality_thresholds(self) -> QualityThresholds:
        return QualityThresholds(
            min_side=self.quality_min_side, min_sharpness=self.quality_min_sharpness,
            min_brightness=self.quality_min_brightness, max_brightness=self.quality_max_brightness,
            max_clipped=self.quality_max_clipped, max_glare=self.quality_max_glare,
            min_chroma=self.quality_min_chroma, min_jpeg_quality=self.quality_min_jpeg_quality,
        )

    @property
    def limits(self) -> Limits:
        return Limits(max_bytes=self.max_upload_bytes, max_pixels=self.max_image_pixels)
