"""Image bytes from a manifest's location: a local path, file://, http(s)://, or any fsspec URL (s3://, gs://…).

Every location is untrusted: reads stop at the size limit (the server's upload limit), HTTP has a deadline per
attempt, a few retries with backoff on 5xx and connection errors, and a cap on concurrent requests per host.
Local reads (plain paths, file://) are confined to one folder (by default the manifest's: rows written by
sellers must not read /etc/passwd or /proc/self/environ) and read regular files only: a device such as
/dev/zero never ends, and a FIFO would block for ever."""

from __future__ import annotations

import os
import stat
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

USER_AGENT = "counterfeit-detector-screen/1"


class FetchError(Exception):
    """The image could not be read; `code` is a stable slug, `message` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _Retryable(Exception):
    """A failure worth another try (5xx, connection reset, timeout)."""


@dataclass
class Fetcher:
    base: Path  # relative paths are relative to this folder (the manifest's)
    max_bytes: int  # larger images are refused, as the server refuses larger uploads
    timeout_s: float = 15.0  # per HTTP attempt: connect and each read
    retries: int = 3  # further attempts after the first, on 5xx / connection errors
    backoff_s: float = 0.5  # wait before retry k: backoff_s * 2**k seconds
    per_host: int = 4  # concurrent HTTP requests to one host at most
    allow_local: Path | None = None  # local reads only inside this folder (None: `base`)
    _hosts: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fetch(self, location: str) -> bytes:
        """The bytes at `location`, or FetchError."""
        if not location:
            raise FetchError("missing_image", "this row has no image location")
        scheme = urlsplit(location).scheme.lower()
        if scheme in ("http", "https"):
            return self._http(location)
        if scheme == "file":
            return self._local(Path(url2pathname(urlsplit(location).path)))
        if scheme == "" or len(scheme) == 1:  # a plain path (a one-letter "scheme" is a Windows drive)
            return self._local(self.base / location)
        return self._fsspec(location, scheme)

    def _local(self, path: Path) -> bytes:
        allowed = (self.allow_local or self.base).resolve()
        resolved = path.resolve()  # symlinks and `..` followed: the file that would really be read
        if not resolved.is_relative_to(allowed):
            raise FetchError("outside_allowed", f"{path} is outside {allowed}, the folder local images may be "
                             "read from (--allow-local DIR widens it)")
        try:
            # O_NONBLOCK: opening a FIFO does not wait for a writer; it is refused below as no regular file.
            handle = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise FetchError("not_found", f"no such file: {path}") from None
        except OSError as exc:
            raise FetchError("unreadable", f"cannot read {path}: {exc.strerror or exc}") from None
        with os.fdopen(handle, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise FetchError("not_a_file", f"{path} is not a regular file (a device, FIFO or folder)")
            data = file.read(self.max_bytes + 1)  # bounded even if the file grows while it is read
        self._check_size(len(data))
        return data

    def _check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise FetchError("too_large", f"the image is {size:,} bytes, over the limit of {self.max_bytes:,}")

    def _http(self, url: str) -> bytes:
        with self._host_slot(urlsplit(url).netloc):
            for attempt in range(self.retries + 1):
                try:
                    return self._http_once(url)
                except _Retryable as exc:
                    if attempt == self.retries:
                        raise FetchError("unreachable", f"{exc} (after {self.retries + 1} attempts)") from None
                    time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _http_once(self, url: str) -> bytes:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        deadline = time.monotonic() + self.timeout_s  # for the whole attempt, not per socket read
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit():
                    self._check_size(int(length))
                data = _read_by(response, self.max_bytes + 1, deadline)  # one byte more tells an over-size body
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code} from the server") from None
            raise FetchError(f"http_{exc.code}", f"the server answered HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise _Retryable(f"cannot reach {urlsplit(url).netloc}: {getattr(exc, 'reason', exc)}") from None
        self._check_size(len(data))
        return data

    def _host_slot(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            return self._hosts.setdefault(host, threading.BoundedSemaphore(self.per_host))

    def _fsspec(self, location: str, scheme: str) -> bytes:
        try:
            import fsspec
        except ImportError:
            raise FetchError("unsupported_scheme", f"{scheme}:// locations need fsspec (pip install fsspec and the "
                             "store's package, e.g. s3fs or gcsfs)") from None
        try:
            with fsspec.open(location, "rb") as handle:
                data = handle.read(self.max_bytes + 1)
        except (ImportError, ValueError) as exc:  # no implementation installed for this protocol
            raise FetchError("unsupported_scheme", f"cannot open {scheme}:// locations: {exc}") from None
        except FileNotFoundError:
            raise FetchError("not_found", f"no such object: {location}") from None
        except OSError as exc:
            raise FetchError("unreadable", f"cannot read {location}: {exc}") from None
        self._check_size(len(data))
        return data


CHUNK = 64 * 1024  # bytes per read of an HTTP body


def _read_by(response, limit: int, deadline: float) -> bytes:
    """Up to `limit` bytes of the body, or TimeoutError once the attempt's deadline has passed: a server
    sending one byte a second keeps every socket read under the timeout, but not the whole attempt."""
    chunks, size = [], 0
    while size < limit:
        if time.monotonic() > deadline:
            raise TimeoutError("the server is too slow: the attempt's deadline passed")
        sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
        if sock is not None:  # each read waits no longer than what is left of the deadline
            sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = response.read1(min(CHUNK, limit - size))  # what has arrived, without waiting for CHUNK
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
