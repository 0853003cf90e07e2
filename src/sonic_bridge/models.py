"""Nova Sonic model families, their voices and audio rates: what each model id may be asked for."""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass

log = logging.getLogger("sonic_bridge.models")

SERVICE_RATES = (8000, 16000, 24000)
SERVICE_INPUT_RATE = 16000
TURN_SENSITIVITIES = ("HIGH", "MEDIUM", "LOW")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
CROSS_REGION_PREFIXES = ("us.", "eu.", "apac.", "global.")


class Family(enum.IntEnum):
    """Ordered by age, so ``family >= Family.NOVA_2`` reads as 'has the Nova 2 features'."""

    NOVA_SONIC_1 = 1
    NOVA_2 = 2
    NOVA_2_5 = 3


_KNOWN = {
    "amazon.nova-sonic-v1:0": Family.NOVA_SONIC_1,
    "amazon.nova-2-sonic-v1:0": Family.NOVA_2,
    "amazon.nova-2-5-sonic": Family.NOVA_2_5,
}

VOICES_V1 = frozenset(
    {"tiffany", "matthew", "amy", "ambre", "florian", "beatrice", "lorenzo", "greta", "lennart", "lupe", "carlos"}
)
VOICES_V2 = frozenset(
    {
        "tiffany",
        "matthew",
        "amy",
        "olivia",
        "kiara",
        "arjun",
        "ambre",
        "florian",
        "beatrice",
        "lorenzo",
        "tina",
        "lennart",
        "lupe",
        "carlos",
        "carolina",
        "leo",
    }
)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    model_id: str
    family: Family
    known: bool

    @property
    def voices(self) -> frozenset[str]:
        return VOICES_V1 if self.family is Family.NOVA_SONIC_1 else VOICES_V2

    @property
    def supports_text_input(self) -> bool:
        return self.family >= Family.NOVA_2

    @property
    def supports_turn_detection(self) -> bool:
        return self.family >= Family.NOVA_2


def base_model_id(model_id: str) -> str:
    for prefix in CROSS_REGION_PREFIXES:
        if model_id.startswith(prefix):
            return model_id[len(prefix) :]
    return model_id


def model_info(model_id: str, *, warn: bool = True) -> ModelInfo:
    """Family of a model id; an unknown later Nova Sonic id is taken as the newest family."""
    if not isinstance(model_id, str) or not model_id:
        raise ValueError(f"model id must be a non-empty string, got {model_id!r}")
    base = base_model_id(model_id)
    if base in _KNOWN:
        return ModelInfo(model_id, _KNOWN[base], True)
    if "sonic" not in base or not base.startswith("amazon.nova"):
        raise ValueError(
            f"model id {model_id!r} is not a Nova Sonic model; use one of {sorted(_KNOWN)} "
            f"(optionally with a cross-region prefix such as 'us.')"
        )
    if warn:
        log.warning("unknown Nova Sonic model id %r: treating it as the newest family", model_id)
    return ModelInfo(model_id, max(Family), False)


def check_voice(info: ModelInfo, voice: str) -> None:
    if voice not in info.voices:
        raise ValueError(f"voice {voice!r} is not available on {info.model_id}; choose one of {sorted(info.voices)}")


def check_service_rate(what: str, rate: int) -> None:
    if rate not in SERVICE_RATES:
        raise ValueError(f"{what} must be one of {SERVICE_RATES} Hz, got {rate!r}")


def check_region(region: str) -> None:
    if not isinstance(region, str) or not REGION_PATTERN.match(region):
        raise ValueError(f"region {region!r} does not look like an AWS region (e.g. 'us-east-1')")
