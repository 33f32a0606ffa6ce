"""Make the README's screenshots from the running product, so they cannot go stale: `make screenshots`.

Serves the demo model (`counterfeit serve`, a throwaway evidence folder), opens the inspector's page in
headless Chromium at 390x844 CSS px (a current phone), sends each of the demo model's sample photos as the
camera button would, and saves what the phone's screen shows once the verdict is in:

    docs/inspector-phone-genuine.png       inference/demo/samples/genuine-1.jpg
    docs/inspector-phone-counterfeit.png   inference/demo/samples/counterfeit-1.jpg

Needs the dev install (playwright, no browser download) and Debian's chromium (`make browser`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from server import free_port, start_server  # noqa: E402  (bench scripts are run as files, not as a package)

from api.settings import DEMO_MODEL  # noqa: E402

SAMPLES = REPO / "inference" / "demo" / "samples"
SHOTS = {"inspector-phone-genuine.png": SAMPLES / "genuine-1.jpg",
         "inspector-phone-counterfeit.png": SAMPLES / "counterfeit-1.jpg"}
PHONE = {"width": 390, "height": 844}  # CSS px
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@contextmanager
def demo_server():
    """The URL of `counterfeit serve` on the demo model (bench/server.py's start), stopped after; its
    evidence folder is thrown away."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="screenshots-") as data_dir:
        # Open on loopback whatever .env says, and stopped at once (no readiness drain).
        server = start_server(port, Path(data_dir), DEMO_MODEL,
                              {"COUNTERFEIT_API_KEYS": "[]", "COUNTERFEIT_DRAIN_SECONDS": "0"})
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=30)


def shoot(browser, url: str, photo: Path, out: Path) -> None:
    """One fresh phone profile: the page, the photo sent, the screen as the inspector sees it."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                  reduced_motion="reduce")
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url + "/")
    page.wait_for_selector("#connection[data-state='ok']")
    page.set_input_files("#photo-input", str(photo))
    page.wait_for_selector("#result:not([hidden])")
    page.wait_for_function("() => !document.getElementById('overlay-controls').hidden")
    page.wait_for_timeout(300)  # the heatmap's image decodes after the verdict is drawn
    page.screenshot(path=str(out))
    context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="folder for the PNGs (default: docs/)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("COUNTERFEIT_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        raise SystemExit("screenshots: Chromium not found: `make browser`, or set COUNTERFEIT_CHROMIUM")
    args.out.mkdir(parents=True, exist_ok=True)
    with demo_server() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for name, photo in SHOTS.items():
            shoot(browser, url, photo, args.out / name)
            print(f"wrote {args.out / name} ({photo.name})")
        browser.close()


if __name__ == "__main__":
    main()
