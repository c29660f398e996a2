"""Resources, chosen per environment in this one place."""

from __future__ import annotations

from dagster import ConfigurableResource
from dagster_dbt import DbtCliResource, DbtProject

from dagster_defs.project import dbt_executable
from loaders.home import CorralHome


class CorralResource(ConfigurableResource):
    """Which CORRAL_HOME the assets read and write (default: the CORRAL_HOME env var).

    dbt reads the same env var through profiles.yml, so leave `home_dir` unset unless the
    process environment agrees."""

    home_dir: str | None = None

    def home(self) -> CorralHome:
        return CorralHome.from_env({"CORRAL_HOME": self.home_dir} if self.home_dir else None)


def build_resources(project: DbtProject) -> dict[str, object]:
    return {"corral": CorralResource(), "dbt": DbtCliResource(project_dir=project, dbt_executable=dbt_executable())}
