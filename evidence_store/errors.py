"""What can go wrong with the evidence store, as exceptions the API maps to HTTP answers."""

from __future__ import annotations


class EvidenceError(Exception):
    """Base class of the store's own errors."""


class StoreUnavailable(EvidenceError):
    """The database or the disk cannot take or give evidence right now (full, down, locked too long).

    The API answers 503: the client should retry. Nothing was half-written: a record either exists with
    its original or not at all."""


class NotFound(EvidenceError, KeyError):
    """No record (or stored original) with this id (or hash): the API answers 404."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else "not found"


class Retired(NotFound):
    """The original photo was deleted by the retention policy (its Retirement entry is in the chain); the
    record, its verdict and hashes stay. The API answers 410 Gone."""


class OriginalChanged(EvidenceError):
    """A stored original no longer matches the SHA-256 it was stored under: the file was altered on disk."""


class SchemaTooNew(EvidenceError):
    """The database was migrated by a newer version of this software; this one must not write to it."""


class InvalidInput(EvidenceError, ValueError):
    """Input the store refuses as malformed: a page cursor, a published head, a key file. The API answers
    4xx, the CLI exits 2; the message says what is wrong and how to fix it."""


class ForeignHead(InvalidInput):
    """A published head taken from another evidence store: it says nothing about this one."""
