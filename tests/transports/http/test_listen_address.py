"""Where the server listens, as the README and its settings page (docs/settings.md) say it: the
settings default (``python -m app.serve``), ``make run`` (``scripts/serve``, whose own line is run
here to read its default) and the image."""

from __future__ import annotations

import os
import re
import subprocess

from app.core.config import Settings
from tests.support.container import container
from tests.support.paths import ROOT

README = (ROOT / "README.md").read_text()
SETTINGS_PAGE = (ROOT / "docs" / "settings.md").read_text()


def serve_script_address() -> str:
    """What ``scripts/serve`` exports as TORCHFN_HOST when neither it nor HOST is set."""
    (line,) = [line for line in (ROOT / "scripts" / "serve").read_text().splitlines() if "TORCHFN_HOST=" in line]
    env = {key: value for key, value in os.environ.items() if key not in ("HOST", "TORCHFN_HOST")}
    run = subprocess.run(["bash", "-c", f'{line}\necho "$TORCHFN_HOST"'], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def settings_row(name: str) -> tuple[str, str]:
    """(default, description) of a setting in the settings table (docs/settings.md)."""
    match = re.search(rf"^\| `{name}` \| `([^`]*)` \| (.*) \|$", SETTINGS_PAGE, re.M)
    assert match, f"{name} has no row in the settings table"
    return match[1], match[2]


def test_the_readme_says_where_each_way_of_running_listens() -> None:
    default, description = settings_row("TORCHFN_HOST")
    assert default == Settings.model_fields["host"].default
    make_run = serve_script_address()
    image = container().env["TORCHFN_HOST"]
    assert make_run == image == "0.0.0.0"  # both serve other machines; the bare command serves loopback only
    assert f"`make run` (`scripts/serve`) and the image set `{make_run}`" in description
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    (run_line,) = [line for line in first_block.splitlines() if line.startswith("make run")]
    assert f"listens on {make_run}:{Settings.model_fields['port'].default}" in run_line
    assert f"listening on every interface (`{make_run}`, as the image does)" in " ".join(README.split())
