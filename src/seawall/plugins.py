"""Plugin discovery shared by every registry (signal types, exchanges): built-ins, then entry points.

A plugin cannot replace a built-in, and a broken plugin is logged and skipped, never fatal.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T", bound=type)


def load_class(target: str, base: T) -> T:
    """``"module:attr"`` as a subclass of ``base``; TypeError otherwise."""
    module, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise TypeError(f"{target} is not a {base.__name__} subclass")
    return obj  # type: ignore[return-value]


def discover(builtins: Iterable[tuple[str, str]], group: str, base: T, what: str) -> dict[str, T]:
    """Classes by name: each built-in ``(name, "module:attr")``, then each entry point of ``group``
    whose class has a ``name`` attribute equal to its entry-point name."""
    found: dict[str, T] = {}
    for name, target in builtins:
        try:
            found[name] = load_class(target, base)
        except ImportError as exc:  # an optional dependency is missing
            log.warning("built-in %s %s unavailable: %s", what, name, exc)
    for ep in entry_points(group=group):
        if ep.name in found:
            log.warning("plugin %s %s ignored: the name is taken", what, ep.name)
            continue
        try:
            cls = load_class(ep.value, base)
            if getattr(cls, "name", None) != ep.name:
                raise ValueError(f"entry point {ep.name!r} names a {what} called {getattr(cls, 'name', None)!r}")
        except Exception as exc:
            log.warning("plugin %s %s failed to load: %s", what, ep.name, exc)
            continue
        found[ep.name] = cls
    return found
