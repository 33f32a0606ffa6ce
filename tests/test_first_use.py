"""What a new user meets first: `make run`, the server's first lines, the README's first `curl`, and a
serving install without the training extra."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from server_process import REPO, ServerProcess, free_port

SAMPLES = REPO / "inference" / "demo" / "samples"
BUSY = "port {port} on 127.0.0.1 is in use: stop the other server or set COUNTERFEIT_PORT (or --port)"


# ---------------------------------------------------------------- make run

def make_run_dry(*make_args: str, **env: str) -> str:
    """The commands `make run` would run (make -n runs none of them)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(["make", "-n", "run", *make_args], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def serve_line(commands: str) -> str:
    return next(line for line in commands.splitlines() if "counterfeit serve" in line)


def test_make_run_leaves_host_and_port_to_the_environment_and_env_file():
    # HOST/PORT of a shell (zsh sets HOST) or of the environment must not override COUNTERFEIT_*.
    commands = make_run_dry(COUNTERFEIT_PORT="8123", HOST="workstation", PORT="3000")
    assert serve_line(commands).split() == [".venv/bin/counterfeit", "serve"]
    assert ".venv/bin/counterfeit" in commands.replace(serve_line(commands), "")  # says where the CLI is


def test_make_run_passes_host_and_port_given_on_its_command_line():
    line = serve_line(make_run_dry("HOST=0.0.0.0", "PORT=8123"))
    assert line.split() == [".venv/bin/counterfeit", "serve", "--host", "0.0.0.0", "--port", "8123"]


def test_serve_reads_port_and_host_from_env_file_and_environment(run_cli, monkeypatch, tmp_path):
    """What `make run` relies on: `counterfeit serve` without flags takes COUNTERFEIT_* and ./.env."""
    import api.serve

    served = []
    monkeypatch.setattr(api.serve, "serve", served.append)
    monkeypatch.chdir(tmp_path)
    for name in ("COUNTERFEIT_PORT", "COUNTERFEIT_HOST"):
        monkeypatch.delenv(name, raising=False)
    env_port, file_port = free_port(), free_port()
    (tmp_path / ".env").write_text(f"COUNTERFEIT_PORT={file_port}\nCOUNTERFEIT_HOST=127.0.0.1\n")
    assert run_cli("serve")[0] == 0 and served[-1].port == file_port
    monkeypatch.setenv("COUNTERFEIT_PORT", str(env_port))
    assert run_cli("serve")[0] == 0 and served[-1].port == env_port  # the environment beats .env
    assert run_cli("serve", "--port", str(file_port))[0] == 0 and served[-1].port == file_port  # flags beat both


# ---------------------------------------------------------------- the server's first lines

def test_a_started_server_says_where_to_open_it_and_answers_the_readme_example(tmp_path):
    port = free_port()
    # No flags, as `make run`: the port comes from the environment.
    server = ServerProcess([], tmp_path / "evidence", {"COUNTERFEIT_PORT": str(port)})
    try:
        assert server.wait_for_output(f"open http://127.0.0.1:{port}/ in a browser"), server.output()
        # The README's first example: a sample photo shipped with the demo model, no key on loopback.
        with (SAMPLES / "genuine-1.jpg").open("rb") as photo:
            answer = httpx.post(f"http://127.0.0.1:{port}/v1/inspections", files={"image": photo}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["verdict"] == "genuine" and answer.json()["model"]["name"] == "demo"
    finally:
        server.stop()
    logs = [json.loads(line) for line in server.lines if line.startswith("{")]
    assert any(log["message"].startswith("Uvicorn running on") for log in logs)
    assert not any("color_message" in log for log in logs)  # no ANSI-coloured copy of each message
    assert not any("\x1b[" in line for line in server.lines)


def test_a_busy_port_is_one_plain_sentence(tmp_path):
    with socket.socket() as other_server:
        other_server.bind(("127.0.0.1", 0))
        other_server.listen()
        port = other_server.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "counterfeit", "serve", "--port", str(port)], cwd=REPO,
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "COUNTERFEIT_DATA_DIR": str(tmp_path / "evidence")})
    assert result.returncode == 2
    assert result.stderr.strip() == f"counterfeit serve: error: {BUSY.format(port=port)}"


def test_json_logs_leave_out_uvicorns_ansi_colour_copy():
    from api.observability import JsonFormatter

    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Uvicorn running on %s", ("url",), None)
    record.color_message = "Uvicorn running on \x1b[1m%s\x1b[0m"
    record.request_id = "abc"  # other extras still go in
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "Uvicorn running on url" and line["request_id"] == "abc"
    assert "color_message" not in line


# ---------------------------------------------------------------- a serving install (no train extra)

TRAIN_EXTRA_MISSING = """
import sys
sys.modules[sys.argv[1]] = None  # as in a serving install: importing this module fails
from counterfeit.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("module, command", [
    ("matplotlib", ["synth", "{out}", "--train", "4", "--val", "2", "--test", "2"]),  # synth needs its fonts
    ("torch", ["train", "{data}", "--out", "{out}"]),
])
def test_a_missing_train_extra_is_one_line_naming_it(module, command, tmp_path):
    out = tmp_path / "out"
    args = [arg.format(out=out, data=tmp_path) for arg in command]
    result = subprocess.run([sys.executable, "-c", TRAIN_EXTRA_MISSING, module, *args], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (f"counterfeit {command[0]}: error: this command needs {module}, part of the "
                                     "train extra: run `make install-dev`, or pip install -e '.[train]' in the "
                                     "project folder")
    assert not out.exists()  # nothing half-written


def test_synth_works_without_torch(tmp_path):
    """synth draws with numpy and Pillow only: a serving install plus matplotlib runs it."""
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-c", TRAIN_EXTRA_MISSING, "torch", "synth", str(out), "--train", "4",
                             "--val", "2", "--test", "2", "--products", "1"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(list(Path(out).rglob("*.jpg"))) == 8
