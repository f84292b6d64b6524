"""Presets and planted defects of the built-in incident scenario (``ptytui demo``).

Plain data, no TensorFlow: the CLI validates flags and computes cache keys from this module alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ptytui.errors import UsageError

__all__ = [
    "DEFECTS",
    "DEFAULT_DOSE",
    "DEFAULT_SEED",
    "INCIDENT_DEFECTS",
    "PRESETS",
    "Preset",
    "get_preset",
    "parse_defects",
]

DEFAULT_DOSE = 1e3  # photons per diffraction pattern, as in the incident study
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Preset:
    """Sizes and training budget of one scenario build.

    Attributes
    ----------
    name : preset name ("tiny", "default", "large").
    N : diffraction pattern / probe size in pixels (square).
    object_size : side of the square object in pixels.
    n_train, n_test : scan positions in the low-y (train) and high-y (test) halves. Positions are
        uniform in [N/2, object_size - N/2] on both axes; the split line is y = object_size / 2.
    filters : channels of the encoder blocks (the decoders mirror them).
    epochs : training epochs per model name.
    train_groups : at most this many groups are used for training (None: all of the train split).
    batch_size : training batch size.
    learning_rate : Adam learning rate.
    epie_iterations : iterations of the ePIE reference reconstruction.
    epie_batch : positions updated together in one vectorized ePIE step.
    probe_defocus_waves : defocus of the pupil at its edge, in waves (sets the probe's width).
    measure_at_build : run the incident measurements while building (recorded in the manifest);
        off where predicting every pattern three times would dominate the build time.
    measure_limit : at most this many groups per split for those measurements (None: all).
    """

    name: str
    N: int
    object_size: int
    n_train: int
    n_test: int
    filters: tuple[int, ...]
    epochs: dict[str, int] = field(default_factory=dict)
    train_groups: int | None = None
    batch_size: int = 16
    learning_rate: float = 2e-3
    epie_iterations: int = 4
    epie_batch: int = 64
    probe_defocus_waves: float = 2.0
    measure_at_build: bool = True
    measure_limit: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["filters"] = list(self.filters)
        return d


PRESETS: dict[str, Preset] = {
    # Tests and CI. Geometry chosen for the incident: positions in [16, 112], split at y = 64.
    # With absolute offsets only train patterns with x < 32 and y < 32 keep a sliver on the
    # 32 px crop (about 1/18 of the train patterns, ~1/16 of each visible): ~0.3% nonzero.
    "tiny": Preset(
        name="tiny", N=32, object_size=128, n_train=200, n_test=200, filters=(8, 16),
        epochs={"pinn_gs2": 3, "baseline_gs1": 3, "supervised_unet": 4},
        batch_size=32, epie_iterations=6, epie_batch=32, probe_defocus_waves=1.0,
    ),
    # ``ptytui demo``: N = 64 ("fly64"-like), a 320 x 320 object, 2,000 positions.
    "default": Preset(
        name="default", N=64, object_size=320, n_train=984, n_test=1016, filters=(8, 16, 32),
        epochs={"pinn_gs2": 2, "baseline_gs1": 2, "supervised_unet": 2},
        train_groups=512, batch_size=32, epie_iterations=6, epie_batch=64, probe_defocus_waves=2.0,
        measure_at_build=False,
    ),
    # Benchmarks: N = 128 and 5,216 test positions like the study's dense split; the data are the
    # point, the models are trained only a little (a few hundred groups, one epoch).
    "large": Preset(
        name="large", N=128, object_size=480, n_train=5088, n_test=5216, filters=(8, 16, 32),
        epochs={"pinn_gs2": 1, "baseline_gs1": 1, "supervised_unet": 1},
        train_groups=256, batch_size=16, epie_iterations=2, epie_batch=128,
        probe_defocus_waves=4.0, measure_at_build=False, measure_limit=512,
    ),
}

# Planted defects, each a fault seen in real studies (DOMAIN.md section 5). Training never sees a
# defect: the healthy scenario is trained once, then each defect is applied to the data, the
# saved models or the ptytui.toml wiring of a copy.
DEFECTS: dict[str, str] = {
    "absolute-positions": (
        "the incident: baseline_gs1 is fed ABSOLUTE object-pixel offsets (toml positions = "
        "'absolute') although it expects relative ones; its patches leave the crop"
    ),
    "model-kind": (
        "the incident's label confusion: baseline_gs1 (a position-taking gs1 PINN bundle) is "
        "listed with expected_kind = 'supervised', i.e. where the supervised U-Net was meant"
    ),
    "dead-layer": (
        "pinn_gs2's last ReLU convolution of the amplitude decoder gets a bias of -1e4: every "
        "unit is negative before the ReLU, the layer outputs exact zeros and the amplitude head "
        "is a constant sigmoid(bias)"
    ),
    "nan-weights": (
        "one weight of pinn_gs2 is NaN (the first bias of the amplitude head 'amp'): that "
        "channel's amplitude is NaN everywhere, and so is nearly every reassembled output pixel"
    ),
    "missing-scale": (
        "pinn_gs2 is fed without its intensity scale (toml intensity_scale = 'none'): the input "
        "is smaller by the factor s = sqrt(dose)/(N/2)"
    ),
    "double-scale": (
        "pinn_gs2's intensity scale is applied twice (toml intensity_scale = s**2): the input is "
        "larger by s"
    ),
    "swapped-xy": (
        "xcoords and ycoords are exchanged in both data splits (diffraction unchanged)"
    ),
    "uint16-intensity": (
        "both splits store raw detector counts (uint16 intensity, cast to float32 as a loader "
        "would) as 'diffraction' instead of the normalized amplitude sqrt(counts)"
    ),
}

# What ``ptytui demo`` plants when no --defect is given: the incident as the study wired it.
# Request a healthy scenario with ``--defect none`` (``defects=()`` in Python).
INCIDENT_DEFECTS: tuple[str, ...] = ("absolute-positions", "model-kind")


def get_preset(name: str) -> Preset:
    """The preset called ``name``; UsageError naming the choices otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(
            f"--preset: expected one of {', '.join(PRESETS)}, found {name!r}"
        ) from None


def parse_defects(names) -> tuple[str, ...]:
    """Normalize defect names from the CLI or Python into a sorted tuple.

    ``None`` (nothing asked for) gives INCIDENT_DEFECTS; ``"none"`` alone gives ``()`` (healthy);
    ``"incident"`` expands to INCIDENT_DEFECTS; other names must be keys of DEFECTS.
    """
    if names is None:
        return tuple(sorted(INCIDENT_DEFECTS))
    if isinstance(names, str):
        names = [names]
    chosen: set[str] = set()
    saw_none = False
    for raw in names:
        name = str(raw).strip().lower()
        if name in ("none", "healthy"):
            saw_none = True
        elif name == "incident":
            chosen.update(INCIDENT_DEFECTS)
        elif name in DEFECTS:
            chosen.add(name)
        else:
            raise UsageError(
                f"--defect: expected one of none, incident, {', '.join(DEFECTS)}, found {raw!r}"
            )
    if saw_none and chosen:
        raise UsageError("--defect none cannot be combined with other defects")
    return tuple(sorted(chosen))
