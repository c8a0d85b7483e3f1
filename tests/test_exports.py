"""The public API: ``esl_assets.__all__`` and its type information."""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path

import esl_assets
import esl_assets.errors

#: Names a library user needs. ``__all__`` may contain more.
REQUIRED_NAMES = {
    "AccountError",
    "AssetKind",
    "BuildReport",
    "ConfigurationError",
    "EslAssetsError",
    "JobResult",
    "Settings",
    "Status",
    "abuild",
    "build",
}


def test_all_sorted() -> None:
    assert esl_assets.__all__ == sorted(esl_assets.__all__)


def test_all_unique() -> None:
    assert len(esl_assets.__all__) == len(set(esl_assets.__all__))


def test_all_names_exist() -> None:
    for name in esl_assets.__all__:
        assert hasattr(esl_assets, name), name


def test_public_names_in_all() -> None:
    public = {
        name
        for name, value in vars(esl_assets).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - set(esl_assets.__all__) == set()


def test_required_names_in_all() -> None:
    assert REQUIRED_NAMES - set(esl_assets.__all__) == set()


def test_every_error_exported() -> None:
    errors = {
        name
        for name, value in vars(esl_assets.errors).items()
        if isinstance(value, type) and issubclass(value, esl_assets.EslAssetsError)
    }
    assert errors - set(esl_assets.__all__) == set()


def test_py_typed_shipped() -> None:
    assert (Path(esl_assets.__file__).parent / "py.typed").is_file()


def test_entry_points_fully_annotated() -> None:
    for function in (esl_assets.build, esl_assets.abuild):
        signature = inspect.signature(function)
        for parameter in signature.parameters.values():
            assert parameter.annotation is not inspect.Parameter.empty, parameter.name
        assert signature.return_annotation is not inspect.Signature.empty
        hints = typing.get_type_hints(function)
        assert hints["return"] is esl_assets.BuildReport


def test_abuild_is_coroutine_function() -> None:
    assert inspect.iscoroutinefunction(esl_assets.abuild)
    assert not inspect.iscoroutinefunction(esl_assets.build)


def test_build_and_abuild_take_same_parameters() -> None:
    build = inspect.signature(esl_assets.build).parameters
    abuild = inspect.signature(esl_assets.abuild).parameters
    assert list(build) == list(abuild)


def test_every_name_in_all_resolves() -> None:
    # Most names load lazily on first access; each must exist.
    for name in esl_assets.__all__:
        assert getattr(esl_assets, name) is not None, name


def test_help_does_not_import_openai() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from esl_assets.cli import build_parser; build_parser(); "
        "print('openai' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
