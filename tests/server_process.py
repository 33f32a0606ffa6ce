"""`counterfeit serve` as a real process, for the tests that need one: start it on a free port, wait until
/readyz answers 200 (or a line of its output appears), stop it, and read what it logged."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
COUNTERFEIT = ("-m", "counterfeit")  # how `python` runs the command line; tests/web_helpers.py has its own


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`counterfeit serve ARGS` in a subprocess, its output collected line by line as it comes.

    The port is a free one passed as --port, unless env sets COUNTERFEIT_PORT (as `make run` leaves it to the
    environment). The evidence log goes to data_dir: never the working folder. It stops at once when told to,
    unless env sets COUNTERFEIT_DRAIN_SECONDS: the default 2 s of 503s before stopping serve no test but one."""

    def __init__(self, args: list[str], data_dir: Path, env: dict[str, str] | None = None,
                 program: tuple[str, ...] = COUNTERFEIT) -> None:
        env = {"COUNTERFEIT_DATA_DIR": str(data_dir), "COUNTERFEIT_DRAIN_SECONDS": "0", **(env or {})}
        flags = [] if "COUNTERFEIT_PORT" in env else ["--port", str(free_port())]
        self.port = int(env.get("COUNTERFEIT_PORT") or flags[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, *program, "serve", *flags, *args], cwd=REPO,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, **env})
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self._reader.start()

    def wait_ready(self, seconds: float = 60) -> ServerProcess:
        """Until /readyz answers 200; fails the test if the server exits or is not ready in `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"server did not become ready in {seconds} s: {self.stop()}")

    def wait_for_output(self, text: str, seconds: float = 60) -> bool:
        """Whether a line containing `text` is logged within `seconds` (False at once if the server exits)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.process.poll() is None:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.1)
        return any(text in line for line in self.output(wait_s=1).splitlines())

    def output(self, wait_s: float = 15) -> str:
        """Everything logged so far; once the process has exited, everything it logged."""
        if self.process.poll() is not None:
            self._reader.join(timeout=wait_s)
        return "".join(self.lines)

    def stop(self, seconds: float = 30) -> str:
        """Terminate (kill after `seconds`) -> everything it logged."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.output()
