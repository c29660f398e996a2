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


def corral_dbt_project() -> "DbtProject":
    """The dbt project with its manifest ready: parsed when missing (a fresh clone) or when
    running under `dagster dev` (so edits to models show up on reload). Parsing uses the dbt
    beside this Python, whatever PATH says."""
    from dagster_dbt import DbtProject  # heavy; the `corral` command does not need it

    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=REPO_ROOT)
    if not project.manifest_path.exists() or os.environ.get("DAGSTER_IS_DEV_CLI"):
        subprocess.run(
            [dbt_executable(), "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(REPO_ROOT)],
            check=True,
            cwd=REPO_ROOT,
        )
    return project
