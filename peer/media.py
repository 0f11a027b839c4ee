"""Synthetic media: a moving test pattern that carries a frame counter, and a tone.

The counter is drawn as 16 large black/white blocks along the top of each frame, big
enough to survive VP8 compression, so the receiver can read it back and see freezes
and loss (``read_counter``).
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import numpy as np
from aiortc import MediaStreamTrack
from av import AudioFrame, VideoFrame

WIDTH, HEIGHT, FPS = 320, 240, 15
BITS, BLOCK = 16, 20  # 16 blocks of 20x20 pixels: 320 pixels, one row
VIDEO_CLOCK = 90_000
AUDIO_RATE, AUDIO_SAMPLES = 48_000, 960  # 20 ms frames


def draw_frame(counter: int) -> np.ndarray:
    """A BGR frame: a bar moving with the counter, and the counter's bits on top."""
    image = np.full((HEIGHT, WIDTH, 3), 96, dtype=np.uint8)
    x = (counter * 4) % WIDTH
    image[BLOCK + 10:, x:x + 24] = (40, 180, 240)
    for bit in range(BITS):
        on = (counter >> (BITS - 1 - bit)) & 1
        image[0:BLOCK, bit * BLOCK:(bit + 1) * BLOCK] = 255 if on else 0
    return image


def read_counter(frame: VideoFrame) -> int | None:
    """The counter drawn by ``draw_frame``, or None if the frame is not ours."""
    if frame.width < WIDTH or frame.height < BLOCK:
        return None
    gray = frame.to_ndarray(format="gray")
    value = 0
    for bit in range(BITS):
        centre = gray[BLOCK // 4:BLOCK * 3 // 4,
                      bit * BLOCK + BLOCK // 4:(bit + 1) * BLOCK - BLOCK // 4]
        level = float(centre.mean())
        if 60 < level < 190:
            return None
        value = (value << 1) | (level >= 128)
    return value


class FrameClock:
    """The sending side's frame counter, shared by the tracks of successive connections."""

    def __init__(self) -> None:
        self.frames_sent = 0
        self.start = time.monotonic()


class SyntheticVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, clock: FrameClock | None = None) -> None:
        super().__init__()
        self.clock = clock or FrameClock()
        self._pts = 0

    async def recv(self) -> VideoFrame:
        counter = self.clock.frames_sent
        delay = self.clock.start + counter / FPS - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1.0:
            # Nobody pulled frames for a while (no connection): restart the pacing.
            self.clock.start = time.monotonic() - counter / FPS
        frame = VideoFrame.from_ndarray(draw_frame(counter & 0xFFFF), format="bgr24")
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._pts += VIDEO_CLOCK // FPS
        self.clock.frames_sent += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, frequency: float = 440.0) -> None:
        super().__init__()
        self._frequency = frequency
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + self._samples / AUDIO_RATE
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(AUDIO_SAMPLES) + self._samples) / AUDIO_RATE
        wave = (0.2 * 32767 * np.sin(2 * math.pi * self._frequency * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._samples += AUDIO_SAMPLES
        return frame
