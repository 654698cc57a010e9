"""Object storage for media: an S3-compatible bucket (aiobotocore, the asyncio build of AWS's
own botocore) in production, or a folder under `hotelchat dev` and when no bucket is configured.

Both are `services.ports.ObjectStorage`. Keys are `hotels/<hotel id>/…`; nothing is ever made
public: staff and Twilio reach files only through HotelChat's authorised and signed routes.
S3 calls: https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html,
`GetObject`, `DeleteObject` (a missing key deletes without error).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import structlog
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from hotelchat.domain.errors import InvalidInput, NotFound, Unavailable

log = structlog.get_logger(__name__)

_KEY = re.compile(r"^hotels/[0-9]{1,19}/[A-Za-z0-9._/-]{1,400}$")


def check_key(key: str) -> str:
    """`key` if it is a hotel-prefixed key with no `..` segment; raises `InvalidInput`."""
    if not _KEY.fullmatch(key) or ".." in key.split("/"):
        raise InvalidInput("bad storage key")
    return key


class FilesystemStorage:
    """Files under `root` (created if missing), written atomically (a temporary file renamed
    into place), read and written in a thread so the event loop never blocks on the disk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

        try:
            await asyncio.to_thread(write)
        except OSError as exc:
            raise Unavailable("media storage could not write the file") from exc

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound("no such file") from None
        except OSError as exc:
            raise Unavailable("media storage could not read the file") from exc

    async def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(path.unlink)

    async def close(self) -> None:
        return None


class S3Storage:
    """A bucket of an S3-compatible service (AWS S3, MinIO, Ceph, R2…) through aiobotocore, with
    connect and read timeouts (seconds) and botocore's standard retry mode (3 attempts in all).
    `endpoint_url` None: AWS. Path-style addressing, which every S3-compatible server speaks.
    Call `close()` on shutdown."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        timeout: float,
    ) -> None:
        self.bucket = bucket
        self._kwargs: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "config": Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        }
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def _s3(self) -> Any:
        """The client, made at first use. No lock: opening one may resolve credentials over
        the network; two first uses at once make two clients, both closed by `close()`."""
        if self._client is None:
            client = await self._stack.enter_async_context(
                get_session().create_client("s3", **self._kwargs)
            )
            self._client = self._client or client
        return self._client

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        client = await self._s3()
        try:
            await client.put_object(
                Bucket=self.bucket, Key=check_key(key), Body=data, ContentType=content_type
            )
        except (BotoCoreError, ClientError) as exc:
            raise Unavailable(f"object storage refused the file ({type(exc).__name__})") from exc

    async def get(self, key: str) -> bytes:
        client = await self._s3()
        try:
            response = await client.get_object(Bucket=self.bucket, Key=check_key(key))
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFound("no such file") from None
            raise Unavailable("object storage did not return the file") from exc
        except BotoCoreError as exc:
            raise Unavailable("object storage did not answer") from exc

    async def delete(self, key: str) -> None:
        client = await self._s3()
        try:
            await client.delete_object(Bucket=self.bucket, Key=check_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise Unavailable("object storage did not delete the file") from exc

    async def close(self) -> None:
        try:
            async with asyncio.timeout(5):
                await self._stack.aclose()
        except TimeoutError:
            log.warning("storage.close_timeout")
        self._client = None
