"""The cascade's three fake services at one endpoint (next to the fake Sonic): Transcribe streaming,
ConverseStream and Polly, sharing the scenario, a turn counter and a stream quota. Each door (the in-process
SDK transport, the TLS server) asks ``route`` which one a request path is for.
"""

from __future__ import annotations

import itertools
import random

from sonic_bridge.fake.converse_stream import FakeConverseStream, converse_stream_model
from sonic_bridge.fake.model import FakeError
from sonic_bridge.fake.polly import PATH as POLLY_PATH
from sonic_bridge.fake.polly import FakePolly
from sonic_bridge.fake.scenario import Scenario
from sonic_bridge.fake.transcribe import FakeTranscribe

TRANSCRIBE_PATH = "/stream-transcription"
TRANSCRIBE, CONVERSE_STREAM, POLLY = "transcribe", "converse-stream", "polly"


def route(path: str) -> str | None:
    """Which cascade service a request path is for, or None (Nova Sonic, Converse, unknown)."""
    bare = path.split("?", 1)[0].rstrip("/")
    if bare == TRANSCRIBE_PATH:
        return TRANSCRIBE
    if bare == POLLY_PATH:
        return POLLY
    if converse_stream_model(bare) is not None:
        return CONVERSE_STREAM
    return None


class FakeCascade:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.converse = FakeConverseStream(scenario)
        self.polly = FakePolly(scenario)
        self.transcribes: list[FakeTranscribe] = []  # every stream opened, for tests
        self.open_transcribes = 0
        self._turns = itertools.count(1)

    def open_transcribe(self, headers: dict[str, str], now: float) -> FakeTranscribe:
        """A new Transcribe stream; FakeError (with the service's name) when it is refused."""
        if self.open_transcribes >= self.scenario.max_streams:
            raise FakeError("LimitExceededException", "You have exceeded the maximum number of concurrent "
                            "transcription streams.")
        faults = self.scenario.transcribe_faults
        index = len(self.transcribes)
        stream = FakeTranscribe(headers, self.scenario, now=now, next_turn=lambda: next(self._turns),
                                fault=faults[index] if index < len(faults) else None)
        self.transcribes.append(stream)
        self.open_transcribes += 1
        return stream

    def release_transcribe(self) -> None:
        self.open_transcribes = max(0, self.open_transcribes - 1)

    def thinking(self) -> float:
        """Where in the scenario's thinking range this reply falls (0 to 1)."""
        return self.rng.random()


HTTP_STATUS = {"BadRequestException": 400, "LimitExceededException": 429, "InternalFailureException": 500,
               "ServiceUnavailableException": 503, "ConflictException": 409}


def error_headers(err: FakeError) -> tuple[int, list[tuple[str, str]], bytes]:
    import json

    headers = [("content-type", "application/json"), ("x-amzn-errortype", f"{err.kind}:http://internal.amazon.com/")]
    return HTTP_STATUS.get(err.kind, 400), headers, json.dumps({"Message": err.message}).encode()
