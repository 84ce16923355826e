"""An S3-compatible emulator (moto's server) on 127.0.0.1, over TLS from the test CA.

Run as a child process by the ``s3_emulator`` fixture (tests/conftest.py):

    python tests/s3emulator.py CERT KEY

It binds a free loopback port, prints ``port=N`` on stdout once it accepts
connections, and serves until killed.  It is an *emulator*: moto answers the
S3 REST API from memory; it is not a storage service and proves nothing about
any real store's behaviour beyond the API contract it imitates.

One deliberate difference from moto's own server: a store's conditional write
(``If-Match`` / ``If-None-Match: *`` on PutObject) is atomic on S3, but moto
checks the condition and then writes without a lock, so two racing writers can
both pass the check.  This wrapper serialises write requests, so the emulator
offers the guarantee the real stores document and the concurrent-publisher
tests exercise the publisher's use of it, not moto's race.
"""

from __future__ import annotations

import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

_WRITES = frozenset({"PUT", "POST", "DELETE", "PATCH"})


def _serialising(app: Any) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    lock = threading.Lock()

    def wrapped(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in _WRITES:
            return app(environ, start_response)  # type: ignore[no-any-return]
        with lock:
            # Read the whole answer under the lock: the write happens in there.
            return list(app(environ, start_response))

    return wrapped


def main(argv: list[str]) -> None:
    cert, key = argv
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        "127.0.0.1",
        0,
        _serialising(app),
        threaded=True,
        request_handler=MotoRequestHandler,
        ssl_context=ctx,
    )
    print(f"port={server.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
