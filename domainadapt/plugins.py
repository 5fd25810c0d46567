"""Plug-ins: modules outside the package that register methods, tasks, regularizers or backbones.

Every registry (`methods`, `tasks`, `regularizers`, `models`) discovers its own package's files; code kept
elsewhere (a researcher's own method in their project) is named in the environment variable
DOMAINADAPT_PLUGINS (entries separated by ","; each a module name or a .py file path) or with the CLI's
`--plugin`. Registries load them on first lookup, and so does every process a sweep spawns, since the
environment is inherited.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

ENV = "DOMAINADAPT_PLUGINS"
_loaded: dict[str, ModuleType] = {}
_discovered: set[str] = set()


class PluginError(ImportError):
    """A plug-in that cannot be found or imported; the message names it."""


def plugin_entries() -> list[str]:
    return [e.strip() for e in os.environ.get(ENV, "").split(",") if e.strip()]


def load_plugin(entry: str) -> ModuleType:
    """Import one plug-in (a module name, or a path to a .py file) once per process."""
    if entry in _loaded:
        return _loaded[entry]
    if entry.endswith(".py") or os.sep in entry:
        path = Path(entry).expanduser().resolve()
        if not path.is_file():
            raise PluginError(f"plug-in file {path} does not exist ({ENV} or --plugin)")
        name = f"domainadapt_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise PluginError(f"plug-in {path} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(entry)
        except ModuleNotFoundError as err:
            raise PluginError(f"plug-in module '{entry}' not found ({ENV} or --plugin): {err}") from None
    _loaded[entry] = module
    return module


def load_plugins() -> None:
    """Import every plug-in named in DOMAINADAPT_PLUGINS (cheap after the first call)."""
    for entry in plugin_entries():
        load_plugin(entry)


def add_plugins(entries: list[str]) -> None:
    """Load `entries` now and add them to DOMAINADAPT_PLUGINS, so spawned worker processes load them too."""
    for entry in entries:
        load_plugin(entry)
    current = plugin_entries()
    os.environ[ENV] = ",".join(current + [e for e in entries if e not in current])


def discover(package: str, skip: frozenset[str] = frozenset()) -> None:
    """Import every module of `package` (but `skip` and names starting with '_'), then the plug-ins: how each
    registry finds the files that register into it."""
    if package not in _discovered:
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name not in skip and not info.name.startswith("_"):
                importlib.import_module(f"{package}.{info.name}")
        _discovered.add(package)
    load_plugins()


class Registry(dict):
    """Named entries of one kind (methods, tasks, regularizers, backbones), filled by the files of `package`
    (imported on first lookup, with the plug-ins). `error` is the exception of an unknown name."""

    def __init__(self, kind: str, package: str, skip: frozenset[str], error: type[Exception]) -> None:
        super().__init__()
        self.kind, self.package, self.skip, self.error = kind, package, skip, error

    def add(self, name: str, entry: object) -> None:
        if not name:
            raise self.error(f"a {self.kind} needs a name (set the class attribute `name`)")
        self[name] = entry

    def names(self) -> list[str]:
        discover(self.package, self.skip)
        return sorted(self)

    def find(self, name: str) -> object | None:
        """The entry named `name`, or None (after discovery)."""
        discover(self.package, self.skip)
        return self.get(name)

    def lookup(self, name: str) -> object:
        discover(self.package, self.skip)
        if name not in self:
            raise self.error(f"unknown {self.kind} '{name}'; choose one of {sorted(self)}")
        return self[name]
