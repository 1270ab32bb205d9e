"""vlx's own model presets, read from ``vlx/model_configs/<name>.json`` (model shapes as data,
as open_clip keeps them). ``B-32`` and ``B/32`` name the same preset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlx.config import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"


def list_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def _file(name: str) -> Path:
    return CONFIG_DIR / f"{name.replace('/', '-')}.json"


def is_preset(name_or_path: str | Path) -> bool:
    """True for a preset name that is not also an existing local path (a directory wins)."""
    s = str(name_or_path)
    return s.count("/") <= 1 and not Path(s).expanduser().exists() and _file(s).is_file()


def read_preset(name: str) -> dict[str, Any]:
    """The preset's JSON: ``{"model": {...}, "tokenizer": {...}, "preprocess": {...}}``."""
    f = _file(name)
    if not f.is_file():
        raise ConfigError(f"model: unknown preset {name!r}; known: {', '.join(list_presets())}")
    return json.loads(f.read_text())
