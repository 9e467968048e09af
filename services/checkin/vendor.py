"""Fetches the door app's third-party browser code from npm, pinned and integrity-checked (vendor.json).

Run from anywhere: `python services/checkin/vendor.py`. The files are written under the service's
static folder and never committed; a file already there with the pinned hash is left alone, so
running this again is cheap and works offline once done.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "vendor.json"
TIMEOUT_SECONDS = 60


class VendorError(Exception):
    """A download that does not match its pin, or a tarball without the pinned file."""


def tarball_url(registry: str, name: str, version: str) -> str:
    # The npm registry's layout for unscoped packages.
    return f"{registry.rstrip('/')}/{name}/-/{name}-{version}.tgz"


def check_integrity(data: bytes, integrity: str) -> None:
    """Subresource-integrity check, as npm's `dist.integrity` states it (sha512-<base64>)."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm not in ("sha512", "sha384", "sha256"):
        raise VendorError(f"unsupported integrity algorithm {algorithm!r}")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise VendorError("the downloaded tarball does not match its pinned integrity")


def extract(tarball: bytes, member: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        try:
            info = archive.getmember(member)
        except KeyError as exc:
            raise VendorError(f"{member} is not in the tarball") from exc
        handle = archive.extractfile(info) if info.isfile() else None
        if handle is None:
            raise VendorError(f"{member} is not a regular file")
        return handle.read()


def sha256_of(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def write_atomically(target: Path, content: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def vendor(package: dict[str, Any], registry: str) -> str:
    """Puts one package's pinned files in place; returns what was done, for the caller to print."""
    wanted = [entry for entry in package["files"] if sha256_of(HERE / entry["to"]) != entry["sha256"]]
    label = f"{package['name']} {package['version']}"
    if not wanted:
        return f"{label}: already in place"
    url = tarball_url(registry, package["name"], package["version"])
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
        tarball = response.read()
    check_integrity(tarball, package["integrity"])
    for entry in wanted:
        content = extract(tarball, entry["from"])
        if hashlib.sha256(content).hexdigest() != entry["sha256"]:
            raise VendorError(f"{entry['from']} does not match its pinned sha256")
        write_atomically(HERE / entry["to"], content)
    return f"{label}: wrote " + ", ".join(entry["to"] for entry in wanted)


def main() -> int:
    manifest = json.loads(MANIFEST.read_text())
    try:
        for package in manifest["packages"]:
            print(vendor(package, manifest["registry"]))
    except (VendorError, OSError) as exc:
        print(f"vendor: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
