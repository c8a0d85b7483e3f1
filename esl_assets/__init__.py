"""esl-assets: dictionary entries to audio and images.

``build()`` runs a build from a script or a notebook and ``abuild()`` from
async code; both return a ``BuildReport``.
"""

import typing as _typing

from .errors import (
    AccountError,
    ConfigurationError,
    DictionaryError,
    EslAssetsError,
    QueueError,
    ResumeError,
)

if _typing.TYPE_CHECKING:
    from .api import abuild, build
    from .jobs import AssetKind, Job, JobResult, Status
    from .pipeline import BuildObserver
    from .report import BuildReport
    from .settings import Settings

# The other public names load on first use, because importing them pulls in
# the openai SDK (about 0.3 s), which `esl-assets --help` does not need.
_LAZY_NAMES = {
    "abuild": "api",
    "build": "api",
    "AssetKind": "jobs",
    "Job": "jobs",
    "JobResult": "jobs",
    "Status": "jobs",
    "BuildObserver": "pipeline",
    "BuildReport": "report",
    "Settings": "settings",
}


def __getattr__(name: str) -> _typing.Any:
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'esl_assets' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


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
