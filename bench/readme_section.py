"""Each benchmark owns one marked section of bench/README.md and rewrites only that."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).with_name("README.md")


def write_section(section: str, begin: str, end: str, readme: Path = README) -> None:
    """Replace the text between `begin` and `end` (markers included in `section`), or append it."""
    text = readme.read_text() if readme.exists() else "# Benchmarks\n\nScripts anyone can run; each compares against a baseline in the same run.\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    readme.write_text(text)
