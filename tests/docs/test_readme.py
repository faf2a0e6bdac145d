"""The settings page documents every setting, and the README's commands are the ones CI and the scripts run."""

from __future__ import annotations

import re

from app.core.config import Settings
from tests.support.paths import ROOT

README = (ROOT / "README.md").read_text()
SETTINGS_PAGE = (ROOT / "docs" / "settings.md").read_text()


def test_settings_table_lists_every_setting() -> None:
    table = SETTINGS_PAGE.split("<!-- settings-table -->")[1].split("<!-- /settings-table -->")[0]
    documented = set(re.findall(r"`TORCHFN_([A-Z_]+)`", table))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_readme_opens_with_the_run_and_test_commands() -> None:
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
