"""Every relative link of the README and of docs/*.md reaches a file, and every #anchor a heading."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.markdown_docs import PAGES, anchors, broken_links, github_anchor, links
from tests.support.paths import ROOT


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_relative_link_reaches_its_file_and_heading(page: Path) -> None:
    assert broken_links(page) == []


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    reached = {(ROOT / target.partition("#")[0]).resolve() for target in links(ROOT / "README.md")}
    unlinked = [page.name for page in PAGES[1:] if page.resolve() not in reached]
    assert unlinked == []


def test_anchors_are_githubs() -> None:
    assert github_anchor("Processes, threads and shutdown") == "processes-threads-and-shutdown"
    assert github_anchor("The `torchfn` command") == "the-torchfn-command"
    assert github_anchor("Speed of the Open Inference Protocol") == "speed-of-the-open-inference-protocol"


def test_the_check_finds_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A part\n\n## A part\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#a-part) [ok](other.md#a-part-1) [ok](#page) [ok](https://example.org/x#y)\n"
        "[gone](missing.md) [no heading](other.md#no-part) [not here](#nowhere) ![img](missing.png)\n"
    )
    assert anchors(tmp_path / "other.md") == {"other", "a-part", "a-part-1"}
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#no-part: no heading with the anchor #no-part",
        "#nowhere: no heading with the anchor #nowhere",
        "missing.png: no such file",
    ]
