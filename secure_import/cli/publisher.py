"""The publisher's commands: ``keygen``, ``sign``, ``root``, ``verify``, ``serve``."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from secure_import.cli.common import _passphrase
from secure_import.cli.output import EXIT_FAIL, EXIT_OK, EXIT_USAGE, Out
from secure_import.errors import ConfigError
from secure_import.verify.identity import Identity, identity_from_mapping


def cmd_keygen(args: argparse.Namespace, out: Out) -> int:
    from secure_import.store.keyfiles import generate_keypair, load_public_key_file

    private, public = generate_keypair(
        args.name, Path(args.dir), passphrase=_passphrase(args), force=args.force
    )
    key = load_public_key_file(public)
    if out.json:
        out.emit(
            {
                "ok": True,
                "private_key": str(private),
                "public_key": str(public),
                "key_id": key.key_id,
            }
        )
        return EXIT_OK
    out.result(f"private key: {private} (mode 0600: keep it secret)")
    out.result(f"public key:  {public}")
    out.result(f"key id:      {key.key_id}")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace, out: Out) -> int:
    from secure_import.publish.sign import publish
    from secure_import.store.keyfiles import load_private_key_file

    passphrase = _passphrase(args)
    keys = [load_private_key_file(path, passphrase=passphrase) for path in args.key]
    if not keys and not args.sigstore:
        raise ConfigError("give --key (repeatable), --sigstore, or both", check="keys")
    sigstore_sign = None
    if args.sigstore:
        from secure_import.publish.keyless import sign_payload

        trust_config = (
            None if args.sigstore_trust_config is None else Path(args.sigstore_trust_config)
        )

        def sigstore_sign(payload: bytes) -> bytes:
            return sign_payload(payload, trust_config=trust_config)

    result = publish(
        Path(args.src),
        Path(args.out),
        private_keys=keys,
        version=args.version,
        expires_in=timedelta(days=args.expires_in),
        requires=None if args.requires is None else Path(args.requires),
        local_imports=args.local_import,
        sigstore_sign=sigstore_sign,
        bundles=args.bundles,
        split_above=args.split_above,
    )
    m = result.manifest
    for skipped in result.skipped:
        out.info(f"skipped: {skipped}")
    for name, req in sorted(m.requires.items()):
        source = result.requires_sources.get(name, "")
        out.info(f"declared: {req.describe()}" + (f" [range from {source}]" if source else ""))
    for name, where in result.optional_imports.items():
        out.info(f"optional import, not declared: {name} ({', '.join(where[:3])})")
    for rel in result.unparsed:
        out.info(f"not analysed for imports (not Python 3 syntax): {rel}")
    if out.json:
        out.emit(
            {
                "ok": True,
                "out_dir": str(result.out_dir),
                "version": m.version,
                "files": len(m.files),
                "provides": list(m.provides),
                "expires": m.expires.isoformat(),
                "skipped": list(result.skipped),
                "spec_version": 3 if m.bundles is not None else 2 if m.requires else 1,
                "bundles": None if m.bundles is None else len(m.bundles),
                "requires": {name: req.describe() for name, req in sorted(m.requires.items())},
                "optional_imports": sorted(result.optional_imports),
            }
        )
        return EXIT_OK
    out.result(
        f"signed {result.out_dir}: version {m.version}, {len(m.files)} files, "
        f"provides {', '.join(m.provides)}, expires {m.expires.isoformat()}"
    )
    return EXIT_OK


def cmd_root(args: argparse.Namespace, out: Out) -> int:
    """``root init`` / ``root rotate``: the publisher's signed trust-root chain."""
    from secure_import.publish.sign import init_root, rotate_root
    from secure_import.store.keyfiles import load_private_key_file

    passphrase = _passphrase(args)
    repo_dir = Path(args.repo)
    expires_in = timedelta(days=args.expires_in)
    if args.root_command == "init":
        root = init_root(
            repo_dir,
            private_keys=[load_private_key_file(p, passphrase=passphrase) for p in args.key],
            threshold=args.threshold,
            expires_in=expires_in,
        )
    else:
        if not args.old_key or not args.new_key:
            print(
                "secure-import: error: root rotate needs --old-key and --new-key", file=sys.stderr
            )
            return EXIT_USAGE
        root = rotate_root(
            repo_dir,
            old_keys=[load_private_key_file(p, passphrase=passphrase) for p in args.old_key],
            new_keys=[load_private_key_file(p, passphrase=passphrase) for p in args.new_key],
            threshold=args.threshold,
            expires_in=expires_in,
        )
    key_ids = [k.key_id for k in root.keys]
    if out.json:
        out.emit(
            {
                "ok": True,
                "version": root.version,
                "threshold": root.threshold,
                "key_ids": key_ids,
                "expires": root.expires.isoformat(),
            }
        )
        return EXIT_OK
    out.result(
        f"trust root {root.version}: threshold {root.threshold} of {len(key_ids)} keys, "
        f"expires {root.expires.isoformat()}"
    )
    for key_id in key_ids:
        out.result(f"  key {key_id}")
    if args.root_command == "rotate":
        out.result("now sign with the new keys: secure-import sign SRC --key NEW.key --out REPO")
    return EXIT_OK


def _identities(args: argparse.Namespace) -> list[Identity]:
    """The Sigstore identity given with ``--identity-*`` options, if any."""
    fields = {
        "issuer": args.identity_issuer,
        "identity": args.identity,
        "repository": args.identity_repository,
        "workflow": args.identity_workflow,
        "ref": args.identity_ref,
        "environment": args.identity_environment,
    }
    given = {key: value for key, value in fields.items() if value is not None}
    if not given:
        return []
    return [identity_from_mapping(given, source="command line")]


def cmd_verify(args: argparse.Namespace, out: Out) -> int:
    from secure_import.publish.sitecheck import verify_repository
    from secure_import.store.keyfiles import load_public_key_file

    keys = [load_public_key_file(path) for path in args.key]
    identities = _identities(args)
    if not keys and not identities:
        raise ConfigError("give --key (repeatable), a Sigstore identity, or both", check="keys")
    report = verify_repository(
        args.repo,
        keys=keys,
        threshold=args.threshold,
        ca_bundle=args.ca_bundle,
        identities=identities,
        sigstore_trusted_root=args.sigstore_trusted_root,
    )
    if out.json:
        out.emit(
            {
                "ok": report.ok,
                "source": report.source,
                "version": report.manifest.version if report.manifest else None,
                "key_ids": report.key_ids,
                "files_checked": report.checked,
                "bundles_checked": report.bundles_checked,
                "failures": [f.as_dict() for f in report.failures],
                "notes": report.notes,
            }
        )
    else:
        if report.manifest is not None:
            out.result(
                f"manifest: version {report.manifest.version}, signed by "
                f"{', '.join(k if k.startswith('sigstore:') else k[:16] for k in report.key_ids)}"
                ", expires "
                f"{report.manifest.expires.isoformat()}"
            )
        out.result(
            f"files checked: {report.checked}, bundles checked: {report.bundles_checked}, "
            f"failures: {len(report.failures)}"
        )
        for note in report.notes:
            out.result(f"note: {note}")
        for failure in report.failures:
            out.result(f"FAIL {failure}")
        out.result(out.paint("OK", "32") if report.ok else out.paint("FAILED", "31"))
    return EXIT_OK if report.ok else EXIT_FAIL


def cmd_serve(args: argparse.Namespace, out: Out) -> int:
    from secure_import.publish.servecli import serve_forever_cli

    serve_forever_cli(
        Path(args.out_dir),
        args.port,
        as_json=out.json,
        ca_dir=None if args.ca_dir is None else Path(args.ca_dir),
        temporary_ca=args.temporary_ca,
        verbose=out.verbosity > 0,
    )
    return EXIT_OK
