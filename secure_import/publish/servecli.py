"""``secure-import serve``: the development server as a command.

Serves a signed repository directory on https://127.0.0.1:PORT/ until it is
stopped.  The CA the client trusts is kept (:mod:`.devca`): in ``ca_dir``
(default under the user's data directory), so a ``ca_bundle`` saved in code
or configuration works across restarts; or, with ``temporary_ca``, in a fresh
private temporary directory removed on exit, as a throwaway.

Every way of stopping (Ctrl-C, SIGTERM from a service manager, SIGHUP from a
closed terminal, an exception) runs the same clean-up: the server stops, the
temporary directory (if any) is removed, the signal handlers are restored.
The kept CA directory holds no temporary file at any time (its files are
written atomically; the server key of each start only ever exists in a
private temporary directory for the instant TLS loads it).
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from secure_import.publish.devca import KeptCA, load_or_create_ca
from secure_import.publish.devtls import issue_certificate, server_ssl_context
from secure_import.publish.scripted import AccessRecord
from secure_import.publish.serve import RepoServer

__all__ = ["serve_forever_cli"]


def serve_forever_cli(
    root: Path,
    port: int,
    *,
    as_json: bool = False,
    ca_dir: Path | None = None,
    temporary_ca: bool = False,
    verbose: bool = False,
) -> None:
    """Serve ``root`` until stopped; print the URL, the CA path and how to
    trust it (one JSON line with ``as_json``).  ``verbose``: one line per
    finished request on stderr (time, method, path, status, bytes; escaped).

    Raises:
        ConfigError: ``root`` is not a directory, the port cannot be bound,
            or the CA directory is unsafe.
    """
    previous = _stop_on_signals()
    tmp: Path | None = None
    server: RepoServer | None = None
    try:
        if temporary_ca:
            tmp = Path(tempfile.mkdtemp(prefix="secure-import-serve-"))
            kept = load_or_create_ca(tmp)
        else:
            if ca_dir is None:
                from secure_import.store.paths import serve_ca_dir

                ca_dir = serve_ca_dir()
            kept = load_or_create_ca(ca_dir)
        ctx = server_ssl_context(issue_certificate(kept.ca))
        server = RepoServer(root, port=port, ssl_context=ctx, access_log=_printer(verbose))
        server.start()
        _announce(server, root, kept, temporary=temporary_ca, as_json=as_json)
        while True:  # runs until stopped, by design
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _printer(verbose: bool) -> Any:
    if not verbose:
        return None

    def log(record: AccessRecord) -> None:
        print(record.human(), file=sys.stderr, flush=True)

    return log


def _announce(
    server: RepoServer, root: Path, kept: KeptCA, *, temporary: bool, as_json: bool
) -> None:
    action = "temporary" if temporary else kept.action
    if as_json:
        facts: dict[str, object] = {
            "ok": True,
            "url": server.url,
            "root": str(root),
            "ca_bundle": str(kept.cert_path),
            "ca": action,
        }
        if kept.reason is not None:
            facts["ca_renewed_because"] = kept.reason
        print(json.dumps(facts), flush=True)
        return
    print(f"Serving {root} at {server.url}", flush=True)
    print(f"CA certificate: {kept.cert_path}", flush=True)
    lifetime = (
        "throwaway CA, removed on exit"
        if temporary
        else f"kept CA ({action}), valid until {kept.ca.cert.not_valid_after_utc:%Y-%m-%d}"
    )
    print(
        f'Hint: in Python, trust it with ca_bundle="{kept.cert_path}" '
        f"({lifetime}; 127.0.0.1/localhost only). Ctrl-C stops.",
        flush=True,
    )
    if kept.reason is not None:
        print(
            f"Note: a new CA replaced the kept one ({kept.reason}); "
            "clients must trust the new ca.pem",
            file=sys.stderr,
            flush=True,
        )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_on_signals() -> dict[int, Any]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt (main thread only), so
    every way of stopping the server runs its clean-up; return the old handlers."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, _interrupt)
    return previous
