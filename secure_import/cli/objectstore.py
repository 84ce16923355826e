"""``secure-import publish``: upload a signed site to S3-compatible object storage."""

from __future__ import annotations

import argparse
from pathlib import Path

from secure_import.cli.output import EXIT_OK, Out


def cmd_publish(args: argparse.Namespace, out: Out) -> int:
    """``publish SITE --to s3://bucket/prefix``: verified first, manifest last."""
    from secure_import.publish.s3 import publish_to_s3
    from secure_import.store.keyfiles import load_public_key_file
    from secure_import.transport.s3 import S3Options

    result = publish_to_s3(
        Path(args.site),
        args.to,
        keys=[load_public_key_file(path) for path in args.key],
        threshold=args.threshold,
        options=S3Options(
            endpoint=args.endpoint,
            region=args.region,
            ca_bundle=None if args.ca_bundle is None else Path(args.ca_bundle),
        ),
        break_lock=args.break_lock,
    )
    for warning in result.warnings:
        out.warn(warning)
    if out.json:
        out.emit(
            {
                "ok": True,
                "url": result.url,
                "version": result.version,
                "previous_version": result.previous_version,
                "already_published": result.already_published,
                "uploaded": result.uploaded,
                "unchanged": result.unchanged,
            }
        )
        return EXIT_OK
    if result.already_published:
        out.result(
            f"{result.url}: version {result.version} was already published "
            f"({len(result.uploaded)} missing or altered objects restored)"
        )
    else:
        before = (
            "nothing" if result.previous_version is None else f"version {result.previous_version}"
        )
        out.result(
            f"published {result.url}: version {result.version} (replacing {before}), "
            f"{len(result.uploaded)} objects uploaded, {len(result.unchanged)} unchanged"
        )
    return EXIT_OK
