"""What the operator reads from and writes to the Kubernetes API besides its own `Hotel`
objects (which kopf handles): the Secrets holding Twilio auth tokens, the ConfigMaps holding
knowledge bases, the namespaces (chains), and the Secrets it creates for new agents' one-time
passwords. Through lightkube's async client, connecting in-cluster or through KUBECONFIG.

Only `get` and `create` by name: the operator never lists or watches Secrets, so its RBAC needs
no more (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources).
"""

from __future__ import annotations

import base64
import binascii
import secrets

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.core.exceptions import ConfigError as KubeConfigError
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.core_v1 import ConfigMap, Namespace, Secret

from hotelchat.domain.errors import HotelChatError, Unavailable
from hotelchat.domain.tenants import agent_secret_name

API_TIMEOUT_SECONDS = 10.0
CHAIN_NAME_ANNOTATION = "hotelchat.io/chain-name"
AGENT_EMAIL_ANNOTATION = "hotelchat.io/agent-email"
HOTEL_LABEL = "hotelchat.io/hotel"
PASSWORD_BYTES = 18  # 24 characters of url-safe base64


class MissingReference(HotelChatError):
    """A Secret, ConfigMap or key named by a resource does not exist or cannot be read.
    `reason` is the condition reason to show (CamelCase)."""

    code = "reference_error"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


class KubernetesCluster:
    """The operator's own reads and writes, each bounded by `timeout` seconds."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    @classmethod
    def from_environment(cls, timeout: float = API_TIMEOUT_SECONDS) -> KubernetesCluster:
        """In-cluster (a ServiceAccount token) or from KUBECONFIG / ~/.kube/config; raises
        `Unavailable` when neither is there."""
        try:
            config = KubeConfig.from_env()
        except (KubeConfigError, OSError) as exc:
            raise Unavailable(f"no Kubernetes credentials: {exc}") from exc
        return cls(AsyncClient(config, timeout=httpx2.Timeout(timeout), field_manager="hotelchat"))

    async def close(self) -> None:
        await self.client.close()

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        """The text under `key` of Secret `name`. Raises `MissingReference` (reason
        SecretNotFound, SecretKeyNotFound) or `Unavailable`."""
        try:
            secret = await self.client.get(Secret, name, namespace=namespace)
        except ApiError as exc:
            raise _reference(exc, "Secret", namespace, name, "SecretNotFound") from exc
        except httpx2.HTTPError as exc:
            raise Unavailable("the Kubernetes API did not answer") from exc
        encoded = (secret.data or {}).get(key)
        if encoded is None:
            raise MissingReference(
                f"Secret {namespace}/{name} has no key {key!r}", reason="SecretKeyNotFound"
            )
        try:
            return base64.b64decode(encoded, validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            raise MissingReference(
                f"Secret {namespace}/{name} key {key!r} is not UTF-8 text",
                reason="SecretKeyNotFound",
            ) from None

    async def config_map_value(self, namespace: str, name: str, key: str) -> bytes:
        """The content under `key` of ConfigMap `name` (its `data`, or `binaryData`). Raises
        `MissingReference` (reason ConfigMapNotFound, ConfigMapKeyNotFound) or `Unavailable`."""
        try:
            config_map = await self.client.get(ConfigMap, name, namespace=namespace)
        except ApiError as exc:
            raise _reference(exc, "ConfigMap", namespace, name, "ConfigMapNotFound") from exc
        except httpx2.HTTPError as exc:
            raise Unavailable("the Kubernetes API did not answer") from exc
        text = (config_map.data or {}).get(key)
        if text is not None:
            return str(text).encode()
        binary = (config_map.binaryData or {}).get(key)
        if binary is not None:
            decoded: bytes = base64.b64decode(str(binary))
            return decoded
        raise MissingReference(
            f"ConfigMap {namespace}/{name} has no key {key!r}", reason="ConfigMapKeyNotFound"
        )

    async def chain_name(self, namespace: str) -> str:
        """The chain's display name: the namespace's `hotelchat.io/chain-name` annotation, else
        the namespace's name. Raises `Unavailable`."""
        try:
            found = await self.client.get(Namespace, namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return namespace
            raise Unavailable(f"reading Namespace {namespace}: {exc.status.message}") from exc
        except httpx2.HTTPError as exc:
            raise Unavailable("the Kubernetes API did not answer") from exc
        annotations = (found.metadata.annotations if found.metadata else None) or {}
        name = annotations.get(CHAIN_NAME_ANNOTATION, "").strip()
        return name[:200] or namespace

    async def agent_password(
        self, namespace: str, hotel_name: str, hotel_uid: str, email: str
    ) -> tuple[str, str]:
        """`(secret name, password)` of agent `email`'s one-time password: read from its
        Secret when it exists, else made and stored in a new Secret owned by the Hotel (deleted
        with it). Raises `Unavailable`, or `MissingReference` (reason AgentSecretInvalid) when a
        Secret of that name exists without a `password` key."""
        name = agent_secret_name(hotel_name, email)
        existing = await self._stored_password(namespace, name)
        if existing is not None:
            return name, existing
        password = new_password()
        secret = Secret(
            metadata=ObjectMeta(
                name=name,
                namespace=namespace,
                labels={HOTEL_LABEL: hotel_name[:63], "app.kubernetes.io/managed-by": "hotelchat"},
                annotations={AGENT_EMAIL_ANNOTATION: email},
                ownerReferences=[
                    OwnerReference(
                        apiVersion="hotelchat.io/v1alpha1",
                        kind="Hotel",
                        name=hotel_name,
                        uid=hotel_uid,
                        controller=True,
                        blockOwnerDeletion=False,
                    )
                ],
            ),
            type="Opaque",
            stringData={"email": email, "password": password},
        )
        try:
            await self.client.create(secret)
        except ApiError as exc:
            if exc.status.code != 409:
                raise Unavailable(
                    f"creating Secret {namespace}/{name}: {exc.status.message}"
                ) from exc
            # Made meanwhile by another attempt (or by someone else): use that one.
            existing = await self._stored_password(namespace, name)
            if existing is None:
                raise MissingReference(
                    f"Secret {namespace}/{name} exists without a password key; delete it",
                    reason="AgentSecretInvalid",
                ) from exc
            return name, existing
        except httpx2.HTTPError as exc:
            raise Unavailable("the Kubernetes API did not answer") from exc
        return name, password

    async def _stored_password(self, namespace: str, name: str) -> str | None:
        try:
            found = await self.client.get(Secret, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise Unavailable(f"reading Secret {namespace}/{name}: {exc.status.message}") from exc
        except httpx2.HTTPError as exc:
            raise Unavailable("the Kubernetes API did not answer") from exc
        encoded = (found.data or {}).get("password")
        if not encoded:
            return None
        try:
            return base64.b64decode(encoded).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None


def _reference(
    exc: ApiError, kind: str, namespace: str, name: str, missing_reason: str
) -> HotelChatError:
    code = exc.status.code
    if code == 404:
        return MissingReference(f"{kind} {namespace}/{name} does not exist", reason=missing_reason)
    if code == 403:
        return MissingReference(
            f"the operator may not read {kind} {namespace}/{name} (RBAC)", reason="Forbidden"
        )
    return Unavailable(f"reading {kind} {namespace}/{name}: {exc.status.message}")
