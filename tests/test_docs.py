"""The front page and the manual in docs/: every relative link and image resolves, every #anchor names a heading.

Fast and without torch: it only reads markdown. Anchors follow GitHub's slug rules (lowercase; characters other
than letters, digits, spaces, hyphens and underscores removed; spaces to hyphens; repeats get -1, -2, ...).
Links inside fenced code blocks and inline code are not links; http(s) and mailto links are not checked.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS] + [ROOT / name for name in ("models/README.md", "images/README.md", "benchmarks/README.md")]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = ("http://", "https://", "mailto:")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before the -1, -2 of repeats)."""
    heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading counts by its text
    heading = re.sub(r"[^\w\- ]", "", heading.lower())
    return heading.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every markdown link and image outside code."""
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        line = INLINE_CODE.sub("code", line)
        found += [(number, match.group(1)) for match in LINK.finditer(line)]
    return found


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for number, target in links(path):
        if target.startswith(EXTERNAL):
            continue
        where = f"{path.relative_to(root)}:{number}: ({target})"
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{where}: no such file or folder {linked}")
        elif anchor:
            if linked.suffix != ".md" or not linked.is_file():
                problems.append(f"{where}: an anchor into something that is not a markdown file")
            elif anchor not in anchors(linked):
                problems.append(f"{where}: no heading of {linked.relative_to(root)} has the anchor #{anchor}")
    return problems


def test_the_slug_rules_are_githubs():
    assert slug("Training: `train.py` (the loss method)") == "training-trainpy-the-loss-method"
    assert slug("CPU (2-core AMD EPYC with AVX-512 and bf16, torch 2.14.1)") == (
        "cpu-2-core-amd-epyc-with-avx-512-and-bf16-torch-2141")
    assert slug("Rendering: `render_image.py` and `render_video.py`") == "rendering-render_imagepy-and-render_videopy"


def test_repeated_headings_get_numbered_anchors_and_code_blocks_hold_no_headings(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Notes\n\n## Notes\n\n```bash\n# not a heading\n```\n\n## Notes\n", encoding="utf-8")
    assert anchors(page) == {"notes", "notes-1", "notes-2"}


def test_a_broken_link_or_anchor_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[ok](other.md#other-page) [ok](#page) ![ok](other.md) [web](https://example.org/x)\n"
                    "[gone](missing.md) [bad](other.md#nowhere) [bad](#nowhere) `[code](missing.md)`\n\n"
                    "```\n[code](missing.md)\n```\n", encoding="utf-8")
    problems = broken_links(page, tmp_path)
    assert len(problems) == 3, problems
    assert "missing.md" in problems[0] and "#nowhere" in problems[1] and "#nowhere" in problems[2]


def test_the_manual_has_its_pages():
    assert {path.name for path in DOCS} >= {"training.md", "rendering.md", "models.md", "performance.md",
                                            "reliability.md", "development.md"}


@pytest.mark.parametrize("path", PAGES, ids=[str(path.relative_to(ROOT)) for path in PAGES])
def test_every_relative_link_and_anchor_resolves(path):
    assert path.is_file()
    assert not broken_links(path), "\n".join(broken_links(path))


@pytest.mark.parametrize("path", DOCS, ids=[path.name for path in DOCS])
def test_every_docs_page_has_a_title_and_links_back_to_the_front_page(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# "), "a docs page starts with its title"
    assert any(target.partition("#")[0] == "../README.md" for _, target in links(path))


def test_the_front_page_is_short_and_shows_a_picture_on_its_first_screen():
    assert README.stat().st_size <= 12_000
    first_screen = README.read_text(encoding="utf-8").splitlines()[:40]
    assert any(re.search(r"!\[[^\]]*\]\([^)\s]+\)", line) for line in first_screen)


TEST_REFERENCE = re.compile(r"\b(tests/test_\w+\.py)::(\w+)")


@pytest.mark.parametrize("path", PAGES, ids=[str(path.relative_to(ROOT)) for path in PAGES])
def test_every_test_the_docs_name_exists(path):
    """The manual proves its claims by naming tests (tests/test_x.py::test_y): each must be a test of that file."""
    missing = []
    for file, name in TEST_REFERENCE.findall(path.read_text(encoding="utf-8")):
        source = ROOT / file
        if not source.is_file() or not re.search(rf"^(async )?def {name}\(", source.read_text(encoding="utf-8"),
                                                  re.MULTILINE):
            missing.append(f"{file}::{name}")
    assert not missing, f"{path.name} names tests that do not exist: {', '.join(missing)}"
