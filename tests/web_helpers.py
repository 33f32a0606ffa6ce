"""Helpers for the browser tests (tests/test_web.py): a real server process and headless Chromium.

Run as a script, this module is `counterfeit serve` with the web page installed even on an app that
does not install it itself yet (create_app calling api.web.install_web makes it a no-op).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from server_process import REPO, ServerProcess

# Debian's Chromium (apt install chromium); COUNTERFEIT_CHROMIUM points elsewhere. No downloaded
# browser (`playwright install`): the tests must run on a machine without internet.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

PHONE = {"width": 360, "height": 740}
TALL_PHONE = {"width": 390, "height": 844}  # a common current phone, in CSS pixels
DESKTOP = {"width": 1280, "height": 800}


def chromium_path() -> str | None:
    configured = os.environ.get("COUNTERFEIT_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def web_server(model: Path, data_dir: Path, env: dict[str, str]) -> ServerProcess:
    """`counterfeit serve --model MODEL` with the web page installed (this module run as a script)."""
    return ServerProcess(["--model", str(model)], data_dir, env, program=(str(Path(__file__).resolve()),))


def content_box(model_size: tuple[int, int], photo_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the photo inside the model input: inference.preprocess.letterbox."""
    scale = min(model_size[0] / photo_size[0], model_size[1] / photo_size[1])
    width, height = max(1, round(photo_size[0] * scale)), max(1, round(photo_size[1] * scale))
    return (model_size[0] - width) // 2, (model_size[1] - height) // 2, width, height


def heatmap_png(model_size: tuple[int, int], photo_size: tuple[int, int], alpha_of) -> str:
    """A heatmap as the API sends it (base64 RGBA PNG at the model input size), red with alpha
    alpha_of(x, y) at (x, y) in 0..1 photo coordinates, and nothing on the letterbox padding."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    left, top, width, height = content_box(model_size, photo_size)
    alpha = np.zeros((model_size[1], model_size[0]), np.uint8)
    ys, xs = np.mgrid[0:height, 0:width]
    alpha[top:top + height, left:left + width] = np.clip(alpha_of((xs + .5) / width, (ys + .5) / height), 0, 255)
    pixels = np.zeros((*alpha.shape, 4), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2], pixels[..., 3] = 230, 30, 30, alpha
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_size(b64: str) -> tuple[int, int]:
    import base64
    import io

    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(b64))).size


def serve_with_web(argv: list[str]) -> int:
    """`counterfeit ARGV`, with api.web installed on the app if create_app does not do it."""
    import api.serve
    from api.web import install_web
    from counterfeit.cli import main

    plain_create_app = api.serve.create_app

    def create_app(*args, **kwargs):
        app = plain_create_app(*args, **kwargs)
        if not any(getattr(route, "path", None) == "/" for route in app.routes):
            install_web(app)
        return app

    api.serve.create_app = create_app
    return main(argv)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(serve_with_web(sys.argv[1:]))
