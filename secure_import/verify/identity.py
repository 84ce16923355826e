"""Publishers pinned by who they are: Sigstore identities and their matching (pure).

A keyless publisher signs with a short-lived certificate that a Sigstore CA
(Fulcio) issued for an OIDC identity; the certificate carries the identity as
claims: the token issuer, the subject alternative name (for a CI run, the URI
of the workflow that signed, ``https://github.com/OWNER/REPO/.github/workflows/
FILE@REF``; for a person, an e-mail address) and, for CI tokens, Fulcio's
extensions under ``1.3.6.1.4.1.57264.1`` (source repository, ref, build config,
deployment environment, ...).  :class:`Identity` is what a user pins;
:class:`SignerIdentity` is what a certificate says; :func:`mismatches` compares
them.  Whether the certificate itself is genuine (chain, transparency log,
signature) is :mod:`secure_import.verify.keyless`'s question, asked first.

Invariants a reader can check against the code below:

- a pin names its issuer exactly (no pattern) and at least one of the exact
  signer identity or the source repository, so no pin accepts "anybody with a
  GitHub Actions token";
- every claim a pin names must be present in the certificate and equal (the
  ref may be a pattern whose only wildcard is ``*``, anchored at both ends and
  starting with ``refs/``); a claim the certificate lacks is a mismatch, never
  a pass;
- the workflow is compared with the build *signer* URI (the workflow whose
  job held the token: a reusable workflow in another repository is named by
  its own URI), without its ``@ref`` suffix; the ref is compared with the
  source repository ref (what was built);
- the issuer comes from the DER-encoded v2 extension (``.1.8``); the
  deprecated raw v1 extension (``.1.1``) is read only when v2 is absent, and
  a certificate carrying both with different values is refused;
- a certificate with an extension present twice, or a claim that is not
  valid UTF-8 DER, is malformed: :class:`~secure_import.errors.FormatError`;
- nothing here reads a file, the clock or the network.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

from secure_import.errors import ConfigError, FormatError

# cryptography's x509 module (~0.1 s to import) is loaded only to read a
# signing certificate: a process that pins identities but runs from its
# sealed memo never reads one.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from cryptography import x509

__all__ = [
    "GITHUB_ACTIONS_ISSUER",
    "ISSUER_ALIASES",
    "Identity",
    "SignerIdentity",
    "identity_from_mapping",
    "matching",
    "mismatches",
    "signer_from_certificate",
]

GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"
GITLAB_ISSUER = "https://gitlab.com"

#: Short names accepted for the ``issuer`` of a pin, expanded to the exact URL.
ISSUER_ALIASES = {
    "github-actions": GITHUB_ACTIONS_ISSUER,
    "gitlab": GITLAB_ISSUER,
}

#: Where ``OWNER/REPO`` shorthand points for the issuers whose forge is known.
_FORGE_OF_ISSUER = {
    GITHUB_ACTIONS_ISSUER: "https://github.com",
    GITLAB_ISSUER: "https://gitlab.com",
}

_MAX_CLAIM = 1024

_FULCIO = "1.3.6.1.4.1.57264.1."
#: Dotted OIDs of the Fulcio claims (made ``ObjectIdentifier`` when read).
_OID_ISSUER_V1 = _FULCIO + "1"
_OID_ISSUER_V2 = _FULCIO + "8"
_V2_CLAIMS = {
    "build_signer_uri": _FULCIO + "9",
    "build_signer_digest": _FULCIO + "10",
    "runner_environment": _FULCIO + "11",
    "source_repository_uri": _FULCIO + "12",
    "source_repository_digest": _FULCIO + "13",
    "source_repository_ref": _FULCIO + "14",
    "build_config_uri": _FULCIO + "18",
    "build_trigger": _FULCIO + "20",
    "run_invocation_uri": _FULCIO + "21",
    "deployment_environment": _FULCIO + "23",
}

_PIN_FIELDS = ("issuer", "identity", "repository", "workflow", "ref", "environment")


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_CLAIM:
        raise ConfigError(
            f"a Sigstore identity's {what} must be a non-empty string of at most "
            f"{_MAX_CLAIM} characters",
            check="publisher-identity",
            got=repr(value)[:80],
        )
    if not value.isprintable() or value != value.strip():
        raise ConfigError(
            f"a Sigstore identity's {what} has control characters or surrounding spaces",
            check="publisher-identity",
            got=repr(value)[:80],
        )
    return value


@dataclass(frozen=True)
class Identity:
    """A publisher pinned by identity: an OIDC issuer and certificate claims.

    ``issuer`` is the token issuer URL (``github-actions`` and ``gitlab`` are
    accepted as aliases).  ``identity`` is the exact subject alternative name
    (the signing workflow's URI with its ref, or an e-mail address).
    ``repository`` is the source repository URI, or ``OWNER/REPO`` for a known
    forge.  ``workflow`` is the signing workflow: a path in ``repository``
    (``.github/workflows/release.yml``) or a full URI, without ``@ref``.
    ``ref`` is the git ref that was built, exact or with ``*`` wildcards
    (``refs/tags/v*``).  ``environment`` is the deployment environment.

    Construction normalises and validates; a bad pin raises
    :class:`~secure_import.errors.ConfigError` (it is the user's configuration).
    """

    issuer: str
    identity: str | None = None
    repository: str | None = None
    workflow: str | None = None
    ref: str | None = None
    environment: str | None = None

    def __post_init__(self) -> None:
        issuer = (
            ISSUER_ALIASES.get(self.issuer, self.issuer)
            if isinstance(self.issuer, str)
            else self.issuer
        )
        issuer = _check_text(issuer, "issuer")
        if not issuer.startswith("https://"):
            raise ConfigError(
                "a Sigstore identity's issuer must be an https:// URL (or an alias: "
                + ", ".join(sorted(ISSUER_ALIASES))
                + ")",
                check="publisher-identity",
                got=issuer,
            )
        object.__setattr__(self, "issuer", issuer)
        for name in _PIN_FIELDS[1:]:
            value = getattr(self, name)
            if value is not None:
                _check_text(value, name)
        if self.identity is None and self.repository is None:
            raise ConfigError(
                "a Sigstore identity must name the signer identity or the source repository; "
                "an issuer alone would accept anybody it issues tokens to",
                check="publisher-identity",
                got=issuer,
            )
        if self.repository is not None and "://" not in self.repository:
            forge = _FORGE_OF_ISSUER.get(issuer)
            if forge is None or self.repository.count("/") != 1:
                raise ConfigError(
                    "the repository must be a full https:// URI, or OWNER/REPO for "
                    + ", ".join(sorted(_FORGE_OF_ISSUER)),
                    check="publisher-identity",
                    got=self.repository,
                )
            object.__setattr__(self, "repository", f"{forge}/{self.repository}")
        if self.repository is not None and not self.repository.startswith("https://"):
            raise ConfigError(
                "the repository must be an https:// URI",
                check="publisher-identity",
                got=self.repository,
            )
        if self.workflow is not None:
            if "@" in self.workflow:
                raise ConfigError(
                    "the workflow is pinned without its @ref; pin the ref with 'ref'",
                    check="publisher-identity",
                    got=self.workflow,
                )
            if "://" not in self.workflow:
                if self.repository is None:
                    raise ConfigError(
                        "a workflow given as a path needs the repository it lives in",
                        check="publisher-identity",
                        got=self.workflow,
                    )
                path = self.workflow.lstrip("/")
                object.__setattr__(self, "workflow", f"{self.repository}/{path}")
        if self.ref is not None:
            if not self.ref.startswith("refs/"):
                raise ConfigError(
                    "the ref must be a full git ref such as refs/tags/v* or refs/heads/main",
                    check="publisher-identity",
                    got=self.ref,
                )
            if any(ch in self.ref for ch in "?[]{}\\"):
                raise ConfigError(
                    "the ref pattern's only wildcard is '*'",
                    check="publisher-identity",
                    got=self.ref,
                )

    def ref_matches(self, ref: str) -> bool:
        """Whether ``ref`` matches the pinned ref (``*`` matches any run of characters)."""
        if self.ref is None:
            return True
        pattern = ".*".join(re.escape(part) for part in self.ref.split("*"))
        return re.fullmatch(pattern, ref, flags=re.DOTALL) is not None

    def describe(self) -> str:
        """``issuer=... repository=... workflow=... ref=...``: the pin as messages name it."""
        return " ".join(
            f"{name}={getattr(self, name)}"
            for name in _PIN_FIELDS
            if getattr(self, name) is not None
        )

    def as_dict(self) -> dict[str, str]:
        """The pin as plain data (for ``--json`` output, lock files and audit records)."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }


def identity_from_mapping(data: Mapping[str, object], *, source: str) -> Identity:
    """An :class:`Identity` from a configuration table (``issuer``, ``repository``, ...).

    Raises:
        ConfigError: unknown keys, missing issuer, or a value :class:`Identity` refuses.
    """
    unknown = sorted(set(data) - set(_PIN_FIELDS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown keys in a Sigstore identity",
            check="publisher-identity",
            expected=", ".join(_PIN_FIELDS),
            got=", ".join(unknown),
        )
    if "issuer" not in data:
        raise ConfigError(
            f"{source}: a Sigstore identity needs an issuer", check="publisher-identity"
        )
    values: dict[str, str] = {}
    for key, value in data.items():
        values[key] = _check_text(value, key)
    return Identity(**values)


@dataclass(frozen=True)
class SignerIdentity:
    """The identity claims a (verified) Sigstore certificate carries."""

    issuer: str | None
    san: str | None
    build_signer_uri: str | None = None
    build_signer_digest: str | None = None
    runner_environment: str | None = None
    source_repository_uri: str | None = None
    source_repository_digest: str | None = None
    source_repository_ref: str | None = None
    build_config_uri: str | None = None
    build_trigger: str | None = None
    run_invocation_uri: str | None = None
    deployment_environment: str | None = None

    @property
    def workflow(self) -> str | None:
        """The signing workflow's URI without its ``@ref`` (from the build signer URI)."""
        signer = self.build_signer_uri
        if signer is None:
            return None
        return signer.partition("@")[0]

    def describe(self) -> str:
        """The signer as messages and audit records name it."""
        parts = [f"issuer={self.issuer}", f"identity={self.san}"]
        for label, value in (
            ("repository", self.source_repository_uri),
            ("workflow", self.workflow),
            ("ref", self.source_repository_ref),
            ("environment", self.deployment_environment),
            ("commit", self.source_repository_digest),
        ):
            if value is not None:
                parts.append(f"{label}={value}")
        return " ".join(parts)

    def as_dict(self) -> dict[str, str]:
        """The claims as plain data (``None`` claims left out)."""
        out = {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }
        if self.workflow is not None:
            out["workflow"] = self.workflow
        return out


def _der_utf8(raw: bytes, what: str) -> str:
    """Decode a DER UTF8String (tag 0x0C, definite length) exactly."""
    if len(raw) < 2 or raw[0] != 0x0C:
        raise FormatError(f"certificate claim {what} is not a DER UTF8String", check="certificate")
    first = raw[1]
    offset = 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(raw) < 2 + count:
            raise FormatError(f"certificate claim {what} has a bad length", check="certificate")
        length = int.from_bytes(raw[2 : 2 + count], "big")
        offset = 2 + count
        if length < 0x80 or raw[2] == 0:
            raise FormatError(f"certificate claim {what} has a non-DER length", check="certificate")
    if offset + length != len(raw):
        raise FormatError(f"certificate claim {what} has a bad length", check="certificate")
    return _decode(raw[offset:], what)


def _decode(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"certificate claim {what} is not UTF-8", check="certificate") from exc
    if len(text) > _MAX_CLAIM or not text.isprintable():
        raise FormatError(
            f"certificate claim {what} is too long or has control characters",
            check="certificate",
            got=repr(text)[:80],
        )
    return text


def _raw_extension(cert: x509.Certificate, oid: str) -> bytes | None:
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - defensive
        raise FormatError(f"certificate claim {oid} is unreadable", check="certificate")
    return value.value


def signer_from_certificate(cert: x509.Certificate) -> SignerIdentity:
    """The identity claims of a Fulcio-style certificate.

    Raises:
        FormatError: an extension is duplicated or a claim is malformed, or
            the v1 and v2 issuer claims disagree.
    """
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID

    try:
        extensions = cert.extensions
    except (ValueError, x509.DuplicateExtension) as exc:
        raise FormatError(
            f"the signing certificate's extensions are malformed: {exc}", check="certificate"
        ) from exc
    del extensions
    raw_v2 = _raw_extension(cert, _OID_ISSUER_V2)
    raw_v1 = _raw_extension(cert, _OID_ISSUER_V1)
    issuer_v2 = None if raw_v2 is None else _der_utf8(raw_v2, "issuer")
    issuer_v1 = None if raw_v1 is None else _decode(raw_v1, "issuer (v1)")
    if issuer_v1 is not None and issuer_v2 is not None and issuer_v1 != issuer_v2:
        raise FormatError(
            "the certificate's two issuer claims disagree",
            check="certificate",
            expected=issuer_v2,
            got=issuer_v1,
        )
    issuer = issuer_v2 if issuer_v2 is not None else issuer_v1

    san: str | None = None
    try:
        names = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        names = None
    if names is not None:
        assert isinstance(names, x509.SubjectAlternativeName)
        values = [
            *names.get_values_for_type(x509.UniformResourceIdentifier),
            *names.get_values_for_type(x509.RFC822Name),
        ]
        if len(values) > 1:
            raise FormatError(
                "the signing certificate names more than one identity", check="certificate"
            )
        if values:
            san = _decode(values[0].encode("utf-8"), "subject alternative name")

    claims: dict[str, str] = {}
    for name, oid in _V2_CLAIMS.items():
        raw = _raw_extension(cert, oid)
        if raw is not None:
            claims[name] = _der_utf8(raw, name)
    return SignerIdentity(issuer=issuer, san=san, **claims)


def mismatches(pin: Identity, signer: SignerIdentity) -> list[str]:
    """The claims on which ``signer`` differs from ``pin`` (empty: it matches).

    Each item reads ``claim: pinned X, signed Y`` (``signed (absent)`` for a
    claim the certificate does not carry).
    """
    out: list[str] = []

    def compare(label: str, pinned: str | None, got: str | None, ok: bool) -> None:
        if pinned is None:
            return
        if got is None:
            out.append(f"{label}: pinned {pinned}, signed (absent)")
        elif not ok:
            out.append(f"{label}: pinned {pinned}, signed {got}")

    compare("issuer", pin.issuer, signer.issuer, signer.issuer == pin.issuer)
    compare("identity", pin.identity, signer.san, signer.san == pin.identity)
    compare(
        "repository",
        pin.repository,
        signer.source_repository_uri,
        signer.source_repository_uri == pin.repository,
    )
    compare("workflow", pin.workflow, signer.workflow, signer.workflow == pin.workflow)
    ref = signer.source_repository_ref
    compare("ref", pin.ref, ref, ref is not None and pin.ref_matches(ref))
    compare(
        "environment",
        pin.environment,
        signer.deployment_environment,
        signer.deployment_environment == pin.environment,
    )
    return out


def matching(pins: tuple[Identity, ...], signer: SignerIdentity) -> tuple[Identity, ...]:
    """The pins ``signer`` satisfies (in pin order)."""
    return tuple(pin for pin in pins if not mismatches(pin, signer))
