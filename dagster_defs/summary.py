"""What is in a CORRAL_HOME's warehouse, for `corral status` and the end of `corral demo`."""

from __future__ import annotations

import duckdb


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int | None:
    try:
        return con.execute(sql).fetchone()[0]
    except duckdb.CatalogException:
        return None


def summarize(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(label, value) rows; a table that does not exist yet shows as 'not built'."""

    def show(value: int | None) -> str:
        return "not built" if value is None else f"{value:,}"

    rows = [
        ("files loaded", show(_count(con, "select count(*) from raw.loaded_files"))),
        ("events loaded (raw)", show(_count(con, "select count(*) from raw.events"))),
        ("resent messages skipped", show(_count(con, "select sum(rows_duplicate) from raw.loaded_files"))),
        ("rows kept aside as invalid", show(_count(con, "select count(*) from raw.load_errors"))),
        ("events with a profile", show(_count(con, "select count(*) from marts.profile_events"))),
        ("identifiers", show(_count(con, "select count(*) from marts.profile_identifiers"))),
        ("profiles", show(_count(con, "select count(*) from marts.profiles"))),
        ("identified profiles", show(_count(con, "select count(*) from marts.profiles where user_id is not null"))),
        ("sessions", show(_count(con, "select count(*) from marts.sessions"))),
    ]
    audiences = con.execute(
        "select table_name from information_schema.tables where table_schema = 'audiences' order by table_name"
    ).fetchall()
    for (name,) in audiences:
        rows.append((f"audience {name}", show(_count(con, f'select count(*) from audiences."{name}"'))))
    try:
        runs = con.execute(
            """
            select sync_name, status, succeeded, failed + rejected, finished_at
            from corral_sync.runs
            where not dry_run and finished_at is not null
            qualify row_number() over (partition by sync_name order by finished_at desc) = 1
            order by sync_name
            """
        ).fetchall()
    except duckdb.CatalogException:
        runs = []
    try:  # event syncs: what they forwarded in all, and how far their cursor is
        cursors = {name: (total, at) for name, total, at in con.execute(
            """
            select c.sync_name, (select coalesce(sum(r.succeeded), 0) from corral_sync.runs as r where r.sync_name = c.sync_name
                                 and not r.dry_run), c.cursor_loaded_at
            from corral_sync.event_cursors as c
            """
        ).fetchall()}
    except duckdb.CatalogException:
        cursors = {}
    for name, status, ok, failed, finished in runs:
        when = f"({finished:%Y-%m-%d %H:%M} UTC)"
        if name in cursors:
            total, at = cursors[name]
            rows.append((f"sync {name}", f"{status}: {ok:,} events forwarded ({total:,} in all, up to events loaded {at:%Y-%m-%d %H:%M}), "
                                         f"{failed:,} failed {when}" if at else f"{status}: nothing forwarded yet {when}"))
        else:
            rows.append((f"sync {name}", f"{status}: {ok:,} rows synced, {failed:,} failed {when}"))
    return rows


def render(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label.ljust(width)}  {value}" for label, value in rows)
