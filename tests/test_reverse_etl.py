"""Sync declarations, the engine and the file destination."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa
import pytest

from reverse_etl.destinations import make_destination
from reverse_etl.destinations.base import Capabilities, Destination, RecordResult
from reverse_etl.destinations.file import FileDestination
from reverse_etl.engine import run_sync
from reverse_etl.syncs import SyncConfigError, SyncSpec, find_sync, load_syncs


def manifest_with(sync: dict[str, Any], depends_on: list[str] | None = None) -> dict[str, Any]:
    return {
        "nodes": {"model.corral.buyers": {"name": "buyers", "relation_name": "main.buyers"}},
        "exposures": {
            "exposure.corral.buyers_out": {
                "name": "buyers_out",
                "original_file_path": "models/audiences/_audiences__models.yml",
                "depends_on": {"nodes": ["model.corral.buyers"] if depends_on is None else depends_on},
                "owner": {"email": "growth@example.com"},
                "meta": {"corral_sync": sync},
            },
            "exposure.corral.dashboard": {"name": "dashboard", "depends_on": {"nodes": []}, "meta": {}},
        },
    }


GOOD = {"destination": "file", "mode": "mirror", "primary_key": "id", "mapping": {"id": "Id", "email": "Email"}}


def test_declarations_are_read_from_exposures() -> None:
    (sync,) = load_syncs(manifest_with(GOOD))
    assert (sync.name, sync.model, sync.relation, sync.owner) == ("buyers_out", "buyers", "main.buyers", "growth@example.com")
    assert find_sync([sync], "buyers_out") is sync
    with pytest.raises(SyncConfigError, match="no sync named 'nope' \\(declared syncs: buyers_out\\)"):
        find_sync([sync], "nope")


@pytest.mark.parametrize(
    ("change", "depends_on", "message"),
    [
        ({"mode": "sometimes"}, None, "mode 'sometimes' is not one of"),
        ({"primary_key": "missing"}, None, "primary_key 'missing' must be one of the mapped columns"),
        ({"mapping": None}, None, "meta.corral_sync.mapping is required"),
        ({"mapping": ["id"]}, None, "mapping must map mart columns"),
        ({"colour": "red"}, None, "unknown setting\\(s\\) \\['colour'\\]"),
        ({}, [], "must depend on exactly one model"),
    ],
)
def test_bad_declarations_name_the_sync(change: dict[str, Any], depends_on: list[str] | None, message: str) -> None:
    with pytest.raises(SyncConfigError, match=f"sync 'buyers_out' \\(models/audiences/_audiences__models.yml\\): .*{message}"):
        load_syncs(manifest_with({**GOOD, **change}, depends_on))


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create table buyers as select i as id, 'user' || i || '@example.com' as email, i * 1.5 as spend from range(1, 2501) t(i)")
    return con


def spec(**overrides: Any) -> SyncSpec:
    values: dict[str, Any] = {
        "name": "buyers_out", "model": "buyers", "relation": "main.buyers", "destination": "file",
        "mode": "mirror", "primary_key": "id", "mapping": {"id": "Id", "email": "Email"}, "settings": {"filename": "buyers.csv"},
    }
    return SyncSpec(**{**values, **overrides})


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_file_sync_writes_the_mapped_mart(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    destination = make_destination("file", {"FILE_DESTINATION_DIR": str(tmp_path)})
    result = run_sync(con, spec(), destination)
    rows = read_csv(tmp_path / "buyers.csv")
    assert (result.status, result.planned, result.sent, result.succeeded, result.failed) == ("success", 2500, 2500, 2500, 0)
    assert list(rows[0]) == ["Id", "Email"]
    assert [r["Id"] for r in rows] == [str(i) for i in range(1, 2501)]
    assert rows[41]["Email"] == "user42@example.com"
    recorded = con.execute("select sync_name, status, succeeded from corral_sync.runs").fetchall()
    assert recorded == [("buyers_out", "success", 2500)]


def test_empty_mart_gives_a_header_only_file(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    con.execute("delete from buyers")
    run_sync(con, spec(), make_destination("file", {"FILE_DESTINATION_DIR": str(tmp_path)}))
    assert (tmp_path / "buyers.csv").read_text().strip() == '"Id","Email"'


def test_missing_column_fails_before_sending(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    destination = make_destination("file", {"FILE_DESTINATION_DIR": str(tmp_path)})
    with pytest.raises(SyncConfigError, match="sync 'buyers_out': model 'buyers' has no column\\(s\\) 'phone'"):
        run_sync(con, spec(mapping={"id": "Id", "phone": "Phone"}), destination)
    assert not list(tmp_path.iterdir())


def test_unsupported_mode_and_unknown_destination_are_refused(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    destination = make_destination("file", {"FILE_DESTINATION_DIR": str(tmp_path)})
    with pytest.raises(SyncConfigError, match="destination 'file' does not support mode 'upsert'"):
        run_sync(con, spec(mode="upsert"), destination)
    with pytest.raises(SyncConfigError, match="unknown destination 'fax'"):
        make_destination("fax", {})


class FailsOnSecondBatch(FileDestination):
    capabilities: ClassVar[Capabilities] = Capabilities(modes=frozenset({"mirror"}), batch_size=1000, snapshot=True)
    batches = 0

    def send(self, batch: pa.RecordBatch, key_column: str, operation: str = "upsert") -> list[RecordResult]:
        self.batches += 1
        if self.batches == 2:
            raise ConnectionError("disk went away")
        return super().send(batch, key_column, operation)


def test_failed_run_keeps_the_previous_export(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    env = {"FILE_DESTINATION_DIR": str(tmp_path)}
    run_sync(con, spec(), make_destination("file", env))
    before = (tmp_path / "buyers.csv").read_bytes()
    con.execute("update buyers set email = 'changed'")
    with pytest.raises(ConnectionError):
        run_sync(con, spec(), FailsOnSecondBatch(env=env))
    assert (tmp_path / "buyers.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["buyers.csv"]
    statuses = con.execute("select status, error from corral_sync.runs order by started_at").fetchall()
    assert [s for s, _ in statuses] == ["success", "failed"]
    assert "disk went away" in statuses[1][1]


class RejectsOdd(Destination):
    name: ClassVar[str] = "rejects_odd"
    capabilities: ClassVar[Capabilities] = Capabilities(modes=frozenset({"mirror"}), batch_size=100)

    def send(self, batch: pa.RecordBatch, key_column: str, operation: str) -> list[RecordResult]:
        keys = batch.column(key_column).to_pylist()
        return [RecordResult(str(k), ok=k % 2 == 0, error=None if k % 2 == 0 else "odd ids refused") for k in keys]


def test_per_record_failures_are_counted_and_reported(con: duckdb.DuckDBPyConnection) -> None:
    result = run_sync(con, spec(), RejectsOdd(env={}))
    assert (result.status, result.succeeded, result.failed) == ("failed", 1250, 1250)
    assert result.errors[0] == "upsert 1: odd ids refused" and len(result.errors) == 20


def test_dry_run_sends_nothing(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    result = run_sync(con, spec(), make_destination("file", {"FILE_DESTINATION_DIR": str(tmp_path)}), dry_run=True)
    assert (result.planned, result.sent) == (2500, 0)
    assert not list(tmp_path.iterdir())


def test_filename_must_stay_in_the_export_directory(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    with pytest.raises(SyncConfigError, match="settings.filename must be a plain name"):
        run_sync(con, spec(settings={"filename": "../escape.csv"}), make_destination("file", {"FILE_DESTINATION_DIR": str(tmp_path)}))


def test_parquet_file_and_unchanged_resync_leaves_the_file_alone(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    destination = make_destination("file", {"FILE_DESTINATION_DIR": str(tmp_path)})
    run_sync(con, spec(settings={"filename": "buyers.parquet"}), destination)
    table = pq.read_table(tmp_path / "buyers.parquet")
    assert table.column_names == ["Id", "Email"] and table.num_rows == 2500
    written = (tmp_path / "buyers.parquet").stat().st_mtime_ns
    again = run_sync(con, spec(settings={"filename": "buyers.parquet"}), make_destination("file", {"FILE_DESTINATION_DIR": str(tmp_path)}))
    assert (again.sent, (tmp_path / "buyers.parquet").stat().st_mtime_ns) == (0, written)
    con.execute("delete from buyers where id > 10")
    run_sync(con, spec(settings={"filename": "buyers.parquet"}), make_destination("file", {"FILE_DESTINATION_DIR": str(tmp_path)}))
    assert pq.read_table(tmp_path / "buyers.parquet").num_rows == 10
