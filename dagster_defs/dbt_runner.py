"""Runs dbt for the `corral` command against one CORRAL_HOME, streaming its progress."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dagster_defs.project import DBT_PROJECT_DIR, REPO_ROOT, dbt_executable
from dagster_defs.traits import check_project_traits
from loaders.home import CorralHome

# A test runs when every model it reads is selected or built before it (dbt's "buildable"), not
# as soon as one is (dbt's default): `--select +repeat_buyers` must not run the relationship test
# from profile_identifiers to profiles on a warehouse that has no profile_identifiers yet.
INDIRECT_SELECTION = "buildable"


class DbtFailed(RuntimeError):
    pass


def target_path(home: CorralHome) -> Path:
    return home.root / "dbt" / "target"


def manifest_path(home: CorralHome) -> Path:
    return target_path(home) / "manifest.json"


def run_dbt(
    home: CorralHome,
    args: list[str],
    dbt_vars: Mapping[str, Any] | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """`dbt <args>` on this home's warehouse; artifacts and logs stay inside the home. Computed
    trait definitions are checked first (TraitDefinitionError lists every bad one)."""
    if args[0] in {"build", "run", "compile"}:
        check_project_traits(DBT_PROJECT_DIR, dict(dbt_vars or {}))
    command = [
        dbt_executable(),
        *args,
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(REPO_ROOT),
        "--target-path", str(target_path(home)),
        "--log-path", str(home.root / "dbt" / "logs"),
    ]
    if dbt_vars:
        command += ["--vars", json.dumps(dict(dbt_vars))]
    home.ensure()
    with subprocess.Popen(
        command, env={"DBT_INDIRECT_SELECTION": INDIRECT_SELECTION, **home.env()}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            echo(line.rstrip("\n"))
    if process.returncode != 0:
        raise DbtFailed(f"dbt {args[0]} failed (exit {process.returncode}); see the output above")


def ensure_manifest(home: CorralHome, echo: Callable[[str], None] = print) -> Path:
    """This home's manifest, parsing the project when there is none yet."""
    if not manifest_path(home).exists():
        run_dbt(home, ["parse", "--quiet"], echo=echo)
    return manifest_path(home)
