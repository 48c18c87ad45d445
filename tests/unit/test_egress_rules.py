"""apex.config.proxy and apex.upstream.egress: how proxy values and NO_PROXY are read (pure rules, no sockets;
the integration tests in tests/integration/test_egress*.py send traffic through real proxies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from apex.config.proxy import parse_proxy
from apex.upstream.egress import Egress, NoProxy, TlsOptions, build_egress


@pytest.mark.parametrize(("value", "host", "port", "basic"), [
    ("http://proxy.corp:3128", "proxy.corp", 3128, False),
    ("proxy.corp:3128", "proxy.corp", 3128, False),        # no scheme: http, as curl/requests/httpx/Go
    ("proxy.corp", "proxy.corp", 80, False),
    ("alice:s3cret@proxy.corp:3128", "proxy.corp", 3128, True),
    ("http://[::1]:3128", "::1", 3128, False),
    ("HTTP://Proxy.Corp:8080/", "proxy.corp", 8080, False),
])
def test_proxy_values(value: str, host: str, port: int, basic: bool) -> None:
    proxy = parse_proxy(value)
    assert (proxy.host, proxy.port, proxy.scheme, proxy.tls, proxy.socks) == (host, port, "http", False, False)
    assert (proxy.authorization is not None) == basic
    assert "s3cret" not in repr(proxy)


@pytest.mark.parametrize(("value", "port"), [("https://proxy.corp", 443), ("HTTPS://u:p@proxy.corp:8443", 8443)])
def test_https_proxy_values(value: str, port: int) -> None:
    proxy = parse_proxy(value)
    assert (proxy.scheme, proxy.port, proxy.tls, proxy.socks) == ("https", port, True, False)


@pytest.mark.parametrize(("value", "why"), [
    ("socks4://proxy.corp:1080", "got socks4; socks4 proxies are not supported"),
    ("ftp://proxy.corp:21", "got ftp"),
    ("http://proxy.corp:99999", "invalid port"),
    ("http://proxy.corp:3128/path", "must not have a path"),
    ("", "got no scheme"),
])
def test_bad_proxy_values(value: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_proxy(value)


def test_schemeless_environment_proxy_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "proxy.corp:3128")
    egress = build_egress("oa", None, None, None)
    proxy = egress.proxy_for("https", "api.openai.com", 443)
    assert proxy is not None and (proxy.host, proxy.port) == ("proxy.corp", 3128)
    assert egress.proxy_for("http", "api.openai.com", 80) is None  # no HTTP_PROXY, no ALL_PROXY


NO_PROXY = "localhost, .corp.example,*.svc.cluster.local,10.0.0.0/8,192.168.1.7,fd00::/8,gpu-box:8000,[::1]:9000"


@pytest.mark.parametrize(("host", "port", "direct"), [
    ("localhost", 443, True),
    ("LOCALHOST", 443, True),
    ("api.corp.example", 443, True),        # subdomain of a leading-dot entry
    ("corp.example", 443, True),            # and the name itself, as curl and urllib read it
    ("notcorp.example", 443, False),        # a suffix that is not a label boundary
    ("vllm.ns.svc.cluster.local", 80, True),
    ("10.1.2.3", 443, True),                # CIDR
    ("11.1.2.3", 443, False),
    ("192.168.1.7", 80, True),
    ("192.168.1.8", 80, False),
    ("fd00::12", 443, True),                # IPv6 CIDR
    ("fe80::1", 443, False),
    ("gpu-box", 8000, True),                # name with a port: that port only
    ("gpu-box", 8001, False),
    ("::1", 9000, True),
    ("::1", 9001, False),
    ("api.openai.com", 443, False),
])
def test_no_proxy_rules(host: str, port: int, direct: bool) -> None:
    assert NoProxy(NO_PROXY).bypass(host, port) is direct


def test_no_proxy_star_and_empty() -> None:
    assert NoProxy("*").bypass("api.openai.com", 443)
    assert not NoProxy("").bypass("localhost", 80)
    assert not NoProxy(" , ,").bypass("localhost", 80)


def test_no_proxy_applies_through_the_environment() -> None:
    env = {"https": "http://proxy.corp:3128", "no": "10.0.0.0/8,.internal"}
    egress = Egress("oa", mode="env", env=env)
    assert egress.proxy_for("https", "10.20.30.40", 443) is None
    assert egress.proxy_for("https", "llm.internal", 443) is None
    proxy = egress.proxy_for("https", "api.anthropic.com", 443)
    assert proxy is not None and proxy.host == "proxy.corp"


def test_an_encrypted_client_key_is_refused_without_a_prompt(tmp_path: Path) -> None:
    """OpenSSL would ask for the passphrase on the terminal (a hang in `apex config validate`
    or a reload); instead the key path says the key is encrypted and what to do."""
    trustme = pytest.importorskip("trustme")
    from cryptography.hazmat.primitives import serialization

    cert = trustme.CA().issue_cert("client.example")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "client.crt"))
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    (tmp_path / "client.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"hunter2")))
    (tmp_path / "both.pem").write_bytes((tmp_path / "client.crt").read_bytes() + (tmp_path / "client.key").read_bytes())
    with pytest.raises(ValueError, match=r"^tls\.key_file: the private key is encrypted"):
        build_egress("oa", None, TlsOptions(cert_file=str(tmp_path / "client.crt"), key_file=str(tmp_path / "client.key")), None)
    with pytest.raises(ValueError, match=r"^tls\.cert_file: the private key is encrypted"):
        build_egress("oa", None, TlsOptions(cert_file=str(tmp_path / "both.pem")), None)
    cert.private_key_pem.write_to_path(str(tmp_path / "plain.key"))
    assert build_egress("oa", None, TlsOptions(cert_file=str(tmp_path / "client.crt"),
                                               key_file=str(tmp_path / "plain.key")), None).ssl is not None
