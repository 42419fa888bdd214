"""`python -m bench.fuzz --minutes N`: the long API fuzzing run (CI runs a bounded one).

Runs tests/reliability/test_api_fuzz.py under pytest (a throw-away test database, a real
merchant key, every operation of the live schema) round after round, each round with a new
random seed and FUZZ_EXAMPLES examples per operation, until N minutes have passed. Prints per
round and at the end: rounds, operations run, failures (5xx, schema violations) and the
seeds that failed, so a finding can be replayed with `FUZZ_RANDOM=1 FUZZ_EXAMPLES=<n>
python -m pytest tests/reliability/test_api_fuzz.py --hypothesis-seed=<seed>`.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST = "tests/reliability/test_api_fuzz.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to keep fuzzing (default 10)")
    parser.add_argument("--examples", type=int, default=500, help="examples per operation per round")
    args = parser.parse_args(argv)

    deadline = time.monotonic() + args.minutes * 60
    rounds = passed = failed = 0
    failing_seeds: list[int] = []
    while True:
        seed = random.SystemRandom().randrange(2**31)
        env = dict(os.environ, FUZZ_EXAMPLES=str(args.examples), FUZZ_RANDOM="1")
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
             f"--hypothesis-seed={seed}", TEST],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )
        rounds += 1
        counts = dict((k, int(v)) for v, k in re.findall(r"(\d+) (passed|failed|error)", proc.stdout))
        passed += counts.get("passed", 0)
        failed += counts.get("failed", 0) + counts.get("error", 0)
        if proc.returncode != 0:
            failing_seeds.append(seed)
            report = ROOT / "var" / f"fuzz-{seed}.txt"
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(proc.stdout + proc.stderr)
            print(f"round {rounds}: seed {seed}: FAILED, details in {report}", flush=True)
        else:
            print(f"round {rounds}: seed {seed}: ok ({counts.get('passed', 0)} operations, "
                  f"{time.monotonic() - started:.0f}s)", flush=True)
        if time.monotonic() >= deadline:
            break
    print(f"fuzz: {rounds} rounds, {args.examples} examples per operation per round, "
          f"{passed} operations passed, {failed} failed, failing seeds: {failing_seeds or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
