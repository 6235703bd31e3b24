"""Presigned S3 GET and PUT URLs (AWS Signature Version 4, query-string form), signed without botocore's pipeline.

botocore builds a presigned URL by running a whole request through its machinery (endpoint ruleset
resolution, parameter validation, serialisation, event hooks) before the few HMACs that make the
signature: a py-spy profile of a worker training 2,000 identifiers put 41 % of its busy time in
``generate_presigned_url``. The signature itself is a few lines of the published algorithm
(https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html). It is used only with
static credentials (the ones in our settings); without them BlobStore keeps botocore, which knows the
other credential sources. tests/storage/test_sigv4.py checks it against botocore, byte for byte, and
against SeaweedFS, which verifies it. PUT URLs serve the single-request uploads of small objects (an
identifier image): botocore's ``put_object`` pipeline cost more gateway CPU per upload than S3 took to
store it.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_EXPIRES = 7 * 24 * 3600  # what S3 accepts


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _encode(text: str) -> str:
    """RFC 3986 percent-encoding, as SigV4 wants for query keys and values: only A-Z a-z 0-9 - _ . ~ stay."""
    return quote(text, safe="-_.~")


class GetUrlSigner:
    """Signs GET URLs for objects of one bucket at one path-style endpoint, with static credentials."""

    def __init__(self, endpoint_url: str, bucket: str, region: str, access_key: str, secret_key: str) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an S3 endpoint URL: {endpoint_url!r}")
        default_port = 443 if parts.scheme == "https" else 80
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        self._host = host if parts.port in (None, default_port) else f"{host}:{parts.port}"
        self._origin = f"{parts.scheme}://{self._host}"
        self._prefix = parts.path.rstrip("/") + "/" + quote(bucket, safe="-_.~")
        self._region = region
        self._access_key = access_key
        self._secret = secret_key
        self._keys: dict[str, bytes] = {}  # signing key per day: four HMACs saved on every URL

    def _signing_key(self, day: str) -> bytes:
        key = self._keys.get(day)
        if key is None:
            key = _hmac(_hmac(_hmac(_hmac(f"AWS4{self._secret}".encode(), day), self._region), "s3"), "aws4_request")
            self._keys = {day: key}  # yesterday's is never needed again
        return key

    def get_url(self, key: str, expires_in: int, *, now: datetime | None = None) -> str:
        return self.url("GET", key, expires_in, now=now)

    def put_url(self, key: str, expires_in: int, *, now: datetime | None = None) -> str:
        """A URL to PUT the object with (headers such as Content-Type travel unsigned, as S3 allows)."""
        return self.url("PUT", key, expires_in, now=now)

    def url(self, method: str, key: str, expires_in: int, *, now: datetime | None = None) -> str:
        if not 1 <= expires_in <= MAX_EXPIRES:
            raise ValueError(f"expires_in must be 1..{MAX_EXPIRES} seconds")
        moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        stamp = moment.strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        scope = f"{day}/{self._region}/s3/aws4_request"
        # S3 signs the path as sent, each character outside the unreserved set encoded once; "/" stays.
        path = self._prefix + "/" + quote(key, safe="/-_.~")
        params = {
            "X-Amz-Algorithm": ALGORITHM,
            "X-Amz-Credential": f"{self._access_key}/{scope}",
            "X-Amz-Date": stamp,
            "X-Amz-Expires": str(expires_in),
            "X-Amz-SignedHeaders": "host",
        }
        query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items()))
        canonical = f"{method}\n{path}\n{query}\nhost:{self._host}\n\nhost\nUNSIGNED-PAYLOAD"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{self._origin}{path}?{query}&X-Amz-Signature={signature}"
