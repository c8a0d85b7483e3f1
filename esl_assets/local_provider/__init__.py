"""The offline ``local`` provider: an httpx2 transport that imitates the API.

It serves ``POST /v1/audio/speech`` with eSpeak NG and PyAV and
``POST /v1/images/generations`` with Pillow picture cards, so the tool runs
with no API key and no network. It needs the ``local`` extra:
``pip install 'esl-assets[local]'`` (espeakng-loader, av, pillow).
"""

from esl_assets.local_provider.card import draw_card, parse_size
from esl_assets.local_provider.encode import (
    encode_audio,
    resolve_audio_format,
    supported_audio_formats,
)
from esl_assets.local_provider.speech import synthesize_pcm, voice_for
from esl_assets.local_provider.transport import (
    LOCAL_API_KEY,
    LOCAL_BASE_URL,
    LocalTransport,
    check_dependencies,
    create_local_client,
)

__all__ = [
    "LOCAL_API_KEY",
    "LOCAL_BASE_URL",
    "LocalTransport",
    "check_dependencies",
    "create_local_client",
    "draw_card",
    "encode_audio",
    "parse_size",
    "resolve_audio_format",
    "supported_audio_formats",
    "synthesize_pcm",
    "voice_for",
]
