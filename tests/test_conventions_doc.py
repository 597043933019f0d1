"""``docs/conventions.md``: every citation ``docs/conventions.md §N`` in the code, the tests, the
README and the documentation pages names a section that exists, and nothing cites the conventions
file outside the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "conventions.md"
CITATION = re.compile(r"docs/conventions\.md §(\d+)((?:(?:–| and |, )§\d+)*)")


def _sources() -> list[Path]:
    return [*sorted((ROOT / "symcost").rglob("*.py")), *sorted((ROOT / "tests").rglob("*.py")), ROOT / "README.md",
            *sorted(p for p in (ROOT / "docs").rglob("*.md") if p.name != "conventions.md")]


def _sections() -> set[int]:
    return {int(n) for n in re.findall(r"^##+ §(\d+) ", DOC.read_text(encoding="utf-8"), flags=re.M)}


def test_sections_are_numbered_one_to_seventeen():
    """The rules keep their numbers (§1-§15), then the deviations (§16) and the time model (§17)."""
    assert _sections() == set(range(1, 18))


def test_every_citation_names_an_existing_section():
    """A citation such as ``docs/conventions.md §13–§14`` or ``§7 and §8`` names real sections."""
    sections = _sections()
    cited: list[tuple[str, int]] = []
    for path in _sources():
        for match in CITATION.finditer(path.read_text(encoding="utf-8")):
            numbers = [int(match.group(1))] + [int(n) for n in re.findall(r"§(\d+)", match.group(2))]
            cited += [(path.name, n) for n in numbers]
    assert cited, "no citations found: the pattern is wrong"
    assert [c for c in cited if c[1] not in sections] == []


def test_no_citation_of_the_old_conventions_file():
    """The numbered items of a file outside the repository are no longer cited."""
    stale = [p.name for p in _sources() if re.search(r"CONVENTIONS(\.md| item)", p.read_text(encoding="utf-8"))]
    assert stale == []


def test_every_chip_setting_is_in_the_time_models_table():
    """Each optional field of a chip (all but the datasheet's figures, which every chip file gives,
    and the runtime, its own table) has a row in §17's chip-field table: a field a preset sets that
    the conventions do not describe is a rule the reader cannot check."""
    from symcost.hardware import Hardware

    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("## §17 "):]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`([a-z_0-9]+)`", row.split(" | ")[0])}
    optional = {f for f, info in Hardware.model_fields.items() if not info.is_required() and f != "runtime"}
    assert sorted(optional - named) == []
