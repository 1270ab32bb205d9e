"""Named-constructor registries (timm-style) and the plugin hook that lets siblings add to them.

The core never imports a sibling. Siblings declare a module in the ``vlx.plugins``
entry-point group (see pyproject.toml); importing that module registers their recipes,
models and CLI commands. A registry that misses a name loads the plugins once and looks again.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T")

PLUGIN_GROUP = "vlx.plugins"


def load_plugins() -> list[str]:
    """Import every installed ``vlx.plugins`` module; returns their names. Idempotent
    (Python caches imports), so there is no state of ours to reset."""
    loaded = []
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            import_module(ep.value)
        except ImportError as e:  # a sibling whose optional deps are missing stays off
            import warnings

            warnings.warn(f"vlx plugin {ep.name!r} ({ep.value}) not loaded: {e}", stacklevel=2)
            continue
        loaded.append(ep.name)
    return loaded


class Registry(Generic[T]):
    """A mapping from names to constructors, filled by the ``register`` decorator."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Any:
        def add(o: T) -> T:
            if name in self._items and self._items[name] is not o:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = o
            return o

        return add(obj) if obj is not None else add

    def get(self, name: str) -> T:
        if name not in self._items:
            load_plugins()
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._items[name]

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
