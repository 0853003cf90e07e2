"""One Transcribe streaming session through aws-sdk-transcribe-streaming: audio in, results out.

``open`` starts the stream with the cascade's settings and waits for the response headers (the service
accepted it). ``send`` takes PCM16 at ``RATE``; ``results`` yields what was heard, partial or final, until
the stream ends; every failure is raised as a classified BackendError.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sonic_bridge import errors
from sonic_bridge.engines.cascade.clients import classify
from sonic_bridge.engines.cascade.settings import CascadeSettings
from sonic_bridge.engines.failures import BackendError

RATE = 16000
MAX_CHUNK = 6400  # bytes per AudioEvent: 200 ms at 16 kHz, inside the service's recommended 50-200 ms


@dataclass(frozen=True, slots=True)
class Heard:
    text: str
    partial: bool
    result_id: str
    language: str = ""


def request(settings: CascadeSettings) -> Any:
    from aws_sdk_transcribe_streaming.models import StartStreamTranscriptionInput

    fields: dict[str, Any] = {"media_sample_rate_hertz": RATE, "media_encoding": "pcm"}
    if settings.language is None:
        fields.update(identify_language=True, language_options=",".join(settings.language_options))
        if settings.preferred_language:
            fields["preferred_language"] = settings.preferred_language
    else:
        fields["language_code"] = settings.language
    if settings.vocabulary_name:
        fields["vocabulary_name"] = settings.vocabulary_name
    if settings.vocabulary_filter_name:
        fields.update(vocabulary_filter_name=settings.vocabulary_filter_name,
                      vocabulary_filter_method=settings.vocabulary_filter_method)
    if settings.partial_stability:
        fields.update(enable_partial_results_stabilization=True, partial_results_stability=settings.partial_stability)
    return StartStreamTranscriptionInput(**fields)


class TranscribeStream:
    def __init__(self, stream: Any, output: Any) -> None:
        self._stream = stream
        self._output = output
        self.closed = False

    @classmethod
    async def open(cls, client: Any, settings: CascadeSettings, timeout: float) -> TranscribeStream:
        try:
            stream = await asyncio.wait_for(client.start_stream_transcription(request(settings)), timeout)
            _, output = await asyncio.wait_for(stream.await_output(), timeout)
        except TimeoutError:
            raise BackendError(errors.ENDPOINT_UNREACHABLE, f"Transcribe did not answer within {timeout:g} s",
                               recoverable=True, kind="ConnectTimeout") from None
        except Exception as exc:
            raise classify(exc) from None
        return cls(stream, output)

    async def send(self, pcm: bytes) -> None:
        from aws_sdk_transcribe_streaming.models import AudioEvent, AudioStreamAudioEvent

        try:
            for i in range(0, len(pcm), MAX_CHUNK):
                await self._stream.input_stream.send(AudioStreamAudioEvent(value=AudioEvent(
                    audio_chunk=pcm[i : i + MAX_CHUNK])))
        except Exception as exc:
            raise classify(exc) from None

    async def results(self) -> AsyncIterator[Heard]:
        while True:
            try:
                event = await self._output.receive()
            except Exception as exc:
                raise classify(exc) from None
            if event is None:
                return
            transcript = getattr(getattr(event, "value", None), "transcript", None)
            for result in getattr(transcript, "results", None) or []:
                alternatives = result.alternatives or []
                text = (alternatives[0].transcript or "").strip() if alternatives else ""
                if text:
                    yield Heard(text, bool(result.is_partial), result.result_id or "",
                                str(getattr(result.language_code, "value", result.language_code) or ""))

    async def end(self) -> None:
        """No more audio: the service sends what it still has, then ends the stream."""
        if self.closed:
            return
        self.closed = True
        try:
            await self._stream.input_stream.close()
        except Exception as exc:
            raise classify(exc) from None

    async def aclose(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):  # closing a broken stream may fail in many ways; none matters now
            await self._stream.close()
