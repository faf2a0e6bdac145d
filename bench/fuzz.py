"""The long schema fuzzing run: Schemathesis against the real server over HTTP, every operation
of its OpenAPI schema, every check, valid and invalid data. The in-suite run
(tests/system/test_schema_fuzz.py) is the short version; both read ``schemathesis.toml``.

    python -m bench.fuzz --max-examples 2500 --seed 1     # ``make fuzz``: >= 10,000 cases
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from bench.load import server

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=2500, help="cases per operation and phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    schemathesis = Path(sys.executable).with_name("schemathesis")
    with server({}) as (url, _):
        command = [
            str(schemathesis),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            str(args.max_examples),
            "--seed",
            str(args.seed),
            "--workers",
            str(args.workers),
            "--suppress-health-check",
            "all",
        ]
        print("$", " ".join(command[1:]), flush=True)
        finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    output = finished.stdout + finished.stderr
    print(output[-6000:])
    cases = re.search(r"Test cases:\s*(.*)", output)
    print(f"exit status {finished.returncode}; test cases: {cases.group(1) if cases else 'unknown'}")
    return finished.returncode


if __name__ == "__main__":
    sys.exit(main())
