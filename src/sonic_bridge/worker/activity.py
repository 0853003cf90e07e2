"""Who is talking, as the worker can tell: the user (voice in the audio the host pushes) and the model (reply
audio that has left for the host and is still playing there, estimated at real time from when it left).

Pure: every method takes the time, so it is tested by plain calls. The tool filler speaks only when both are
quiet (the Nova 2.5 prompting guide), and a renewal waits for the user to pause.
"""

from __future__ import annotations

import math

import numpy as np

VOICE_RMS = 0.015  # of full scale: a frame above it is voice (speech at a headset is ~0.05-0.2, a quiet room ~0.003)
USER_HANGOVER = 0.8  # seconds: a pause shorter than this is the user still speaking (between words)


class Activity:
    def __init__(self, *, voice_rms: float = VOICE_RMS, hangover: float = USER_HANGOVER) -> None:
        self._threshold = (voice_rms * 32768.0) ** 2  # mean square of int16 samples
        self._hangover = hangover
        self.user_voice_at = -math.inf  # last time a voiced frame arrived
        self.playback_until = -math.inf  # when the reply audio sent so far ends playing at the host

    def user_audio(self, pcm16: bytes, now: float) -> None:
        """A frame of user audio (PCM16 little-endian) arrived."""
        samples = np.frombuffer(pcm16, dtype="<i2")
        if samples.size and float(np.mean(np.square(samples, dtype=np.float64))) > self._threshold:
            self.user_voice_at = now

    def model_audio(self, seconds: float, now: float) -> None:
        """Reply audio of this duration left for the host: it plays after what was sent before."""
        self.playback_until = max(self.playback_until, now) + seconds

    def model_stopped(self, now: float) -> None:
        """A barge-in: the host drops the reply audio it has not played."""
        self.playback_until = min(self.playback_until, now)

    def user_speaking(self, now: float) -> bool:
        return now - self.user_voice_at < self._hangover

    def model_speaking(self, now: float) -> bool:
        return now < self.playback_until

    def quiet(self, now: float) -> bool:
        """Neither the user nor the model is speaking."""
        return not self.user_speaking(now) and not self.model_speaking(now)
