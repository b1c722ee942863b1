"""The second benchmark environment: taskiq (taskiq-redis), BullMQ for Python and streaq.

    python -m benchmarks.env2 [--rebuild] [--python PYTHON]

They need redis-py >= 8 and arq, in the main environment, pins redis-py < 6, so they get a
virtual environment of their own, `.venv-bench2` at the repository root (or the directory
BENCH_ENV2 names), with the versions of benchmarks/constraints-bench2.txt. The harness
(`benchmarks.compare`) never imports them: it drives their enqueue side through
`benchmarks.driver` and starts their workers with this environment's interpreter. This
module uses the standard library only, so that the harness can ask it where that
interpreter is and whether a library is installed there.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("BENCH_ENV2") or ROOT / ".venv-bench2")
CONSTRAINTS = ROOT / "benchmarks" / "constraints-bench2.txt"
BUILD_COMMAND = (f"BENCH_ENV2={VENV} " if os.environ.get("BENCH_ENV2") else "") + "python -m benchmarks.env2"

#: what each library of this environment needs installed (hiredis: redis-py's reply
#: parser, as in the main environment, where taskfire depends on it)
PACKAGES = {"taskiq": ["taskiq", "taskiq-redis"], "bullmq": ["bullmq"], "streaq": ["streaq"]}
EXTRA = ["hiredis"]
#: the module whose import proves a library is there
MODULES = {"taskiq": "taskiq_redis", "bullmq": "bullmq", "streaq": "streaq"}


def python() -> Path:
    return VENV / "bin" / "python"


@functools.cache
def versions() -> dict[str, str]:
    """Distribution name -> version of what the environment holds ({} if it is missing)."""
    if not python().exists():
        return {}
    names = sorted({n for ns in PACKAGES.values() for n in ns} | {"redis", "hiredis", "coredis"})
    code = ("import json, importlib.metadata as m\n"
            "out = {}\n"
            f"for n in {names!r}:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    done = subprocess.run([str(python()), "-c", code], capture_output=True, text=True, timeout=60, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else {}


@functools.cache
def missing(lib: str) -> str | None:
    """Why `lib` cannot run (None: it can), naming the command that builds the environment."""
    if not python().exists():
        return f"its environment {VENV} is missing: build it with `{BUILD_COMMAND}`"
    done = subprocess.run([str(python()), "-c", f"import {MODULES[lib]}"], capture_output=True, text=True, check=False,
                          timeout=60)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"{MODULES[lib]} does not import in {VENV} ({last}): rebuild it with `{BUILD_COMMAND} --rebuild`"
    return None


def build(base_python: str, rebuild: bool) -> None:
    if rebuild and VENV.exists():
        shutil.rmtree(VENV)
    if not python().exists():
        subprocess.run([base_python, "-m", "venv", str(VENV)], check=True)
    packages = [n for ns in PACKAGES.values() for n in ns] + EXTRA
    subprocess.run([str(python()), "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS), *packages], check=True)
    versions.cache_clear()
    print(f"{VENV}: " + ", ".join(f"{k} {v}" for k, v in versions().items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rebuild", action="store_true", help="delete the environment first")
    p.add_argument("--python", default=sys.executable,
                   help="the interpreter the environment is made from (default: this one); 3.11 or later")
    args = p.parse_args()
    build(args.python, args.rebuild)


if __name__ == "__main__":
    main()
