"""Prefect flows: orchestration only. The steps they call live in tasks/."""
