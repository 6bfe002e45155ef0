"""Decorator registries: a name maps to a component; a failed lookup lists the valid names.

Each entry remembers who registered it, as a qualified name (module + name): a function or class
by its own `__module__.__qualname__`, anything else (a Study record, a Loss) by the module that
called `register`. Registering a taken name again from the same qualified name replaces the entry,
so re-running a notebook cell that defines a study, dataset or sample order just works; a
different qualified name taking a taken name is an error that says who holds it.
"""

from __future__ import annotations

import difflib
import sys
from typing import Any, Callable, Generic, Iterator, TypeVar

from dlstudies.errors import UsageError

T = TypeVar("T")


def did_you_mean(name: str, choices) -> str:
    """" (did you mean 'x'?)" for the closest valid names to a misspelt one, or ""."""
    close = difflib.get_close_matches(str(name), list(choices), n=2, cutoff=0.7)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def qualified_name(item: Any, module: str) -> str:
    """`item`'s module + name; `module` (the registering module) for objects without a name of their own."""
    name = getattr(item, "__qualname__", None)
    if isinstance(name, str) and isinstance(getattr(item, "__module__", None), str):
        return f"{item.__module__}.{name}"
    return f"{module}.<{type(item).__name__}>"


def caller_module(depth: int = 2) -> str:
    """The `__name__` of the module `depth` frames up (1: the caller of the function calling this)."""
    return sys._getframe(depth).f_globals.get("__name__", "__main__")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._owners: dict[str, str] = {}

    def register(self, name: str, *, module: str | None = None) -> Callable[[T], T]:
        """Decorator adding an item under `name`; `module` is who registers (default: the caller)."""
        module = module or caller_module()

        def add(item: T) -> T:
            owner = qualified_name(item, module)
            if name in self._items and self._items[name] is not item and self._owners[name] != owner:
                raise UsageError(f"{self.kind} '{name}' is already registered by {self._owners[name]}; "
                                 f"{owner} cannot take the name: choose another one")
            self._items[name], self._owners[name] = item, owner
            return item

        return add

    def owner(self, name: str) -> str:
        """The qualified name that registered `name`."""
        self.get(name)
        return self._owners[name]

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
