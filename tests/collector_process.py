"""Starts `corral collect` as users do (a separate process on a free loopback port) for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class CollectorProcess:
    home: Path
    write_keys: str = "web:web-key,server:server-key"
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "CollectorProcess":
        self.home.mkdir(parents=True, exist_ok=True)
        self.log = self.home / f"collector-{self.port}-{time.monotonic_ns()}.log"
        env = {**os.environ, "CORRAL_HOME": str(self.home), "CORRAL_WRITE_KEYS": self.write_keys, **self.extra_env}
        corral = str(Path(sys.executable).with_name("corral"))
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [corral, "collect", "--port", str(self.port)], env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                start_new_session=True,  # its own process group, so a crash can take every worker at once
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"collector exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise TimeoutError(f"collector did not become healthy:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text() if self.log and self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """SIGTERM: a graceful stop. SIGKILL: a crash of the launcher and every worker at once."""
        assert self.process is not None
        if self.process.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.process.pid, signal.SIGKILL)
            else:
                self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _group_alive(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group_alive(self.process.pid), "collector workers outlived the launcher"
        return code


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
