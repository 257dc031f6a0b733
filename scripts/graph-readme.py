"""`make graph`: put the default lab's Mermaid picture (argv[1]) into README.md between its markers."""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- acklab graph --format mermaid: begin -->", "<!-- acklab graph --format mermaid: end -->"


def main(mermaid_file: str) -> int:
    text = README.read_text()
    if BEGIN not in text or END not in text:
        print(f"README.md has no {BEGIN} ... {END} markers", file=sys.stderr)
        return 1
    block = f"{BEGIN}\n```mermaid\n{Path(mermaid_file).read_text().rstrip()}\n```\n{END}"
    README.write_text(re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
