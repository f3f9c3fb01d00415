#!/usr/bin/env python3
"""Offline checks of deploy/ (called by deploy/check.sh; needs PyYAML).

    check_manifests.py units|docker|kubernetes|secrets

kubernetes: every manifest parses; apiVersion/kind/metadata.name present and valid
  names; Deployment selector matches its pod labels; containers run non-root with a
  read-only root filesystem, no privilege escalation, all capabilities dropped;
  liveness on /-/healthy and readiness on /-/ready at a declared container port;
  volume mounts name declared volumes, which name the ConfigMap/Secret shipped here;
  the config path given to --config.file is the ConfigMap key at its mount path;
  Service selects the pods and targets a declared port name; ServiceMonitor selects
  the Service's labels and port name and its jobLabel yields the job the rules
  select; PrometheusRule groups equal alerts/*.rules.yml; kustomization resources
  exist.
docker: multi-stage, every stage FROM is pinned to a name:tag, the final stage has
  a non-root USER, no ADD of remote URLs, COPY --from names an earlier stage, the
  binary is built for a musl target, exec-form ENTRYPOINT.
units: the systemd unit has the hardening the docs promise.
secrets: the secret file names in examples/balance_exporter.yml are exactly the
  systemd LoadCredential= names and the keys of the example Secret.
"""
import glob
import os
import re
import sys

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
K8S = os.path.join(ROOT, "deploy", "kubernetes")
problems = []


def bad(where, msg):
    problems.append(f"{where}: {msg}")


def rel(p):
    return os.path.relpath(p, ROOT)


DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def load_manifests():
    docs = []
    for path in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
        try:
            with open(path, encoding="utf-8") as f:
                items = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            bad(rel(path), f"YAML: {e}")
            continue
        for d in items:
            docs.append((rel(path), d))
    return docs


def subset(small, big):
    return all(big.get(k) == v for k, v in (small or {}).items())


def kubernetes():
    docs = load_manifests()
    by_kind = {}
    for path, d in docs:
        if not isinstance(d, dict):
            bad(path, "not a mapping")
            continue
        if path.endswith("kustomization.yaml"):
            for r in d.get("resources", []):
                if not os.path.exists(os.path.join(K8S, r)):
                    bad(path, f"resource {r} does not exist")
            for f in glob.glob(os.path.join(K8S, "*.yaml")):
                name = os.path.basename(f)
                if name not in d.get("resources", []) and name not in ("kustomization.yaml",) and not name.endswith(".example.yaml"):
                    bad(path, f"{name} is not listed in resources")
            continue
        for key in ("apiVersion", "kind", "metadata"):
            if key not in d:
                bad(path, f"missing {key}")
        meta = d.get("metadata") or {}
        name = meta.get("name", "")
        if not DNS1123.match(name or "") or len(name) > 253:
            bad(path, f"metadata.name {name!r} is not a valid DNS-1123 name")
        for k, v in (meta.get("labels") or {}).items():
            if not LABEL_VALUE.match(str(v)) or len(str(v)) > 63:
                bad(path, f"label {k}={v!r} is not a valid label value")
        by_kind.setdefault(d.get("kind"), []).append((path, d))

    expect = {("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "PersistentVolumeClaim"),
              ("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
    for api, kind in expect:
        found = by_kind.get(kind, [])
        if len(found) != 1:
            bad("deploy/kubernetes", f"expected one {kind}, found {len(found)}")
        for path, d in found:
            if d.get("apiVersion") != api:
                bad(path, f"{kind} apiVersion {d.get('apiVersion')!r}, expected {api}")
    if problems:
        return
    (dp, dep), = by_kind["Deployment"]
    (sp, svc), = by_kind["Service"]
    (mp, sm), = by_kind["ServiceMonitor"]
    (cp, cm), = by_kind["ConfigMap"]
    (xp, secret), = by_kind["Secret"]
    (rp, rule), = by_kind["PrometheusRule"]
    (pp, pvc), = by_kind["PersistentVolumeClaim"]

    # Deployment
    spec = dep["spec"]
    pod_labels = spec["template"]["metadata"].get("labels") or {}
    if not spec.get("selector", {}).get("matchLabels") or not subset(spec["selector"]["matchLabels"], pod_labels):
        bad(dp, "spec.selector.matchLabels must be non-empty and match the pod template labels")
    pod = spec["template"]["spec"]
    psc = pod.get("securityContext") or {}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod.get("containers", []):
        where = f"{dp} container {c.get('name')}"
        csc = c.get("securityContext") or {}
        if not (csc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            bad(where, "runAsNonRoot is not set")
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        if uid is None or uid == 0:
            bad(where, "runAsUser must be a non-zero uid (the image's USER is numeric too)")
        if csc.get("readOnlyRootFilesystem") is not True:
            bad(where, "readOnlyRootFilesystem must be true")
        if csc.get("allowPrivilegeEscalation") is not False:
            bad(where, "allowPrivilegeEscalation must be false")
        if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
            bad(where, "capabilities.drop must include ALL")
        if not c.get("image"):
            bad(where, "no image")
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
        for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != path:
                bad(where, f"{probe} must GET {path}, has {get.get('path')!r}")
            if get.get("port") not in ports and get.get("port") not in ports.values():
                bad(where, f"{probe} port {get.get('port')!r} is not a container port")
        args = c.get("args", []) + c.get("command", [])
        listen = [a.split("=", 1)[1] for a in args if a.startswith("--web.listen-address=")]
        if listen and not any(listen[0].endswith(f":{p}") for p in ports.values()):
            bad(where, f"--web.listen-address {listen[0]} is not a declared containerPort")
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        storage = [a.split("=", 1)[1] for a in args if a.startswith("--storage.path=")]
        state_mounts = [m for m in mounts.values() if storage and m["mountPath"].rstrip("/") == storage[0].rstrip("/")]
        if not storage:
            bad(where, "no --storage.path= argument: spend counters would reset on every restart")
        elif not state_mounts:
            bad(where, f"--storage.path {storage[0]} is not a mounted volume (the root filesystem is read-only)")
        for m in state_mounts:
            claim = (volumes.get(m["name"], {}).get("persistentVolumeClaim") or {}).get("claimName")
            if claim != pvc["metadata"]["name"]:
                bad(where, f"the state volume {m['name']} must be the PersistentVolumeClaim {pvc['metadata']['name']!r} (an emptyDir is wiped by a rollout)")
            if m.get("readOnly"):
                bad(where, f"the state volume {m['name']} must be writable")
        if spec.get("strategy", {}).get("type") != "Recreate":
            bad(dp, "strategy must be Recreate: the ReadWriteOnce state volume and its lock belong to one pod")
        for m in mounts.values():
            if m["name"] not in volumes:
                bad(where, f"volumeMount {m['name']} names no volume")
            if not m.get("readOnly") and m not in state_mounts:
                bad(where, f"volumeMount {m['name']} should be readOnly")
        config_args = [a.split("=", 1)[1] for a in args if a.startswith("--config.file=")]
        if not config_args:
            bad(where, "no --config.file= argument")
        else:
            cfg_path = config_args[0]
            ok = False
            for m in mounts.values():
                v = volumes.get(m["name"], {})
                if "configMap" in v and cfg_path.startswith(m["mountPath"].rstrip("/") + "/"):
                    key = cfg_path[len(m["mountPath"].rstrip("/")) + 1:]
                    if v["configMap"].get("name") != cm["metadata"]["name"]:
                        bad(where, f"config volume names ConfigMap {v['configMap'].get('name')!r}, shipped is {cm['metadata']['name']!r}")
                    elif key not in (cm.get("data") or {}):
                        bad(where, f"--config.file {cfg_path}: ConfigMap has no key {key!r}")
                    else:
                        ok = True
            if not ok:
                bad(where, f"--config.file {cfg_path} is not inside a mounted ConfigMap")
        secret_mounts = [m for m in mounts.values() if "secret" in volumes.get(m["name"], {})]
        if not secret_mounts:
            bad(where, "no Secret mounted (secrets come from a Secret as files)")
        for m in secret_mounts:
            if volumes[m["name"]]["secret"].get("secretName") != secret["metadata"]["name"]:
                bad(where, f"secret volume names {volumes[m['name']]['secret'].get('secretName')!r}, the example is {secret['metadata']['name']!r}")
            if m["mountPath"] != "/run/secrets/balance_exporter":
                bad(where, f"Secret mounted at {m['mountPath']}, the config's default secrets dir is /run/secrets/balance_exporter")
        container_ports = ports

    # Service
    if not svc["spec"].get("selector") or not subset(svc["spec"]["selector"], pod_labels):
        bad(sp, "spec.selector must be non-empty and match the Deployment's pod labels")
    svc_ports = {p.get("name"): p for p in svc["spec"].get("ports", [])}
    for p in svc_ports.values():
        tp = p.get("targetPort")
        if tp not in container_ports and tp not in container_ports.values():
            bad(sp, f"port {p.get('name')} targetPort {tp!r} is not a container port")

    # ServiceMonitor
    svc_labels = svc["metadata"].get("labels") or {}
    sel = (sm["spec"].get("selector") or {}).get("matchLabels")
    if not sel or not subset(sel, svc_labels):
        bad(mp, f"selector.matchLabels {sel} does not match the Service labels {svc_labels}")
    for ep in sm["spec"].get("endpoints", []):
        if ep.get("port") not in svc_ports:
            bad(mp, f"endpoint port {ep.get('port')!r} is not a Service port name ({sorted(svc_ports)})")
        if ep.get("path", "/metrics") != "/metrics":
            bad(mp, f"endpoint path {ep.get('path')}")
    with open(os.path.join(ROOT, "alerts", "exporter.rules.yml"), encoding="utf-8") as f:
        jobs = set(re.findall(r'job="([^"]+)"', f.read()))
    job_label = sm["spec"].get("jobLabel")
    job = svc_labels.get(job_label) if job_label else svc["metadata"]["name"]
    if jobs and job not in jobs:
        bad(mp, f"Prometheus will name the job {job!r}; alerts/exporter.rules.yml selects {sorted(jobs)}")

    # PrometheusRule
    src = []
    for path in sorted(glob.glob(os.path.join(ROOT, "alerts", "*.rules.yml"))):
        with open(path, encoding="utf-8") as f:
            src += yaml.safe_load(f)["groups"]
    if rule.get("spec", {}).get("groups") != src:
        bad(rp, "spec.groups differ from alerts/*.rules.yml (run bash mixin/generate.sh)")


def docker():
    path = os.path.join(ROOT, "deploy", "docker", "Dockerfile")
    where = rel(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # Join continuation lines, drop comments (parser directives included).
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if s.startswith("#") or (not s and not cur):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        if cur.strip():
            lines.append(cur.strip())
        cur = ""
    known = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
             "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER"}
    stages, user = [], {}
    for l in lines:
        instr = l.split(None, 1)[0].upper()
        rest = l[len(instr):].strip()
        if instr not in known:
            bad(where, f"unknown instruction {instr}")
            continue
        if instr == "FROM":
            m = re.match(r"(--platform=\S+\s+)?(\S+)(\s+AS\s+(\S+))?$", rest, re.I)
            if not m:
                bad(where, f"cannot parse FROM {rest!r}")
                continue
            image = m.group(2)
            if ":" not in image.split("/")[-1] and "@" not in image and image != "scratch":
                bad(where, f"FROM {image} is not pinned to a tag or digest")
            stages.append((m.group(4) or str(len(stages))).lower())
        elif not stages and instr != "ARG":
            bad(where, f"{instr} before the first FROM")
        if instr == "USER":
            user[len(stages) - 1] = rest.split(":")[0]
        if instr == "ADD" and re.search(r"\b(https?|git)://|git@", rest):
            bad(where, f"ADD of a remote URL: {rest}")
        if instr == "COPY":
            m = re.search(r"--from=(\S+)", rest)
            if m and m.group(1).lower() not in stages[:-1]:
                bad(where, f"COPY --from={m.group(1)} names no earlier stage")
        if instr == "ENTRYPOINT" and not rest.startswith("["):
            bad(where, "ENTRYPOINT must be exec form (JSON array) so signals reach the exporter")
    if len(stages) < 2:
        bad(where, f"not multi-stage ({len(stages)} FROM)")
    final = len(stages) - 1
    if user.get(final) in (None, "", "root", "0"):
        bad(where, f"final stage runs as {user.get(final) or 'root (no USER)'}; needs a non-root USER")
    if "musl" not in text:
        bad(where, "the binary is not built for a musl (static) target")
    volumes = [l for l in lines if l.upper().startswith("VOLUME")]
    cmd = " ".join(l for l in lines if l.upper().startswith(("CMD", "ENTRYPOINT")))
    m = re.search(r"--storage\.path=([^\"\s,\]]+)", cmd)
    if not m:
        bad(where, "CMD does not pass --storage.path= (counters would reset with every container)")
    elif not any(m.group(1) in v for v in volumes):
        bad(where, f"--storage.path {m.group(1)} is not a declared VOLUME")
    final_from = [l for l in lines if l.upper().startswith("FROM")][-1]
    if not re.search(r"distroless/static|scratch", final_from):
        bad(where, f"final stage {final_from!r} is not distroless/static or scratch")


def unit_text():
    with open(os.path.join(ROOT, "deploy", "systemd", "balance_exporter.service"), encoding="utf-8") as f:
        return f.read()


def units():
    where = "deploy/systemd/balance_exporter.service"
    text = unit_text()
    directives = {}
    for l in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", l)
        if m:
            directives.setdefault(m.group(1), []).append(m.group(2).strip())
    want = {"DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes", "StateDirectory": "balance_exporter",
            "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": ""}
    for k, v in want.items():
        if directives.get(k, [None])[-1] != v:
            bad(where, f"{k}={v} expected, found {directives.get(k)}")
    if "--storage.path=/var/lib/" + directives.get("StateDirectory", [""])[-1] not in text:
        bad(where, "ExecStart must pass --storage.path=/var/lib/<StateDirectory> (counters survive restarts)")
    if not directives.get("LoadCredential"):
        bad(where, "no LoadCredential=")
    if not any("$MAINPID" in v for v in directives.get("ExecReload", [])):
        bad(where, "ExecReload should send SIGHUP to $MAINPID")


def secret_names_in_config():
    with open(os.path.join(ROOT, "examples", "balance_exporter.yml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    names = set()

    def walk(v, key=""):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, k)
        elif isinstance(v, list):
            for x in v:
                walk(x, key)
        elif isinstance(v, str) and key.endswith("_file"):
            m = re.match(r"^\$\{CREDENTIALS_DIRECTORY(:-[^}]*)?\}/([^/]+)$", v)
            if not m:
                bad("examples/balance_exporter.yml", f"{key}: {v!r} is not ${{CREDENTIALS_DIRECTORY...}}/NAME")
            else:
                names.add(m.group(2))
    walk(cfg)
    return names


def secrets():
    names = secret_names_in_config()
    creds = {}
    for m in re.finditer(r"(?m)^LoadCredential=([^:\s]+):(\S+)$", unit_text()):
        creds[m.group(1)] = m.group(2)
        if os.path.basename(m.group(2)) != m.group(1):
            bad("deploy/systemd/balance_exporter.service", f"LoadCredential={m.group(1)} reads {m.group(2)}: keep the file name equal to the credential name")
    if set(creds) != names:
        bad("deploy/systemd/balance_exporter.service", f"LoadCredential names {sorted(creds)} != secret files of examples/balance_exporter.yml {sorted(names)}")
    with open(os.path.join(K8S, "secret.example.yaml"), encoding="utf-8") as f:
        sec = yaml.safe_load(f)
    keys = set((sec.get("stringData") or {})) | set((sec.get("data") or {}))
    if keys != names:
        bad("deploy/kubernetes/secret.example.yaml", f"keys {sorted(keys)} != secret files of examples/balance_exporter.yml {sorted(names)}")
    print(" ".join(sorted(names)))


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    fn = {"kubernetes": kubernetes, "docker": docker, "units": units, "secrets": secrets}.get(what)
    if not fn:
        sys.exit("usage: check_manifests.py units|docker|kubernetes|secrets")
    fn()
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
