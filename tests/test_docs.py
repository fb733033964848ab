"""The user-facing documents (README.md, docs/*.md) stay inside the repository and name only files that exist.

Users get the repository and nothing beside it, so a pointer to the development specs (``../shared/...``) is a
dead link for them; and a path that names a moved or deleted file is a wrong instruction. Checked: no such
pointer; every repository path mentioned (``docs/x.md``, ``deepcascade/.../x.py``, ``benchmarks/x.py``,
``tests/x.py``, and folders under those) exists; every relative Markdown link resolves, including its
``#anchor`` when it points into a Markdown file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FORBIDDEN = ("../shared", "shared/spec")
# A path from the repository root: one of these folders, then path characters. Not preceded by a path character,
# so ``../x/deepcascade/y.py`` or ``/abs/deepcascade/y.py`` are not read as repository paths.
REPO_PATH = re.compile(r"(?<![\w/.-])(?:docs|deepcascade|benchmarks|tests)/[\w./-]*")
# Inline Markdown links and images: [text](target) / ![alt](target); the target ends at whitespace or ')'.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
FENCE = re.compile(r"^(```|~~~)")


def repo_paths(text: str) -> list[str]:
    """Repository paths mentioned in ``text``, without a trailing sentence dot."""
    return [m.group(0).rstrip(".") for m in REPO_PATH.finditer(text)]


def relative_links(text: str) -> list[str]:
    """Targets of Markdown links that are neither URLs nor in-page anchors."""
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Anchors of every heading outside fenced code blocks (repeated headings get -1, -2, ... as on GitHub)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m and not in_fence:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            found.add(s if n == 0 else f"{s}-{n}")
    return found


def problems(doc: Path, text: str) -> list[str]:
    """Everything wrong with ``text`` (the content of ``doc``): forbidden pointers, missing paths, dead links."""
    out = [f"{doc.name}: points outside the repository ({bad!r})" for bad in FORBIDDEN if bad in text]
    for p in repo_paths(text):
        if not (ROOT / p).exists():
            out.append(f"{doc.name}: names {p}, which does not exist")
    for target in relative_links(text):
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            out.append(f"{doc.name}: link {target} -> {dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
            out.append(f"{doc.name}: link {target}: no heading with anchor #{anchor} in {dest.name}")
    return out


def test_the_documents_exist():
    names = {d.relative_to(ROOT).as_posix() for d in DOCS}
    assert {"README.md", "docs/method.md", "docs/measurements.md", "docs/training.md", "docs/inference.md",
            "docs/evaluation.md", "docs/datasets.md", "docs/failures.md", "docs/history.md"} <= names


def test_readme_is_short_and_starts_with_the_two_set_up_commands():
    """At most 200 lines; the demo and test commands, exactly, in its first screen; no link out of the repository."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    first_screen = "\n".join(readme.splitlines()[:40])
    assert "pip install -e . && deepcascade demo --out demo_out" in first_screen
    assert "pip install -e '.[test]' && python -m pytest -q" in first_screen
    assert "http://" not in readme and "https://" not in readme


def test_failure_table_lives_in_docs_and_names_its_tests():
    """The failure table moved to docs/failures.md: a table of cases whose intro names the tests that check them."""
    text = (ROOT / "docs" / "failures.md").read_text(encoding="utf-8")
    assert "| case | what happens |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) > 30
    named = [p for p in repo_paths(text) if p.startswith("tests/test_")]
    assert "tests/test_no_traceback.py" in named and len(named) >= 10


def layout_names(readme: str) -> set[str]:
    """Module (``x.py``) and folder (``x/``) names in the README's Layout block."""
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    return set(re.findall(r"(?<![\w/.-])([a-z_][a-z0-9_]*\.py|[a-z_][a-z0-9_]*/)", block))


def test_readme_layout_names_only_what_exists():
    """Every module and folder the Layout block names exists in the tree (tests/test_architecture.py checks the
    other way: every top-level entry of the package is named)."""
    roots = [ROOT / "deepcascade", ROOT / "tests", ROOT / "benchmarks", ROOT / "docs"]
    files = {p.name for r in roots for p in r.rglob("*.py")}
    folders = {p.name + "/" for r in roots for p in r.rglob("*") if p.is_dir() and p.name != "__pycache__"}
    folders |= {r.name + "/" for r in roots}
    names = layout_names((ROOT / "README.md").read_text(encoding="utf-8"))
    assert {"deepcascade/", "cli.py", "commands/", "tests/"} <= names  # the extraction is not vacuous
    assert layout_names("## Layout\n```\nno_such/ gone.py KID/FID\n```\n") == {"no_such/", "gone.py"}
    missing = sorted(n for n in names if n not in files and n not in folders)
    assert not missing, f"README's Layout section names what does not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.relative_to(ROOT).as_posix())
def test_document_stays_inside_the_repository_and_names_existing_files(doc):
    assert problems(doc, doc.read_text(encoding="utf-8")) == []


def test_readme_lists_every_document_in_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for doc in DOCS[1:]:
        assert f"docs/{doc.name}" in readme, f"README.md does not mention docs/{doc.name}"


def test_the_checks_find_what_they_look_for():
    """The extraction is not vacuous: it finds the README's real references and reports made-up ones."""
    readme = ROOT / "README.md"
    assert {"docs/method.md", "docs/measurements.md", "docs/demo.png"} <= set(repo_paths(readme.read_text(encoding="utf-8")))
    bad = ("See ../shared/spec/METHOD.md, `deepcascade/no_such_module.py`, tests/test_docs.py.\n"
           "[a](docs/method.md#no-such-heading) [b](docs/missing.md) [c](https://example.org/x.md) "
           "[d](docs/method.md#1-feature-hierarchy-and-normalization)\n")
    found = problems(readme, bad)
    assert any("'../shared'" in p for p in found) and any("'shared/spec'" in p for p in found)
    assert any("deepcascade/no_such_module.py" in p for p in found)
    assert any("#no-such-heading" in p for p in found)
    assert any("docs/missing.md" in p for p in found)
    assert not any("tests/test_docs.py" in p or "example.org" in p or "1-feature-hierarchy" in p for p in found)
    assert len(found) == 6, found  # missing.md counts twice: as a named path and as a link


def test_heading_anchors_follow_github():
    md = "# A. B (c, d, …)\n```\n# not a heading\n```\n## Demo\n## Demo\n"
    assert anchors(md) == {"a-b-c-d-", "demo", "demo-1"}
