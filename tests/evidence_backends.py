"""Backends for the evidence store tests: a throwaway PostgreSQL server, a schema per test, and photos.

PostgreSQL: COUNTERFEIT_TEST_DATABASE_URL when set (a server someone runs; each test gets a schema of its
own there, dropped afterwards). Otherwise a server of our own: initdb into a fresh folder under /tmp and
pg_ctl start on a free loopback port, stopped and deleted when the session ends. PostgreSQL refuses to
run as root, so as root (CI) the server runs as the `postgres` user if there is one, else as `nobody`,
via setpriv (util-linux), which needs no login shell, no password and no entry in /etc/passwd.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import io
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from server_process import free_port

ENV_URL = "COUNTERFEIT_TEST_DATABASE_URL"
_NOBODY = 65534


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says why (the tests skip with it)."""


# --------------------------------------------------------------------------- PostgreSQL


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))  # Debian keeps them off PATH
    return candidates[-1] if candidates else None


def _unprivileged() -> tuple[list[str], tuple[int, int] | None]:
    """(command prefix, (uid, gid) to own the server's files) so the server does not run as root."""
    if os.geteuid() != 0:
        return [], None
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise PostgresUnavailable("running as root and setpriv (util-linux) is missing: PostgreSQL refuses root")
    try:
        entry = pwd.getpwnam("postgres")
        owner = (entry.pw_uid, entry.pw_gid)
    except KeyError:
        owner = (_NOBODY, _NOBODY)
    return [setpriv, f"--reuid={owner[0]}", f"--regid={owner[1]}", "--clear-groups", "--"], owner


def _run(what: str, command: list, cwd: Path, log: Path | None = None) -> None:
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        server_log = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        raise PostgresUnavailable(f"{what} failed: {result.stderr.strip()[-2000:]} {server_log}".strip())


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL server for this test session only; yields its URL."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not (initdb and pg_ctl):
        raise PostgresUnavailable("the PostgreSQL server programs (initdb, pg_ctl) are not installed")
    prefix, owner = _unprivileged()
    base = Path(tempfile.mkdtemp(prefix="evidence-pg-"))  # under /tmp, which the server user can reach
    try:
        if owner:
            os.chown(base, *owner)
        data, log, port = base / "data", base / "server.log", free_port()
        _run("initdb", [*prefix, initdb, "-D", data, "-U", "evidence", "--auth=trust", "--no-sync", "-E", "UTF8",
              "--locale=C"], base)
        # A throwaway server: durability off for speed (the store's own fsyncs are tested on SQLite).
        options = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off")
        _run("pg_ctl start", [*prefix, pg_ctl, "-D", data, "-l", log, "-w", "-t", "60", "-o", options, "start"], base, log)
        try:
            yield f"postgresql://evidence@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], cwd=base,
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """COUNTERFEIT_TEST_DATABASE_URL, or a throwaway server's URL."""
    if os.environ.get(ENV_URL):
        yield os.environ[ENV_URL]
        return
    with throwaway_postgres() as url:
        yield url


@contextlib.contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A URL whose connections work in a new, empty schema (dropped afterwards): tests never share tables."""
    import psycopg

    schema = f"evidence_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


# --------------------------------------------------------------------------- photos


@functools.cache
def _artwork(product: int) -> Image.Image:
    from datatools.synth import make_product_design, render_artwork

    return render_artwork(make_product_design(7, product))


def synth_photo(product: int = 0, shot: int = 0, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A photo from the project's own generator: product `product` as shot `shot` (pose, light, background)."""
    from datatools.synth import photograph

    return photograph(_artwork(product), np.random.default_rng(1000 * product + shot), frame=size)


GPS = {1: "N", 2: (51.0, 55.0, 12.5), 3: "E", 4: (4.0, 28.0, 45.0)}  # 51°55'12.5"N 4°28'45"E
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret-xmp</x:xmpmeta>'


@functools.cache
def _icc_profile() -> bytes:
    """Made once: a new profile carries its creation time, and the same photo must give the same bytes."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def jpeg_with_metadata(image: Image.Image, *, orientation: int = 1, quality: int = 90) -> bytes:
    """A camera-like JPEG: EXIF with a GPS IFD (0x8825), make/model, orientation; an ICC profile; XMP."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "PhoneMaker", "Phone 12", orientation
    exif[0x8825] = GPS
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, exif=exif.tobytes(), icc_profile=_icc_profile(), xmp=XMP)
    return buffer.getvalue()


def reencoded(data: bytes, *, transpose: Image.Transpose | None = None, scale: float = 1.0, fmt: str = "JPEG",
              quality: int = 70) -> bytes:
    """A copy of the photo as a reseller would post it: turned, resized, re-encoded, metadata gone."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if transpose is not None:
        image = image.transpose(transpose)
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()
