"""One openssl CA and the certificates and kubeconfigs of every component.

Nothing is regenerated when it already exists and was made from the same request (the request is
stored next to the certificate), so ``up`` twice keeps the same CA and tokens stay valid.
"""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

DAYS = 3650


@dataclass(frozen=True)
class CertRequest:
    """A leaf certificate signed by the cluster CA."""

    name: str  # file stem in the pki dir
    cn: str
    orgs: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    server: bool = False
    client: bool = True
    ca: str = "ca"  # file stem of the signing CA

    def spec(self) -> str:
        return json.dumps(
            {
                "cn": self.cn,
                "o": self.orgs,
                "dns": self.dns,
                "ip": self.ips,
                "server": self.server,
                "client": self.client,
                "ca": self.ca,
            },
            sort_keys=True,
        )


def _openssl(*args: str, cwd: Path | None = None) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{res.stderr}")


class PKI:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def crt(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def ensure_ca(self, name: str = "ca", cn: str = "space-dra-local-ca") -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        crt, key = self.crt(name), self.key(name)
        if crt.exists() and key.exists():
            return
        _openssl("genrsa", "-out", str(key), "2048")
        _openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            str(key),
            "-sha256",
            "-days",
            str(DAYS),
            "-subj",
            f"/CN={cn}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-out",
            str(crt),
        )

    def ensure_service_account_keys(self) -> None:
        if self.sa_key.exists() and self.sa_pub.exists():
            return
        _openssl("genrsa", "-out", str(self.sa_key), "2048")
        _openssl("rsa", "-in", str(self.sa_key), "-pubout", "-out", str(self.sa_pub))

    def ensure_cert(self, req: CertRequest) -> None:
        spec_file = self.dir / f"{req.name}.req.json"
        crt, key = self.crt(req.name), self.key(req.name)
        if (
            crt.exists()
            and key.exists()
            and spec_file.exists()
            and spec_file.read_text() == req.spec()
        ):
            return
        subj = "/" + "/".join([*(f"O={o}" for o in req.orgs), f"CN={req.cn}"])
        usages = []
        if req.server:
            usages.append("serverAuth")
        if req.client:
            usages.append("clientAuth")
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={','.join(usages)}",
        ]
        sans = [f"DNS:{d}" for d in req.dns] + [f"IP:{i}" for i in req.ips]
        if sans:
            ext.append(f"subjectAltName={','.join(sans)}")
        extfile = self.dir / f"{req.name}.ext"
        extfile.write_text("\n".join(ext) + "\n")
        csr = self.dir / f"{req.name}.csr"
        _openssl("genrsa", "-out", str(key), "2048")
        _openssl("req", "-new", "-key", str(key), "-subj", subj, "-out", str(csr))
        _openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(self.crt(req.ca)),
            "-CAkey",
            str(self.key(req.ca)),
            "-CAcreateserial",
            "-sha256",
            "-days",
            str(DAYS),
            "-extfile",
            str(extfile),
            "-out",
            str(crt),
        )
        csr.unlink()
        extfile.unlink()
        spec_file.write_text(req.spec())

    def kubeconfig(self, out: Path, server: str, name: str, *, embed: bool = False) -> None:
        """Write a kubeconfig for the client certificate ``name``."""
        cluster: dict[str, str] = {"server": server}
        user: dict[str, str] = {}
        if embed:
            cluster["certificate-authority-data"] = _b64(self.ca_crt)
            user["client-certificate-data"] = _b64(self.crt(name))
            user["client-key-data"] = _b64(self.key(name))
        else:
            cluster["certificate-authority"] = str(self.ca_crt)
            user["client-certificate"] = str(self.crt(name))
            user["client-key"] = str(self.key(name))
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "space-dra-local", "cluster": cluster}],
            "users": [{"name": name, "user": user}],
            "contexts": [
                {
                    "name": "space-dra-local",
                    "context": {"cluster": "space-dra-local", "user": name},
                }
            ],
            "current-context": "space-dra-local",
        }
        text = yaml.safe_dump(cfg, sort_keys=False)
        if not out.exists() or out.read_text() != text:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
            out.chmod(0o600)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
