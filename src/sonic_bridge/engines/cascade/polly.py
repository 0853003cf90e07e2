"""One sentence spoken by Amazon Polly (aws-sdk-polly SynthesizeSpeech): PCM16 mono at the cascade's rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sonic_bridge.engines.cascade.clients import classify
from sonic_bridge.engines.cascade.settings import CascadeSettings


@dataclass(frozen=True, slots=True)
class Speech:
    pcm: bytes  # PCM16 little-endian at CascadeSettings.polly_rate
    characters: int  # billed characters (x-amzn-RequestCharacters)


async def speak(client: Any, settings: CascadeSettings, text: str) -> Speech:
    from aws_sdk_polly.models import SynthesizeSpeechInput

    fields: dict[str, Any] = {"text": text, "output_format": "pcm", "voice_id": settings.voice,
                              "engine": settings.polly_engine, "sample_rate": str(settings.polly_rate)}
    if settings.polly_language:
        fields["language_code"] = settings.polly_language
    try:
        output = await client.synthesize_speech(SynthesizeSpeechInput(**fields))
        pcm = await output.audio_stream.read()
    except Exception as exc:
        raise classify(exc) from None
    return Speech(bytes(pcm), output.request_characters or len(text))
