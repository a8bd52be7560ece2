"""Every command the front page and the manual show still works as written: each `python SCRIPT.py ...` (or
`torchrun ... SCRIPT.py ...`) in their shell blocks names a script that exists, and its flags parse with that
script's parser today; each `bash SCRIPT.sh` names a script that exists. (Running them needs COCO, real weights or
minutes; the tests of each script run them on small inputs.)"""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*(```|~~~)")


def shell_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, command) in the page's fenced code blocks, continuation lines joined."""
    found, fenced, pending, start = [], False, "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        found.append((start, pending + line))
        pending = ""
    return found


def commands() -> list[tuple[str, list[str]]]:
    """(where, words from the script on) of every command that runs one of the suite's scripts."""
    found = []
    for page in PAGES:
        for number, line in shell_lines(page):
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            scripts = [i for i, word in enumerate(words) if re.fullmatch(r"[\w./-]+\.(py|sh)", word)]
            if scripts and (words[0] in ("python", "python3", "torchrun", "bash") or "=" in words[0]):
                found.append((f"{page.relative_to(ROOT)}:{number}", words[scripts[0]:]))
    return found


COMMANDS = commands()


def test_the_pages_show_commands():
    assert len(COMMANDS) >= 20
    assert {"train.py", "distillation.py", "render_image.py", "render_video.py"} <= {w[0] for _, w in COMMANDS}


@pytest.mark.parametrize("where,words", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_a_documented_command_names_a_script_that_exists_and_its_flags_parse(where, words):
    script, args = ROOT / words[0], words[1:]
    assert script.is_file(), f"{where}: no {words[0]}"
    if script.suffix == ".sh" or "..." in args or any(word.startswith("$") for word in args):
        return  # a shell script's flags pass through to a Python one; "..." stands for the flags shown before
    spec = importlib.util.spec_from_file_location(f"documented_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "build_parser"):
        return
    if "--list-styles" in args:  # answered before the parser, which would ask for the render's paths
        module.main(args)
        return
    passes_flags_on = script.name == "sweep.py"  # what it does not know goes to train.py: checked there
    try:
        if passes_flags_on:
            args = module.build_parser().parse_known_args(args)[1]
            module = importlib.import_module("train")
            args = [*args, "--datapath", "x", "--stylepath", "y"] if "--datapath" not in args else args
        module.build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"{where}: {shlex.join(words)} is refused by the parser (exit {exc.code})")
