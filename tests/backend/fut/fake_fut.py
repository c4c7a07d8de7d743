"""A FUT measurement service stand-in on loopback: ``POST /$submit-measurement`` as the FUT IG
(8.0.0) describes it, strict where FUT is strict, and able to fail on demand.

It checks each request: a Parameters resource with one ``measurement`` Bundle of type
transaction whose entries are Observations only (validated with the R4B models), each with the
ehealth-observation profile, the episodeOfCare and resolved-timing extensions, ``basedOn`` /
``subject`` / ``performer`` / ``device`` / episodeOfCare pointing to resources that exist in this
FUT, a code from ``ValueSet-ehealth-observation-codes`` (read from ../shared/standards), status
``final`` and one identifier. It honours ``ifNoneExist`` (conditional create), so it can count
how many times each measurement was *created*: exactly once is what the tests hold it to.

Like FUT, it is an OAuth2 resource server: ``POST /oauth/token`` issues bearer tokens for the
client credentials it was made with (``grant_type=client_credentials``, the client authenticated
with HTTP Basic or in the form), each valid for ``token_ttl_s``; a measurement without a valid,
unexpired token is answered 401 and has no effect. :meth:`FakeFut.revoke_tokens` ends every
token early (FUT rotating its keys).

Scripted faults, consumed one per authenticated request: ``"503"`` (no side effect), ``"lost"`` (stores, then
closes the connection without an answer), ``"slow"`` (stores, then answers after ``slow_s``,
later than the client waits), ``"ok"``.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.parse
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fhir.resources.R4B.observation import Observation

from backend.embedded import free_port
from backend.fut import FutOAuth

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
    def __init__(self, *, known: set[str], slow_s: float = 2.0, token_ttl_s: float = 300.0) -> None:
        self.known = set(known)
        self.client_id = "nearcare-test"
        self.client_secret = secrets.token_urlsafe(16)
        self.token_ttl_s = token_ttl_s
        self.tokens: dict[str, float] = {}  # access token -> expiry (time.time())
        self.tokens_issued = 0
        self.token_outage = False  # the token endpoint answers 503 while set
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

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth/token"

    def oauth(self, *, leeway_s: float = 0.0, secret: str | None = None) -> FutOAuth:
        """The client credentials this FUT accepts (``secret`` to try a wrong one)."""
        return FutOAuth(token_url=self.token_url, client_id=self.client_id,
                        client_secret=self.client_secret if secret is None else secret, leeway_s=leeway_s)

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def issue_token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """The token endpoint (RFC 6749 4.4): client credentials in, a bearer token out."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            pair = base64.b64decode(authorization[6:]).decode()
            client_id, _, secret = pair.partition(":")
            client_id, secret = urllib.parse.unquote(client_id), urllib.parse.unquote(secret)
        if self.token_outage:
            return 503, {"error": "temporarily_unavailable"}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if client_id != self.client_id or not secrets.compare_digest(secret or "", self.client_secret):
            return 401, {"error": "invalid_client"}
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.time() + self.token_ttl_s
            self.tokens_issued += 1
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl_s}

    def authorised(self, authorization: str | None) -> bool:
        if not authorization or not authorization.lower().startswith("bearer "):
            return False
        with self.lock:
            expiry = self.tokens.get(authorization[7:].strip())
        return expiry is not None and expiry > time.time()

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
                if self.path == "/oauth/token":
                    form = dict(urllib.parse.parse_qsl(raw.decode()))
                    code, answer = fake.issue_token(form, self.headers.get("Authorization"))
                    fake.answers[f"token {code}"] += 1
                    data = json.dumps(answer).encode()
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if not fake.authorised(self.headers.get("Authorization")):
                    fake.answers["401"] += 1
                    self._send(401, _outcome("a valid bearer token is required"))
                    return
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
