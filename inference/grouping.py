"""Connected groups of linked items (union-find), for duplicate photos and for cases that share one."""

from __future__ import annotations

from typing import Hashable, Iterable, TypeVar

Key = TypeVar("Key", bound=Hashable)


def connected_groups(links: Iterable[Iterable[Key]]) -> dict[Key, Key]:
    """Every key that appears -> the smallest key of its connected group (keys linked directly or
    through others). Path halving keeps it near-linear for the tens of thousands of photos we meet."""
    parent: dict = {}

    def find(key):
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for linked in links:
        first, *rest = sorted(linked)
        find(first)
        for key in rest:
            a, b = find(first), find(key)
            parent[max(a, b)] = min(a, b)
    return {key: find(key) for key in list(parent)}
