"""The last line of `make mutation`: how many of the mutants in scope the tests killed.

Reads mutmut's own results (mutants/<path>.meta, written by `mutmut run`) for the mutants whose
names match the globs given (the Makefile's MUTATION_SCOPE), and prints each one not killed, then
``mutation: <killed> of <total> killed (<percent>%)``. "Killed" is what mutmut's own score counts
as caught: a test failed, or the run timed out (an endless loop is caught). A mutant that
survived, that no test ran ("no tests") or that made a test act oddly ("suspicious") is not.
Exits 1 when a mutant in scope was never checked (the run was cut short).
"""

from __future__ import annotations

import fnmatch
import json
import sys
from pathlib import Path

from mutmut.stats import status_by_exit_code

CAUGHT = {"killed", "timeout", "caught by type check"}


def main(globs: list[str]) -> int:
    statuses: dict[str, str] = {}
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        for name, exit_code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in globs):
                statuses[name] = status_by_exit_code[exit_code]
    unchecked = sorted(name for name, status in statuses.items() if status == "not checked")
    for name, status in sorted(statuses.items()):
        if status not in CAUGHT:
            sys.stdout.write(f"    {name}: {status}\n")
    if not statuses or unchecked:
        sys.stdout.write(f"mutation: {len(unchecked)} of {len(statuses)} mutants in scope were never checked\n")
        return 1
    killed = sum(1 for status in statuses.values() if status in CAUGHT)
    sys.stdout.write(f"mutation: {killed} of {len(statuses)} killed ({100 * killed / len(statuses):.1f}%)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
