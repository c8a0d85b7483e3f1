"""esl-assets: dictionary entries to audio and images.

``build()`` runs a build from a script or a notebook and ``abuild()`` from
async code; both return a ``BuildReport``.
"""

from .api import abuild, build
from .errors import (
    AccountError,
    ConfigurationError,
    DictionaryError,
    EslAssetsError,
    QueueError,
    ResumeError,
)
from .jobs import AssetKind, Job, JobResult, Status
from .pipeline import BuildObserver
from .report import BuildReport
from .settings import Settings

__all__ = [
    "AccountError",
    "AssetKind",
    "BuildObserver",
    "BuildReport",
    "ConfigurationError",
    "DictionaryError",
    "EslAssetsError",
    "Job",
    "JobResult",
    "QueueError",
    "ResumeError",
    "Settings",
    "Status",
    "abuild",
    "build",
]
