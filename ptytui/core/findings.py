"""The vocabulary of findings: severities and their order, and the ``Finding`` record that every
check produces, the diagnosis and comparison emit, and every view (CLI, TUI, report) shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ptytui.core.jsonable import json_ready

#: Severities, most severe first. An ``error`` finding makes ``diagnose`` exit 1.
SEVERITIES = ("error", "warning", "info")


def severity_rank(severity: str) -> int:
    """Sort key: 0 for error, 1 warning, 2 info, 3 for anything unknown."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


@dataclass
class Finding:
    """One problem (or observation) with the numbers behind it and what one could do about it.

    ``evidence`` holds the numbers the finding was decided on; ``actions`` the decision options
    it suggests, each ``{"option", "intervention", "command", "description"}``.
    """

    id: str
    severity: str  # one of SEVERITIES
    model: str | None
    split: str | None
    layer: str | None
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "severity": self.severity, "model": self.model, "split": self.split,
                "layer": self.layer, "summary": self.summary, "evidence": json_ready(self.evidence),
                "actions": json_ready(self.actions), "label": self.label}
