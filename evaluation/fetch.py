"""Image bytes from a manifest's location: a local path, file://, http(s)://, or any fsspec URL (s3://, gs://…).

Every location is untrusted: reads stop at the size limit (the server's upload limit), HTTP has timeouts,
a few retries with backoff on 5xx and connection errors, and a cap on concurrent requests per host."""

from __future__ import annotations

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
        try:
            size = path.stat().st_size
            self._check_size(size)
            return path.read_bytes()
        except FileNotFoundError:
            raise FetchError("not_found", f"no such file: {path}") from None
        except OSError as exc:
            raise FetchError("unreadable", f"cannot read {path}: {exc.strerror or exc}") from None

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
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit():
                    self._check_size(int(length))
                data = response.read(self.max_bytes + 1)  # one byte more tells an over-size body
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
