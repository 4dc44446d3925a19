"""Prefect flows: orchestration only. The steps they call live in tasks/."""

import prefect.main  # noqa: F401  (sets up Prefect's logging handlers, which the filter joins)

from tasks import logs

logs.install()
