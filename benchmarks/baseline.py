"""taskfire as it was at a git ref, beside today's in `benchmarks.compare` (the peer
`taskfire-base`): a before/after of a change, measured in the same run, on the same
server, by the same harness.

    python -m benchmarks.compare --baseline REF --libs taskfire,taskfire-base,...

The ref's `taskfire` package is exported (`git archive`) to a directory of its own; that
directory comes first on the path of the peer's driver and workers (their working
directory), and the repository's root second, so they import the old taskfire and
today's benchmark jobs. The old code runs on today's environment (the same Python and
libraries).
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the exports, one directory per commit
CACHE = ROOT / "benchmarks" / "results" / "baseline"


def export(ref: str) -> Path:
    """The directory holding `ref`'s taskfire package (exported once per commit)."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    if commit.returncode != 0:
        raise SystemExit(f"--baseline {ref}: not a commit of this repository ({commit.stderr.strip()})")
    target = CACHE / commit.stdout.strip()[:12]
    if not (target / "taskfire" / "__init__.py").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit.stdout.strip(), "taskfire"], cwd=ROOT,
                                 capture_output=True, check=True)
        archive_path = target / "taskfire.tar"
        archive_path.write_bytes(archive.stdout)
        with tarfile.open(archive_path) as tar:
            tar.extractall(target, filter="data")
        archive_path.unlink()
    return target


def environment(tree: Path) -> dict[str, str]:
    """What the peer's processes run with: the old package first, then the repository."""
    return dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{ROOT}", PYTHONUNBUFFERED="1")
