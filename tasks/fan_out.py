"""migrate-all's fan-out: one migrate-tenant/<slug> deployment run per tenant, in parallel on
the workers, when a Prefect server has those deployments."""

from __future__ import annotations

import asyncio
import os

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.settings import FORWARDED, env_name, settings


def deployed(slugs: list[str]) -> bool:
    """True when a Prefect server is configured and has a migrate-tenant deployment per tenant."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return False
    with get_client(sync_client=True) as client:
        try:
            for slug in slugs:
                client.read_deployment_by_name(f"migrate-tenant/{slug}")
        except Exception:  # ObjectNotFound, or a server without deployments
            return False
    return True


def forwarded_env() -> dict[str, str]:
    """The settings passed on to the tenant runs. Plain DSNs are not (job variables are shown in
    the Prefect UI): name Secret blocks with VITAL_*_DSN_SECRET, or set the DSNs on the worker."""
    names = [env_name(f) for f in FORWARDED]
    return {k: os.environ[k] for k in names if os.environ.get(k)}


@task(name="run-tenant-deployments", cache_policy=NO_CACHE)
def run_tenant_deployments(slugs: list[str], parameters: dict, timeout_s: float) -> dict[str, str]:
    """Start migrate-tenant/<slug> for every tenant at once, then wait; returns final states."""
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    env = forwarded_env()
    s = settings()
    for field in ("source_dsn", "target_dsn"):
        if getattr(s, field) and not getattr(s, f"{field}_secret"):
            logger.warning(
                "%s is set for migrate-all but is not passed to the tenant runs (it would show in the "
                "UI); they use the worker's environment. Name a Secret block in %s_SECRET.",
                env_name(field),
                env_name(field),
            )
    runs = {
        slug: run_deployment(
            f"migrate-tenant/{slug}",
            parameters={**parameters, "tenant": slug},
            timeout=0,
            as_subflow=True,
            job_variables={"env": env} if env else None,
        )
        for slug in slugs
    }
    return asyncio.run(_wait_all({slug: run.id for slug, run in runs.items()}, timeout_s))


async def _wait_all(ids: dict, timeout_s: float) -> dict[str, str]:
    """Each run's final state type, waited for with Prefect's own wait_for_flow_run."""
    from prefect.exceptions import FlowRunWaitTimeout
    from prefect.flow_runs import wait_for_flow_run

    try:
        done = await asyncio.gather(
            *(wait_for_flow_run(i, timeout=int(timeout_s), poll_interval=2) for i in ids.values())
        )
    except FlowRunWaitTimeout:
        raise TimeoutError(f"migrate-all: tenant runs still running after {timeout_s:.0f} s") from None
    return {slug: run.state.type.value for slug, run in zip(ids, done)}
