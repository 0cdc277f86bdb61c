"""The settings that change the benchmark's metric values (:class:`MetricSettings`): part of
every run's configuration, so their hash decides what a rerun may reuse
(:meth:`MetricSettings.identity`), and each one a ``sise benchmark`` option (the command line
reads their help from the fields' metadata)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from sise.errors import SiseError

__all__ = ["LATER_DEFAULTS", "MetricSettings"]

_CANVASES = ("zero", "blur")
#: The settings added after runs had been stored, with their defaults: at the default a setting
#: is left out of the identity, so the runs stored before it existed still resume (a setting's
#: metrics were opt-in and not computed then, so no stored value depends on it).
LATER_DEFAULTS: dict[str, object] = {"road_noise": 0.01}


def _setting(text: str, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A :class:`MetricSettings` field's metadata: its command-line help and choices."""
    return {"help": text, "choices": choices}


@dataclass(frozen=True)
class MetricSettings:
    """The settings that change metric values (part of every run's configuration and hash).

    Attributes:
        miou_fraction: mIoU binarisation: the top share of pixels kept, in (0, 1].
        drop_baseline: what masked-out pixels become in Drop% / Increase%: ``zero`` (the
            input-space zero, i.e. the normalisation mean) or ``blur``.
        steps: insertion / deletion steps (None: the input height, as RISE's 224 at 224 px).
        insertion_substrate, deletion_substrate: the games' canvases (RISE: blur, zero).
        pointing_tolerance: pointing-game tolerance in original-image pixels (TorchRay: 15).
        pointing_difficult_flags: the file of the pointing game's difficult subset (None:
            TorchRay's, from the installed ``torchray`` package;
            :mod:`sise.eval.data.difficult_subset`). Not part of the identity: it decides which
            pairs ``pointing_difficult`` covers, not their values, and the rows of pairs outside
            it are left out of the table.
        road_noise: σ of the noise ROAD adds to its imputed pixels, in the model's input space
            (ROAD's and pytorch-grad-cam's 0.01; 0: none). Left out of the identity at its
            default (:data:`LATER_DEFAULTS`).

    Each field's metadata holds its command-line help (``sise benchmark --miou-fraction`` ...),
    so the command line lists exactly these settings.
    """

    miou_fraction: float = field(default=0.2, metadata=_setting("mIoU: top share kept"))
    drop_baseline: str = field(
        default="zero",
        metadata=_setting("Drop%/Increase%: what masked-out pixels become", _CANVASES),
    )
    steps: int | None = field(
        default=None, metadata=_setting("insertion/deletion steps (default: input height)")
    )
    insertion_substrate: str = field(
        default="blur", metadata=_setting("insertion canvas", _CANVASES)
    )
    deletion_substrate: str = field(
        default="zero", metadata=_setting("what deleted pixels become", _CANVASES)
    )
    pointing_tolerance: float = field(
        default=15.0, metadata=_setting("pointing game: tolerance in original-image pixels")
    )
    pointing_difficult_flags: str | None = field(
        default=None,
        metadata=_setting(
            "pointing_difficult: the difficult-subset file in TorchRay's format (default: "
            "TorchRay's, from the installed torchray package)"
        ),
    )

    road_noise: float = field(
        default=0.01, metadata=_setting("ROAD: noise of the imputed pixels (sigma, input space)")
    )

    def validate(self) -> None:
        """Refuse a setting out of range with a :class:`SiseError` naming its flag."""
        for item in fields(self):
            value = getattr(self, item.name)
            choices = item.metadata.get("choices")
            if choices is not None and value not in choices:
                raise SiseError(
                    f"--{item.name.replace('_', '-')} must be one of {', '.join(choices)}, "
                    f"got {value!r}"
                )
        fraction = self.miou_fraction
        if not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
            raise SiseError(f"--miou-fraction must lie in (0, 1], got {fraction!r}")
        if self.steps is not None and (
            isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1
        ):
            raise SiseError(
                f"--steps must be a positive integer (or omitted: the input height), got "
                f"{self.steps!r}"
            )
        tolerance = self.pointing_tolerance
        if not isinstance(tolerance, (int, float)) or not (
            math.isfinite(tolerance) and tolerance >= 0
        ):
            raise SiseError(f"--pointing-tolerance must be a finite number >= 0, got {tolerance!r}")
        noise = self.road_noise
        if not isinstance(noise, (int, float)) or not (math.isfinite(noise) and noise >= 0):
            raise SiseError(f"--road-noise must be a finite number >= 0, got {noise!r}")
        flags = self.pointing_difficult_flags
        if flags is not None and not Path(flags).is_file():
            raise SiseError(f"--pointing-difficult-flags {flags!r} is not a file")

    def resolved_steps(self, input_hw: tuple[int, int]) -> int:
        """The insertion / deletion steps for inputs of this size."""
        return self.steps or input_hw[0]

    def identity(self, input_hw: tuple[int, int]) -> dict[str, object]:
        """The settings as they enter a run's configuration (defaults resolved; the
        difficult-subset file left out, see the class docstring; the settings added later left
        out at their defaults, :data:`LATER_DEFAULTS`)."""
        identity = {**asdict(self), "steps": self.resolved_steps(input_hw)}
        del identity["pointing_difficult_flags"]
        for name, default in LATER_DEFAULTS.items():
            if identity[name] == default:
                del identity[name]
        return identity
