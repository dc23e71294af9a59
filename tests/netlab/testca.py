"""A throw-away certificate authority for the stand-in's HTTPS (openssl command)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

NAMES = ("www.speedtest.net", "c.speedtest.net")


@dataclass(frozen=True)
class TestCA:
    """``ca`` is what a client trusts (SSL_CERT_FILE); ``cert``/``key`` serve."""

    __test__ = False  # not a pytest test class

    ca: Path
    cert: Path
    key: Path


def make_test_ca(directory: Path, names: tuple[str, ...] = NAMES) -> TestCA:
    """Create a CA and a server certificate for ``names`` under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key = directory / "server.pem", directory / "server.key"
    csr, ext = directory / "server.csr", directory / "server.ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    _openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
             "-subj", "/CN=schoolmon netlab test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    _openssl("req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={names[0]}")
    alt = ",".join(f"DNS:{name}" for name in names)
    ext.write_text(
        f"subjectAltName={alt}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        encoding="ascii",
    )
    signing = ["-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2"]
    _openssl("x509", "-req", "-in", csr, *signing, "-out", cert, "-extfile", ext)
    return TestCA(ca=ca, cert=cert, key=key)


def _openssl(*args: object) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
