"""What a Python process imported, read from its `-X importtime` (or PYTHONPROFILEIMPORTTIME) output."""

from __future__ import annotations

import re

_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", re.MULTILINE)


def top_level_packages(stderr: str) -> set[str]:
    """The top-level packages the process imported (a process of ours always imports `console`)."""
    names = {m.group(1).split(".")[0] for m in _LINE.finditer(stderr)}
    assert "console" in names, "importtime printed nothing"
    return names
