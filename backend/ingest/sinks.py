"""Who gets the stored readings when ingest runs alone (``nearcare backend ingest``).

Inside ``nearcare backend run`` the alerting service appends its own sink to
``runtime.readings_sinks``. A standalone ingest process has no such service, so it calls
:func:`install` here: every module named in :data:`SINK_MODULES` that is installed and defines
``install_ingest_sinks(runtime)`` gets to append its sinks. Imported lazily, so ingest never
depends on alerting and an absent module is simply no sink.
"""

from __future__ import annotations

import importlib
import logging

from backend.services import Runtime

log = logging.getLogger(__name__)

SINK_MODULES: tuple[str, ...] = ("backend.alerting",)


def install(runtime: Runtime, modules: tuple[str, ...] = SINK_MODULES) -> list[str]:
    """Let each present module register its sinks; return the names of those that did."""
    installed = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                log.info("no %s: standalone ingest stores readings without handing them to it", name)
                continue
            raise
        hook = getattr(module, "install_ingest_sinks", None)
        if hook is None:
            log.warning("%s has no install_ingest_sinks(runtime); its rules will not see readings", name)
            continue
        hook(runtime)
        installed.append(name)
    return installed
