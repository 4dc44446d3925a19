"""The local Prefect server and process worker of `make up` / `make down`.

Both run in the background with their pid, log and the API URL under $VITAL_HOME/run, so
`down` stops exactly what `up` started, by pid, and `up` twice starts nothing new. The server
keeps its SQLite database in PREFECT_HOME ($VITAL_HOME/prefect). A Prefect worker stops on
the second SIGTERM (the first asks it to finish), so `down` sends two.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from core.errors import ConfigError
from core.settings import PROJECT_ROOT, settings, vital_home

WORK_POOL = "vital-etl"


def run_dir() -> Path:
    d = vital_home() / "run"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _pid(name: str) -> int | None:
    try:
        pid = int((run_dir() / f"{name}.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def api_url(port: int | None = None) -> str:
    port = port or settings().prefect_port
    return f"http://127.0.0.1:{port}/api"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _env(url: str) -> dict:
    home = vital_home()
    env = {
        **os.environ,
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": os.environ.get("PREFECT_HOME", str(home / "prefect")),
        "VITAL_HOME": str(home),
        "VITAL_PROJECT_DIR": str(PROJECT_ROOT),
    }
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    return env


def _start(name: str, args: list[str], env: dict) -> int:
    with open(run_dir() / f"{name}.log", "ab") as log:  # the child keeps its own handle
        proc = subprocess.Popen(
            args,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
    (run_dir() / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def up(port: int | None = None, timeout: float = 180) -> dict:
    """Start the server and the worker unless they run already; returns their pids and URL."""
    url = api_url(port)
    env = _env(url)
    prefect = str(Path(sys.executable).parent / "prefect")
    started = []
    if _pid("server") is None:
        if _healthy(url):
            raise ConfigError(f"something else already answers on {url}; set VITAL_PREFECT_PORT to a free port")
        _start(
            "server",
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", url.split(":")[2].split("/")[0]],
            env,
        )
        started.append("server")
    deadline = time.monotonic() + timeout
    while not _healthy(url):
        if _pid("server") is None:
            raise ConfigError(f"the Prefect server did not start; see {run_dir() / 'server.log'}")
        if time.monotonic() > deadline:
            raise ConfigError(
                f"the Prefect server did not answer on {url} within {timeout:.0f} s; see {run_dir() / 'server.log'}"
            )
        time.sleep(0.5)
    (run_dir() / "api_url").write_text(url)
    pool = subprocess.run([prefect, "work-pool", "inspect", WORK_POOL], env=env, capture_output=True, text=True)
    if pool.returncode != 0:
        subprocess.run(
            [prefect, "work-pool", "create", WORK_POOL, "--type", "process"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
    if _pid("worker") is None:
        _start("worker", [prefect, "worker", "start", "--pool", WORK_POOL, "--type", "process"], env)
        started.append("worker")
    return {
        "api_url": url,
        "server": _pid("server"),
        "worker": _pid("worker"),
        "started": started,
        "ui": url.removesuffix("/api"),
    }


def _stop(name: str, sigterms: int, timeout: float = 30) -> bool:
    pid = _pid(name)
    if pid is None:
        (run_dir() / f"{name}.pid").unlink(missing_ok=True)
        return False
    for _ in range(sigterms):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            break
        time.sleep(1.0)
    deadline = time.monotonic() + timeout
    while _pid(name) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    if _pid(name) is not None:
        os.killpg(pid, signal.SIGKILL)
    (run_dir() / f"{name}.pid").unlink(missing_ok=True)
    return True


def down() -> list[str]:
    """Stop the worker (two SIGTERMs), then the server; returns what was stopped."""
    stopped = [name for name, terms in (("worker", 2), ("server", 1)) if _stop(name, terms)]
    (run_dir() / "api_url").unlink(missing_ok=True)
    return stopped


def status() -> dict:
    url_file = run_dir() / "api_url"
    url = url_file.read_text() if url_file.exists() else None
    return {"server": _pid("server"), "worker": _pid("worker"), "api_url": url, "healthy": bool(url and _healthy(url))}
