"""Name -> class registries for every pluggable part, with entry-point plugins.

A third-party package adds parts without touching this repository by declaring, in its
``pyproject.toml``::

    [project.entry-points."fusionseg.plugins"]
    my_domain = "my_package.fusionseg_plugin"

The named module (or callable) is imported the first time any registry is queried; importing
it runs its ``@REGISTRY.register(...)`` decorators.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from fusionseg.errors import FusionSegError

log = logging.getLogger(__name__)

PLUGIN_GROUP = "fusionseg.plugins"
T = TypeVar("T")

_plugins_loaded = False
# Modules whose import registers the built-in parts; imported on first registry query.
# The SEM domain is a built-in plugin: registered through the same registries as a third-party one.
_BUILTIN_MODULES = (
    "fusionseg.acquisition",
    "fusionseg.data",
    "fusionseg.encoders",
    "fusionseg.graphs",
    "fusionseg.models",
    "fusionseg.sem",
)


class UnknownNameError(FusionSegError, KeyError):
    """Raised for a name no registry entry has; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RegistryArgumentError(FusionSegError):
    """A registered part was given keyword arguments it does not take; the message lists those it does."""


def load_plugins(force: bool = False) -> list[str]:
    """Import the built-in parts and every ``fusionseg.plugins`` entry point once.

    Returns the names of the plugins loaded by this call.
    """
    global _plugins_loaded
    if _plugins_loaded and not force:
        return []
    _plugins_loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    loaded = []
    for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            obj = ep.load()
        except Exception as err:  # a broken plugin must not break the built-in parts
            log.warning("fusionseg plugin %r (%s) failed to load: %s", ep.name, ep.value, err)
            continue
        if callable(obj) and not isinstance(obj, type):
            obj()  # a plugin may expose a register() function instead of a module
        loaded.append(ep.name)
    return loaded


def import_class_path(path: str, kind: str) -> Callable[..., Any]:
    """``package.module.Name`` imported, or `UnknownNameError` saying what is missing."""
    module, _, attr = path.strip().rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise UnknownNameError(
            f"{kind} class_path {path!r} cannot be imported ({err}); give a registry name or an importable "
            "'package.module.Class'."
        ) from err


class Registry(Generic[T]):
    """A named collection of constructors of one kind (graph builders, backbones, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str, *aliases: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@GRAPH_BUILDERS.register("grid")`` over a class or factory."""

        def decorate(obj: Callable[..., T]) -> Callable[..., T]:
            for key in (name, *aliases):
                key = self._normalise(key)
                if key in self._entries and self._entries[key] is not obj:
                    raise ValueError(f"{self.kind} {key!r} is already registered by {self._entries[key]!r}")
                self._entries[key] = obj
            return obj

        return decorate

    @staticmethod
    def _normalise(name: str) -> str:
        return name.strip().lower().replace("_", "-")

    def get(self, name: str) -> Callable[..., T]:
        """The constructor registered as ``name``; a typo lists the known names."""
        load_plugins()
        key = self._normalise(name)
        if key not in self._entries:
            close = difflib.get_close_matches(key, self._entries, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(self.names())}. "
                f"Third-party entries come from the {PLUGIN_GROUP!r} entry-point group."
            )
        return self._entries[key]

    def resolve(self, name: str) -> Callable[..., T]:
        """The constructor named by a registry name, or by a ``class_path`` (``package.module.Class``)."""
        if "." in name and name.strip().lower().replace("_", "-") not in self._entries:
            return import_class_path(name, self.kind)
        return self.get(name)

    def create(self, name: str, /, **kwargs: Any) -> T:
        """Build the entry ``name`` (or ``class_path``) with keyword arguments; keywords it does not take raise
        `RegistryArgumentError`."""
        cls = self.resolve(name)
        try:
            signature = inspect.signature(cls)
        except (TypeError, ValueError):  # builtins without a signature: let the call decide
            return cls(**kwargs)
        params = signature.parameters.values()
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            known = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            unknown = sorted(set(kwargs) - set(known))
            if unknown:
                raise RegistryArgumentError(
                    f"{self.kind} {name!r} takes no argument(s) {unknown}; it accepts {known}. Fix the "
                    f"{self.kind}'s *_kwargs in the config."
                )
        return cls(**kwargs)

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._normalise(name) in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


DATA_SOURCES: Registry = Registry("data source")
SAMPLERS: Registry = Registry("point sampler")
ACQUISITION_STRATEGIES: Registry = Registry("acquisition strategy")  # where to measure next (fusionseg.acquisition)
POINT_ENCODERS: Registry = Registry("point encoder")
GRAPH_BUILDERS: Registry = Registry("graph builder")
BACKBONES: Registry = Registry("backbone")
FUSIONS: Registry = Registry("fusion module")
HEADS: Registry = Registry("head")
PROPAGATIONS: Registry = Registry("learned propagation")  # the refiner's optional last step (prior_refiner.propagation)
LOSSES: Registry = Registry("loss")
# Domain hooks (see fusionseg.contracts): metadata classes, evaluation-time point labels, extra commands.
DOMAINS: Registry = Registry("domain")
POINT_LABELLERS: Registry = Registry("point labeller")
COMMANDS: Registry = Registry("command")
PREDICTION_WRITERS: Registry = Registry("prediction writer")  # by domain name: fusionseg predict's default writer
