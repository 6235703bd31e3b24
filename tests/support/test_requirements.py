"""A missing environment thing skips a test and says why, unless ENGINESHED_REQUIRE makes it a must: then it fails."""

from __future__ import annotations

import pytest

from tests.support import requirements
from tests.support.requirements import REQUIRE, need, shared_file


def test_without_the_variable_a_missing_thing_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="espeak-ng is not installed"):
        need("espeak-ng", "espeak-ng is not installed")


@pytest.mark.parametrize("value", ["chromium", "espeak-ng, chromium", "all"])
def test_a_required_thing_that_is_missing_fails(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(REQUIRE, value)
    with pytest.raises(pytest.fail.Exception, match=r"chromium is required here .* but missing: no browser"):
        need("chromium", "no browser")


def test_requiring_one_thing_leaves_the_others_skipping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE, "registry")
    with pytest.raises(pytest.skip.Exception):
        need("podman", "podman is not installed")


def test_a_name_it_does_not_know_is_a_mistake_in_the_test() -> None:
    with pytest.raises(AssertionError, match="unknown environment requirement 'chrome'"):
        need("chrome", "typo")


def test_a_missing_reference_document_skips_naming_the_path(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv(REQUIRE, raising=False)
    monkeypatch.setattr(requirements, "SHARED", tmp_path / "shared")
    with pytest.raises(pytest.skip.Exception, match=r"reference documents .*shared/seeds/000\.txt is missing"):
        shared_file("seeds", "000.txt")
    (tmp_path / "shared" / "seeds").mkdir(parents=True)
    (tmp_path / "shared" / "seeds" / "000.txt").write_text("seed")
    assert shared_file("seeds", "000.txt").read_text() == "seed"
