"""Words the fake Sonic can hear: text "spoken" as a tone per character, behind a two-tone preamble.

The fake has no speech recogniser; ``say`` makes audio that its turn detection takes as speech and ``hear``
reads the words back, so a spoken turn can ask something ("what do you see?") and tests, the demo and the
handler can speak it. Audio without the preamble (a voice, a test tone) is not words: ``hear`` gives None.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

ALPHABET = " abcdefghijklmnopqrstuvwxyz0123456789?.,'!-"
SYMBOL_S = 0.06
BASE_HZ, STEP_HZ = 400.0, 40.0  # character i sounds at BASE_HZ + i * STEP_HZ (400 .. 2120 Hz)
PREAMBLE_HZ = (2600.0, 3000.0)
AMPLITUDE = 0.3


def _tone(freq: float, rate: int) -> npt.NDArray[np.float32]:
    t = np.arange(int(SYMBOL_S * rate)) / rate
    return (AMPLITUDE * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def say(text: str, rate: int = 16000) -> npt.NDArray[np.float32]:
    """``text`` (lower-cased; characters outside the alphabet are left out) as float32 audio at ``rate``."""
    symbols = [ALPHABET.index(c) for c in text.lower() if c in ALPHABET]
    tones = [_tone(f, rate) for f in PREAMBLE_HZ] + [_tone(BASE_HZ + i * STEP_HZ, rate) for i in symbols]
    return np.concatenate(tones)


def _peak(segment: npt.NDArray[np.float32], rate: int) -> tuple[float, float]:
    """The strongest frequency of ``segment`` and its share of the segment's energy."""
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment)))) ** 2
    total = float(spectrum.sum())
    if total <= 0:
        return 0.0, 0.0
    k = int(np.argmax(spectrum))
    share = float(spectrum[max(0, k - 2) : k + 3].sum()) / total
    return k * rate / len(segment), share


def hear(audio: npt.NDArray[np.float32], rate: int) -> str | None:
    """The words in ``audio`` made by ``say``, or None when it does not start with the preamble."""
    size = int(SYMBOL_S * rate)
    loud = np.flatnonzero(np.abs(audio) > AMPLITUDE / 4)
    if len(loud) == 0:
        return None
    start = int(loud[0])
    words: list[str] = []
    k = -1
    while start + (k + 2) * size - size // 4 <= len(audio):
        k += 1
        # The middle half of each symbol: clear of the turn detector's 10 ms framing and of the transitions.
        segment = audio[start + k * size + size // 4 : start + (k + 1) * size - size // 4]
        freq, share = _peak(segment, rate)
        if share < 0.5:
            break
        if k < len(PREAMBLE_HZ):
            if abs(freq - PREAMBLE_HZ[k]) > STEP_HZ:
                return None
            continue
        index = round((freq - BASE_HZ) / STEP_HZ)
        if not 0 <= index < len(ALPHABET) or abs(freq - (BASE_HZ + index * STEP_HZ)) > STEP_HZ / 2:
            break
        words.append(ALPHABET[index])
    return "".join(words).strip() if words else None
