"""The README is the door: short, the two commands first, and every relative link and image in it resolves.

Fast and without mkdocs: the docs site's own links are checked by `make docs` (mkdocs build --strict).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 300
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target) and ![alt](target)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def readme_links(text: str) -> list[str]:
    """Targets of Markdown links and images outside code blocks and inline code."""
    text = FENCE.sub("", text)
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; move material into docs/ (at most {MAX_LINES})"


def test_readme_starts_with_the_two_commands():
    """A checker clones the repository and runs exactly these two; they come first, before any other text."""
    lines = README.read_text().splitlines()
    body = [line for line in lines if line.strip()]
    assert body[0].startswith("# "), "the README starts with its title"
    assert body[1] == "```bash", "the first block after the title is the commands block"
    assert body[2].startswith("make demo "), body[2]
    assert body[3].startswith("make test "), body[3]
    assert body[4] == "```", "the block holds the two commands only"


def test_readme_relative_links_resolve():
    targets = readme_links(README.read_text())
    assert targets, "the README links into the docs"
    missing = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s)://, mailto: and same-page anchors
        path = unquote(target.split("#", 1)[0])
        if not (ROOT / path).exists():
            missing.append(target)
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_link_finder_sees_links_and_skips_code():
    text = "see [a](docs/a.md) and ![b](docs/b.png)\n```bash\n[c](nowhere.md)\n```\n`[d](x.md)` [e](https://x.org)"
    assert readme_links(text) == ["docs/a.md", "docs/b.png", "https://x.org"]
