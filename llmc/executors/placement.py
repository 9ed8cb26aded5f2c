"""Where a tool asks to run, for executors that place calls on other machines.

``@llmc.tool(placement={"num_cpus": 1, "num_gpus": 0, "resources": {...}, "actor": True})``
records what a call needs. Only executors that understand placement read it (the
:class:`~llmc.executors.ray.RayExecutor`); the default executor ignores it, so a tool with a
placement still runs anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ToolDefinitionError


@dataclass(frozen=True, slots=True)
class Placement:
    """What one call of a tool needs from a cluster.

    Attributes:
        num_cpus: CPUs one call holds while it runs.
        num_gpus: GPUs one call holds (fractions share a GPU).
        resources: custom resources (``{"db_connection": 1}``), as the cluster names them.
        actor: run every call on one long-lived worker (an actor), so state the tool keeps
            in memory (a loaded model, a connection, a counter) survives between calls.
            Calls on one actor run one at a time, in arrival order; the actor holds its
            ``num_cpus``, ``num_gpus`` and ``resources`` for as long as the executor lives
            (give a mostly idle actor ``num_cpus=0``).
        local: run the tool in the calling process even under a cluster executor (a tool
            that reads local files or is too quick to be worth a round trip).
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    resources: Mapping[str, float] = field(default_factory=dict)
    actor: bool = False
    local: bool = False

    def __post_init__(self) -> None:
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ToolDefinitionError("placement: num_cpus and num_gpus must be 0 or more")
        for name, amount in self.resources.items():
            if not isinstance(name, str) or amount < 0:
                raise ToolDefinitionError(
                    f"placement: resources map names to amounts of 0 or more, got {name!r}: "
                    f"{amount!r}"
                )
        if self.actor and self.local:
            raise ToolDefinitionError("placement: a tool runs on an actor or locally, not both")

    @classmethod
    def of(cls, value: Placement | Mapping[str, Any] | None) -> Placement | None:
        """A placement from a mapping of its fields (or a Placement, or None).

        Raises:
            ToolDefinitionError: a key that is no field, or a value out of range.
        """
        if value is None or isinstance(value, Placement):
            return value
        if not isinstance(value, Mapping):
            raise ToolDefinitionError(
                f"placement must be a dict such as {{'num_cpus': 1}}, got {value!r}"
            )
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ToolDefinitionError(
                f"placement: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                f"the keys are {', '.join(sorted(known))}"
            )
        return cls(**value)

    def ray_options(self) -> dict[str, Any]:
        """The options Ray's ``.options(...)`` takes for a call with this placement."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.resources:
            options["resources"] = dict(self.resources)
        return options
