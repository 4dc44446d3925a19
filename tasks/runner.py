"""The task runner of the flows (VITAL_TASK_RUNNER): `threads` (default: a thread pool in the
flow's process) or `dask` (prefect-dask: batches run on a Dask cluster at VITAL_DASK_ADDRESS,
or on a LocalCluster started for the run when no address is given)."""

from __future__ import annotations

import os

from tasks.errors import ConfigError


def task_runner(kind: str | None = None):
    kind = (kind or os.environ.get("VITAL_TASK_RUNNER") or "threads").lower()
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=int(os.environ.get("VITAL_THREADS", "4")))
    if kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise ConfigError("VITAL_TASK_RUNNER=dask needs prefect-dask: pip install -e '.[dask]'") from None
        address = os.environ.get("VITAL_DASK_ADDRESS")
        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": int(os.environ.get("VITAL_DASK_WORKERS", "2")),
                                              "threads_per_worker": 1})
    raise ConfigError(f"VITAL_TASK_RUNNER={kind!r}: use threads or dask")
