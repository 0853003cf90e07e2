"""Nova Sonic model families, their voices and audio rates: what each model id may be asked for."""

from __future__ import annotations

import difflib
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
LANGUAGES_V1 = ("en-US", "en-GB", "fr-FR", "it-IT", "de-DE", "es-US")
LANGUAGES_V2 = ("en-US", "en-GB", "en-AU", "en-IN", "fr-FR", "it-IT", "de-DE", "es-US", "pt-BR", "hi-IN")


@dataclass(frozen=True, slots=True)
class FamilySpec:
    """What one model family offers: the one table every check, the fake and the handler read."""

    name: str
    voices: frozenset[str]
    languages: tuple[str, ...]
    turn_detection: bool  # sessionStart.turnDetectionConfiguration.endpointingSensitivity
    text_input: bool  # interactive USER text makes it answer (greetings, fillers, typed turns)
    tool_choice: bool  # promptStart.toolConfiguration.toolChoice
    legacy_until: str | None = None  # end of life (ISO date) of a legacy family


# Nova 2.5 Sonic: the Nova 2 features (AWS's 2.5 prompting guide and the Strands docs name no new voice or
# language); it is not the default: the Bedrock model pages list Nova 2 Sonic but not 2.5 (see README).
FAMILIES = {
    Family.NOVA_SONIC_1: FamilySpec("Nova Sonic", VOICES_V1, LANGUAGES_V1, turn_detection=False, text_input=False,
                                    tool_choice=False, legacy_until="2026-09-14"),
    Family.NOVA_2: FamilySpec("Nova 2 Sonic", VOICES_V2, LANGUAGES_V2, turn_detection=True, text_input=True,
                              tool_choice=True),
    Family.NOVA_2_5: FamilySpec("Nova 2.5 Sonic", VOICES_V2, LANGUAGES_V2, turn_detection=True, text_input=True,
                                tool_choice=True),
}
FAMILY_NAMES = {family: spec.name for family, spec in FAMILIES.items()}
DEFAULT_MODEL_ID = "amazon.nova-2-sonic-v1:0"
_KNOWN = {
    "amazon.nova-sonic-v1:0": Family.NOVA_SONIC_1,
    "amazon.nova-2-sonic-v1:0": Family.NOVA_2,
    "amazon.nova-2-5-sonic": Family.NOVA_2_5,
}
# Ids of a known family with another version: the same features, probably a newer release.
_FAMILY_IDS = (
    (re.compile(r"^amazon\.nova-sonic-v\d+:\d+$"), Family.NOVA_SONIC_1),
    (re.compile(r"^amazon\.nova-2-sonic-v\d+:\d+$"), Family.NOVA_2),
    (re.compile(r"^amazon\.nova-2-5-sonic(-v\d+:\d+)?$"), Family.NOVA_2_5),
)
# A later generation, named like the others ("amazon.nova-3-sonic-v1:0"): taken as the newest family.
_LATER_ID = re.compile(r"^amazon\.nova-(\d+)(-\d+)?-sonic(-v\d+:\d+)?$")
_warned: set[str] = set()


class Match(enum.Enum):
    """How a model id was recognised."""

    KNOWN = "known"  # one of the ids this library was built against
    VERSION = "version"  # a known family, another version
    GENERATION = "generation"  # a later generation named like the known ones
    UNRECOGNISED = "unrecognised"  # Nova Sonic by name, but matches no family (a typo, most likely)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    model_id: str
    family: Family
    known: bool
    match: Match = Match.KNOWN

    @property
    def spec(self) -> FamilySpec:
        return FAMILIES[self.family]

    @property
    def voices(self) -> frozenset[str]:
        return self.spec.voices

    @property
    def languages(self) -> tuple[str, ...]:
        return self.spec.languages

    @property
    def supports_text_input(self) -> bool:
        return self.spec.text_input

    @property
    def supports_turn_detection(self) -> bool:
        return self.spec.turn_detection

    @property
    def supports_tool_choice(self) -> bool:
        return self.spec.tool_choice

    @property
    def legacy_warning(self) -> str | None:
        """Why this model should not be chosen any more (a legacy family past its end of life), or None."""
        until = self.spec.legacy_until
        if until is None:
            return None
        return (
            f"model_id {self.model_id!r} is {self.spec.name}, a legacy model whose end of life was {until}: it may "
            f"be refused or switched off at any time, and it has no typed text, greeting, tool filler, turn "
            f"sensitivity or tool_choice; use {DEFAULT_MODEL_ID!r} (Nova 2 Sonic)"
        )

    @property
    def problem(self) -> str | None:
        """What is doubtful about this id, for a warning (or a refusal on the real service)."""
        if self.match is Match.KNOWN:
            return None
        hint = _did_you_mean(self.model_id)
        if self.match is Match.UNRECOGNISED:
            return (
                f"model_id {self.model_id!r} matches no Nova Sonic model family{hint}; "
                f"known ids are {sorted(_KNOWN)} (optionally with a cross-region prefix such as 'us.')"
            )
        if self.match is Match.VERSION:
            how = f"a newer version of {FAMILY_NAMES[self.family]}"
        else:
            how, hint = f"a later generation than {FAMILY_NAMES[self.family]}", ""
        return (
            f"model_id {self.model_id!r} is not one sonic-bridge knows{hint}; it is taken as {how} "
            "and given that family's voices and features"
        )


def base_model_id(model_id: str) -> str:
    for prefix in CROSS_REGION_PREFIXES:
        if model_id.startswith(prefix):
            return model_id[len(prefix) :]
    return model_id


def _did_you_mean(model_id: str) -> str:
    base = base_model_id(model_id.strip().lower())
    prefix = model_id[: len(model_id) - len(base_model_id(model_id))]
    close = difflib.get_close_matches(base, _KNOWN, n=1, cutoff=0.75)
    return f" (did you mean {prefix + close[0]!r}?)" if close and prefix + close[0] != model_id else ""


def model_info(model_id: str, *, warn: bool = True) -> ModelInfo:
    """Family of a model id. An id this library does not know is used with the family it looks like
    (a later generation: the newest family), with a warning that names it (once per process)."""
    if not isinstance(model_id, str) or not model_id:
        raise ValueError(f"model_id must be a non-empty string, got {model_id!r:.80}")
    base = base_model_id(model_id)
    if base in _KNOWN:
        return ModelInfo(model_id, _KNOWN[base], True)
    if "sonic" not in base or not base.startswith("amazon.nova"):
        raise ValueError(
            f"model id {model_id!r:.80} is not a Nova Sonic model{_did_you_mean(model_id)}; use one of "
            f"{sorted(_KNOWN)} (optionally with a cross-region prefix such as 'us.')"
        )
    info = _recognise(model_id, base)
    if warn and model_id not in _warned:
        _warned.add(model_id)
        log.warning("%s", info.problem)
    return info


def _recognise(model_id: str, base: str) -> ModelInfo:
    for pattern, family in _FAMILY_IDS:
        if pattern.match(base):
            return ModelInfo(model_id, family, False, Match.VERSION)
    later = _LATER_ID.match(base)
    if later and (int(later[1]), int((later[2] or "-0")[1:])) > (2, 5):
        return ModelInfo(model_id, max(Family), False, Match.GENERATION)
    return ModelInfo(model_id, max(Family), False, Match.UNRECOGNISED)


def check_voice(info: ModelInfo, voice: str) -> None:
    if not isinstance(voice, str) or voice not in info.voices:
        raise ValueError(f"voice {voice!r} is not available on {info.model_id}; choose one of {sorted(info.voices)}")


def check_service_rate(what: str, rate: int) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int) or rate not in SERVICE_RATES:
        raise ValueError(f"{what} must be one of {SERVICE_RATES} Hz, got {rate!r}")


def check_region(region: str) -> None:
    if not isinstance(region, str) or not REGION_PATTERN.match(region):
        raise ValueError(f"region {region!r} does not look like an AWS region (e.g. 'us-east-1')")
