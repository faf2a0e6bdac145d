"""The project's documentation as markdown-it-py reads it: its pages, their code blocks (with the
output each shows and whether it is run), their links and their headings' anchors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from tests.support.paths import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

RUNNABLE_LANGUAGES = ("bash", "python")
"""Blocks in these languages are run, unless a ``<!-- not run: why -->`` comment stands right before."""
OUTPUT_LANGUAGES = ("json", "text", "")
"""A block in one of these that starts on the line after a runnable block ends is its output."""

NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")
_PARSER = MarkdownIt("commonmark").enable("table")


@dataclass(frozen=True)
class CodeBlock:
    page: Path
    line: int
    """1-based line of the opening fence."""
    language: str
    code: str
    not_run: str | None
    """Why it is not run, from the comment right before it; None: it is run."""
    output: str | None
    """The block right after it, shown as what it prints; None when there is none."""
    output_language: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def tokens(page: Path) -> list[Token]:
    return _PARSER.parse(page.read_text())


def code_blocks(page: Path) -> list[CodeBlock]:
    """Every runnable-language block of ``page``, in order."""
    found = []
    top = [token for token in tokens(page) if token.level == 0]
    for index, token in enumerate(top):
        language = token.info.split()[0] if token.info.strip() else ""
        if token.type != "fence" or language not in RUNNABLE_LANGUAGES or token.map is None:
            continue
        before = top[index - 1] if index else None
        marker = NOT_RUN.fullmatch(before.content.strip()) if before and before.type == "html_block" else None
        after = top[index + 1] if index + 1 < len(top) else None
        output = None
        output_language = ""
        if after is not None and after.type == "fence" and after.map is not None and after.map[0] == token.map[1]:
            output_language = after.info.strip()
            if output_language in OUTPUT_LANGUAGES:
                output = after.content
        found.append(
            CodeBlock(
                page=page,
                line=token.map[0] + 1,
                language=language,
                code=token.content,
                not_run=marker[1] if marker else None,
                output=output,
                output_language=output_language,
            )
        )
    return found


def _inline_text(token: Token) -> str:
    return "".join(child.content for child in token.children or [] if child.type in ("text", "code_inline"))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces as ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of every heading of ``page``; a repeated heading gets ``-1``, ``-2``... as on GitHub."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    page_tokens = tokens(page)
    for index, token in enumerate(page_tokens):
        if token.type != "heading_open":
            continue
        anchor = github_anchor(_inline_text(page_tokens[index + 1]))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def links(page: Path) -> list[str]:
    """Every link and image target of ``page``."""
    found = []
    for token in tokens(page):
        for child in token.children or []:
            target = child.attrGet("href") if child.type == "link_open" else child.attrGet("src")
            if child.type in ("link_open", "image") and isinstance(target, str):
                found.append(target)
    return found


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` that name a missing file, or a heading its page does not have."""
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not this repository's
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
            broken.append(f"{target}: no heading with the anchor #{anchor}")
    return broken
