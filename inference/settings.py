"""All server settings in one place: COUNTERFEIT_* environment variables or a .env file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.images import Limits

DEMO_MODEL = Path(__file__).parent / "demo" / "model.onnx"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COUNTERFEIT_", env_file=".env", extra="ignore")

    model_path: Path = Field(DEMO_MODEL, description="The ONNX model file to serve.")
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    max_upload_bytes: int = Field(25_000_000, gt=0, description="Largest accepted upload, bytes (413 above).")
    max_image_pixels: int = Field(80_000_000, gt=0, description="Largest accepted width*height (413 above).")
    threads: int = Field(0, ge=0, description="onnxruntime threads per call; 0 = one per core.")

    @property
    def limits(self) -> Limits:
        return Limits(max_bytes=self.max_upload_bytes, max_pixels=self.max_image_pixels)
