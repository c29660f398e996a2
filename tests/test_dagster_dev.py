"""`make dev` as an operator uses it: `dagster dev` on a fresh home with the instance config the
Makefile installs, driven through the UI's own GraphQL API: the asset groups, schedules and the
sensor are there and on, and launching one sync's job from the UI builds what it needs and
records the sync's counts and the audience's size."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from dagster_defs.project import REPO_ROOT
from loaders.synthetic import DemoSpec, write_ndjson

RUN = """
mutation($p: ExecutionParams!) {
  launchRun(executionParams: $p) { __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } }
}"""
LOCATION = """
{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } assetGroups { groupName }
  schedules { name cronSchedule scheduleState { status } } sensors { name sensorState { status } } } } } }"""
MATERIALIZATION = """
query($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset { assetMaterializations(limit: 1) {
  runId metadataEntries { label ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue } } } } } }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_ui_shows_the_flow_and_runs_a_sync_with_what_it_needs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dagster_defs" / "dagster.yaml", home / "dagster" / "dagster.yaml")  # as `make dev` does
    write_ndjson(DemoSpec(users=200, days=30, seed=2), home / "landing" / "demo")
    port = free_port()
    env = {**os.environ, "CORRAL_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    log = (tmp_path / "dev.log").open("w")
    dev = subprocess.Popen([str(Path(sys.executable).with_name("dagster")), "dev", "-m", "dagster_defs.definitions", "-p", str(port)],
                           cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/graphql"

    def query(text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(url, json={"query": text, "variables": variables or {}}, timeout=60)
        response.raise_for_status()
        return response.json()["data"]

    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                node = query(LOCATION)["repositoriesOrError"]["nodes"][0]
                break
            except (httpx.HTTPError, KeyError, IndexError, TypeError):
                assert time.monotonic() < deadline and dev.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
                time.sleep(1)
        assert {g["groupName"] for g in node["assetGroups"]} == {
            "ingestion", "staging", "identity", "sessions", "traits_and_audiences", "protocols", "syncs"}
        schedules = {s["name"]: (s["cronSchedule"], s["scheduleState"]["status"]) for s in node["schedules"]}
        assert schedules["sync_repeat_buyers_to_file_schedule"] == ("0 * * * *", "RUNNING")
        assert schedules["daily_build_schedule"] == ("0 3 * * *", "RUNNING")
        assert {s["name"]: s["sensorState"]["status"] for s in node["sensors"]} == {"landing_sensor": "RUNNING", "event_forwarding_sensor": "RUNNING"}

        selector = {"repositoryLocationName": node["location"]["name"], "repositoryName": node["name"],
                    "jobName": "sync_repeat_buyers_to_file"}
        launched = query(RUN, {"p": {"selector": selector}})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        status = "STARTED"
        deadline = time.monotonic() + 300
        while status not in ("SUCCESS", "FAILURE", "CANCELED") and time.monotonic() < deadline:
            time.sleep(2)
            status = query("query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id})["runOrError"]["status"]
        assert status == "SUCCESS", (tmp_path / "dev.log").read_text()[-3000:]

        def latest(*path: str) -> tuple[str, dict[str, float]]:
            [found] = query(MATERIALIZATION, {"path": list(path)})["assetOrError"]["assetMaterializations"]
            return found["runId"], {e["label"]: e.get("intValue", e.get("floatValue")) for e in found["metadataEntries"]
                                    if "intValue" in e or "floatValue" in e}

        sync_run, counts = latest("syncs", "repeat_buyers_to_file")
        audience_run, audience = latest("audiences", "repeat_buyers")
        loaded_run, _ = latest("raw", "events")
        assert sync_run == audience_run == loaded_run == run_id, "one run loaded, built and synced"
        assert counts["succeeded"] == counts["planned"] == counts["added"] == audience["audience_size"] > 0
        assert counts["failed"] == 0 and counts["duration_seconds"] >= 0
        assert (home / "exports" / "repeat_buyers.csv").exists()
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
        log.close()
