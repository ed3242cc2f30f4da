"""The configuration as a TOML file: reading one (`load_config`) and the commented defaults
(`default_toml`, what `mtinsar config` prints)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mtinsar.config.run import RunConfig
from mtinsar.errors import ConfigError


def load_config(path: str | Path | None = None, **overrides: dict[str, Any]) -> RunConfig:
    """Read a TOML config (or the defaults), then apply per-section `overrides`.

    `overrides` maps a section name to the keys set on the command line, e.g.
    ``load_config(p, ingest={"multilook": 2})``; keys whose value is None are ignored.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist; check the path") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for section, values in overrides.items():
        data.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        where = f"config file {path}" if path is not None else "options"
        problems = "; ".join(
            f"[{'.'.join(str(p) for p in err['loc'])}] {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid {where}: {problems}. Run `mtinsar config` to see every key and its default."
        ) from None


def default_toml() -> str:
    """The default configuration as commented TOML (every key, its description, its default)."""
    lines = ["# mtinsar run configuration: every key with its default.", ""]
    for name, field in RunConfig.model_fields.items():
        section = field.get_default(call_default_factory=True)
        doc = (type(section).__doc__ or "").strip()
        lines += [f"# {line.strip()}".rstrip() for line in doc.splitlines()]
        lines.append(f"[{name}]")
        for key, sub in type(section).model_fields.items():
            lines.append(f"# {sub.description}")
            value = getattr(section, key)
            if value is None:
                lines.append(f"# {key} =")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
