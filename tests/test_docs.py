"""The docs keep up with the code: docs/architecture.md names every module, and no link is broken.

A module is named when docs/architecture.md holds its path: the full path (``planners/base.py``,
``search/model/weights.py``) or, for a module inside a sub-package, its path from its package
(``model/weights.py``, ``cli/__init__.py``). A module at a package's top must be named by its full
path, so that ``errors.py`` alone never counts for every ``errors.py``. ``__init__.py`` files
without code are not modules to name. A path counts only as a whole word: ``remote.py`` is not
named by ``remote_http.py``, nor ``cli/errors.py`` by ``api/cli/errors.py`` of another package.

Links: every relative link in README.md, docs/architecture.md and docs/results.md points to a file
or folder that exists, and a ``#anchor`` into a Markdown file names one of its headings (as GitHub
spells heading anchors).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("search", "sandbox", "scorers", "planners", "api")
ARCHITECTURE = ROOT / "docs" / "architecture.md"
LINKED_DOCS = ("README.md", "docs/architecture.md", "docs/results.md")


def module_files() -> list[Path]:
    """Every module of the five packages, as a path from the repository root (``__init__.py``
    files only when they hold code)."""
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "__init__.py" and not path.read_text(encoding="utf-8").strip():
                continue
            out.append(path.relative_to(ROOT))
    return out


def names_for(module: Path) -> list[str]:
    """The spellings that name ``module`` in the doc.

    >>> names_for(Path("search/model/weights.py"))
    ['search/model/weights.py', 'model/weights.py']
    >>> names_for(Path("planners/base.py"))
    ['planners/base.py']
    """
    full = module.as_posix()
    inside = Path(*module.parts[1:]).as_posix()
    return [full, inside] if len(module.parts) > 2 else [full]


def mentions(text: str, path: str) -> bool:
    """``path`` occurs in ``text`` as a whole path, not as the tail or head of a longer one.

    >>> mentions("see `search/model/remote_http.py`", "model/remote.py")
    False
    >>> mentions("see `model/remote.py`", "model/remote.py")
    True
    >>> mentions("(search/model/remote.py)", "model/remote.py")  # the full path is its own spelling
    False
    """
    return re.search(rf"(?<![\w/.-]){re.escape(path)}(?![\w/])", text) is not None


def unnamed_modules(doc: str) -> list[str]:
    return [m.as_posix() for m in module_files() if not any(mentions(doc, n) for n in names_for(m))]


def test_the_walk_finds_the_packages() -> None:
    files = {m.as_posix() for m in module_files()}
    assert len(files) > 80
    assert {"search/model/weights.py", "api/cli/__init__.py", "planners/__init__.py"} <= files
    assert "search/__init__.py" not in files  # empty


def test_architecture_names_every_module() -> None:
    assert unnamed_modules(ARCHITECTURE.read_text(encoding="utf-8")) == []


def test_a_module_named_only_as_part_of_another_counts_as_unnamed() -> None:
    doc = "`search/model/remote_http.py`, `remote.py`, `base.py`, `api/cli/errors.py`"
    missing = unnamed_modules(doc)
    assert "search/model/remote.py" in missing
    assert "planners/base.py" in missing
    assert "api/http/errors.py" in missing
    assert "search/model/remote_http.py" not in missing


# the sub-packages of the five packages (``model``, ``cli``...), by name
ROOMS = sorted({p.parent.name for pkg in PACKAGES for p in (ROOT / pkg).glob("*/__init__.py")})
MODULE_PATH = re.compile(
    rf"(?<![\w/.-])((?:(?:{'|'.join(PACKAGES)})/)?(?:(?:{'|'.join(ROOMS)})/)?[\w]+\.py)(?![\w/])"
)


def named_paths(doc: str) -> set[str]:
    """Module paths the doc names: full, or from a package (a room's path).

    >>> sorted(named_paths("`search/model/lm.py`, `cli/app.py`, `bench/quality.py`, `base.py`"))
    ['cli/app.py', 'search/model/lm.py']
    """
    found = set()
    for match in MODULE_PATH.finditer(doc):
        path = match.group(1)
        if "/" in path:
            found.add(path)
    return found


def test_architecture_names_no_module_that_does_not_exist() -> None:
    doc = ARCHITECTURE.read_text(encoding="utf-8")
    stale = []
    for path in named_paths(doc):
        top = path.split("/")[0]
        candidates = [ROOT / path] if top in PACKAGES else [ROOT / pkg / path for pkg in PACKAGES]
        if not any(c.is_file() for c in candidates):
            stale.append(path)
    assert sorted(stale) == []


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~)")


def prose(text: str) -> str:
    """``text`` without its fenced code blocks (a ``# comment`` in a shell block is no heading)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return "\n".join(out)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub spells it.

    >>> slug("Scale-out: remote models, a Redis cache, a job queue")
    'scale-out-remote-models-a-redis-cache-a-job-queue'
    >>> slug("Whole-benchmark quality (HumanEval, bundled Qwen2.5-Coder-0.5B-Instruct)")
    'whole-benchmark-quality-humaneval-bundled-qwen25-coder-05b-instruct'
    >>> slug("api/http/: the servers")
    'apihttp-the-servers'
    """
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (a repeated heading gets ``-1``, ``-2``...)."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if not match:
            continue
        base = slug(match.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(doc: Path) -> list[str]:
    """The relative links of ``doc`` whose file does not exist, or whose anchor names no heading."""
    bad = []
    for target in LINK.findall(prose(doc.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            bad.append(f"{target} (no heading of {linked.name} has that anchor)")
    return bad


@pytest.mark.parametrize("doc", LINKED_DOCS)
def test_every_relative_link_points_to_something_that_exists(doc: str) -> None:
    assert broken_links(ROOT / doc) == []


def test_a_broken_link_is_caught(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# A heading\n\n```bash\n# not a heading\n```\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "[ok](there.md) [ok](there.md#a-heading) [web](https://example.com/x) [self](#top)\n"
        "[gone](missing.md) [bad anchor](there.md#not-a-heading)\n\n# Top\n"
    )
    assert broken_links(doc) == [
        "missing.md (no such file)",
        "there.md#not-a-heading (no heading of there.md has that anchor)",
    ]
