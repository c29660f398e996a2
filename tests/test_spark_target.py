"""The `spark` target's pieces that need no JVM: the loader's session settings are profiles.yml's
(so `corral load` and dbt share one metastore and warehouse under CORRAL_HOME), and the raw schema
in Spark's dialect."""

from __future__ import annotations

from pathlib import Path

from loaders.spark import WRITE_ORDER, spark_parameters, spark_raw_ddl
from loaders.warehouse import RAW_TABLES


def test_the_loader_configures_spark_from_the_profile_under_the_home(tmp_path: Path) -> None:
    params = spark_parameters({"CORRAL_HOME": str(tmp_path), "CORRAL_SPARK_DRIVER_MEMORY": "2g"})
    assert params["spark.sql.warehouse.dir"] == f"{tmp_path}/spark/warehouse"
    assert params["spark.hadoop.javax.jdo.option.ConnectionURL"] == f"jdbc:derby:;databaseName={tmp_path}/spark/metastore_db;create=true"
    assert params["spark.driver.memory"] == "2g"
    assert params["spark.sql.session.timeZone"] == "UTC"
    assert params["spark.master"] == "local[2]"


def test_the_raw_schema_in_spark_sql() -> None:
    statements = spark_raw_ddl()
    assert statements[0] == "create schema if not exists raw"
    tables = [s for s in statements if s.startswith("create table")]
    assert {s.split()[5].removeprefix("raw.") for s in tables} == set(RAW_TABLES)
    for statement in tables:
        assert statement.endswith("using parquet")
        for word in (" varchar", " json", "not null", "primary key"):
            assert word not in statement, statement
    assert "traits string" in statements[1] and "landing_line bigint" in statements[1]
    # the ledgers are written after the rows they account for
    assert WRITE_ORDER[-2:] == ("loaded_files", "protocol_files") and set(WRITE_ORDER) == set(RAW_TABLES)
