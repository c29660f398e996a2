"""Resources, chosen per environment in this one place: which home (warehouse, landing,
exports; the dbt target follows CORRAL_TARGET through profiles.yml), and the environment destinations read their settings and
credentials from. Every value comes from env vars unless a test or deployment overrides it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dagster import ConfigurableResource
from dagster_dbt import DbtCliResource, DbtProject

from dagster_defs.project import dbt_executable
from loaders.home import CorralHome
from loaders.warehouse import exclusive_writer

WAREHOUSE_POOL = "corral_warehouse"  # DuckDB takes one writing process: every asset that writes it runs in this pool


class CorralResource(ConfigurableResource):
    """Which CORRAL_HOME the assets read and write (default: the CORRAL_HOME env var).

    dbt reads the same env var through profiles.yml, so leave `home_dir` unset unless the
    process environment agrees."""

    home_dir: str | None = None

    def home(self) -> CorralHome:
        return CorralHome.from_env({"CORRAL_HOME": self.home_dir} if self.home_dir else None)

    @contextmanager
    def writing(self, log: Callable[[str], None]) -> Iterator[CorralHome]:
        """The home, with the warehouse's writer lock held for the block (every asset in
        WAREHOUSE_POOL writes inside one): a step that finds another process writing says so in
        its log and waits, instead of failing on DuckDB's lock."""
        waiting = "waiting for the warehouse: another process is writing it (DuckDB takes one writer)"
        with exclusive_writer(self.home(), on_wait=lambda: log(waiting)) as home:
            yield home


class DestinationsResource(ConfigurableResource):
    """The environment destinations read (base URLs, credentials, rate limits: HUBSPOT_ACCESS_TOKEN,
    SALESFORCE_INSTANCE_URL, ...): the process environment, the home's exports/ for files, and
    `overrides` on top (a deployment's or a test's, e.g. base URLs of local fakes)."""

    overrides: dict[str, str] = {}

    def env(self, home: CorralHome) -> dict[str, str]:
        from dagster_defs.syncing import destination_env

        return {**destination_env(home), **self.overrides}


def build_resources(project: DbtProject, destination_overrides: dict[str, str] | None = None) -> dict[str, object]:
    return {
        "corral": CorralResource(),
        "dbt": DbtCliResource(project_dir=project, dbt_executable=dbt_executable()),  # target: CORRAL_TARGET (profiles.yml)
        "destinations": DestinationsResource(overrides=destination_overrides or {}),
    }
