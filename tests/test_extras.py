"""Importing an optional extra: the module, or an error that names the extra to install."""

from __future__ import annotations

import json

import pytest

from llmc._extras import install_hint, require
from llmc.errors import LLMCError, ModelLoadError


def test_require_returns_the_module() -> None:
    assert require("json", extra="none", needed_by="test") is json


def test_a_missing_module_names_what_needs_it_and_the_extra() -> None:
    with pytest.raises(ImportError) as caught:
        require("llmc_no_such_module.inner", extra="semantic", needed_by="The embedder")
    message = str(caught.value)
    assert message.startswith("The embedder needs llmc_no_such_module (")
    assert message.endswith(install_hint("semantic"))
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


@pytest.mark.parametrize("error", [LLMCError, ModelLoadError])
def test_the_error_can_be_one_of_llmcs_own(error: type[Exception]) -> None:
    with pytest.raises(error, match=r"needs the SDK \(.*\.\[mcp\]"):
        require("llmc_no_such_module", extra="mcp", needed_by="x", package="the SDK", error=error)
