"""The dbt project, as Dagster and the `corral` command see it (the one place it is defined)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagster_dbt import DbtProject


REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


def dbt_executable() -> str:
    """The dbt installed beside this Python (the project's venv), else the one on PATH."""
    beside_python = Path(sys.executable).with_name("dbt")
    return str(beside_python) if beside_python.exists() else (shutil.which("dbt") or "dbt")


def manifest_is_stale(manifest: Path, project_dir: Path = DBT_PROJECT_DIR) -> bool:
    """True when the manifest is missing or older than any file of the project (models,
    macros, seeds, YAML), so a definition never runs against yesterday's tests."""
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = ("dbt_project.yml", "models", "macros", "seeds", "tests", "snapshots", "analyses")
    for name in sources:
        root = project_dir / name
        paths = [root] if root.is_file() else (root.rglob("*") if root.is_dir() else [])
        if any(path.is_file() and path.stat().st_mtime > built for path in paths):
            return True
    return False


def corral_dbt_project() -> DbtProject:
    """The dbt project with its manifest ready: parsed when missing (a fresh clone), older than
    the project's files, or when running under `dagster dev` (so edits to models show up on
    reload). Parsing uses the dbt beside this Python, whatever PATH says."""
    from dagster_dbt import DbtProject  # heavy; the `corral` command does not need it

    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=REPO_ROOT)
    if manifest_is_stale(project.manifest_path) or os.environ.get("DAGSTER_IS_DEV_CLI"):
        subprocess.run(
            [dbt_executable(), "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(REPO_ROOT)],
            check=True,
            cwd=REPO_ROOT,
        )
    return project
