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


def _nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# Written out rather than read from ``ip.is_global``, whose answers change between Python patch
# releases (3.11.7 counts fec0::1, 3fff::1, 5f00::1 and 64:ff9b:1::7f00:1 as global).
# IANA IPv4 special-purpose registry (RFC 6890 and later) plus multicast and reserved.
_IPV4_NOT_PUBLIC = _nets(
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # carrier-grade NAT
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local, cloud metadata
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments (its few anycast /32s are no webhook either)
    "192.0.2.0/24",  # TEST-NET-1
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
    "192.168.0.0/16",  # private
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # TEST-NET-2
    "203.0.113.0/24",  # TEST-NET-3
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and 255.255.255.255 broadcast
)
# Global unicast is 2000::/3; everything outside it (loopback, ::/96 IPv4-compatible, IPv4-mapped
# and -translated, 64:ff9b::/96 and 64:ff9b:1::/48 NAT64, 100::/64, fc00::/7, fe80::/10, fec0::/10,
# ff00::/8, ...) is refused unless it is one of the IPv4-carrying forms judged below.
_IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_IPV6_NOT_PUBLIC = _nets(
    # IETF protocol assignments: Teredo 2001::/32 (its IPv4 is obfuscated and relayed),
    # benchmarking 2001:2::/48, AMT, AS112, ORCHIDv2, DRIP... none of them hosts a webhook.
    "2001::/23",
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation
    "5f00::/16",  # SRv6 SIDs
)
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # must not carry a non-global IPv4 (RFC 6052)


class UnsafeAddress(Exception):
    """The webhook's host resolves to an address the server must not connect to."""


def is_public_address(ip: IPAddress) -> bool:
    """A global unicast address, from explicit lists so the answer does not depend on the
    Python version. IPv6 forms that reach an IPv4 address (mapped ``::ffff:a.b.c.d``, 6to4
    ``2002::/16``, NAT64 ``64:ff9b::/96``) are judged by that IPv4 address; other IPv4-carrying
    forms (IPv4-compatible, IPv4-translated, local-use NAT64, Teredo) are refused outright."""
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(int(ip))  # without a %scope
        embedded = ip.sixtofour
        if ip in _IPV4_MAPPED or ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
        return ip in _IPV6_GLOBAL_UNICAST and not any(ip in net for net in _IPV6_NOT_PUBLIC)
    return not any(ip in net for net in _IPV4_NOT_PUBLIC)


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
