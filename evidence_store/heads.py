"""Anchoring the chain outside the database: heads taken now, kept elsewhere, checked later.

The chain shows any change to an entry it still holds, but whoever can write the database can remove the
newest entries and rewind the stored chain head with them, or rewrite the whole chain with recomputed
hashes, and the chain alone still looks intact. A head taken now and kept where they cannot reach it
(emailed, filed in a ticket, printed, timestamped by an RFC 3161 service) anchors it, as signed tree heads
anchor a certificate-transparency log: later, the chain must still hold an entry at the head's seq with
the head's hash (EvidenceStore.verify(anchors=...)), so entries up to it can be neither removed nor
rewritten without it showing.

A head is one line of canonical JSON (see chain.py): {"at", "hash", "seq", "store"} and, when taken with a
key, "signature": "hmac-sha256:" + hex HMAC-SHA256(key, canonical JSON of the head without "signature").
The signature shows the head was taken by whoever holds the key (e.g. a cron job) and not edited since.
It is HMAC, not a public-key signature (no signing library is installed with the service): checking it
needs the same key, and anyone holding the key can sign, so keep the key off the evidence server; what
anchors the chain is the head being kept elsewhere, the signature only vouches for where it came from.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import asdict, replace
from pathlib import Path

from evidence_store.chain import GENESIS, canonical_text
from evidence_store.errors import InvalidInput
from evidence_store.records import Head

KEY_BYTES = 32  # HMAC-SHA256 keys: 256 random bits, stored as 64 hex digits
_ALGORITHM = "hmac-sha256:"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_STORE_ID = re.compile(r"[0-9a-f]{32}")


def head_line(head: Head) -> str:
    """The head as published: one line of canonical JSON, "signature" only when it has one."""
    fields = asdict(head)
    if head.signature is None:
        del fields["signature"]
    return canonical_text(fields)


def signed(head: Head, key: bytes) -> Head:
    return replace(head, signature=_ALGORITHM + _mac(head, key))


def signature_ok(head: Head, key: bytes) -> bool:
    """Whether the head carries a signature made with this key over exactly these fields."""
    if head.signature is None or not head.signature.startswith(_ALGORITHM):
        return False
    return hmac.compare_digest(head.signature.removeprefix(_ALGORITHM), _mac(head, key))


def _mac(head: Head, key: bytes) -> str:
    return hmac.new(key, head_line(replace(head, signature=None)).encode("utf-8"), hashlib.sha256).hexdigest()


def first_bad_signature(heads: list[tuple[str, Head]], key: bytes) -> str | None:
    """A line naming the first head (where it was read, head) not signed with this key; None if all are."""
    for where, head in heads:
        if head.signature is None:
            return f"{where} (seq {head.seq}, taken {head.at}) is not signed, but a key was given to check it"
        if not signature_ok(head, key):
            return (f"{where} (seq {head.seq}, taken {head.at}): its signature does not match the key: the head "
                    "was edited or forged, or signed with another key")
    return None


def new_key(path: Path) -> None:
    """Write a new random key, readable by its owner only (0600); never overwrites a file."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(f"{path} already exists: choose a new file (heads may have been signed with that "
                           "key)") from None
    except OSError as exc:
        raise InvalidInput(f"cannot create {path}: {exc.strerror or exc}") from exc
    with os.fdopen(descriptor, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # whatever the umask
        out.write(secrets.token_hex(KEY_BYTES) + "\n")


def read_key(path: Path) -> bytes:
    text = _read(path, "key file").strip()
    if not _HEX64.fullmatch(text):
        raise InvalidInput(f"{path} is not a head-signing key (64 hex digits): make one with "
                           "`counterfeit evidence head --new-key FILE`")
    return bytes.fromhex(text)


def read_heads(path: Path) -> list[tuple[str, Head]]:
    """The heads in a file (one JSON head, or JSON lines: heads published over time), each with where it
    was read ("FILE line N"). InvalidInput naming the line for anything that is not a head."""
    text = _read(path, "head file")
    lines = [(f"{path} line {number}", line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if len(lines) > 1 and text.lstrip().startswith("{") and _one_object(text):  # one pretty-printed head
        lines = [(str(path), text)]
    if not lines:
        raise InvalidInput(f"{path} holds no head: write the output of `counterfeit evidence head` into it")
    return [(where, _parsed(where, line)) for where, line in lines]


def _one_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _parsed(where: str, line: str) -> Head:
    try:
        value = json.loads(line)
    except ValueError:
        raise InvalidInput(f"{where} is not JSON: expected a head as `counterfeit evidence head` prints it") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} is not a JSON object: expected a head as `counterfeit evidence head` prints it")
    problem = _head_problem(value)
    if problem:
        raise InvalidInput(f"{where} is not a chain head: {problem}")
    return Head(seq=value["seq"], hash=value["hash"], at=value["at"], store=value["store"],
                signature=value.get("signature"))


def _head_problem(value: dict) -> str | None:
    seq = value.get("seq")
    if type(seq) is not int or not 0 <= seq < 2 ** 63:  # bool is an int: refuse true/false
        return '"seq" must be a whole number >= 0'
    if not isinstance(value.get("hash"), str) or not _HEX64.fullmatch(value["hash"]):
        return '"hash" must be 64 lowercase hex digits'
    if seq == 0 and value["hash"] != GENESIS:
        return "a head at seq 0 (an empty store) has the genesis hash, 64 zeros"
    if not isinstance(value.get("at"), str) or not value["at"]:
        return '"at" (when it was taken, UTC) is missing'
    if not isinstance(value.get("store"), str) or not _STORE_ID.fullmatch(value["store"]):
        return '"store" must be the id of an evidence store (32 hex digits)'
    if value.get("signature") is not None and not isinstance(value["signature"], str):
        return '"signature" must be text'
    return None


def _read(path: Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the {what} {path}: {getattr(exc, 'strerror', None) or exc}") from exc
