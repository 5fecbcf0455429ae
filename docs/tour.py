"""Rewrite the README tour's output blocks from a real run: `make readme` (or `python docs/tour.py`).

Every fenced block in README.md whose first line is `$ COMMAND` is a tour step: the command runs from
the repository root (with `.venv/bin`, or this interpreter's folder, first on PATH) and the block is
replaced by the command and what it printed. A block right after `<!-- tour: not run ... -->` is an
illustration (it needs a camera, say) and is left as written. A step that ends with another exit code
than 0 says so on its last line (`[exit 1]`), and `--check` fails when a step's exit code differs.

    python docs/tour.py            # run every step, rewrite README.md
    python docs/tour.py 3 4        # only steps 3 and 4 (numbered from 1, in README order)
    python docs/tour.py --check    # run every step, change nothing, fail on a changed exit code
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"^(<!-- tour: not run[^\n]*-->\n)?```\n(\$ [^\n]+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
EXIT = re.compile(r"^\[exit (\d+)\]$")
LAST_RUN = re.compile(r"^Last run of [^\n]*$", re.MULTILINE)
COLUMNS = 100  # wide enough for the tables, narrow enough for GitHub's code view


@dataclass(frozen=True)
class Step:
    command: str  # without the leading "$ "
    output: str
    start: int  # span of the whole block in the README
    end: int
    run: bool = True  # False: an illustration, parsed by the tests but not run

    @property
    def exit_code(self) -> int:
        lines = self.output.rstrip().splitlines()
        found = EXIT.match(lines[-1]) if lines else None
        return int(found.group(1)) if found else 0


def steps(text: str) -> list[Step]:
    return [Step(m.group(2)[2:], m.group(3), m.start(2) - 4, m.end(), run=m.group(1) is None)
            for m in BLOCK.finditer(text)]


def run(command: str) -> tuple[int, str]:
    """The step's exit code and its stderr + stdout, as a terminal of COLUMNS columns would show it."""
    venv = ROOT / ".venv" / "bin"
    path = [str(venv)] if venv.is_dir() else [str(Path(sys.executable).parent)]
    env = {**os.environ, "PATH": os.pathsep.join([*path, os.environ.get("PATH", "")]),
           "COLUMNS": str(COLUMNS), "TERM": "dumb", "NO_COLOR": "1"}
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    lines = [line.rstrip() for line in done.stdout.splitlines()]
    if done.returncode:
        lines.append(f"[exit {done.returncode}]")
    return done.returncode, "\n".join(lines).strip("\n") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", type=int, help="step numbers to run (default: all)")
    parser.add_argument("--check", action="store_true", help="change nothing; fail on a changed exit code")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    found = steps(text)
    chosen = args.only or [n for n, step in enumerate(found, 1) if step.run]
    if any(not 1 <= n <= len(found) for n in chosen):
        parser.error(f"the README has {len(found)} steps")
    changed = []
    for number in chosen:
        step = found[number - 1]
        if not step.run:
            parser.error(f"step {number} is an illustration (<!-- tour: not run -->)")
        started = time.perf_counter()
        code, output = run(step.command)
        print(f"step {number}: {step.command} -> exit {code} ({time.perf_counter() - started:.0f} s)")
        if code != step.exit_code:
            print(f"  the README says exit {step.exit_code}:\n{output}", file=sys.stderr)
            changed.append(number)
        found[number - 1] = Step(step.command, output, step.start, step.end, step.run)
    if args.check:
        return 1 if changed else 0
    for step in reversed(found):  # from the end, so earlier spans stay valid
        text = text[:step.start] + f"```\n$ {step.command}\n{step.output}```" + text[step.end:]
    load = os.getloadavg()[0]  # the milliseconds above mean little when the machine was busy: say so
    which = f"steps {', '.join(map(str, chosen))}" if args.only else "every step"
    text = LAST_RUN.sub(f"Last run of {which}: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                        f"load average {load:.1f} on {os.cpu_count()} CPUs.", text)
    README.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
