"""Speech synthesis with eSpeak NG, called through its C API with ctypes.

The shared library and its ``espeak-ng-data`` folder come from the
``espeakng-loader`` wheel, so no system package is needed. eSpeak NG keeps the
current voice, rate and output callback in global state, so every call into it
runs under ``_ESPEAK_LOCK``.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import threading
from dataclasses import dataclass

from esl_assets.errors import ConfigurationError

logger = logging.getLogger(__name__)

# Values from eSpeak NG's public header, speak_lib.h (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAMETER_RATE = 1
_PARAMETER_PITCH = 3
_RATE_NORMAL_WPM = 175
_RATE_MIN_WPM = 80
_RATE_MAX_WPM = 450
_EE_OK = 0

#: Callback type ``int callback(short *wav, int numsamples, espeak_EVENT *events)``.
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True, slots=True)
class EspeakVoice:
    """An eSpeak NG language voice, voice variant and base pitch (0-100)."""

    language: str
    variant: str
    pitch: int = 50

    @property
    def name(self) -> str:
        """Return the name ``espeak_SetVoiceByName`` accepts, e.g. ``en-us+f3``."""
        return f"{self.language}+{self.variant}"


#: The built-in OpenAI voices mapped to English eSpeak NG voices. Female-sounding
#: OpenAI voices get female variants (f1-f5), the others male variants (m1-m8).
OPENAI_VOICES: dict[str, EspeakVoice] = {
    "alloy": EspeakVoice("en-us", "m3", 55),
    "ash": EspeakVoice("en-us", "m1", 45),
    "ballad": EspeakVoice("en-gb-x-rp", "m2", 50),
    "cedar": EspeakVoice("en-us", "m5", 38),
    "coral": EspeakVoice("en-us", "f1", 55),
    "echo": EspeakVoice("en-us", "m7", 50),
    "fable": EspeakVoice("en-gb-x-rp", "m3", 52),
    "marin": EspeakVoice("en-gb-scotland", "f2", 55),
    "nova": EspeakVoice("en-us", "f4", 60),
    "onyx": EspeakVoice("en-us", "m6", 30),
    "sage": EspeakVoice("en", "f3", 50),
    "shimmer": EspeakVoice("en-us", "f5", 65),
    "verse": EspeakVoice("en-029", "m4", 50),
}

# English voices of eSpeak NG 1.52; "en" is British English.
_FALLBACK_LANGUAGES = (
    "en-us",
    "en",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
_FALLBACK_VARIANTS = tuple(f"m{index}" for index in range(1, 9)) + tuple(
    f"f{index}" for index in range(1, 6)
)


def voice_for(openai_voice: str) -> EspeakVoice:
    """Map an OpenAI voice name to an eSpeak NG voice.

    Built-in names use ``OPENAI_VOICES``. Any other string (a custom voice id,
    a future voice) picks a language, variant and pitch from a SHA-256 digest
    of the lowercased name, so the same name gives the same voice in every
    process.
    """
    key = openai_voice.strip().lower()
    if key in OPENAI_VOICES:
        return OPENAI_VOICES[key]

    digest = hashlib.sha256(key.encode("utf-8")).digest()
    language = _FALLBACK_LANGUAGES[digest[0] % len(_FALLBACK_LANGUAGES)]
    variant = _FALLBACK_VARIANTS[digest[1] % len(_FALLBACK_VARIANTS)]
    pitch = 35 + digest[2] % 31
    return EspeakVoice(language, variant, pitch)


def rate_for_speed(speed: float) -> int:
    """Convert an OpenAI ``speed`` factor to an eSpeak NG rate in words per minute.

    eSpeak NG accepts 80-450 words per minute, so speeds below about 0.46 or
    above about 2.57 are clamped to those limits.
    """
    words_per_minute = round(_RATE_NORMAL_WPM * speed)
    return max(_RATE_MIN_WPM, min(_RATE_MAX_WPM, words_per_minute))


class _Espeak:
    """The loaded library, its sample rate and the buffer the callback fills."""

    def __init__(self) -> None:
        library, data_path = _load_library()
        self.library = library
        self.chunks: list[bytes] = []
        # ctypes must keep the callback object alive for as long as eSpeak may
        # call it, which is the life of the process.
        self.callback = _SynthCallback(self._collect)
        self.sample_rate = library.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT
        )
        if self.sample_rate <= 0:
            raise ConfigurationError(
                f"eSpeak NG failed to initialise with data folder {data_path!r}; "
                "reinstall espeakng-loader (pip install --force-reinstall "
                "espeakng-loader)."
            )

        library.espeak_SetSynthCallback(self.callback)
        logger.debug(
            "eSpeak NG ready at %d Hz, data in %s", self.sample_rate, data_path
        )

    def _collect(self, wav: ctypes._Pointer[ctypes.c_short], count: int, _: int) -> int:
        if wav and count > 0:
            self.chunks.append(ctypes.string_at(wav, count * 2))
        return 0

    def synthesize(self, text: str, voice: EspeakVoice, rate: int) -> bytes:
        if self.library.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
            raise ValueError(f"eSpeak NG has no voice named {voice.name!r}.")

        self.library.espeak_SetParameter(_PARAMETER_RATE, rate, 0)
        self.library.espeak_SetParameter(_PARAMETER_PITCH, voice.pitch, 0)
        self.chunks = []
        encoded = text.encode("utf-8")
        status = self.library.espeak_Synth(
            encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status}.")

        pcm = b"".join(self.chunks)
        self.chunks = []
        return pcm


def _load_library() -> tuple[ctypes.CDLL, str]:
    try:
        import espeakng_loader  # type: ignore[import-untyped]
    except ImportError as error:
        raise ConfigurationError(
            "The local provider needs eSpeak NG from the espeakng-loader package; "
            "install it with: pip install 'esl-assets[local]'."
        ) from error

    library = ctypes.CDLL(espeakng_loader.get_library_path())
    library.espeak_Initialize.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
    ]
    library.espeak_Initialize.restype = ctypes.c_int
    library.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    library.espeak_SetSynthCallback.restype = None
    library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    library.espeak_SetVoiceByName.restype = ctypes.c_int
    library.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    library.espeak_SetParameter.restype = ctypes.c_int
    library.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    library.espeak_Synth.restype = ctypes.c_int
    return library, espeakng_loader.get_data_path()


_ESPEAK_LOCK = threading.Lock()
_espeak: _Espeak | None = None


def _get_espeak() -> _Espeak:
    """Return the process-wide eSpeak NG instance; the caller holds the lock."""
    global _espeak
    if _espeak is None:
        _espeak = _Espeak()
    return _espeak


def synthesize_pcm(
    text: str, voice: str = "alloy", speed: float = 1.0
) -> tuple[bytes, int]:
    """Synthesise ``text`` and return 16-bit little-endian mono PCM and its rate in Hz.

    ``voice`` is an OpenAI voice name (see ``voice_for``) and ``speed`` the
    OpenAI speed factor (see ``rate_for_speed``). The text is read as plain
    UTF-8, so SSML tags are spoken as text. Raises ``ConfigurationError`` when
    espeakng-loader is missing or its data folder is broken.

    NOTE: repeating a call does not give byte-identical audio, and the length
    can differ by a few milliseconds, because eSpeak NG 1.52 keeps its pitch
    flutter position in a static variable that no API call resets.
    """
    espeak_voice = voice_for(voice)
    rate = rate_for_speed(speed)
    with _ESPEAK_LOCK:
        engine = _get_espeak()
        pcm = engine.synthesize(text, espeak_voice, rate)
        sample_rate = engine.sample_rate

    return pcm, sample_rate
