"""Sampling profiles of running processes with py-spy, and the top of each as text.

py-spy reads the target's memory from outside (it needs ptrace rights; `--nonblocking` never stops
the target), so the profiled processes run the real code unchanged. Output is py-spy's "raw"
(collapsed stacks) format; `top_functions` turns it into self and inclusive shares per function.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

RATE = 200
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
# py-spy frames read `function (path/to/module.py:123)`; the line number is dropped to group by function.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """Records `pids` (name -> pid) with py-spy while the `with` block runs."""

    def __init__(self, pids: dict[str, int], outdir: Path) -> None:
        self.pids = pids
        self.outdir = outdir
        self.outputs: dict[str, Path] = {}
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Profiler:
        if not self.pids:
            return self
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed (pip install -e '.[bench]')")
        for name, pid in self.pids.items():
            out = self.outdir / f"profile-{name}-{pid}.txt"
            self.outputs[name] = out
            self._procs.append(
                subprocess.Popen(
                    [binary, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw", "--output", str(out),
                     "--nonblocking", "--gil", "--subprocesses"],
                    stdout=subprocess.DEVNULL,
                    stderr=(self.outdir / f"py-spy-{name}.log").open("wb"),
                )
            )
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self._procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass(frozen=True)
class FunctionShare:
    """One function's share of the samples."""

    function: str
    self_share: float
    total_share: float


def _function(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match.group("file")
    # Keep the path from the package down (site-packages/x/y.py -> x/y.py).
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match.group('func')} ({path})"


def read_stacks(path: Path) -> Counter[tuple[str, ...]]:
    """Collapsed stacks -> sample counts (thread and process frames dropped)."""
    stacks: Counter[tuple[str, ...]] = Counter()
    if not path.exists():
        return stacks
    for line in path.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        frames = [f for f in match.group("stack").split(";") if f and not f.startswith(("process ", "thread "))]
        stacks[tuple(_function(f) for f in frames)] += int(match.group("count"))
    return stacks


def top_functions(path: Path, n: int = 15, sort: str = "self") -> tuple[int, list[FunctionShare]]:
    """(samples, the `n` functions with the most self or inclusive samples)."""
    stacks = read_stacks(path)
    total = sum(stacks.values())
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks.items():
        if not frames:
            continue
        own[frames[-1]] += count
        for function in set(frames):
            inclusive[function] += count
    ranked = own if sort == "self" else inclusive
    shares = [
        FunctionShare(f, own[f] / total if total else 0.0, inclusive[f] / total if total else 0.0)
        for f, _ in ranked.most_common(n)
    ]
    return total, shares


def format_top(title: str, path: Path, n: int = 15) -> str:
    """A plain-text table of the top functions by self time and by inclusive time."""
    total, by_self = top_functions(path, n, "self")
    _, by_total = top_functions(path, n, "total")
    lines = [f"{title}: {total} samples at {RATE} Hz ({path.name})", "  self%  total%  function (by self time)"]
    lines += [f"  {s.self_share * 100:5.1f}  {s.total_share * 100:6.1f}  {s.function}" for s in by_self]
    lines += ["  self%  total%  function (by inclusive time)"]
    lines += [f"  {s.self_share * 100:5.1f}  {s.total_share * 100:6.1f}  {s.function}" for s in by_total]
    return "\n".join(lines)
