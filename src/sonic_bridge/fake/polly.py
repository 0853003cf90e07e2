"""The fake Amazon Polly SynthesizeSpeech (sans-IO): ``POST /v1/speech``, JSON in, audio out.

It checks the parameters as the service does (voice, engine for the voice, language, output format and
sample rate, text length, text type) and answers with speech-like PCM whose length follows the text
(``CHAR_S`` per character: a voiced tone with a syllable envelope), ``x-amzn-RequestCharacters`` counting
the billed characters. ``Scenario.polly_faults`` plan faults for requests 1, 2, ...
"""

from __future__ import annotations

import json

import numpy as np

from sonic_bridge.fake.converse import Reply, error_reply
from sonic_bridge.fake.scenario import Scenario

PATH = "/v1/speech"
CHAR_S = 0.05
FORMATS = ("json", "mp3", "ogg_opus", "ogg_vorbis", "pcm")
PCM_RATES = ("8000", "16000")
MAX_CHARACTERS = 3000
POLLY_FAULTS = {
    "throttle": (400, "ThrottlingException", "Rate exceeded."),
    "service_failure": (500, "ServiceFailureException", "An unknown condition has caused a service failure."),
}


def speech_like(text: str, rate: int, char_s: float = CHAR_S) -> bytes:
    """PCM16 audio of ``len(text) * char_s`` seconds (the scenario's time_scale applied): each character a
    short voiced syllable, spaces quiet."""
    step = max(8, int(char_s * rate))
    t = np.arange(step) / rate
    envelope = np.sin(np.pi * np.arange(step) / step) ** 2
    pieces = []
    for ch in text:
        if ch.isspace():
            pieces.append(np.zeros(step, np.float32))
            continue
        f0 = 110 + 5 * (ord(ch) % 40)
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))
        pieces.append((0.25 * envelope * tone).astype(np.float32))
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


class FakePolly:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.requests = 0
        self.characters = 0
        self.spoken: list[str] = []

    def handle(self, body: bytes) -> Reply:
        """Every request moves the fault plan on (the client's retry of a throttled sentence gets through)."""
        self.requests += 1
        faults = self.scenario.polly_faults
        fault = faults[self.requests - 1] if self.requests <= len(faults) else None
        return error_reply(*POLLY_FAULTS[fault]) if fault else self._speak(body)

    def _speak(self, body: bytes) -> Reply:
        from sonic_bridge.engines.cascade.settings import POLLY_ENGINES, POLLY_LANGUAGES, POLLY_VOICES, VOICES

        try:
            request = json.loads(body)
            if not isinstance(request, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as exc:
            return error_reply(400, "ValidationException", f"Malformed request: {exc}")
        text, voice, fmt = request.get("Text"), request.get("VoiceId"), request.get("OutputFormat")
        engine = request.get("Engine", "standard")
        language = request.get("LanguageCode")
        if not isinstance(text, str) or not text:
            return error_reply(400, "ValidationException", "1 validation error detected: Value at 'text' failed to "
                               "satisfy constraint: Member must not be null")
        if request.get("TextType", "text") == "ssml":
            return error_reply(400, "InvalidSsmlException", "The fake Polly reads plain text only.")
        if len(text) > MAX_CHARACTERS:
            return error_reply(400, "TextLengthExceededException", f"Maximum text length has been exceeded: "
                               f"{len(text)} characters; at most {MAX_CHARACTERS} are billed per request.")
        if voice not in POLLY_VOICES:
            return error_reply(400, "ValidationException", f"1 validation error detected: Value '{voice}' at "
                               "'voiceId' failed to satisfy constraint: Member must satisfy enum value set")
        if engine not in POLLY_ENGINES:
            return error_reply(400, "ValidationException", f"1 validation error detected: Value '{engine}' at "
                               "'engine' failed to satisfy constraint: Member must satisfy enum value set")
        known = VOICES.get(str(voice))
        if known is not None and engine not in known[1]:
            return error_reply(400, "EngineNotSupportedException", f"This voice does not support the selected "
                               f"engine: {engine}")
        if language is not None and (language not in POLLY_LANGUAGES
                                     or (known is not None and language not in known[0])):
            return error_reply(400, "LanguageNotSupportedException", f"Language {language} is not supported by "
                               f"voice {voice}.")
        if fmt not in FORMATS:
            return error_reply(400, "ValidationException", f"1 validation error detected: Value '{fmt}' at "
                               f"'outputFormat' failed to satisfy constraint: Member must satisfy enum value set: "
                               f"[{', '.join(FORMATS)}]")
        if fmt != "pcm":
            return error_reply(400, "ValidationException", f"The fake Polly produces pcm only, not {fmt}.")
        rate = request.get("SampleRate", "16000")
        if rate not in PCM_RATES:
            return error_reply(400, "InvalidSampleRateException", f"Invalid sample rate {rate} for pcm: choose "
                               "8000 or 16000.")
        self.characters += len(text)
        self.spoken.append(text)
        headers = [("content-type", "audio/pcm"), ("x-amzn-requestcharacters", str(len(text)))]
        return Reply(200, headers, speech_like(text, int(rate), self.scenario.scaled(CHAR_S)), 0.0)
