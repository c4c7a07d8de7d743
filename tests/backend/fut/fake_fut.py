"""A FUT measurement service stand-in on loopback: ``POST /$submit-measurement`` as the FUT IG
(8.0.0) describes it, strict where FUT is strict, and able to fail on demand.

It checks each request: a Parameters resource with one ``measurement`` Bundle of type
transaction whose entries are Observations only (validated with the R4B models), each with the
ehealth-observation profile, the episodeOfCare and resolved-timing extensions, ``basedOn`` /
``subject`` / ``performer`` / ``device`` / episodeOfCare pointing to resources that exist in this
FUT, a code from ``ValueSet-ehealth-observation-codes`` (read from ../shared/standards), status
``final`` and one identifier. It honours ``ifNoneExist`` (conditional create), so it can count
how many times each measurement was *created*: exactly once is what the tests hold it to.

Scripted faults, consumed one per request: ``"503"`` (no side effect), ``"lost"`` (stores, then
closes the connection without an answer), ``"slow"`` (stores, then answers after ``slow_s``,
later than the client waits), ``"ok"``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fhir.resources.R4B.observation import Observation

from backend.embedded import free_port

STANDARDS = Path(__file__).resolve().parents[4] / "shared" / "standards"
FUT_CODES_VS = STANDARDS / "fut" / "ValueSet-ehealth-observation-codes.json"
EPISODE_EXT = "http://hl7.org/fhir/StructureDefinition/workflow-episodeOfCare"
TIMING_EXT = "http://ehealth.sundhed.dk/fhir/StructureDefinition/ehealth-resolved-timing"
PROFILE = "http://ehealth.sundhed.dk/fhir/StructureDefinition/ehealth-observation"


def fut_codes() -> set[tuple[str, str]]:
    vs = json.loads(FUT_CODES_VS.read_text())
    return {(inc["system"], c["code"]) for inc in vs["compose"]["include"] for c in inc.get("concept", [])}


def _outcome(text: str) -> dict[str, Any]:
    issue = {"severity": "error", "code": "invalid", "diagnostics": text}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class FakeFut:
    def __init__(self, *, known: set[str], slow_s: float = 2.0) -> None:
        self.known = set(known)
        self.codes = fut_codes()
        self.slow_s = slow_s
        self.script: deque[str] = deque()
        self.lock = threading.Lock()
        self.stored: dict[str, dict[str, Any]] = {}  # identifier -> Observation as stored
        self.created: Counter[str] = Counter()
        self.requests = 0
        self.bodies: list[dict[str, Any]] = []  # every request body that was accepted
        self.answers: Counter[str] = Counter()
        self.port = free_port()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    # -- the FUT side --------------------------------------------------------------------------

    def check(self, body: Any) -> list[dict[str, Any]]:
        """The Observations of a valid request; ValueError naming the first rule it breaks."""
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise ValueError("body is not a Parameters resource")
        params = body.get("parameter") or []
        if len(params) != 1 or params[0].get("name") != "measurement":
            raise ValueError("exactly one 'measurement' parameter is expected")
        bundle = params[0].get("resource") or {}
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
            raise ValueError("measurement must be a transaction Bundle")
        out = []
        for entry in bundle.get("entry") or []:
            res = entry.get("resource") or {}
            if res.get("resourceType") != "Observation":
                raise ValueError(f"only Observations are accepted here, not {res.get('resourceType')}")
            Observation.model_validate(res)
            if PROFILE not in (res.get("meta") or {}).get("profile", []):
                raise ValueError("Observation does not claim ehealth-observation")
            if res.get("status") != "final":
                raise ValueError("Observation.status must be final")
            exts = {e["url"]: e for e in res.get("extension") or []}
            if EPISODE_EXT not in exts or TIMING_EXT not in exts:
                raise ValueError("episodeOfCare and resolvedTiming extensions are required")
            timing = {e["url"] for e in exts[TIMING_EXT].get("extension") or []}
            if not {"serviceRequestVersionId", "type"} <= timing:
                raise ValueError("resolvedTiming needs serviceRequestVersionId and type")
            refs = [
                exts[EPISODE_EXT]["valueReference"]["reference"],
                *(b["reference"] for b in res.get("basedOn") or []),
                (res.get("subject") or {}).get("reference"),
                (res.get("device") or {}).get("reference"),
                *(p["reference"] for p in res.get("performer") or []),
            ]
            if len(res.get("basedOn") or []) != 1 or len(res.get("performer") or []) != 1:
                raise ValueError("basedOn and performer are 1..1")
            unknown = [r for r in refs if r not in self.known]
            if unknown:
                raise ValueError(f"reference(s) to resources FUT does not have: {unknown}")
            codes = [(c["system"], c["code"]) for c in res["code"]["coding"]]
            codes += [(c["system"], c["code"]) for comp in res.get("component") or [] for c in comp["code"]["coding"]]
            if not all(c in self.codes for c in codes):
                raise ValueError(f"code(s) outside ehealth-observation-codes: {codes}")
            if len(res.get("identifier") or []) != 1:
                raise ValueError("one identifier expected")
            if not (entry.get("request") or {}).get("ifNoneExist"):
                raise ValueError("conditional create expected")
            out.append(res)
        if not out:
            raise ValueError("no measurement in the bundle")
        return out

    def store(self, observations: list[dict[str, Any]]) -> list[str]:
        locations = []
        with self.lock:
            for obs in observations:
                ident = obs["identifier"][0]
                key = f"{ident['system']}|{ident['value']}"
                if key not in self.stored:
                    self.stored[key] = obs
                    self.created[key] += 1
                locations.append(f"{self.base_url}/Observation/{list(self.stored).index(key) + 1}/_history/1")
        return locations

    # -- HTTP ----------------------------------------------------------------------------------

    def start(self) -> FakeFut:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with fake.lock:
                    fake.requests += 1
                    mode = fake.script.popleft() if fake.script else "ok"
                fake.answers[mode] += 1
                if self.path != "/fhir/$submit-measurement":
                    self._send(404, _outcome(f"no operation at {self.path}"))
                    return
                if mode == "503":
                    self._send(503, _outcome("service unavailable"))
                    return
                try:
                    observations = fake.check(json.loads(raw))
                except Exception as exc:  # the refusal FUT would give, with its reason
                    fake.answers["refused"] += 1
                    self._send(422, _outcome(str(exc)[:500]))
                    return
                locations = fake.store(observations)
                with fake.lock:
                    fake.bodies.append(json.loads(raw))
                if mode == "lost":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "slow":
                    time.sleep(fake.slow_s)
                self._send(
                    200,
                    {
                        "resourceType": "Bundle",
                        "type": "transaction-response",
                        "entry": [{"response": {"status": "201 Created", "location": loc}} for loc in locations],
                    },
                )

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-fut", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
