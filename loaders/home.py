"""Where one Corral installation keeps its warehouse, landing segments and exports."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".corral"


@dataclass(frozen=True)
class CorralHome:
    """A `CORRAL_HOME`: the embedded warehouse file, `landing/` and `exports/` under one root.

    Several homes can coexist; every command takes its home from `CORRAL_HOME` (default
    `.corral/` in the current directory) so tests and demos never share state by accident.
    """

    root: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "CorralHome":
        env = os.environ if environ is None else environ
        return cls(Path(env.get("CORRAL_HOME") or DEFAULT_HOME).expanduser().resolve())

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    def ensure(self) -> "CorralHome":
        for path in (self.root, self.landing, self.exports):
            path.mkdir(parents=True, exist_ok=True)
        return self

    def env(self) -> dict[str, str]:
        """Environment for child processes (dbt, dagster) that must use this home."""
        return {**os.environ, "CORRAL_HOME": str(self.root)}
