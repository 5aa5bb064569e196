"""A Markdown table of mutants per module and status, from `mutmut results --all true`.

A mutant counts as killed when a test failed on it, it timed out, or mypy rejected it
(`make lint` would); it survives when every test that reaches it passed, or when no
selected test reaches it at all. docs/mutation.md records the figures of one run.
"""

import sys
from collections import Counter, defaultdict

KILLED = {"killed", "timeout", "caught by type check"}


def module_of(mutant: str) -> str:
    """'sweeper.pool.xǁJobRunnerǁ_fail__mutmut_9' -> 'sweeper/pool.py'."""
    package, module = mutant.split(".")[:2]
    return f"{package}/{module}.py"


def tally(lines: list[str]) -> dict[str, Counter[str]]:
    """Status counts per module, from lines 'NAME: STATUS'."""
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    for line in sorted(lines):
        name, _, status = line.strip().partition(": ")
        if status:
            by_module[module_of(name)][status] += 1
    return by_module


COLUMNS = ("killed", "caught by type check", "timeout", "survived", "no tests", "not checked")


def main() -> None:
    by_module = tally(sys.stdin.readlines())
    by_module["all"] = sum(by_module.values(), Counter())
    print(
        "| module | mutants | killed by a test | rejected by mypy | timed out | survived "
        "| no test reaches it | not checked | killed |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for module, counts in by_module.items():
        count = sum(counts.values())
        killed = sum(n for status, n in counts.items() if status in KILLED)
        cells = " | ".join(str(counts[status]) for status in COLUMNS)
        print(f"| {module} | {count} | {cells} | {killed / count:.1%} |")


if __name__ == "__main__":
    main()
