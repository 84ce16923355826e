"""Named constants and limits: how much we accept, and the fixed names a
repository uses.  Pure: no I/O, no platformdirs (where files live is
:mod:`secure_import.store.paths`), imported by every layer.

Safe defaults are named constants here so a reviewer can read the whole policy
in one place.  :class:`Limits` is immutable: configuration is decided once
when a repository is added and never mutated behind the finder's back.
"""

from __future__ import annotations

from datetime import timedelta

from secure_import._frozen import Frozen

__all__ = [
    "APP_NAME",
    "BUNDLE_DIR",
    "DEFAULT_CLOCK_SLACK",
    "DEFAULT_EXPIRES_IN",
    "DEFAULT_LIMITS",
    "MANIFEST_NAME",
    "MANIFEST_PAYLOAD_NAME",
    "SIGSTORE_BUNDLE_NAME",
    "Limits",
]

APP_NAME = "secure-import"

#: File name of the signed manifest envelope at the repository root.  Not an
#: identifier, so it can never collide with a module or package name.
MANIFEST_NAME = "secure-import-manifest.json"

#: The Sigstore bundle of a keylessly signed repository, beside the manifest:
#: a standard bundle (``sigstore sign``'s output) over the manifest payload,
#: which the publisher also publishes as :data:`MANIFEST_PAYLOAD_NAME` so that
#: ``sigstore verify`` alone can check it.
SIGSTORE_BUNDLE_NAME = "secure-import-manifest.sigstore.json"

#: The manifest payload (the bytes the envelope carries), as a plain file for
#: third parties; consumers never fetch it (they verify the envelope's copy).
MANIFEST_PAYLOAD_NAME = "secure-import-manifest.payload.json"

#: Folder of per-package bundles: the concatenation of a top-level package's
#: modules in manifest order, named by a digest of their signed entries.  An
#: optimisation only (one request for a cold package); every file in it is
#: verified against the signed manifest exactly as if fetched alone.
BUNDLE_DIR = "secure-import-bundles"

#: Default validity of a freshly signed manifest.
DEFAULT_EXPIRES_IN = timedelta(days=90)

#: How far our clock may be behind the publisher's before "issued in the future"
#: or "expired" is decided.  Small on purpose: expiry is a security boundary.
DEFAULT_CLOCK_SLACK = timedelta(minutes=5)


class Limits(Frozen):
    """Caps on what a server may make us do.  Every download is bounded.

    Immutable; ``Limits(read_timeout=5.0)`` overrides one default.
    """

    _fields = (
        "manifest_max_bytes",
        "root_max_bytes",
        "connect_timeout",
        "read_timeout",
        "download_deadline",
        "min_throughput",
        "throughput_window",
        "import_deadline",
        "failover_after",
        "max_parallel",
        "max_root_rotations",
        "max_version_jump",
        "clock_slack",
    )
    __slots__ = _fields

    manifest_max_bytes: int
    root_max_bytes: int
    connect_timeout: float
    read_timeout: float
    #: Total deadline for one download, however slowly the bytes drip in (T9).
    download_deadline: float
    #: Minimum throughput (curl's ``--speed-limit``/``--speed-time``): a
    #: download that averages fewer than ``min_throughput`` bytes per second
    #: over any ``throughput_window`` seconds -- or stays silent that long --
    #: is cut off.  A drip of a few bytes a second ends after ~10 s; an honest
    #: slow link (anything above 1 KiB/s) is never cut, however large the file.
    min_throughput: int
    throughput_window: float
    #: Total time every request of one import may take together (manifest,
    #: bundle, per-file fallback): the cap a chain of slow answers cannot
    #: stretch (THREATS T9).
    import_deadline: float
    #: A repository with mirrors and ``fallback = "on-error"``: the longest
    #: any single wait (connect, TLS handshake, a read) lasts on a source
    #: that is not the last one, before the request goes on to the next.  An
    #: origin that accepts connections and never answers then costs this,
    #: not ``throughput_window``, once per process.  The last source keeps
    #: the full bounds.
    failover_after: float
    #: How many files of one package are fetched at once on a cold import.
    max_parallel: int
    #: Longest chain of root rotations walked in one update.
    max_root_rotations: int
    #: A manifest version may not jump further than this past the last accepted
    #: one (fast-forward by a stolen key, THREATS M12).
    max_version_jump: int
    clock_slack: timedelta

    def __init__(
        self,
        manifest_max_bytes: int = 16 * 1024 * 1024,
        root_max_bytes: int = 1024 * 1024,
        connect_timeout: float = 10.0,
        read_timeout: float = 20.0,
        download_deadline: float = 60.0,
        min_throughput: int = 1024,
        throughput_window: float = 10.0,
        import_deadline: float = 120.0,
        failover_after: float = 3.0,
        max_parallel: int = 8,
        max_root_rotations: int = 32,
        max_version_jump: int = 1_000_000,
        clock_slack: timedelta = DEFAULT_CLOCK_SLACK,
    ) -> None:
        init = object.__setattr__
        init(self, "manifest_max_bytes", manifest_max_bytes)
        init(self, "root_max_bytes", root_max_bytes)
        init(self, "connect_timeout", connect_timeout)
        init(self, "read_timeout", read_timeout)
        init(self, "download_deadline", download_deadline)
        init(self, "min_throughput", min_throughput)
        init(self, "throughput_window", throughput_window)
        init(self, "import_deadline", import_deadline)
        init(self, "failover_after", failover_after)
        init(self, "max_parallel", max_parallel)
        init(self, "max_root_rotations", max_root_rotations)
        init(self, "max_version_jump", max_version_jump)
        init(self, "clock_slack", clock_slack)


#: The default limits, for code that needs one default value
#: (``DEFAULT_LIMITS.read_timeout``): a slot has no class-level default.
DEFAULT_LIMITS = Limits()
