"""The task runner of the flows (VITAL_TASK_RUNNER): `threads` (default: a thread pool in the
flow's process) or `dask` (prefect-dask: batches run on a Dask cluster at VITAL_DASK_ADDRESS,
or on a LocalCluster started for the run when no address is given)."""

from __future__ import annotations

from core.errors import ConfigError
from core.settings import settings


def task_runner(kind: str | None = None):
    s = settings()
    kind = (kind or s.task_runner).lower()
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=s.threads)
    if kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise ConfigError("VITAL_TASK_RUNNER=dask needs prefect-dask: pip install -e '.[dask]'") from None
        if s.dask_address:
            return DaskTaskRunner(address=s.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": s.dask_workers, "threads_per_worker": 1})
    raise ConfigError(f"VITAL_TASK_RUNNER={kind!r}: use threads or dask")
