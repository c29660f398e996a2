"""The same project on DuckDB and on Apache Spark gives the same results, row for row.

Like tests/test_postgres_parity.py (what is compared and how: see there; the comparison lives in
tests/parity.py), with the `spark` target of profiles.yml: dbt-spark's session method on a local
SparkSession (pyspark, Java 17), its metastore and warehouse under the home. One home, one data set
loaded and built through the `corral` command on DuckDB and on Spark, then a second data set loaded
and built incrementally on both (the delete+insert models of macros/spark_incremental.sql), and
the results compared.

A Spark build costs about a second per dbt node whatever the data, so CI uses a small data set
(still 21 to 37 minutes on this 2-core machine shared with other work: four Spark commands, two
full builds); the full demo runs with CORRAL_SPARK_PARITY_USERS=3000 CORRAL_SPARK_PARITY_DAYS=90.
Skips when pyspark or Java is missing, unless CORRAL_REQUIRE_SPARK=1 (CI), where that fails.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagster_defs.cli import main
from loaders.home import CorralHome
from loaders.synthetic import DemoSpec
from parity import assert_same_tables, build_on_both, duckdb_tables, identity_rounds, spark_tables

pytestmark = pytest.mark.slow
USERS = int(os.environ.get("CORRAL_SPARK_PARITY_USERS", "60"))
DAYS = int(os.environ.get("CORRAL_SPARK_PARITY_DAYS", "30"))
SPEC = DemoSpec(users=USERS, days=DAYS, seed=3)
SECOND = DemoSpec(users=max(USERS // 4, 10), days=DAYS, seed=4)  # loaded after the first build: the incremental path


def spark_missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None or importlib.util.find_spec("dbt.adapters.spark") is None:
        return "pyspark / dbt-spark not installed (pip install -c constraints.txt -e '.[test]')"
    java = shutil.which("java") or (os.environ.get("JAVA_HOME") and str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if not java or subprocess.run([java, "-version"], capture_output=True).returncode != 0:
        return "no Java (Spark needs Java 17+): apt-get install -y openjdk-17-jre-headless, or set JAVA_HOME"
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralHome]:
    missing = spark_missing()
    if missing:
        if os.environ.get("CORRAL_REQUIRE_SPARK") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    home = CorralHome(tmp_path_factory.mktemp("spark-parity") / "home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CORRAL_HOME", str(home.root))

        build_on_both(home, "spark", lambda target: mp.setenv("CORRAL_TARGET", target), SPEC, SECOND)
        yield home


def test_every_mart_is_the_same_on_duckdb_and_spark(built: CorralHome, tmp_path: Path) -> None:
    on_spark = spark_tables(built.root, tmp_path, dict(os.environ))
    assert_same_tables(duckdb_tables(built.warehouse), on_spark, "Spark")


def test_identity_resolution_takes_the_same_rounds(built: CorralHome) -> None:
    """Spark runs the same set-based rounds as DuckDB, in the first build and the incremental one."""
    rounds = identity_rounds((built.root / "dbt" / "logs" / "dbt.log").read_text(), ("spark",))
    assert len(rounds["duckdb"]) == 2 and rounds["spark"] == rounds["duckdb"], rounds


def test_a_second_spark_load_loads_nothing(built: CorralHome, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly once on Spark too: the ledger is read from Spark's raw.loaded_files."""
    monkeypatch.setenv("CORRAL_HOME", str(built.root))
    monkeypatch.setenv("CORRAL_TARGET", "spark")
    capsys.readouterr()
    assert main(["load"]) == 0
    assert "0 rows loaded" in capsys.readouterr().out
