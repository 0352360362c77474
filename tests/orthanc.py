"""A real PACS for tests: Orthanc with its DICOMweb plugin (Debian packages orthanc,
orthanc-dicomweb) on 127.0.0.1, basic authentication on.

Its port is picked free in 30000-31999 (outside Ray's worker ports 10002-19999, the S3 test
server's 20000-29999 and Linux's ephemeral ports from 32768); under pytest-xdist each worker
searches its own slice. ``stop`` kills it (an outage), ``start`` brings it back with its data on
the same port.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import requests

from s3server import free_ports, terminate

ORTHANC = "/usr/sbin/Orthanc"
PLUGINS = Path("/usr/share/orthanc/plugins")
DICOMWEB_PLUGIN = PLUGINS / "libOrthancDicomWeb.so"
USER = "harmonize"


def orthanc_missing() -> str | None:
    """Why Orthanc cannot run here (None when it can)."""
    if shutil.which(ORTHANC) is None and not Path(ORTHANC).is_file():
        return "Orthanc (Debian package orthanc) is not installed"
    if not DICOMWEB_PLUGIN.is_file():
        return "the Orthanc DICOMweb plugin (Debian package orthanc-dicomweb) is not installed"
    return None


class OrthancServer:
    """Orthanc on 127.0.0.1 with DICOMweb at ``/dicom-web/``, one registered user."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.password = secrets.token_urlsafe(12)
        (self.port,) = free_ports(1, low=30000, high=31999)
        self.url = f"http://127.0.0.1:{self.port}"
        self.root = f"dicomweb+{self.url}/dicom-web"
        config = {
            "Name": "harmonize-test",
            "StorageDirectory": str(workdir / "storage"),
            "IndexDirectory": str(workdir / "index"),
            "HttpPort": self.port,
            "HttpThreadsCount": 8,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: self.password},
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StableAge": 1,
        }
        self.config_path = workdir / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self._log = open(workdir / "orthanc.log", "wb")  # noqa: SIM115 - closed in close()
        self.session = requests.Session()
        self.session.auth = (USER, self.password)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def env(self) -> dict[str, str]:
        """The environment that gives harmonize this server's credentials."""
        return {"HARMONIZE_DICOMWEB_USER": USER, "HARMONIZE_DICOMWEB_PASSWORD": self.password}

    def start(self, timeout: float = 30.0) -> float:
        """Start Orthanc (again); returns the seconds it took to answer."""
        began = time.monotonic()
        self.proc = subprocess.Popen(
            [ORTHANC, str(self.config_path)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.workdir / "orthanc.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Orthanc exited: {log}")
            try:
                if self.session.get(f"{self.url}/system", timeout=2).ok:
                    return time.monotonic() - began
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.close()
        raise RuntimeError(f"Orthanc did not answer in {timeout} s")

    def stop(self) -> None:
        """Kill the server (SIGKILL: an outage, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def upload(self, data: bytes) -> dict[str, str]:
        """Store one Part-10 file through Orthanc's REST API; its Orthanc ids."""
        response = self.session.post(f"{self.url}/instances", data=data, timeout=30)
        response.raise_for_status()
        return response.json()

    def clear(self) -> None:
        """Delete every study (tests share one server per session)."""
        for study in self.session.get(f"{self.url}/studies", timeout=30).json():
            self.session.delete(f"{self.url}/studies/{study}", timeout=30).raise_for_status()

    def close(self) -> None:
        terminate(self.proc)
        self.session.close()
        self._log.close()
