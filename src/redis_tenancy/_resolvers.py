"""Where a web request names its tenant: a header, the subdomain, a path prefix.

The rules here only turn strings into a tenant name (or ``None``); they never see a
request object. :mod:`redis_tenancy.asgi`, :mod:`redis_tenancy.wsgi` and
:mod:`redis_tenancy.django` read the header, host or path out of their own request
shape and hand it over, so the three middlewares agree on every edge case: an empty
or blank value is no tenant, two different values for one header are no tenant
(never "the first one wins"), a host that is not a subdomain of the configured
domain is no tenant. "No tenant" is then answered exactly like an unknown one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ._errors import TenantConfigError

__all__ = ["HeaderRule", "PathPrefixRule", "SubdomainRule"]

# RFC 9110 token characters: what a header field name may hold.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class HeaderRule:
    """The tenant is the value of one request header (``X-Tenant`` by default).

    Attributes:
        name: the header's name, matched case-insensitively.
    """

    name: str = "X-Tenant"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TOKEN.fullmatch(self.name):
            raise TenantConfigError(f"not a valid HTTP header name: {self.name!r}")

    @property
    def asgi_key(self) -> bytes:
        """The name as ASGI servers spell it: lowercase bytes."""
        return self.name.lower().encode("ascii")

    @property
    def environ_key(self) -> str:
        """The name as a WSGI environ key: ``X-Tenant`` -> ``HTTP_X_TENANT``."""
        return "HTTP_" + self.name.upper().replace("-", "_")

    def pick(self, values: Iterable[str]) -> str | None:
        """The tenant named by the header's values (all of its occurrences).

        Blank values count as absent; two different non-blank values make the request
        ambiguous, which is answered as "no tenant" rather than guessed.
        """
        found: str | None = None
        for raw in values:
            value = raw.strip()
            if not value:
                continue
            if found is not None and value != found:
                return None
            found = value
        return found


@dataclass(frozen=True, slots=True)
class SubdomainRule:
    """The tenant is the one DNS label in front of ``domain``: ``acme.example.com``.

    Only a single label counts (``a.b.example.com`` and ``example.com`` itself name
    no tenant); the host is compared in lowercase and its port ignored.

    Attributes:
        domain: the parent domain, e.g. ``"example.com"``.
    """

    domain: str

    def __post_init__(self) -> None:
        if not isinstance(self.domain, str):
            raise TenantConfigError(f"domain must be a str, got {type(self.domain).__name__}")
        domain = self.domain.strip().strip(".").lower()
        if not domain or not all(_LABEL.fullmatch(label) for label in domain.split(".")):
            raise TenantConfigError(f"not a valid domain name: {self.domain!r}")
        object.__setattr__(self, "domain", domain)

    def pick(self, host: str | None) -> str | None:
        """The tenant named by a ``Host`` header value, or ``None``."""
        if not host:
            return None
        host = host.strip().lower()
        if host.startswith("["):  # an IPv6 literal is never a subdomain
            return None
        host = host.rpartition(":")[0] if ":" in host else host
        host = host.rstrip(".")
        suffix = "." + self.domain
        if not host.endswith(suffix):
            return None
        label = host[: -len(suffix)]
        return label if _LABEL.fullmatch(label) else None


@dataclass(frozen=True, slots=True)
class PathPrefixRule:
    """The tenant is the first path segment after ``prefix``: ``/t/acme/orders``.

    The rule only reads the path; routes keep seeing the full path, so they include
    the tenant segment (e.g. FastAPI's ``"/t/{tenant}/orders"``).

    Attributes:
        prefix: ``""`` (the tenant is the first segment) or a path such as ``"/t"``.
    """

    prefix: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str):
            raise TenantConfigError(f"prefix must be a str, got {type(self.prefix).__name__}")
        prefix = self.prefix.strip().rstrip("/")
        if prefix and not prefix.startswith("/"):
            prefix = "/" + prefix
        object.__setattr__(self, "prefix", prefix)

    def pick(self, path: str) -> str | None:
        """The tenant named by a (percent-decoded) request path, or ``None``."""
        start = len(self.prefix) + 1
        if not path.startswith(self.prefix + "/") or len(path) <= start:
            return None
        segment = path[start:].partition("/")[0].strip()
        return segment or None
