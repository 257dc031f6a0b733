"""docs/provider.md's tables of what the plugin implements, and README's summary of them, are generated from the
code and kept in step with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from acklab.provider import server, table

DOC = Path(__file__).resolve().parents[2] / "docs" / "provider.md"
README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_documented_tables_are_the_generated_ones():
    text = DOC.read_text()
    assert table.replace_in(text) == text, "stale: run python -m acklab.provider.table --write docs/provider.md"


def test_every_kind_and_data_source_has_a_row():
    assert len(table.resources_table().splitlines()) == 2 + len(server.KINDS)
    assert len(table.kept_table().splitlines()) == 2 + len(server.KINDS)
    assert len(table.data_sources_table().splitlines()) == 2 + len(server.FUNCTIONS)
    assert "| `slb.Listener` |" in table.generated() and "| `ecs.get_images` |" in table.generated()


def test_every_kinds_declared_arguments_are_the_sdks():
    for token, kind in server.KINDS.items():
        names = kind.schema.inputs
        declared = (*kind.replace_on, *kind.computed, *kind.defaults, *kind.lab_required, *kind.unsupported,
                    *kind.realized, *kind.not_imported)
        assert [f for f in declared if f not in names] == [], token


def test_the_readmes_summary_is_the_generated_one():
    text = README.read_text()
    if table.README_BEGIN not in text:
        pytest.skip(f"README.md has no {table.README_BEGIN} ... {table.README_END} markers yet")
    assert table.replace_in_readme(text) == text, \
        "stale: run python -m acklab.provider.table --write-readme README.md"


def test_the_readme_summary_replaces_only_what_lies_between_its_markers():
    text = f"prose before\n{table.README_BEGIN}\nold table\n{table.README_END}\nprose after\n"
    written = table.replace_in_readme(text)
    assert written.startswith(f"prose before\n{table.README_BEGIN}\n") and written.endswith(
        f"{table.README_END}\nprose after\n")
    assert "old table" not in written and "| `vpc.ForwardEntry` |" in written and "`kms.get_keys`" in written
    assert table.replace_in_readme(written) == written  # stable
    assert len([line for line in table.summary_table().splitlines() if line.startswith("| `")]) == len(server.KINDS)
    with pytest.raises(ValueError, match="markers"):
        table.replace_in_readme("no markers")
