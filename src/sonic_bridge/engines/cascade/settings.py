"""``CascadeSettings``: the Transcribe -> Nova -> Polly engine's own settings, validated on the host.

Every refusal names the field, the value and what is allowed. The language and voice lists are the
service enums of the 0.12 clients (aws-sdk-transcribe-streaming ``LanguageCode``, aws-sdk-polly
``LanguageCode``/``VoiceId``/``Engine``), copied here because the host (Python 3.11) never imports the SDK.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from sonic_bridge import checks

TRANSCRIBE_LANGUAGES = (
    "af-ZA", "am-ET", "ar-AE", "ar-SA", "be-BY", "bg-BG", "bn-IN", "bs-BA", "ca-ES", "ckb-IQ", "ckb-IR", "cs-CZ",
    "cy-WL", "da-DK", "de-CH", "de-DE", "el-GR", "en-AB", "en-AU", "en-GB", "en-IE", "en-IN", "en-NZ", "en-US",
    "en-WL", "en-ZA", "es-ES", "es-MX", "es-US", "et-ET", "eu-ES", "fa-AF", "fa-IR", "fi-FI", "fr-CA", "fr-FR",
    "gl-ES", "gu-IN", "he-IL", "hi-IN", "hr-HR", "ht-HT", "hu-HU", "hy-AM", "id-ID", "is-IS", "it-IT", "ja-JP",
    "jv-ID", "ka-GE", "kab-DZ", "kk-KZ", "km-KH", "kn-IN", "ko-KR", "lg-IN", "lt-LT", "lv-LV", "mk-MK", "ml-IN",
    "mr-IN", "ms-MY", "my-MM", "ne-NP", "nl-NL", "no-NO", "or-IN", "pa-IN", "pl-PL", "ps-AF", "pt-BR", "pt-PT",
    "ro-RO", "ru-RU", "si-LK", "sk-SK", "sl-SI", "so-SO", "sq-AL", "sr-RS", "su-ID", "sv-SE", "sw-BI", "sw-KE",
    "sw-RW", "sw-TZ", "sw-UG", "ta-IN", "te-IN", "th-TH", "tl-PH", "tr-TR", "uk-UA", "uz-UZ", "vi-VN", "zh-CN",
    "zh-HK", "zh-TW", "zu-ZA",
)
POLLY_LANGUAGES = (
    "ar-AE", "arb", "ca-ES", "cmn-CN", "cs-CZ", "cy-GB", "da-DK", "de-AT", "de-CH", "de-DE", "en-AU", "en-GB",
    "en-GB-WLS", "en-IE", "en-IN", "en-NZ", "en-SG", "en-US", "en-ZA", "es-ES", "es-MX", "es-US", "fi-FI", "fr-BE",
    "fr-CA", "fr-FR", "hi-IN", "is-IS", "it-IT", "ja-JP", "ko-KR", "nb-NO", "nl-BE", "nl-NL", "pl-PL", "pt-BR",
    "pt-PT", "ro-RO", "ru-RU", "sv-SE", "tr-TR", "yue-CN",
)
POLLY_VOICES = (
    "Aditi", "Adriano", "Ambre", "Amy", "Andres", "Aria", "Arlet", "Arthur", "Astrid", "Ayanda", "Beatrice", "Bianca",
    "Brian", "Burcu", "Camila", "Carla", "Carmen", "Celine", "Chantal", "Conchita", "Cristiano", "Daniel", "Danielle",
    "Dora", "Elin", "Emma", "Enrique", "Ewa", "Filiz", "Florian", "Gabrielle", "Geraint", "Giorgio", "Gregory",
    "Gwyneth", "Hala", "Hannah", "Hans", "Hiujin", "Ida", "Ines", "Isabelle", "Ivy", "Jacek", "Jan", "Jasmine",
    "Jihye", "Jitka", "Joanna", "Joey", "Justin", "Kajal", "Karl", "Kazuha", "Kendra", "Kevin", "Kimberly", "Laura",
    "Lea", "Lennart", "Liam", "Lisa", "Liv", "Lorenzo", "Lotte", "Lucia", "Lupe", "Mads", "Maja", "Marlene",
    "Mathieu", "Matthew", "Maxim", "Mia", "Miguel", "Mizuki", "Naja", "Niamh", "Nicole", "Ola", "Olivia", "Pedro",
    "Penelope", "Raveena", "Remi", "Ricardo", "Ruben", "Russell", "Ruth", "Sabrina", "Salli", "Seoyeon", "Sergio",
    "Sofie", "Stephen", "Suvi", "Takumi", "Tatyana", "Thiago", "Tiffany", "Tomoko", "Vicki", "Vitoria", "Zayd",
    "Zeina", "Zhiyu",
)
POLLY_ENGINES = ("neural", "generative", "long-form", "standard")
# What a few voices speak and with which engines (the Polly voice list); other voices are checked by the
# service at the first sentence (EngineNotSupportedException, reported with the voice and engine).
VOICES: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "Joanna": (("en-US",), frozenset({"standard", "neural", "generative"})),
    "Matthew": (("en-US",), frozenset({"standard", "neural", "generative"})),
    "Ruth": (("en-US",), frozenset({"neural", "generative", "long-form"})),
    "Danielle": (("en-US",), frozenset({"neural", "generative", "long-form"})),
    "Gregory": (("en-US",), frozenset({"neural", "long-form"})),
    "Stephen": (("en-US",), frozenset({"neural", "generative"})),
    "Amy": (("en-GB",), frozenset({"standard", "neural", "generative"})),
    "Zhiyu": (("cmn-CN",), frozenset({"standard", "neural"})),
    "Hiujin": (("yue-CN",), frozenset({"neural"})),
    "Takumi": (("ja-JP",), frozenset({"standard", "neural"})),
    "Seoyeon": (("ko-KR",), frozenset({"standard", "neural"})),
    "Kajal": (("en-IN", "hi-IN"), frozenset({"neural", "generative"})),
}
POLLY_RATES = (8000, 16000)  # PCM output: 8 or 16 kHz (SynthesizeSpeech SampleRate)
POLLY_MAX_CHARACTERS = 3000  # billed characters of one SynthesizeSpeech request
FILTER_METHODS = ("remove", "mask", "tag")
STABILITIES = ("low", "medium", "high")
DEFAULT_MODEL = "us.amazon.nova-2-lite-v1:0"
# The text and multimodal Nova models ConverseStream serves (ids without the cross-Region prefix).
TEXT_MODELS = (
    "amazon.nova-micro-v1:0", "amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0", "amazon.nova-premier-v1:0",
    "amazon.nova-2-lite-v1:0",
)
TEXT_ONLY_MODELS = ("amazon.nova-micro-v1:0",)  # takes no images: vision frames are not sent to it
_PREFIX = re.compile(r"^(us|eu|apac|global|us-gov|jp|au|ca)\.")
VOCABULARY_NAME = re.compile(r"^[0-9a-zA-Z._-]{1,200}$")
# Transcribe streaming ends a stream after 4 hours: a new one is opened before that, at a pause.
TRANSCRIBE_STREAM_LIMIT_S = 4 * 3600.0
MAX_PROMPT_BYTES = 100_000


def _code(name: str, value: Any, allowed: tuple[str, ...], what: str) -> None:
    """A language code of the service; the refusal names close matches instead of the whole list."""
    if isinstance(value, str) and value in allowed:
        return
    near = [c for c in allowed if isinstance(value, str) and value[:2].lower() == c[:2].lower()]
    hint = f"; close: {near}" if near else "; e.g. 'en-US'"
    raise ValueError(f"{name} must be {what} ({len(allowed)} codes, see sonic_bridge.engines.cascade.settings), "
                     f"got {checks.show(value)}{hint}")


def _https_url(name: str, value: Any) -> None:
    if value is None:
        return
    why = "an https:// URL with a host name (the services need TLS)"
    try:
        parts = urllib.parse.urlsplit(value) if isinstance(value, str) else None
        _ = parts.port if parts is not None else None
    except ValueError as exc:
        raise ValueError(f"{name} must be {why}, got {value!r:.200} ({exc})") from None
    if parts is None or parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError(f"{name} must be {why}, got {checks.show(value)}")


def base_model_id(model_id: str) -> str:
    return _PREFIX.sub("", model_id, count=1)


@dataclass(frozen=True, slots=True)
class CascadeSettings:
    """The cascade's stages. The system prompt, tools, history and greeting come from ``SessionSettings``.

    ``language``: what Transcribe listens for; None asks it to identify the language among
    ``language_options`` (at least two), ``preferred_language`` first. ``voice``/``polly_engine``/
    ``polly_language``: how Polly speaks (``polly_language`` only for bilingual voices, e.g. Kajal).
    """

    language: str | None = "en-US"
    language_options: tuple[str, ...] = ()
    preferred_language: str | None = None
    vocabulary_name: str | None = None
    vocabulary_filter_name: str | None = None
    vocabulary_filter_method: str = "mask"
    partial_stability: str | None = "high"  # None: partial results are not stabilised
    model_id: str = DEFAULT_MODEL
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.9
    voice: str = "Joanna"
    polly_engine: str = "neural"
    polly_language: str | None = None
    polly_rate: int = 16000
    frames_per_turn: int | None = None  # vision on: newest frames per turn (None: the model's image limit)
    # A new Transcribe stream this long after the current one opened (at a pause of the user; the service's
    # limit is 4 hours), and at the latest renew_force_after_s later, while the user still speaks.
    renew_after_s: float = 3.5 * 3600
    renew_force_after_s: float = 30.0
    reply_timeout_s: float = 30.0  # ConverseStream: the first event, and each one after it
    # Endpoint overrides. None: AWS_ENDPOINT_URL_TRANSCRIBE_STREAMING / AWS_ENDPOINT_URL_POLLY, else the
    # regional endpoint. Bedrock (ConverseStream) uses BridgeConfig.endpoint, as Nova Sonic does.
    transcribe_endpoint: str | None = None
    polly_endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.language is None:
            options = self._languages("cascade.language_options", self.language_options)
            if len(options) < 2:
                raise ValueError("cascade.language_options must name at least two Transcribe languages when "
                                 "cascade.language is None (automatic identification), got "
                                 f"{checks.show(self.language_options)}")
            object.__setattr__(self, "language_options", options)
            if self.preferred_language is not None and self.preferred_language not in options:
                raise ValueError(f"cascade.preferred_language must be one of language_options {options}, got "
                                 f"{checks.show(self.preferred_language)}")
        else:
            _code("cascade.language", self.language, TRANSCRIBE_LANGUAGES, "a Transcribe streaming language code")
            if self.language_options or self.preferred_language is not None:
                raise ValueError("cascade.language_options and preferred_language are for automatic language "
                                 "identification: set cascade.language=None to use them")
        for name in ("vocabulary_name", "vocabulary_filter_name"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not VOCABULARY_NAME.match(value)):
                raise ValueError(f"cascade.{name} must be 1 to 200 letters, digits, '.', '_' or '-', got "
                                 f"{checks.show(value)}")
        checks.one_of("cascade.vocabulary_filter_method", self.vocabulary_filter_method, FILTER_METHODS)
        if self.partial_stability is not None:
            checks.one_of("cascade.partial_stability", self.partial_stability, STABILITIES)
        checks.text("cascade.model_id", self.model_id, max_bytes=2048)
        if base_model_id(self.model_id) not in TEXT_MODELS:
            raise ValueError(f"cascade.model_id must be a Nova text or multimodal model for ConverseStream "
                             f"({', '.join(TEXT_MODELS)}, with or without a cross-Region prefix such as 'us.'), "
                             f"got {checks.show(self.model_id)}")
        checks.integer("cascade.max_tokens", self.max_tokens, 1, 10_000)
        checks.number("cascade.temperature", self.temperature, 0.0, 1.0)
        checks.number("cascade.top_p", self.top_p, 0.0, 1.0)
        if not isinstance(self.voice, str) or self.voice not in POLLY_VOICES:
            raise ValueError(f"cascade.voice must be a Polly voice id such as 'Joanna', 'Matthew', 'Ruth' or "
                             f"'Zhiyu' ({len(POLLY_VOICES)} voices, see sonic_bridge.engines.cascade.settings), "
                             f"got {checks.show(self.voice)}")
        checks.one_of("cascade.polly_engine", self.polly_engine, POLLY_ENGINES)
        if self.polly_language is not None:
            _code("cascade.polly_language", self.polly_language, POLLY_LANGUAGES, "a Polly language code")
        known = VOICES.get(self.voice)
        if known is not None:
            languages, engines = known
            if self.polly_engine not in engines:
                raise ValueError(f"cascade.voice {self.voice!r} has no {self.polly_engine!r} engine; it has "
                                 f"{sorted(engines)} (cascade.polly_engine)")
            if self.polly_language is not None and self.polly_language not in languages:
                raise ValueError(f"cascade.polly_language {self.polly_language!r} is not spoken by voice "
                                 f"{self.voice!r}; it speaks {list(languages)}")
        checks.one_of("cascade.polly_rate", self.polly_rate, POLLY_RATES)
        if self.frames_per_turn is not None:
            checks.integer("cascade.frames_per_turn", self.frames_per_turn, 1, 20)
        checks.number("cascade.renew_after_s", self.renew_after_s, 1.0, TRANSCRIBE_STREAM_LIMIT_S - 60.0,
                      " seconds (Transcribe ends a stream after 4 hours)")
        checks.number("cascade.renew_force_after_s", self.renew_force_after_s, 0.1, 600.0, " seconds")
        checks.number("cascade.reply_timeout_s", self.reply_timeout_s, 1.0, 600.0, " seconds")

        for name in ("transcribe_endpoint", "polly_endpoint"):
            _https_url(f"cascade.{name}", getattr(self, name))

    @staticmethod
    def _languages(name: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, tuple | list):
            raise ValueError(f"{name} must be a tuple of Transcribe language codes, got {checks.show(value)}")
        for i, code in enumerate(value):
            _code(f"{name}[{i}]", code, TRANSCRIBE_LANGUAGES, "a Transcribe streaming language code")
        if len(set(value)) != len(value):
            raise ValueError(f"{name} must not repeat a language, got {list(value)}")
        return tuple(value)

    @property
    def takes_images(self) -> bool:
        return base_model_id(self.model_id) not in TEXT_ONLY_MODELS

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["language_options"] = list(self.language_options)
        return out

    @classmethod
    def from_json(cls, raw: Any) -> CascadeSettings:
        if not isinstance(raw, dict):
            raise ValueError(f"cascade must be an object, got {checks.show(raw)}")
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"cascade has unknown keys {sorted(map(str, unknown))}")
        data = dict(raw)
        if isinstance(data.get("language_options"), list):
            data["language_options"] = tuple(data["language_options"])
        return cls(**data)
