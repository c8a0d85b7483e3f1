"""Encoding of 16-bit mono PCM into the six audio formats of the speech API.

PyAV (the ``av`` package, whose wheels bundle FFmpeg) encodes aac, mp3, opus
and flac. WAV and raw PCM need only the standard library. When PyAV or one of
its encoders is missing, ``encode_audio`` returns WAV instead and logs one
warning per format, and ``supported_audio_formats`` lets a caller pick a file
extension that matches what will come back.
"""

from __future__ import annotations

import functools
import io
import logging
import sys
import wave
from array import array
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import av

logger = logging.getLogger(__name__)

#: Sample rate of every clip, in Hz. Raw ``pcm`` has no header, so a caller must
#: assume this rate. NOTE: 24 kHz is the rate commonly reported for the API's
#: pcm output; it was not checked against the live API.
OUTPUT_SAMPLE_RATE = 24_000

#: The ``response_format`` values of ``POST /v1/audio/speech``.
AUDIO_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")

#: ``Content-Type`` of each format in a speech response.
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

# FFmpeg container (muxer) and encoder for each format that needs PyAV. AAC goes
# into ADTS, so the file starts with the 12-bit ADTS sync word 0xFFF.
_AV_CODECS = {
    "aac": ("adts", "aac"),
    "mp3": ("mp3", "libmp3lame"),
    "opus": ("ogg", "libopus"),
    "flac": ("flac", "flac"),
}

# FFmpeg's default AAC coder ("twoloop") took 73 ms to encode 4.3 s of speech on
# a 2-core Xeon. The "fast" coder took 14 ms and gives about 80 kbit/s.
_ENCODER_OPTIONS = {"aac": {"aac_coder": "fast"}}

_PROBE_SAMPLES = 2_400
_warned_formats: set[str] = set()


def supported_audio_formats() -> set[str]:
    """Return the formats that ``encode_audio`` produces without falling back to WAV.

    The first call encodes 0.1 s of silence in each PyAV format to find out,
    so a missing encoder or muxer is detected as well as a missing package.
    """
    return set(_probe_supported_formats())


@functools.cache
def _probe_supported_formats() -> frozenset[str]:
    supported = {"wav", "pcm"}
    try:
        import av  # noqa: F401
    except ImportError:
        logger.debug("PyAV is not installed, so only wav and pcm can be encoded")
        return frozenset(supported)

    silence = bytes(2 * _PROBE_SAMPLES)
    for fmt in _AV_CODECS:
        try:
            _encode_with_av(silence, OUTPUT_SAMPLE_RATE, fmt)
        except Exception as error:  # noqa: BLE001 - any failure means unsupported
            logger.debug("PyAV cannot encode %s: %s", fmt, error)
        else:
            supported.add(fmt)

    return frozenset(supported)


def resolve_audio_format(fmt: str) -> str:
    """Return ``fmt`` when it can be encoded here, otherwise ``"wav"``.

    Logs a warning the first time each format falls back. Raises
    ``ValueError`` for a name that is not one of ``AUDIO_FORMATS``.
    """
    if fmt not in AUDIO_FORMATS:
        raise ValueError(
            f"Unknown audio format {fmt!r}; use one of {', '.join(AUDIO_FORMATS)}."
        )

    if fmt in _probe_supported_formats():
        return fmt

    if fmt not in _warned_formats:
        _warned_formats.add(fmt)
        logger.warning(
            "The local provider cannot encode %s here (install PyAV with "
            "pip install 'esl-assets[local]'), so it returns WAV instead",
            fmt,
        )
    return "wav"


def encode_audio(pcm: bytes, sample_rate: int, fmt: str) -> bytes:
    """Encode 16-bit little-endian mono ``pcm`` at ``sample_rate`` Hz as ``fmt``.

    Every result is at ``OUTPUT_SAMPLE_RATE``. An
    unsupported ``fmt`` gives WAV data (see ``resolve_audio_format``). Empty
    ``pcm`` becomes 0.1 s of silence so that every format gets a valid file.
    """
    actual = resolve_audio_format(fmt)
    if not pcm:
        pcm = bytes(2 * sample_rate // 10)

    if actual in _AV_CODECS:
        return _encode_with_av(pcm, sample_rate, actual)

    resampled = resample_pcm(pcm, sample_rate, OUTPUT_SAMPLE_RATE)
    if actual == "pcm":
        return resampled
    return _encode_wav(resampled, OUTPUT_SAMPLE_RATE)


def _encode_wav(pcm: bytes, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm)
    return buffer.getvalue()


def _pcm_frame(pcm: bytes, sample_rate: int) -> av.AudioFrame:
    import av

    frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
    frame.planes[0].update(pcm[: len(pcm) // 2 * 2])
    frame.sample_rate = sample_rate
    return frame


def _encode_with_av(pcm: bytes, sample_rate: int, fmt: str) -> bytes:
    import av

    container_format, codec_name = _AV_CODECS[fmt]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(
            codec_name,
            rate=OUTPUT_SAMPLE_RATE,
            layout="mono",
            options=_ENCODER_OPTIONS.get(fmt),
        )
        if not isinstance(stream, av.AudioStream):
            raise TypeError(f"FFmpeg codec {codec_name!r} is not an audio encoder.")

        # PyAV converts the sample format and rate and cuts fixed-size codec
        # frames (1024 samples for AAC, 1152 for MP3) before encoding.
        for packet in stream.encode(_pcm_frame(pcm, sample_rate)):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)

    return buffer.getvalue()


def resample_pcm(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample 16-bit mono PCM, with FFmpeg when PyAV is installed."""
    if from_rate == to_rate or not pcm:
        return pcm

    try:
        import av
    except ImportError:
        return _resample_linear(pcm, from_rate, to_rate)

    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
    frames = resampler.resample(_pcm_frame(pcm, from_rate))
    frames += resampler.resample(None)
    return b"".join(bytes(frame.planes[0])[: 2 * frame.samples] for frame in frames)


def _resample_linear(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    # NOTE: linear interpolation with no low-pass filter, so it adds some
    # high-frequency imaging. It runs only when PyAV is missing.
    source = array("h")
    source.frombytes(pcm[: len(pcm) // 2 * 2])
    if sys.byteorder == "big":
        source.byteswap()

    last = len(source) - 1
    count = len(source) * to_rate // from_rate
    target = array("h", bytes(2 * count))
    for index in range(count):
        position = index * from_rate / to_rate
        left = int(position)
        right = min(left + 1, last)
        fraction = position - left
        target[index] = round(source[left] * (1 - fraction) + source[right] * fraction)

    if sys.byteorder == "big":
        target.byteswap()
    return target.tobytes()
