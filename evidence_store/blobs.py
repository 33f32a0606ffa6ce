"""Original photos, content-addressed and write-once: ROOT/ab/cd/<sha256>, exactly the bytes received.

A file is written to a temporary name in its final folder, fsync'd, made read-only and then hard-linked
to its final name: link() never replaces an existing file (rename() would), so two writers of the same
photo cannot clobber each other and a file, once there, is never rewritten. The folder is fsync'd so
the new name survives a power cut.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from evidence_store.errors import NotFound, OriginalChanged

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
# Filesystems without hard links answer with one of these; there we fall back to rename().
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Blobs:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        """Only 64 lowercase hex digits are accepted: no path can escape the root."""
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            raise ValueError(f"Not a SHA-256 (64 lowercase hex digits): {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, sha256: str, data: bytes) -> bool:
        """Store data durably under its hash; True if this call created the file, False if it was there."""
        final = self.path(sha256)
        if final.exists():
            return False
        _make_dirs(final.parent)
        descriptor, temporary = tempfile.mkstemp(dir=final.parent, prefix=".incoming-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o444)
            created = _link_once(temporary, final)
            _fsync_dir(final.parent)
            return created
        finally:
            _unlink_quietly(temporary)

    def read(self, sha256: str) -> bytes:
        """The stored bytes, checked against their hash: OriginalChanged if the file was altered."""
        try:
            data = self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"No stored original with SHA-256 {sha256}.") from None
        if sha256_hex(data) != sha256:
            raise OriginalChanged(f"The stored original {sha256} no longer matches its SHA-256: it was altered.")
        return data

    def problem(self, sha256: str) -> str | None:
        """None when the file is there and intact; else 'image_missing' or 'image_changed'. Streams the file."""
        digest = hashlib.sha256()
        try:
            with open(self.path(sha256), "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
        except FileNotFoundError:
            return "image_missing"
        return None if digest.hexdigest() == sha256 else "image_changed"

    def delete(self, sha256: str) -> None:
        _unlink_quietly(self.path(sha256))

    def size(self, sha256: str) -> int | None:
        """Bytes the stored file takes; None when there is none."""
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def older_than(self, seconds: float) -> Iterator[str]:
        """Hashes of stored files last modified more than `seconds` ago."""
        cutoff = time.time() - seconds
        for path in self.root.glob("??/??/*"):
            if _SHA256.match(path.name) and path.stat().st_mtime < cutoff:
                yield path.name

    def remove_stale_temporaries(self, seconds: float) -> int:
        """Delete temporary files older than `seconds` (a process killed mid-write leaves one); how many."""
        cutoff, removed = time.time() - seconds, 0
        for path in self.root.glob("??/??/.incoming-*"):
            if path.stat().st_mtime < cutoff:
                _unlink_quietly(path)
                removed += 1
        return removed


def _link_once(temporary: str, final: Path) -> bool:
    try:
        os.link(temporary, final)
    except FileExistsError:
        return False  # written meanwhile by another writer: same hash, same bytes
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if final.exists():
            return False
        os.rename(temporary, final)
    return True


def _make_dirs(directory: Path) -> None:
    """mkdir -p, fsync'ing each parent that gained a folder, so the folders survive a power cut too."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        _fsync_dir(folder.parent)


def _fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
