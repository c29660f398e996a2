"""Runs the collector: one uvicorn server per worker process, each on its own SO_REUSEPORT
socket so the kernel spreads connections across workers (uvicorn's own workers share one
socket, and connections that arrive together all go to one of them)."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import socket
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from loaders.collector import Counters, create_app

PR_SET_PDEATHSIG = 1


def log_config() -> dict[str, Any]:
    return {**LOGGING_CONFIG, "loggers": {**LOGGING_CONFIG["loggers"], "corral": {"handlers": ["default"], "level": "INFO"}}}


def bind(host: str, port: int) -> socket.socket:
    """A listening socket in the port's SO_REUSEPORT group. Every worker's socket is made by
    the launcher before any worker starts, so connections made while workers are still
    starting are spread (and queue) across all of them, not all given to the first one up."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def die_with_parent(parent_pid: int) -> None:
    """Linux: a worker gets SIGKILL when the launcher dies, so a crashed launcher never leaves
    workers holding the port and their open segments (and one that died before this call was
    made is noticed right here)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def serve(sock: socket.socket, shared_counters: Any = None, worker: int = 0, parent_pid: int | None = None) -> None:
    """One worker: a uvicorn server for the collector app on its own reuse-port socket."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    config = uvicorn.Config(
        create_app(Counters(shared_counters, worker)),
        loop="uvloop",
        http="httptools",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_config=log_config(),
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    uvicorn.Server(config).run(sockets=[sock])


def run(host: str, port: int, workers: int) -> None:
    if workers <= 1:
        serve(bind(host, port))
        return
    context = multiprocessing.get_context("spawn")
    counters = Counters.shared_array(workers)
    sockets = [bind(host, port) for _ in range(workers)]
    processes = [
        context.Process(target=serve, args=(sock, counters, n, os.getpid()), name=f"collector-{n}")
        for n, sock in enumerate(sockets)
    ]
    for process in processes:
        process.start()
    for sock in sockets:
        sock.close()  # the workers hold their own copies

    stop: list[int] = []  # the stop signal received, once one is

    def forward(signum: int, _frame: Any) -> None:
        stop[:] = [signum]
        for process in processes:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signum)  # each worker shuts down gracefully and seals its segments

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    for process in processes:
        while process.is_alive():
            process.join(timeout=1.0)
            if stop and process.is_alive() and process.pid:
                # a worker still starting when the signal came can miss it (before its server
                # installed its handlers): tell it again until it stops; a second SIGTERM does
                # not cut a graceful shutdown short
                os.kill(process.pid, stop[0] if stop[0] != signal.SIGINT else signal.SIGTERM)
