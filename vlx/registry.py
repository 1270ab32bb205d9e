"""Named-constructor registries and the plugin template that fills them lazily.

A ``Registry`` maps names to objects. An entry may be registered eagerly (``register``, e.g.
as a decorator) or lazily by a module path (``register_lazy``): ``"pkg.mod:attr"`` is that
attribute, ``"pkg.mod"`` is a module whose import registers the name itself (the
``@register_recipe`` decorator does). ``names()`` lists lazy names without importing them;
``get`` imports on first use and raises ``UnknownNameError``, a one-line ``ConfigError``
("unknown recipe 'x'; known: a, b"), when the name is missing.

Plugins. The core (``vlx.plugin``) and every module in the ``vlx.plugins`` entry-point group
(pyproject.toml) is a plain declaration module, imported by ``load_plugins`` and read for
three dicts of strings, so listing commands imports none of a sibling's code::

    RECIPES = {"video_retrieval": "video.recipes"}  # name -> module that registers it
    COMMANDS = {"caption": ("video.cli:add_caption_parser", "caption a video")}  # -> add_parser(subparsers)
    QUICKSTARTS = {"video": ("video.report:run_quickstart", -1, "moving shapes report", ("out",))}

A quickstart tuple is (target, priority, help, flags): ``flags`` lists which of the common
quickstart flags (out, fast, seed, cache) it honours; ``vlx quickstart`` refuses the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from vlx.config import ConfigError

T = TypeVar("T")

PLUGIN_GROUP = "vlx.plugins"
CORE_PLUGIN = "vlx.plugin"
QUICKSTART_FLAGS = ("out", "fast", "seed", "cache")


class UnknownNameError(ConfigError, KeyError):
    """A registry miss: a ``ConfigError`` (one line for people) that old ``except KeyError``
    callers still catch."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


def resolve_target(target: str) -> Any:
    """``"pkg.mod:attr"`` -> that attribute; ``"pkg.mod"`` -> the module."""
    mod, _, attr = target.partition(":")
    module = import_module(mod)
    return getattr(module, attr) if attr else module


@dataclass(frozen=True)
class _Lazy:
    target: str


class Registry(Generic[T]):
    """A mapping from names to constructors, filled by ``register`` or ``register_lazy``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str, obj: T | None = None) -> Any:
        def add(o: T) -> T:
            old = self._items.get(name)
            if old is not None and old is not o and not isinstance(old, _Lazy):
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = o
            return o

        return add(obj) if obj is not None else add

    def register_lazy(self, name: str, target: str) -> None:
        """Declare ``name`` without importing it: ``target`` is ``"pkg.mod:attr"`` or a module
        that registers ``name`` when imported. An eager entry already there is kept."""
        if name not in self._items:
            self._items[name] = _Lazy(target)

    def get(self, name: str) -> T:
        if name not in self._items:
            load_plugins()
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}")
        item = self._items[name]
        if isinstance(item, _Lazy):
            mod, _, attr = item.target.partition(":")
            try:
                obj = resolve_target(item.target)
            except ImportError as e:  # e.g. a sibling's optional dependency is not installed
                raise ConfigError(
                    f"{self.kind} {name!r}: its module {mod} does not import ({e}); `vlx doctor` says what to install"
                ) from None
            if attr:
                self._items[name] = obj
            elif isinstance(self._items[name], _Lazy):  # the module did not register the name
                raise UnknownNameError(f"{self.kind} {name!r}: module {mod} was imported but did not register it")
            item = self._items[name]
        return item

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items


@dataclass(frozen=True)
class CommandSpec:
    """A ``vlx NAME`` sub-command: ``target`` is ``"pkg.mod:add_parser"``, called with the
    argparse subparsers object only when the command is used."""

    name: str
    target: str
    help: str

    def add_parser(self, subparsers: Any) -> None:
        try:
            add = resolve_target(self.target)
        except ImportError as e:  # a sibling's optional dependency is not installed
            raise ConfigError(
                f"vlx {self.name}: its module does not import ({e}); `vlx doctor` says what to install"
            ) from None
        add(subparsers)


@dataclass(frozen=True)
class QuickstartSpec:
    """``vlx quickstart NAME``: ``target`` is ``"pkg.mod:run"``, ``run(args) -> int``."""

    name: str
    target: str
    priority: int = 0
    help: str = ""
    flags: tuple[str, ...] = QUICKSTART_FLAGS

    def load(self) -> Callable[[Any], int]:
        return resolve_target(self.target)


RECIPES: Registry[Any] = Registry("recipe")  # values: vlx.train.recipe.Recipe
COMMANDS: Registry[CommandSpec] = Registry("command")
QUICKSTARTS: Registry[QuickstartSpec] = Registry("quickstart")

_loaded: dict[str, bool] = {}


def register_plugin(module: Any, where: str) -> None:
    """Read one plugin module's RECIPES / COMMANDS / QUICKSTARTS declarations."""
    for name, target in getattr(module, "RECIPES", {}).items():
        RECIPES.register_lazy(name, target)
    for name, (target, help_) in getattr(module, "COMMANDS", {}).items():
        COMMANDS.register(name, CommandSpec(name, target, help_))
    for name, spec in getattr(module, "QUICKSTARTS", {}).items():
        target, priority, help_, *rest = spec
        flags = tuple(rest[0]) if rest else QUICKSTART_FLAGS
        unknown = [f for f in flags if f not in QUICKSTART_FLAGS]
        if unknown:
            raise ConfigError(f"{where}: quickstart {name!r}: unknown flags {unknown}; known: {QUICKSTART_FLAGS}")
        QUICKSTARTS.register(name, QuickstartSpec(name, target, priority, help_, flags))


def load_plugins() -> list[str]:
    """Import the core's and every installed ``vlx.plugins`` declaration module once and
    register what they declare (lazily); returns the plugin names. Plugin modules import
    nothing heavy, so this is cheap."""
    modules = [("vlx", CORE_PLUGIN)] + [(ep.name, ep.value) for ep in entry_points(group=PLUGIN_GROUP)]
    for name, value in modules:
        if value in _loaded:
            continue
        _loaded[value] = False
        try:
            module = import_module(value)
        except ImportError as e:  # a sibling that is not importable stays off
            import warnings

            warnings.warn(f"vlx plugin {name!r} ({value}) not loaded: {e}", stacklevel=2)
            continue
        register_plugin(module, value)
        _loaded[value] = True
    return [name for name, value in modules if _loaded.get(value)]
