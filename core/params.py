"""The types of flow parameters, with their ranges, for the flow signatures. Prefect validates a
call's parameters against the signature and puts the ranges into a deployment's parameter
schema, which it enforces when a run is created; `check_parameters` says the same in one line
before anything starts (the CLI)."""

from __future__ import annotations

import inspect
import typing
from typing import Annotated

from pydantic import Field, ValidationError, create_model

from core.errors import ConfigError

MAX_BATCH = 1_000_000

BatchSize = Annotated[int, Field(ge=1, le=MAX_BATCH, description=f"rows per batch, from 1 to {MAX_BATCH:,}")]
Name = Annotated[str, Field(min_length=1, description="a name, not empty")]
Seconds = Annotated[float, Field(gt=0, description="seconds, more than 0")]
Ratio = Annotated[float, Field(ge=0, le=1, description="a share from 0 to 1, e.g. 0.1")]


def check_parameters(fn, flow_name: str, params: dict) -> dict:
    """`params` checked against the types of `fn`'s signature; the first wrong one is a
    ConfigError naming the flow, the parameter, its value and what it must be."""
    hints = typing.get_type_hints(fn, include_extras=True)
    fields = {
        name: (hints.get(name, typing.Any), ... if p.default is inspect.Parameter.empty else p.default)
        for name, p in inspect.signature(fn).parameters.items()
    }
    try:
        return create_model(f"{flow_name}-parameters", **fields).model_validate(params).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err["loc"]) or "parameters"
        described = fields.get(str(err["loc"][0]) if err["loc"] else "", (None,))[0]
        hint = next(
            (m.description for m in getattr(described, "__metadata__", ()) if getattr(m, "description", None)), None
        )
        value = f"={err['input']!r}" if "input" in err and err["type"] != "missing" else ""
        raise ConfigError(
            f"{flow_name}: parameter {name}{value}: {err['msg']}" + (f" ({hint})" if hint else "")
        ) from None
