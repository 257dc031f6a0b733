"""The documents name only files that exist: every project path in README.md, docs/ and the Ansible READMEs (a
module, a test, a script, a role) is checked against the tree, so a moved or deleted file cannot stay documented."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
DOCUMENTS = [PROJECT / "README.md", PROJECT / "ansible" / "README.md", *sorted((PROJECT / "docs").rglob("*.md")),
             *sorted((PROJECT / "labs").glob("*/README.md"))]
# a path inside the project: a top folder of the tree, then folders and a file with an extension
TOP = "acklab|netns|tests|bench|scripts|ansible|labs"
PATH = re.compile(rf"(?<![\w/.-])((?:{TOP})/[\w./-]*\.(?:py|sh|yml|yaml|md|j2))\b")
# written by a run, not kept in the tree
GENERATED = ("reports/", "ansible/inventory/hosts-ssh.yml")


def documented_paths() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for document in DOCUMENTS:
        for path in PATH.findall(document.read_text()):
            found.setdefault(path.rstrip("."), []).append(str(document.relative_to(PROJECT)))
    return found


def test_documents_name_only_files_that_exist():
    paths = documented_paths()
    assert len(paths) > 50  # the check reads the documents at all
    missing = {path: docs for path, docs in paths.items()
               if not path.startswith(GENERATED) and "*" not in path and not (PROJECT / path).exists()}
    assert missing == {}, "documented but not in the tree: " + "; ".join(
        f"{path} (in {', '.join(sorted(set(docs)))})" for path, docs in sorted(missing.items()))
