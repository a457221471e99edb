"""Proof that a namespace was created by this controller for a given device.

Labels say which claim a namespace belongs to, but anyone who can label a
namespace can copy them; a controller that trusted labels could be tricked into
deleting a namespace it never made (Capsule's mass-deletion incident). So every
namespace we create carries an HMAC over its name, the claim UID and the device,
keyed by a secret only the controller can read. GC deletes a namespace only if
that signature verifies; a labelled namespace without it is reported, never
touched. The name is chosen by us before creation, so the signature is written
in the same request that creates the namespace: there is no unsigned window.

The key lives in a Secret in the controller's namespace, created on first start.
Losing it makes existing namespaces unverifiable, so they are kept (and
reported), never deleted by mistake.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret

from space_dra.contract import NamespaceView
from space_dra.kube import Conflict, ControllerAPI, NotFound
from space_dra.logs import log_event

log = logging.getLogger(__name__)

KEY_FIELD = "hmac-key"
SIGNATURE_VERSION = "v1"


class Signer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("ownership key must be at least 32 bytes")
        self._key = key

    def sign(self, namespace: str, claim_uid: str, device: str) -> str:
        message = f"{namespace}\n{claim_uid}\n{device}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return f"{SIGNATURE_VERSION}:{digest}"

    def verify(self, signature: str | None, namespace: str, claim_uid: str, device: str) -> bool:
        if not signature:
            return False
        return hmac.compare_digest(signature, self.sign(namespace, claim_uid, device))

    def owns(self, namespace: NamespaceView) -> bool:
        """Whether this controller made ``namespace`` for the claim and device it names."""
        if not namespace.name:
            return False
        return self.verify(
            namespace.signature, namespace.name, namespace.claim_uid, namespace.device
        )


async def load_signer(kube: ControllerAPI, namespace: str, secret_name: str) -> Signer:
    """Read the key Secret, creating it with a random key the first time."""
    for _ in range(3):
        try:
            secret = await kube.get(Secret, secret_name, namespace)
        except NotFound:
            key = secrets.token_bytes(32)
            fresh = Secret(
                metadata=ObjectMeta(name=secret_name, namespace=namespace),
                type="Opaque",
                data={KEY_FIELD: base64.b64encode(key).decode()},
            )
            try:
                await kube.create(fresh)
            except Conflict:
                continue  # another replica created it first; read theirs
            log_event(
                log, logging.INFO, "ownership_key_created", secret=f"{namespace}/{secret_name}"
            )
            return Signer(key)
        return _signer_from(secret, namespace, secret_name)
    raise RuntimeError(f"could not read or create Secret {namespace}/{secret_name}")


async def read_signer(kube: ControllerAPI, namespace: str, secret_name: str) -> Signer:
    """Read the key Secret, never creating one: a new key would verify nothing."""
    try:
        secret = await kube.get(Secret, secret_name, namespace)
    except NotFound:
        raise ValueError(
            f"Secret {namespace}/{secret_name} (the ownership key) does not exist, so no "
            "namespace can be proven to be the driver's; give --namespace and "
            "--ownership-secret of the installation that made them"
        ) from None
    return _signer_from(secret, namespace, secret_name)


def _signer_from(secret: Secret, namespace: str, secret_name: str) -> Signer:
    encoded = (secret.data or {}).get(KEY_FIELD)
    if not encoded:
        raise ValueError(f"Secret {namespace}/{secret_name} has no {KEY_FIELD!r} field")
    return Signer(base64.b64decode(encoded))
