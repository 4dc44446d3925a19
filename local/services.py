"""The local Prefect server and process worker of `make up` / `make down`.

Both run in the background with their pid, log and the API URL under $VITAL_HOME/run, so
`down` stops exactly what `up` started, by pid, and `up` twice starts nothing new. The server
keeps its SQLite database in PREFECT_HOME ($VITAL_HOME/prefect). A Prefect worker stops on
the second SIGTERM (the first asks it to finish), so `down` sends two.

A `vital-etl` command that runs a flow with no PREFECT_API_URL set gets a server of its own
(`temporary_api`), instead of Prefect's ephemeral one: its output goes to
$VITAL_HOME/run/cli-server.log, not the terminal; it is stopped when the command exits, after
Prefect has sent its last events and logs; and it dies with the command even when the command
is SIGKILLed (Linux: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
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


# Run as `python -c _DIE_WITH_PARENT <parent pid> <command...>`: asks the kernel for SIGTERM
# when the parent dies (prctl PR_SET_PDEATHSIG, kept across exec), then becomes the command.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "os.getppid() == int(sys.argv[1]) or sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def tied_to_this_process(args: list[str]) -> list[str]:
    """`args` as a command that the kernel stops when this process dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return args
    return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *args]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_temporary(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def temporary_api() -> str | None:
    """Point this process at a Prefect server started for it alone, when no PREFECT_API_URL is
    set; returns its URL (None when an API was set already). Stopped at exit (atexit runs after
    Prefect's own exit hooks have sent the last events and logs); killed with this process."""
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    if PREFECT_API_URL.value():
        return None
    port = _free_port()
    url = api_url(port)
    log_path = run_dir() / "cli-server.log"
    args = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "ab") as log:  # the child keeps its own handle
        proc = subprocess.Popen(
            tied_to_this_process(args),
            env={**_env(url), "PREFECT_SERVER_UI_ENABLED": "false"},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=PROJECT_ROOT,
            start_new_session=True,  # Ctrl-C reaches the command, which then stops the server
        )
    atexit.register(_stop_temporary, proc)
    deadline = time.monotonic() + PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    while not _healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop_temporary(proc)
            raise ConfigError(
                f"the Prefect server for this command did not start on {url}; see {log_path}, or run "
                "`vital-etl up` and set PREFECT_API_URL to its API"
            )
        time.sleep(0.25)
    os.environ["PREFECT_API_URL"] = url
    refresh_global_settings_context()
    return url
