"""The notification webhook's client: public addresses only, vetted at send time and pinned."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import ssl
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from server.orders.webhook_client import UnsafeAddress, is_public_address, webhook_client

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class RecordingStream(httpcore.AsyncMockStream):
    def __init__(self, log: dict[str, Any]) -> None:
        super().__init__([OK])
        self.log = log

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.log["sent"] = self.log.get("sent", b"") + buffer

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.log["tls_hostname"] = server_hostname
        return self


class RecordingBackend(httpcore.AsyncMockBackend):
    """The network: records where connections go and what is sent, answers 200."""

    def __init__(self) -> None:
        super().__init__([])
        self.connects: list[tuple[str, int]] = []
        self.log: dict[str, Any] = {}

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        return RecordingStream(self.log)


def resolver_for(table: dict[str, list[str]], calls: list[str] | None = None) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("172.31.255.254", False),
        ("192.168.1.20", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("fe80::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("::7f00:1", False),  # IPv4-compatible 127.0.0.1
        ("::808:808", False),  # IPv4-compatible forms are deprecated: refused whatever they hold
        # IPv4 special-purpose ranges (RFC 6890, IANA registry)
        ("0.1.2.3", False),
        ("100.127.255.254", False),
        ("192.0.0.9", False),  # IETF protocol assignments
        ("192.0.2.10", False),  # TEST-NET-1
        ("192.88.99.1", False),  # 6to4 relay anycast
        ("198.18.0.1", False),  # benchmarking
        ("198.19.255.254", False),
        ("198.51.100.7", False),  # TEST-NET-2
        ("203.0.113.9", False),  # TEST-NET-3
        ("239.255.255.250", False),
        ("100.63.255.255", True),  # just outside 100.64.0.0/10
        ("172.32.0.1", True),  # just outside 172.16.0.0/12
        ("198.20.0.1", True),  # just outside 198.18.0.0/15
        ("223.255.255.254", True),
        # IPv6: only 2000::/3, less its special-purpose blocks (IANA registry)
        ("2a00:1450:4001::200e", True),
        ("3ffe::1", True),
        ("2620:4f:8000::1", True),
        ("64:ff9b:1::7f00:1", False),  # local-use NAT64, refused whatever it holds
        ("64:ff9b:1::808:808", False),
        ("::ffff:0:7f00:1", False),  # IPv4-translated 127.0.0.1
        ("::ffff:0:808:808", False),  # IPv4-translated forms are refused outright
        ("fec0::1", False),  # site-local (deprecated)
        ("5f00::1", False),  # SRv6 SIDs
        ("3fff::1", False),  # documentation
        ("3fff:fff:ffff::1", False),
        ("2001:db8::1", False),  # documentation
        ("2001::1", False),  # Teredo
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo of a public server
        ("2001:2::1", False),  # benchmarking
        ("2001:20::1", False),  # ORCHIDv2
        ("2001:1ff:ffff::1", False),  # the end of 2001::/23
        ("2001:200::1", True),  # just past it
        ("100::1", False),  # discard-only
        ("::2", False),
        ("4000::1", False),  # outside 2000::/3
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("2002:c000:201::1", False),  # 6to4 of 192.0.2.1
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8 (DNS64 networks)
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("::ffff:198.51.100.1", False),
    ],
)
def test_only_global_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["10.0.0.7"],
        ["169.254.169.254"],
        ["::1"],
        ["93.184.216.34", "10.0.0.1"],  # one bad address among good ones is enough
    ],
)
async def test_a_host_resolving_to_a_private_address_is_refused_before_connecting(
    addresses: list[str],
) -> None:
    network = RecordingBackend()
    resolve = resolver_for({"hooks.shop.test": addresses})
    async with webhook_client(timeout=5, resolver=resolve, inner=network) as client:
        with pytest.raises(UnsafeAddress, match=r"hooks\.shop\.test resolves to .*not a public"):
            await client.post("https://hooks.shop.test/orders", content=b"{}")
    assert network.connects == []


async def test_the_connection_goes_to_the_vetted_address_with_the_hostname_kept() -> None:
    network, calls = RecordingBackend(), []
    resolve = resolver_for({"hooks.shop.test": ["93.184.216.34"]}, calls)
    async with webhook_client(timeout=5, resolver=resolve, inner=network) as client:
        resp = await client.post("https://hooks.shop.test/orders", content=b"{}")
    assert resp.status_code == 200
    assert calls == ["hooks.shop.test"]  # resolved once, never again by the connection
    assert network.connects == [("93.184.216.34", 443)]
    assert network.log["tls_hostname"] == "hooks.shop.test"  # SNI and certificate check
    assert b"\r\nHost: hooks.shop.test\r\n" in network.log["sent"]


async def test_development_allows_a_local_receiver_still_pinned() -> None:
    network = RecordingBackend()
    resolve = resolver_for({"localhost": ["127.0.0.1"]})
    async with webhook_client(
        allow_private=True, timeout=5, resolver=resolve, inner=network
    ) as client:
        assert (await client.post("http://localhost:8001/hook")).status_code == 200
    assert network.connects == [("127.0.0.1", 8001)]


async def test_an_unresolvable_host_is_an_ordinary_connection_error() -> None:
    async with webhook_client(timeout=5, resolver=resolver_for({})) as client:
        with pytest.raises(httpx.ConnectError, match=r"cannot resolve nowhere\.test"):
            await client.post("https://nowhere.test/hook")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for hooks.shop.test (and nothing else)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=hooks.shop.test",
         "-addext", "subjectAltName=DNS:hooks.shop.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_is_verified_for_the_hostname_over_the_pinned_address(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    sni: list[str | None] = []

    def record_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        sni.append(name)

    server_ctx.sni_callback = record_sni

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    trust = ssl.create_default_context(cafile=str(cert))
    resolve = resolver_for({"hooks.shop.test": ["127.0.0.1"], "other.shop.test": ["127.0.0.1"]})
    try:
        async with webhook_client(
            allow_private=True, timeout=5, resolver=resolve, verify=trust
        ) as client:
            resp = await client.post(f"https://hooks.shop.test:{port}/hook", content=b"{}")
            assert resp.status_code == 200 and sni == ["hooks.shop.test"]
            # The same address under a name the certificate does not cover: refused by TLS.
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.post(f"https://other.shop.test:{port}/hook", content=b"{}")
    finally:
        server.close()
        await server.wait_closed()
