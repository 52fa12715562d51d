"""The README's configuration table and the code read the same variables."""

from __future__ import annotations

import os
import re

from helpers import REPO

CODE_DIRS = ("bus", "services", "qemu_bmc")
PATTERNS = [r'os\.environ\.get\("([A-Z][A-Z0-9_]+)"', r'env\.get\("([A-Z][A-Z0-9_]+)"',
            r'env_(?:str|int|choice)\((?:env|os\.environ), "([A-Z][A-Z0-9_]+)"', r'env\["([A-Z][A-Z0-9_]+)"\]',
            r"env_str\(env, '([A-Z][A-Z0-9_]+)'", r'\bget\("(FRU_[A-Z_]+)"']
NOT_CONFIGURATION = {"CLAB_LABEL_CLAB_NODE_NAME"}  # set by containerlab, documented with NODE_NAME


def variables_in_code() -> set[str]:
    found = set()
    for top in CODE_DIRS:
        for root, _dirs, files in os.walk(os.path.join(REPO, top)):
            for name in files:
                if name.endswith(".py"):
                    with open(os.path.join(root, name)) as f:
                        text = f.read()
                    for pattern in PATTERNS:
                        found.update(re.findall(pattern, text))
    return found - NOT_CONFIGURATION


def variables_in_readme() -> set[str]:
    with open(os.path.join(REPO, "README.md")) as f:
        first_cells = re.findall(r"^\| (`[^|]+) \|", f.read(), re.MULTILINE)
    return {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}


def test_every_variable_the_code_reads_is_documented():
    missing = variables_in_code() - variables_in_readme()
    assert not missing, f"add to README's configuration table: {sorted(missing)}"


def test_every_documented_variable_is_read_somewhere():
    entrypoint_only = {"STATE_DIR", "RUN_DIR", "LOG_DIR", "NATS_LISTEN"}  # also read by Settings
    stale = variables_in_readme() - variables_in_code() - entrypoint_only
    assert not stale, f"README documents variables nothing reads: {sorted(stale)}"


def test_readme_has_the_two_setup_commands():
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"```sh\n(.*?)\n```", setup, re.DOTALL) == ["docker compose up --build",
                                                                  "./tests/run_tests.sh"]
