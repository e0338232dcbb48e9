"""A cold start of the function app imports only what indexing needs; the services load on first use.

The Functions host imports ``function_app`` and reads ``app.get_functions()`` to index the app
before any invocation, and on Flex Consumption every instance group pays that at each cold
start ("Flex Consumption plan hosting", *Per-function scaling*: the HTTP triggers scale as one
group, so even ``/api/health`` waited for river, scipy and SQLAlchemy when the blueprints
imported the services eagerly). Both checks run in a fresh interpreter, as the host's worker
is: this test process has long imported everything. ``bench/cold_start.py`` measures the time.
"""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

from bench import cold_start
from bench.cold_start import HEAVY, INDEX, REPO, heavy_modules, import_profile

#: Run in a fresh interpreter: index the app, invoke two functions, then build every service.
LAZY_PATH = r"""
import inspect, json, sys
import azure.functions as func
import function_app
from functions.common import ProcessService

functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
indexed = sorted(sys.modules)
request = func.HttpRequest(method="GET", url="http://localhost:7071/api/health", params={}, route_params={},
                           body=b"")
health = functions["health"].get_user_function()(request)
after_health = sorted(sys.modules)
promote = functions["promote_model"].get_user_function()
blob = func.blob.InputStream(data=b"{}", name="models/not-a-candidate.json")
try:
    promote(**{name: blob if name == "blob" else None for name in inspect.signature(promote).parameters})
    promote_error = ""
except ValueError as exc:  # parse_candidate_blob, imported on first use, rejects the name
    promote_error = str(exc)
services = {
    f"{name}.{attr}": type(value.get()).__name__
    for name, module in sorted(sys.modules.items()) if name.startswith("functions.")
    for attr, value in vars(module).items() if isinstance(value, ProcessService)
}
print(json.dumps({"indexed": indexed, "health": health.status_code, "after_health": after_health,
                  "promote_error": promote_error, "services": services, "built": sorted(sys.modules)}))
"""


def test_indexing_the_app_imports_no_heavy_package():
    """``python -X importtime`` of what the host does to index: no river, scipy, SQLAlchemy, pandas, numpy,
    PyMySQL, Blob Storage SDK or azure-identity - the light path needs none of them."""
    modules = import_profile(INDEX)
    assert {"function_app", "functions.api", "functions.promote", "shared.serving.wiring"} <= set(modules)
    assert not heavy_modules(modules), sorted(m for m in modules if heavy_modules({m}))


def test_the_services_build_on_first_use(tmp_path: Path):
    """After indexing, invoking ``health`` opens the history store (SQLAlchemy loads then), ``promote_model``
    reaches its lazily imported parser, and every blueprint's service builds: the lazy imports resolve."""
    env = {**os.environ, "MYSQL_URL": "", "HISTORY_SQLITE_PATH": str(tmp_path / "history.sqlite3"),
           "MODEL_STORAGE": "UseDevelopmentStorage=true"}  # Azurite's; building a client does not connect
    env.pop("MODEL_STORAGE__blobServiceUri", None)
    done = subprocess.run([sys.executable, "-c", LAZY_PATH], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert not heavy_modules(set(seen["indexed"]))
    assert seen["health"] == 200
    assert heavy_modules(set(seen["after_health"])) == {"sqlalchemy"}
    assert "candidates" in seen["promote_error"]
    assert {"HistoryApi", "ArchiveService", "PredictService", "PromotionService",
            "RetrainService"} <= set(seen["services"].values()), seen["services"]
    assert {"river", "scipy", "sqlalchemy", "numpy", "azure.storage"} <= heavy_modules(set(seen["built"]))


def test_heavy_modules_names_the_packages_a_profile_holds():
    assert doctest.testmod(cold_start).failed == 0
    profile = {"scipy.stats._stats_py": 5, "sqlalchemy": 1, "riverside": 1}
    assert heavy_modules(profile) == {"scipy", "sqlalchemy"}
    assert set(HEAVY) >= {"river", "scipy", "sqlalchemy", "pandas"}
