from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from loaders.home import CorralHome


def write_ndjson(path: Path, messages: Iterable[Any]) -> Path:
    """Write messages one per line; str items are written verbatim (for malformed lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages))
    return path


def message(type_: str = "track", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": type_, "anonymousId": "anon-1", "receivedAt": "2026-10-01T12:00:00.000Z"}
    if type_ == "track":
        base["event"] = "Product Viewed"
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CorralHome:
    """A fresh, empty CORRAL_HOME, also set in the environment for code that reads it."""
    root = tmp_path / "home"
    monkeypatch.setenv("CORRAL_HOME", str(root))
    return CorralHome(root)
