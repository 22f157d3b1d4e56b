"""README.md and docs/: snippets that show an example file are that file, character for character,
and every relative link points to a file that exists."""

from __future__ import annotations

import re

from conftest import ROOT

README = (ROOT / "README.md").read_text()
#: `<!-- file: PATH -->` right before a fenced block: the block is PATH's whole content.
MARKED = re.compile(r"<!-- file: (\S+) -->\n```\w*\n(.*?)\n```\n", re.S)
FENCE = re.compile(r"```\w*\n(.*?)\n```", re.S)


def test_readme_snippets_are_the_example_files():
    marked = MARKED.findall(README)
    assert {path for path, _ in marked} >= {"examples/chat.js", "examples/python/chat.py", "examples/test_chat.py"}
    for path, block in marked:
        assert block + "\n" == (ROOT / path).read_text(), f"README's copy of {path} differs from the file"
    # a block that names an example file in its first line must be a marked, verbatim copy
    copies = {block for _, block in marked}
    for block in FENCE.findall(README):
        first = block.splitlines()[0] if block else ""
        if re.match(r"\s*(//|#)\s*examples/", first):
            assert block in copies, f"README block starting {first!r} is not a verbatim example file"


def test_readme_and_docs_links_exist():
    for document in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (document.parent / target).exists(), f"{document.relative_to(ROOT)} links to missing {target}"
