"""The test Sigstore instance's services on 127.0.0.1, for sigstore-python's *signer*.

Three endpoints on one plain-HTTP loopback server, the shapes sigstore-python
and the ``id`` package speak:

- ``GET /oidc/token`` — GitHub Actions' OIDC token endpoint
  (``ACTIONS_ID_TOKEN_REQUEST_URL``): a JWT for one workflow run;
- ``POST /api/v2/signingCert`` — the CA: certifies the CSR's key for the
  claims of the bearer token (the *test* CA takes the token's claims as they
  are; a real Fulcio verifies the token's signature with the issuer's keys);
- ``POST /api/v1/log/entries`` — the transparency log (Rekor v1):
  appends the proposed ``hashedrekord`` entry and answers with its inclusion
  proof, signed checkpoint and signed entry timestamp.

What sigstore-python produces from them is verified afterwards by the
consumer exactly as a public-good bundle would be.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .sigstore_instance import GITHUB_ISSUER, TestSigstore, github_claims

__all__ = ["SigstoreServices"]


class SigstoreServices:
    """A running OIDC token endpoint, CA and log for one workflow identity."""

    def __init__(
        self,
        instance: TestSigstore,
        *,
        repository: str = "octo-org/octo-lib",
        workflow: str = ".github/workflows/release.yml",
        ref: str = "refs/tags/v1.0.0",
    ) -> None:
        self.instance = instance
        self.repository = repository
        self.workflow = workflow
        self.ref = ref
        self.requests: list[str] = []
        self.errors: list[str] = []
        services = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _answer(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                services.requests.append(f"GET {self.path}")
                if self.path.startswith("/oidc/token"):
                    self._answer(200, {"value": services.token()})
                else:
                    self._answer(404, {"message": "not found"})

            def do_POST(self) -> None:
                services.requests.append(f"POST {self.path}")
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                try:
                    if self.path == "/api/v2/signingCert":
                        token = self.headers["Authorization"].removeprefix("Bearer ")
                        self._answer(200, services.certify(body, token))
                    elif self.path == "/api/v1/log/entries":
                        self._answer(201, services.log(body))
                    else:
                        self._answer(404, {"message": "not found"})
                except Exception as exc:  # noqa: BLE001 - a bug in the test service: say so
                    services.errors.append(f"{type(exc).__name__}: {exc}")
                    self._answer(500, {"message": f"test service failed: {exc}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the three services ------------------------------------------------

    def token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": GITHUB_ISSUER,
            "aud": "sigstore",
            "sub": f"repo:{self.repository}:ref:{self.ref}",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "repository": self.repository,
            "ref": self.ref,
            "job_workflow_ref": f"{self.repository}/{self.workflow}@{self.ref}",
            "sha": "b" * 40,
            "event_name": "push",
        }
        return jwt.encode(
            claims, "test-identity-provider-hmac-secret-0123456789", algorithm="HS256"
        )

    def certify(self, body: dict[str, Any], token: str) -> dict[str, Any]:
        claims = jwt.decode(token, options={"verify_signature": False}, audience="sigstore")
        csr = x509.load_pem_x509_csr(base64.b64decode(body["certificateSigningRequest"]))
        public_key = csr.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        repository = claims["repository"]
        workflow = claims["job_workflow_ref"].split("@", 1)[0].removeprefix(repository + "/")
        cert = self.instance.certify(
            public_key,
            github_claims(repository, workflow, claims["ref"], sha=claims["sha"]),
        )
        pem = serialization.Encoding.PEM
        chain = [
            cert.public_bytes(pem).decode(),
            self.instance.intermediate_cert.public_bytes(pem).decode(),
            self.instance.root_cert.public_bytes(pem).decode(),
        ]
        return {"signedCertificateEmbeddedSct": {"chain": {"certificates": chain}}}

    def log(self, proposed: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(proposed, sort_keys=True, separators=(",", ":")).encode()
        entry = self.instance.log_entry(body, int(time.time()))
        proof = entry["inclusionProof"]
        assert isinstance(proof, dict)

        def hexed(b64: str) -> str:
            return base64.b64decode(b64).hex()

        promise = entry["inclusionPromise"]
        assert isinstance(promise, dict)
        return {
            hashlib.sha256(body).hexdigest(): {
                "body": base64.b64encode(body).decode(),
                "integratedTime": int(str(entry["integratedTime"])),
                "logID": self.instance.log_id.hex(),
                "logIndex": int(str(entry["logIndex"])),
                "verification": {
                    "inclusionProof": {
                        "checkpoint": proof["checkpoint"]["envelope"],
                        "hashes": [hexed(h) for h in proof["hashes"]],
                        "logIndex": int(proof["logIndex"]),
                        "rootHash": hexed(proof["rootHash"]),
                        "treeSize": int(proof["treeSize"]),
                    },
                    "signedEntryTimestamp": promise["signedEntryTimestamp"],
                },
            }
        }

    def trust_config(self) -> dict[str, Any]:
        """A sigstore client trust configuration pointing at these services."""
        valid = {"start": "2020-01-01T00:00:00Z"}
        return {
            "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
            "trustedRoot": self.instance.trusted_root(),
            "signingConfig": {
                "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
                "caUrls": [
                    {
                        "url": self.url,
                        "majorApiVersion": 1,
                        "validFor": valid,
                        "operator": "test",
                    }
                ],
                "oidcUrls": [],
                "rekorTlogUrls": [
                    {
                        "url": self.url,
                        "majorApiVersion": 1,
                        "validFor": valid,
                        "operator": "test",
                    }
                ],
                "tsaUrls": [],
                "rekorTlogConfig": {"selector": "ANY"},
                "tsaConfig": {"selector": "ANY"},
            },
        }

    def github_env(self) -> dict[str, str]:
        """What a GitHub Actions job with ``id-token: write`` has in its environment."""
        return {
            "GITHUB_ACTIONS": "true",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "test-request-token",
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.url}/oidc/token?api-version=2.0",
            "SIGSTORE_ID_TOKEN": "",
        }
