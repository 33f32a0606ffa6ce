"""Writing a file so that readers see the old file or the whole new one, never half of it, and nothing
planted beside it is written through.

The temporary file is new, created exclusively (O_EXCL, with a name nobody can guess) in the target's own
folder: a symlink planted at `OUT.tmp` is never followed (issue 24), and the rename cannot cross file
systems. The rename replaces `path` itself, even when `path` is a symlink (the link, not its target).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path`; on a clean exit it is renamed onto `path`, on any error
    (or Ctrl-C) it is removed and `path` is left as it was."""
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
