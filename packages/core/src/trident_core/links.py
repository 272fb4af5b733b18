"""Values linked from one config section to another (``DomainSpec.links``) are given at the source only.

jsonargparse applies ``link_arguments(..., apply_on="instantiate")`` by writing the source object's value over the
target. It refuses a linked *flag* of the module itself (``--model.num_classes``), but a target inside a nested
``init_args`` (``--model.net.init_args.sample_rate``) or any target written in a YAML config is accepted and then
silently replaced. :func:`given_targets` finds where the user wrote a target (command line or config file) and
:func:`check_given_targets` makes a value that disagrees with the linked one a :class:`ConfigError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trident_core.errors import ConfigError

_MISSING = object()


@dataclass(frozen=True)
class GivenTarget:
    """A link target that the user set explicitly.

    Attributes:
        source: The key the value is linked from (``data.sample_rate``).
        target: The linked key (``model.net.init_args.sample_rate``).
        value: The value the user gave.
        where: ``"the command line"`` or the config file that holds it.
    """

    source: str
    target: str
    value: Any
    where: str


def _lookup(tree: Any, parts: Sequence[str]) -> Any:
    """``tree[parts...]``, where an ``init_args`` level may be written or left out (jsonargparse takes both)."""
    for part in parts:
        if not isinstance(tree, dict):
            return _MISSING
        if part in tree:
            tree = tree[part]
        elif isinstance(tree.get("init_args"), dict) and part in tree["init_args"]:
            tree = tree["init_args"][part]
        else:
            return _MISSING
    return tree


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except OSError:  # inline YAML too long for a file name
        return False


def _load(text: str) -> Any:
    """A config value as jsonargparse reads it: YAML, or the YAML file it names."""
    if _is_file(text):
        return yaml.safe_load(Path(text).read_text())
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _cli_values(args: Sequence[str]) -> list[tuple[list[str], Any]]:
    """``(key parts, value)`` of every ``--key value`` / ``--key=value`` on the command line, in order."""
    out: list[tuple[list[str], Any]] = []
    for i, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        flag, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                continue
            value = args[i + 1]
        out.append(([p for p in flag.split(".") if p != "init_args"], value))
    return out


def given_targets(
    links: Iterable[tuple[str, str]], args: Sequence[str], config_files: Iterable[str | Path]
) -> list[GivenTarget]:
    """The link targets written in ``config_files`` or on the command line ``args`` (the last one wins).

    Args:
        links: ``(source, target)`` pairs, as in ``DomainSpec.links``.
        args: The command line, subcommand first; ``--config FILE`` entries are read as config files too.
        config_files: Config files read before the command line (the defaults).
    """
    cli = _cli_values(args)
    files = [str(f) for f in config_files] + [str(v) for k, v in cli if k == ["config"]]
    trees = [(f, _load(f)) for f in files]
    given: list[GivenTarget] = []
    for source, target in links:
        parts = [p for p in target.split(".") if p != "init_args"]
        found: GivenTarget | None = None
        for where, tree in trees:
            value = _lookup(tree, parts)
            if value is not _MISSING:
                found = GivenTarget(source, target, value, where)
        for key, text in cli:
            if key and key != ["config"] and parts[: len(key)] == key:
                value = _lookup(_load(text), parts[len(key):]) if len(key) < len(parts) else _load(text)
                if value is not _MISSING:
                    found = GivenTarget(source, target, value, "the command line")
        if found is not None:
            given.append(found)
    return given


def _plain(value: Any) -> Any:
    """Tuples as lists and paths as strings, so a YAML value compares equal to the Python value it became."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(_plain(a) == _plain(b))
    except Exception:  # an object without a truth value for ==: not provably the same
        return False


def check_given_targets(given: Iterable[GivenTarget], section: Callable[[str], Any]) -> None:
    """Raise :class:`ConfigError` for a given target whose value differs from the one linked into it.

    Args:
        given: From :func:`given_targets`.
        section: The instantiated object of a top-level config key (``"data"`` -> the datamodule).
    """
    for item in given:
        head, *attrs = item.source.split(".")
        linked = section(head)
        for attr in attrs:
            linked = getattr(linked, attr)
        if not _same(item.value, linked):
            raise ConfigError(
                f"{item.target} is {item.value!r} ({item.where}), but it is linked from {item.source}, which is "
                f"{linked!r}, and the linked value would replace it. Set --{item.source} instead (in YAML: "
                f"{item.source.replace('.', ': ', 1)}) and remove {item.target}"
            )
