"""A scratch Prometheus on 127.0.0.1 for the backtest and the rule-cost benchmark
(standard library only): its own data dir and config under a work dir, started on a
free port, stopped (and killed if it hangs) on request, queried through its HTTP API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    def __init__(self, workdir: str, config: dict, extra_flags=()):
        self.data = os.path.join(workdir, "data")
        self.config = os.path.join(workdir, "prometheus.yml")
        self.log = os.path.join(workdir, "prometheus.log")
        os.makedirs(self.data, exist_ok=True)
        with open(self.config, "w") as f:
            json.dump(config, f)  # JSON is YAML
        self.extra = list(extra_flags)
        self.proc = None
        self.url = None

    def start(self):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            # the simulated data lies in the past: retention never drops it
            ["prometheus", f"--config.file={self.config}", f"--storage.tsdb.path={self.data}",
             "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=warn", *self.extra],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "a"), start_new_session=True)
        for _ in range(3000):
            if self.proc.poll() is not None:
                raise SystemExit(f"prometheus exited early; see {self.log}:\n" + open(self.log).read()[-3000:])
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("prometheus did not become ready")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def api(self, path: str, **params):
        data = urllib.parse.urlencode(params).encode() if params else None
        with urllib.request.urlopen(self.url + path, data=data, timeout=900) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise SystemExit(f"{path} failed: {body}")
        return body["data"]
