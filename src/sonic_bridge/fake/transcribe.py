"""The fake Amazon Transcribe streaming (sans-IO): one stream's request headers and audio in, results out.

``POST /stream-transcription`` takes its settings in ``x-amzn-transcribe-*`` headers (checked as the
service checks them: a language or identification among at least two options, pcm/ogg-opus/flac, a rate
of 8 to 48 kHz) and audio as signed ``AudioEvent`` envelopes. While the audio's energy says speech it sends
partial results every 0.25 s of audio; after a pause it sends the final one. Each names its utterance as
the fake Sonic does ("turn N: X seconds of speech"), or gives the words of audio made by ``fake.speech.say``.

Limits, as the service has them: no audio for 15 s ends the stream with BadRequestException, a stream may
last 4 hours (LimitExceededException); both scale with the scenario's time_scale. ``Scenario.transcribe_
faults`` fail stream 1, 2, ... right after its first final result. Driven with the time passed in, like
``fake.model.FakeSonic``; outputs are result dicts, ``FakeError``, ``END`` and ``DISCONNECT``.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic_bridge.fake import eventstream as es
from sonic_bridge.fake import speech
from sonic_bridge.fake.model import DISCONNECT, END, FakeError, Output
from sonic_bridge.fake.scenario import Scenario

PREFIX = "x-amzn-transcribe-"
ENCODINGS = ("pcm", "ogg-opus", "flac")
PARTIAL_EVERY_S = 0.25  # audio time between partial results
PAUSE_S = 0.8  # silence that ends an utterance (scaled with the scenario's time_scale, at least 0.1 s)
NO_AUDIO_S = 15.0
STREAM_LIMIT_S = 4 * 3600.0
TIMED_OUT = "Your request timed out because no new audio was received for 15 seconds."
TOO_LONG = "Your stream is too long: a stream can last at most 4 hours. Start a new stream."
FAULTS = {
    "internal_failure": FakeError("InternalFailureException", "A problem occurred while processing the audio. "
                                  "Amazon Transcribe terminated processing."),
    "limit_exceeded": FakeError("LimitExceededException", "You have exceeded the maximum number of concurrent "
                                "transcription streams."),
    "service_unavailable": FakeError("ServiceUnavailableException", "The service is currently unavailable. "
                                     "Try your request later."),
}



def check_request(headers: dict[str, str]) -> dict[str, Any]:
    """The stream's settings from its request headers; FakeError (BadRequestException) as the service refuses."""
    from sonic_bridge.engines.cascade.settings import TRANSCRIBE_LANGUAGES

    def get(name: str) -> str | None:
        return headers.get(PREFIX + name)

    def bad(message: str) -> FakeError:
        return FakeError("BadRequestException", message)

    identify = get("identify-language") == "true" or get("identify-multiple-languages") == "true"
    language = get("language-code")
    options = [o for o in (get("language-options") or "").split(",") if o]
    if identify and language:
        raise bad("You can't specify a language code and language identification in the same request.")
    if not identify:
        if language not in TRANSCRIBE_LANGUAGES:
            raise bad(f"1 validation error detected: Value '{language}' at 'languageCode' failed to satisfy "
                      "constraint: Member must satisfy enum value set")
    elif len(options) < 2 or any(o not in TRANSCRIBE_LANGUAGES for o in options):
        raise bad("Language identification needs at least two valid language options (language-options).")
    preferred = get("preferred-language")
    if preferred and preferred not in options:
        raise bad("The preferred language must be one of the language options.")
    encoding = get("media-encoding")
    if encoding not in ENCODINGS:
        raise bad(f"1 validation error detected: Value '{encoding}' at 'mediaEncoding' failed to satisfy "
                  f"constraint: Member must satisfy enum value set: [{', '.join(ENCODINGS)}]")
    if encoding != "pcm":
        raise bad(f"The fake Transcribe decodes pcm only, not {encoding}.")
    try:
        rate = int(get("sample-rate") or "")
    except ValueError:
        rate = 0
    if not 8000 <= rate <= 48000:
        raise bad(f"1 validation error detected: Value '{get('sample-rate')}' at 'mediaSampleRateHertz' failed "
                  "to satisfy constraint: Member must have value between 8000 and 48000")
    return {"language": language or preferred or options[0], "identify": identify, "rate": rate,
            "vocabulary": get("vocabulary-name"), "stability": get("partial-results-stability")}


class FakeTranscribe:
    def __init__(self, headers: dict[str, str], scenario: Scenario, *, now: float,
                 next_turn: Callable[[], int], fault: str | None = None) -> None:
        self.params = check_request(headers)
        self.sc = scenario
        self.rate: int = self.params["rate"]
        self.session_id = headers.get(PREFIX + "session-id") or str(uuid.uuid4())
        self.opened_at = now
        self.last_audio = now
        self._next_turn = next_turn
        self.fault = fault
        self._out: collections.deque[Output] = collections.deque()
        self.failed = False
        self.ended = False
        self.input_events = 0
        self.audio_bytes = 0
        self._frame = self.rate // 100
        self._leftover = b""
        self._utterance: list[npt.NDArray[np.float32]] = []
        self._in_speech = False
        self._silence = 0.0
        self._since_partial = 0.0
        self._stream_time = 0.0  # audio time received, seconds
        self._started_at = 0.0
        self._result_id = ""
        self.turn = 0
        self.finals = 0
        self.pause = max(0.1, scenario.scaled(PAUSE_S))

    @property
    def buffered_input(self) -> int:
        return len(self._leftover)

    def response_headers(self) -> list[tuple[str, str]]:
        out = [("content-type", "application/vnd.amazon.eventstream"), ("x-amzn-request-id", str(uuid.uuid4())),
               (PREFIX + "session-id", self.session_id), (PREFIX + "sample-rate", str(self.rate)),
               (PREFIX + "media-encoding", "pcm")]
        if self.params["identify"]:
            out.append((PREFIX + "identify-language", "true"))
        else:
            out.append((PREFIX + "language-code", self.params["language"]))
        if self.params["vocabulary"]:
            out.append((PREFIX + "vocabulary-name", self.params["vocabulary"]))
        return out

    # ------------------------------------------------------------------ input
    def feed(self, headers: dict[str, Any], payload: bytes, now: float) -> None:
        """One inner message of the client's AudioStream."""
        if self.failed or self.ended:
            return
        self.input_events += 1
        kind = headers.get(":event-type")
        if headers.get(":message-type") != "event" or kind not in ("AudioEvent", "ConfigurationEvent"):
            self._fail(FakeError("BadRequestException", f"Unknown input event type: {str(kind)[:100]}"), now)
            return
        if kind == "ConfigurationEvent":
            return
        self.last_audio = now
        self.audio_bytes += len(payload)
        self._listen(self._leftover + payload, now)

    def end_input(self, now: float) -> None:
        if self.failed or self.ended:
            return
        if self._in_speech:
            self._final(now)
        self._out.append(END)
        self.ended = True

    def _listen(self, pcm: bytes, now: float) -> None:
        frame_bytes = self._frame * 2
        usable = len(pcm) - len(pcm) % frame_bytes
        self._leftover = pcm[usable:]
        samples = np.frombuffer(pcm[:usable], dtype="<i2").astype(np.float32) / 32768.0
        frames = samples.reshape(-1, self._frame)
        levels = np.sqrt(np.mean(frames * frames, axis=1)) if len(frames) else np.zeros(0, np.float32)
        dt = self._frame / self.rate
        for frame, level in zip(frames, levels.tolist(), strict=True):
            self._stream_time += dt
            voiced = level > self.sc.speech_threshold
            if voiced and not self._in_speech:
                self._in_speech = True
                self.turn = self._next_turn()
                self._result_id = str(uuid.uuid4())
                self._started_at = self._stream_time - dt
                self._since_partial = 0.0
            if not self._in_speech:
                continue
            self._utterance.append(frame)
            self._silence = 0.0 if voiced else self._silence + dt
            self._since_partial += dt
            if self._silence >= self.pause - 1e-9:
                self._final(now)
            elif voiced and self._since_partial >= PARTIAL_EVERY_S - 1e-9:
                self._since_partial = 0.0
                self._out.append(self._result(partial=True))

    def _text(self) -> str:
        audio = np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.float32)
        spoken = max(0, len(audio) - int(self._silence * self.rate))
        words = speech.hear(audio[:spoken], self.rate) if spoken else None
        return words or f"turn {self.turn}: {spoken / self.rate:.1f} seconds of speech"

    def _result(self, *, partial: bool) -> dict[str, Any]:
        text = self._text()
        end = self._stream_time - (self._silence if not partial else 0.0)
        items = [{"Content": w, "Type": "pronunciation", "StartTime": round(self._started_at, 3),
                  "EndTime": round(end, 3), "Stable": not partial} for w in text.split()]
        return {"Transcript": {"Results": [{
            "ResultId": self._result_id, "StartTime": round(self._started_at, 3), "EndTime": round(end, 3),
            "IsPartial": partial, "ChannelId": "ch_0", "LanguageCode": self.params["language"],
            "Alternatives": [{"Transcript": text, "Items": items}],
        }]}}

    def _final(self, now: float) -> None:
        self._out.append(self._result(partial=False))
        self._in_speech = False
        self._utterance = []
        self._silence = 0.0
        self.finals += 1
        if self.finals == 1 and self.fault is not None:
            self._fail(FAULTS.get(self.fault, DISCONNECT), now)

    # ------------------------------------------------------------------ output
    def pump(self, now: float) -> list[Output]:
        if not (self.failed or self.ended):
            if now - self.opened_at >= self.sc.scaled(STREAM_LIMIT_S):
                self._fail(FakeError("LimitExceededException", TOO_LONG), now)
            elif now - self.last_audio >= self.sc.scaled(NO_AUDIO_S):
                self._fail(FakeError("BadRequestException", TIMED_OUT), now)
        ready = list(self._out)
        self._out.clear()
        return ready

    def next_due(self) -> float | None:
        if self._out:
            return 0.0
        if self.failed or self.ended:
            return None
        return min(self.opened_at + self.sc.scaled(STREAM_LIMIT_S), self.last_audio + self.sc.scaled(NO_AUDIO_S))

    def _fail(self, error: FakeError | str, now: float) -> None:
        self.failed = True
        self._out.append(error)
        if error != DISCONNECT:
            self._out.append(END)


def event_frame(result: dict[str, Any]) -> bytes:
    import json

    headers = es.string_headers(message_type="event", event_type="TranscriptEvent", content_type="application/json")
    return es.encode_message(headers, json.dumps(result).encode())


def exception_frame(error: FakeError) -> bytes:
    import json

    headers = es.string_headers(message_type="exception", exception_type=error.kind, content_type="application/json")
    return es.encode_message(headers, json.dumps({"Message": error.message}).encode())


class TranscribeInput:
    """Signed envelopes -> ``FakeTranscribe.feed``; the empty envelope is the end of the audio stream."""

    def __init__(self, model: FakeTranscribe, max_event_bytes: int = es.MAX_MESSAGE) -> None:
        self.model = model
        self._frames = es.Decoder(max_event_bytes)
        self.ended = False
        self.broken = False

    @property
    def pending(self) -> int:
        return self._frames.pending + self.model.buffered_input

    def feed(self, data: bytes, now: float) -> None:
        if self.broken or self.ended:
            return
        try:
            for _outer, payload in self._frames.feed(data):
                if not payload:
                    self.end(now)
                    return
                for headers, body in es.Decoder().feed(payload):
                    self.model.feed(headers, body, now)
        except es.FrameError as exc:
            self.refuse(FakeError("BadRequestException", f"Invalid input event bytes: {exc}"), now)

    def refuse(self, error: FakeError, now: float) -> None:
        self.model._fail(error, now)
        self.broken = True
        self._frames = es.Decoder(0)

    def end(self, now: float) -> None:
        if not self.ended:
            self.ended = True
            self.model.end_input(now)


def render(item: Output) -> tuple[bytes, bool]:
    """Wire bytes of one output and whether the response ends after them (the server door's renderer)."""
    from sonic_bridge.fake.wire import ClientDisconnect

    if isinstance(item, dict):
        return event_frame(item), False
    if isinstance(item, FakeError):
        return exception_frame(item), False  # END follows
    if item == DISCONNECT:
        raise ClientDisconnect("the fake Transcribe dropped the connection")
    return b"", True
