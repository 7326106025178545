"""What a simulation run found: violations of checked properties and the run's summary."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Checkers that report an exception raised by a run rather than a broken property.
CRASH_CHECKERS = frozenset(("invariant", "crash"))


def crashed(violations: Iterable["Violation | dict"]) -> bool:
    """Whether a run raised instead of finishing: a violation (or its `as_dict`) of one of
    `CRASH_CHECKERS`."""
    return any((v.checker if isinstance(v, Violation) else v["checker"]) in CRASH_CHECKERS
               for v in violations)


@dataclass
class Violation:
    """A broken property: which checker, at which sequence number, which replicas."""

    checker: str
    message: str
    sequence: int | None = None
    replicas: tuple[int, ...] = ()

    def as_dict(self) -> dict:
        return {"checker": self.checker, "message": self.message, "sequence": self.sequence,
                "replicas": list(self.replicas)}


@dataclass
class RunResult:
    scenario: str
    seed: int
    replicas: int
    faulty: list[int]
    committed: int
    violations: list[Violation]
    liveness: bool
    virtual_s: float
    wall_s: float
    events: int
    deliveries: int
    trace_hash: str

    @classmethod
    def crash(cls, scenario: str, seed: int, violation: Violation,
              wall_s: float = 0.0) -> "RunResult":
        """The result of a run that could not even be judged (it raised in its set-up or a
        checker, or its process died): `violation` and nothing else."""
        return cls(scenario=scenario, seed=seed, replicas=0, faulty=[], committed=0,
                   violations=[violation], liveness=False, virtual_s=0.0, wall_s=wall_s,
                   events=0, deliveries=0, trace_hash="")

    @classmethod
    def from_dict(cls, row: dict) -> "RunResult":
        violations = [Violation(v["checker"], v["message"], v["sequence"], tuple(v["replicas"]))
                      for v in row["violations"]]
        fields = {k: row[k] for k in ("scenario", "seed", "replicas", "faulty", "committed",
                                      "liveness", "virtual_s", "wall_s", "events",
                                      "deliveries", "trace_hash")}
        return cls(violations=violations, **fields)

    def as_dict(self) -> dict:
        return {
            "scenario": self.scenario, "seed": self.seed, "replicas": self.replicas,
            "faulty": self.faulty, "committed": self.committed,
            "violations": [v.as_dict() for v in self.violations], "liveness": self.liveness,
            "virtual_s": round(self.virtual_s, 3), "wall_s": round(self.wall_s, 3),
            "events": self.events, "deliveries": self.deliveries, "trace_hash": self.trace_hash,
        }
