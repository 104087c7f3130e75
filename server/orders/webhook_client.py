"""The HTTP client of the shop's notification webhook: it connects to public addresses only.

Anyone can sign up and name a notification URL, and the server POSTs there. The URL is checked
when saved, but a hostname can resolve elsewhere later (DNS rebinding), so the check that counts
is made when connecting: :class:`PublicOnlyBackend` resolves the host once, refuses the
connection if *any* of its addresses is not a public unicast address, and connects to a vetted
address itself, so no second lookup can swap it. The URL, and with it the ``Host`` header and
TLS (SNI and certificate verification), keeps the original hostname. Redirects are not followed
and proxies from the environment are not used.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable

import anyio
import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class UnsafeAddress(Exception):
    """The webhook's host resolves to an address the server must not connect to."""


def is_public_address(ip: IPAddress) -> bool:
    """A global unicast address. IPv6 forms that carry an IPv4 address (mapped, 6to4, NAT64,
    IPv4-compatible) are judged by that IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and (ip in _NAT64 or ip in _IPV4_COMPATIBLE):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order, without repeats."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving and vetting the host before it connects.

    ``allow_private`` (development only) lets a receiver on this machine or the local network
    through; the connection is still made to the address that was resolved."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        resolver: Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self._resolve = resolver or resolve
        self._inner = inner or httpcore.AnyIOBackend()

    async def vetted_addresses(self, host: str, port: int, timeout: float | None) -> list[str]:
        """The host's addresses; :class:`UnsafeAddress` when any of them is not public."""
        try:
            with anyio.fail_after(timeout):
                found = await self._resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as err:
            raise httpcore.ConnectError(f"cannot resolve {host}: {err}") from None
        if not found:
            raise httpcore.ConnectError(f"cannot resolve {host}: no address")
        if not self.allow_private:
            for address in found:
                if not is_public_address(ipaddress.ip_address(address)):
                    raise UnsafeAddress(
                        f"{host} resolves to {address}, which is not a public address"
                    )
        return found

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        addresses = await self.vetted_addresses(host, port, timeout)
        error: Exception = httpcore.ConnectError(f"cannot connect to {host}")
        for address in addresses:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                return await self._inner.connect_tcp(
                    address, port, left, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as err:
                error = err
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeAddress("a notification is never sent over a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PublicOnlyTransport(httpx.AsyncHTTPTransport):
    def __init__(self, backend: PublicOnlyBackend, verify: ssl.SSLContext | bool) -> None:
        super().__init__(verify=verify, trust_env=False)
        # httpx 0.28 builds its httpcore pool without a way to pass a network backend; this is
        # that pool with ours (tests/orders/test_webhook_client.py fails if it stops working).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            network_backend=backend,
        )


def webhook_client(
    *,
    allow_private: bool = False,
    timeout: float,
    resolver: Resolver | None = None,
    inner: httpcore.AsyncNetworkBackend | None = None,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that only reaches public addresses and follows no redirect.

    ``resolver``, ``inner`` (the backend that really connects) and ``verify`` are for tests."""
    backend = PublicOnlyBackend(allow_private=allow_private, resolver=resolver, inner=inner)
    return httpx.AsyncClient(
        transport=_PublicOnlyTransport(backend, verify),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
