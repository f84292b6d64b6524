"""The built-in incident scenario behind ``ptytui demo`` (SCENARIO.md): simulated data, small
trained models, an ePIE reference and a ``ptytui.toml`` wired as the study did, cached on disk.

Importing this package is cheap (no TensorFlow); building imports it when training starts.
"""

from ptytui.scenario.build import (
    HEALTHY_STAGES,
    VARIANT_STAGES,
    build_scenario,
    cache_root,
    measure_incident,
    read_manifest,
    scenario_key,
    workspace_name,
    workspace_toml,
)
from ptytui.scenario.measure import predicted_visible_fraction
from ptytui.scenario.settings import (
    DEFAULT_DOSE,
    DEFAULT_SEED,
    DEFECTS,
    INCIDENT_DEFECTS,
    PRESETS,
    Preset,
    get_preset,
    parse_defects,
)

__all__ = [
    "DEFAULT_DOSE",
    "DEFAULT_SEED",
    "DEFECTS",
    "HEALTHY_STAGES",
    "INCIDENT_DEFECTS",
    "PRESETS",
    "VARIANT_STAGES",
    "Preset",
    "build_scenario",
    "cache_root",
    "get_preset",
    "measure_incident",
    "parse_defects",
    "predicted_visible_fraction",
    "read_manifest",
    "scenario_key",
    "workspace_name",
    "workspace_toml",
]
