"""Keyless signing of a manifest payload with sigstore-python (the publisher's side).

``secure-import sign --sigstore`` calls :func:`sign_payload`: sigstore-python
obtains a short-lived certificate for the CI job's (or the person's) OIDC
identity from the Sigstore CA, signs the payload, logs the signature in the
transparency log and returns a standard Sigstore bundle, the same bundle
``sigstore sign`` writes.  Credentials come, in order, from ``identity_token``,
the ``SIGSTORE_ID_TOKEN`` environment variable, or ambient detection by
sigstore-python (its ``detect_credential``: GitHub Actions with
``id-token: write``, GitLab CI ``SIGSTORE_ID_TOKEN``, Buildkite, Cloud Build,
CircleCI).  No browser flow: a publisher without ambient credentials passes a
token, or runs ``sigstore sign`` itself and leaves the bundle next to the
payload file (see docs/operations.md).

Needs the extra ``secure-import[sigstore]``; sigstore is imported only here.
"""

from __future__ import annotations

import os
from pathlib import Path

from secure_import.errors import ConfigError
from secure_import.verify.keyless import require_sigstore

__all__ = ["TOKEN_VARIABLE", "sign_payload"]

#: Environment variable read for an explicit OIDC identity token.
TOKEN_VARIABLE = "SIGSTORE_ID_TOKEN"  # noqa: S105 - a variable name, not a secret


def sign_payload(
    payload: bytes,
    *,
    trust_config: Path | None = None,
    identity_token: str | None = None,
) -> bytes:
    """A Sigstore bundle (JSON bytes) over ``payload``, signed keylessly.

    ``trust_config``: a sigstore client trust configuration (trusted root and
    signing config) for a private Sigstore deployment; by default the
    public-good instance, whose configuration sigstore-python refreshes over
    TUF.

    Raises:
        ConfigError: sigstore is missing, no identity token is available, or
            signing failed (the message carries sigstore-python's reason).
    """
    require_sigstore()
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityToken, detect_credential
    from sigstore.sign import SigningContext

    try:
        if trust_config is not None:
            config = ClientTrustConfig.from_json(trust_config.read_text(encoding="utf-8"))
        else:
            config = ClientTrustConfig.production()
        token = identity_token or os.environ.get(TOKEN_VARIABLE) or detect_credential()
        if not token:
            raise ConfigError(
                "no OIDC identity token for keyless signing: run in a CI job that grants "
                "one (GitHub Actions: permissions id-token: write), or set "
                f"{TOKEN_VARIABLE}",
                check="sigstore-sign",
            )
        context = SigningContext.from_trust_config(config)
        with context.signer(IdentityToken(token), cache=True) as signer:
            bundle = signer.sign_artifact(payload)
    except ConfigError:
        raise
    except Exception as exc:  # any failure inside the third-party signer: one clear error
        raise ConfigError(
            "keyless signing with Sigstore failed",
            check="sigstore-sign",
            got=f"{type(exc).__name__}: {str(exc)[:300]}",
        ) from exc
    return bundle.to_json().encode("utf-8")
