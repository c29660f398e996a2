"""File destination: writes a sync's records as one CSV or Parquet file (by the filename's
extension), atomically.

The file appears (or is replaced) only when the whole run succeeded, so a reader never sees a
half-written export. Directory: `settings.directory`, else `FILE_DESTINATION_DIR`, else the
home's `exports/`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from reverse_etl.destinations.base import Capabilities, Destination, RecordResult
from reverse_etl.syncs import SyncConfigError, SyncSpec


class FileDestination(Destination):
    name: ClassVar[str] = "file"
    capabilities: ClassVar[Capabilities] = Capabilities(modes=frozenset({"mirror"}), batch_size=50_000, snapshot=True)

    _writer: pa_csv.CSVWriter | pq.ParquetWriter | None = None
    _partial: Path | None = None
    _final: Path | None = None

    def _path(self, sync: SyncSpec) -> Path:
        filename = str(sync.settings.get("filename") or f"{sync.name}.csv")
        if Path(filename).name != filename or not filename.endswith((".csv", ".parquet")):
            raise SyncConfigError(f"sync {sync.name!r}: settings.filename must be a plain name ending in .csv or .parquet, got {filename!r}")
        return Path(sync.settings.get("directory") or self.env.get("FILE_DESTINATION_DIR") or "exports") / filename

    def snapshot_exists(self, sync: SyncSpec) -> bool:
        return self._path(sync).exists()

    def open(self, sync: SyncSpec, schema: pa.Schema) -> None:
        self._final = self._path(sync)
        self._final.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self._final.with_name(f".{self._final.name}.partial")
        if self._final.suffix == ".parquet":
            self._writer = pq.ParquetWriter(str(self._partial), schema)
        else:
            self._writer = pa_csv.CSVWriter(str(self._partial), schema)  # header even when empty

    def send(self, batch: pa.RecordBatch, key_column: str, operation: str = "upsert") -> list[RecordResult]:
        assert self._writer is not None, "open() first"
        self._writer.write_batch(batch)
        return [RecordResult(key=str(key), ok=True) for key in batch.column(key_column).to_pylist()]

    def close(self, success: bool) -> dict[str, Any]:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._partial is None or self._final is None:
            return {}
        if success:
            os.replace(self._partial, self._final)
            return {"path": str(self._final)}
        self._partial.unlink(missing_ok=True)
        return {}
