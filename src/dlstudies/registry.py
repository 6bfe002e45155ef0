"""Decorator registries: a name maps to a component; a failed lookup lists the valid names."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from dlstudies.errors import UsageError

T = TypeVar("T")


def did_you_mean(name: str, choices) -> str:
    """" (did you mean 'x'?)" for the closest valid names to a misspelt one, or ""."""
    close = difflib.get_close_matches(str(name), list(choices), n=2, cutoff=0.7)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UsageError(f"unknown {self.kind} '{name}'{did_you_mean(name, self.names())}; "
                             f"valid: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
