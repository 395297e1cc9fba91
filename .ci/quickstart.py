"""Print the README's quick-start commands, one per line, exactly as a newcomer reads them.

CI runs these very commands (not copies), so the README's set-up is proven on every landing.
Usage: python3 .ci/quickstart.py README.md [N]   (N: print only the Nth command, 1-based)
"""

from __future__ import annotations

import re
import sys


def commands(text: str) -> list[str]:
    section: list[str] = []
    inside = False
    for line in text.splitlines():
        if re.match(r"#{1,6}\s", line):
            if inside:
                break
            inside = bool(re.match(r"#{1,6}\s*quick\s*start", line, re.IGNORECASE))
            continue
        if inside:
            section.append(line)
    blocks: list[list[str]] = []
    fence = False
    for line in section:
        if line.strip().startswith("```"):
            fence = not fence
            if fence:
                blocks.append([])
            continue
        if fence:
            blocks[-1].append(line)
    found = []
    for block in blocks:
        joined = "\n".join(block).replace("\\\n", " ")
        lines = [ln.strip().removeprefix("$ ") for ln in joined.splitlines()]
        found.append(" && ".join(ln for ln in lines if ln and not ln.startswith("#")))
    return found


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        cmds = commands(handle.read())
    if len(cmds) != 2:
        sys.exit(f"README quick start must hold exactly two commands, found {len(cmds)}")
    if len(sys.argv) > 2:
        print(cmds[int(sys.argv[2]) - 1])
    else:
        print("\n".join(cmds))
