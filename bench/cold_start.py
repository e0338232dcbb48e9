"""Benchmark: what a cold start of the function app costs before its first invocation.

The Functions host imports ``function_app`` (and so every blueprint) to index the app before
it runs anything; on Flex Consumption each instance group pays that at every cold start
("Flex Consumption plan hosting", *Per-function scaling*: HTTP triggers scale as one group,
every other function alone). This prints, for fresh processes (median of ``--runs``):

* ``python -c pass`` - the interpreter's own start-up, the unit of the ratios;
* ``import function_app`` - what indexing loads now (the services are built on first use);
* ``... + services`` - the same plus the modules the services need (river, scipy through
  river's drift detectors, SQLAlchemy, the Blob Storage SDK): what every cold start paid
  when the blueprints imported them eagerly, and what the first invocation pays now.

Each line gives the in-process import time (``time.perf_counter`` around the import), the
whole process's wall time and its ratio to ``python -c pass``, and the peak RSS (``wait4``).
It runs in this venv and in one holding only ``requirements.txt`` - what is deployed - made
with ``python -m venv`` + ``pip install -r requirements.txt`` under the user's cache dir and
reused while ``requirements.txt`` is unchanged (``--no-funcs-venv`` skips it). Target:
``import function_app`` <= 0.5 s in the requirements-only venv. Ratios between lines of one
run are what to compare: machines here are shared and noisy.

Run: ``make bench`` (or ``.venv/bin/python bench/cold_start.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements.txt"
TARGET_S = 0.5
HEAVY = ("river", "scipy", "sqlalchemy", "pandas", "numpy", "pymysql", "azure.storage", "azure.identity")
"""Packages indexing the app must not import (``tests/unit/test_cold_start.py``); the services load them."""
SERVICE_MODULES = (
    "shared.serving.predicting", "shared.serving.engine", "shared.serving.api", "shared.storage.archiving",
    "shared.lifecycle.retrain", "shared.lifecycle.promotion", "shared.lifecycle.registry",
)
"""The modules of the services ``shared.serving.wiring`` builds: what the blueprints used to import."""
INDEX = "import function_app; function_app.app.get_functions()"
CASES = {
    "python -c pass": "pass",
    "import function_app": INDEX,
    "import function_app + services": INDEX + "".join(f"; import {m}" for m in SERVICE_MODULES),
}
_TIMED = "import time; _t = time.perf_counter(); {code}; print(time.perf_counter() - _t)"


def import_profile(code: str = INDEX, python: str = sys.executable, cwd: Path = REPO) -> dict[str, int]:
    """The modules a fresh interpreter imports to run ``code``, from ``python -X importtime``.

    Parameters
    ----------
    code : Python source run with ``-c`` in ``cwd`` (the repository, so ``function_app`` imports).
    python : the interpreter.
    cwd : working directory.

    Returns
    -------
    dict
        Module name -> cumulative import time in microseconds (``-X importtime``'s second column).

    Raises
    ------
    subprocess.CalledProcessError
        ``code`` failed; its stderr is in the exception.
    """
    done = subprocess.run([python, "-X", "importtime", "-c", code], cwd=cwd, capture_output=True, text=True,
                          check=True, timeout=300)
    modules = {}
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
            if cumulative.isdigit():
                modules[name] = int(cumulative)
    return modules


def heavy_modules(modules: dict[str, int] | set[str], heavy: tuple[str, ...] = HEAVY) -> set[str]:
    """The top packages of ``heavy`` among ``modules`` (a module counts for each package it is in).

    >>> sorted(heavy_modules({"river.drift": 1, "json": 2, "azure.storage.blob": 3, "azure.functions": 4}))
    ['azure.storage', 'river']
    """
    return {h for h in heavy for m in modules if m == h or m.startswith(h + ".")}


@dataclass(frozen=True)
class Figures:
    """Medians over fresh processes: ``import_s`` in-process and ``wall_s`` whole process (s), ``rss_mb``
    peak RSS (MiB)."""

    import_s: float
    wall_s: float
    rss_mb: float


def measure(code: str, python: str, runs: int) -> Figures:
    """Run ``code`` in ``runs`` fresh ``python`` processes in the repository; the medians of each figure."""
    imports, walls, rss = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        child = subprocess.Popen([python, "-c", _TIMED.format(code=code)], cwd=REPO, stdout=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage: ru_maxrss in KiB on Linux
        walls.append(time.perf_counter() - start)
        child.returncode = os.waitstatus_to_exitcode(status)
        out = child.stdout.read().decode() if child.stdout else ""
        if child.returncode:
            raise SystemExit(f"{python} -c {code!r} failed with exit code {child.returncode}")
        imports.append(float(out.split()[-1]))
        rss.append(usage.ru_maxrss / 1024)
    return Figures(statistics.median(imports), statistics.median(walls), statistics.median(rss))


def funcs_venv(cache: Path | None = None) -> Path:
    """The interpreter of a venv holding only ``requirements.txt``, created (with pip) if missing.

    It lives under ``$XDG_CACHE_HOME`` (default ``~/.cache``) in ``tickcast/venv-funcs-<hash>``, the
    hash of ``requirements.txt``'s content, so a changed file gets a fresh venv.
    """
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    root = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tickcast"
    venv = root / f"venv-funcs-{digest}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists():
        print(f"creating {venv} (python -m venv; pip install -r requirements.txt)", file=sys.stderr)
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--clear", str(venv)],
                       check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r",
                        str(REQUIREMENTS)], check=True)
        stamp.touch()
    return python


def report(label: str, python: str, runs: int) -> dict[str, Figures]:
    """Print the figures of every case in one interpreter; the import-time check of indexing."""
    heavy = sorted(heavy_modules(import_profile(python=python)))
    print(f"\n{label}: {python} (median of {runs} fresh processes)")
    print(f"  {'':34} {'import s':>9} {'process s':>10} {'x pass':>7} {'peak RSS MB':>12}")
    figures = {name: measure(code, python, runs) for name, code in CASES.items()}
    base = figures["python -c pass"].wall_s
    for name, f in figures.items():
        print(f"  {name:34} {f.import_s:9.3f} {f.wall_s:10.3f} {f.wall_s / base:7.1f} {f.rss_mb:12.0f}")
    light, eager = figures["import function_app"], figures["import function_app + services"]
    verdict = "meets" if light.import_s <= TARGET_S else "MISSES"
    print(f"  indexing imports heavy packages: {heavy or 'none'}; import function_app {light.import_s:.3f} s "
          f"{verdict} the {TARGET_S} s target")
    print(f"  eager (before) / lazy (now): {eager.wall_s / light.wall_s:.1f}x process time, "
          f"{eager.rss_mb / light.rss_mb:.1f}x peak RSS")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per figure (default 7)")
    parser.add_argument("--no-funcs-venv", action="store_true", help="skip the requirements-only venv")
    args = parser.parse_args(argv)
    report("dev venv", sys.executable, args.runs)
    if not args.no_funcs_venv:
        report("requirements.txt-only venv", str(funcs_venv()), args.runs)


if __name__ == "__main__":
    main()
