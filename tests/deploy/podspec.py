"""A rendered pod's container as a `podman run` command line: exactly its
command, args (with Kubernetes' $(VAR) expansion), env, user, capabilities,
read-only root filesystem, resources and volumes; the pod's network is a
namespace the test made (the node's own, for hostNetwork)."""

from __future__ import annotations

import re
from typing import Any

PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
# This VM's limits: the default ulimits fail here (not part of the pod spec).
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def _field(ref: str, pod_name: str, node: str) -> str:
    return {"spec.nodeName": node, "metadata.name": pod_name}[ref]


def run_args(
    pod: dict[str, Any],
    *,
    name: str,
    node: str,
    netns: str,
    hosts: dict[str, list[str]],
    secrets: dict[str, str],
) -> list[str]:
    """`podman run` for the pod's only container; `secrets` maps a Secret's
    name to a directory holding its keys.  Raises KeyError for a volume or
    field this translation does not know (so nothing is silently dropped)."""
    spec = pod["spec"]
    (c,) = spec["containers"]
    pod_sc = spec.get("securityContext", {})
    sc = {**pod_sc, **c.get("securityContext", {})}
    env: dict[str, str] = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            env[e["name"]] = _field(e["valueFrom"]["fieldRef"]["fieldPath"], name, node)
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in c.get("args", [])]
    user = sc.get("runAsUser")
    if sc.get("runAsNonRoot") and user in (None, 0):
        raise ValueError("runAsNonRoot with root: the kubelet would refuse this pod")
    cmd = [*PODMAN, "run", "--rm", "--name", name, *ULIMITS, "--network", f"ns:{netns}"]
    if user is not None:
        cmd += ["--user", f"{user}:{sc.get('runAsGroup', user)}"]
    caps = sc.get("capabilities", {})
    if "ALL" in caps.get("drop", []):
        cmd.append("--cap-drop=all")
    cmd += [f"--cap-add={cap}" for cap in caps.get("add", [])]
    if sc.get("readOnlyRootFilesystem"):
        cmd += ["--read-only", "--read-only-tmpfs=false"]
    if sc.get("allowPrivilegeEscalation") is False:
        cmd += ["--security-opt", "no-new-privileges"]
    if sc.get("privileged"):
        cmd.append("--privileged")
    limits = c.get("resources", {}).get("limits", {})
    if "memory" in limits:
        cmd += ["--memory", limits["memory"].replace("Mi", "m").replace("Gi", "g")]
    for host, ips in hosts.items():
        cmd += [f"--add-host={host}:{ip}" for ip in ips]
    for k, v in env.items():
        cmd += ["-e", f"{k}={v}"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        vol = volumes[m["name"]]
        ro = ":ro" if m.get("readOnly") else ""
        if "secret" in vol:
            cmd += ["-v", f"{secrets[vol['secret']['secretName']]}:{m['mountPath']}{ro}"]
        elif "hostPath" in vol:
            cmd += ["-v", f"{vol['hostPath']['path']}:{m['mountPath']}{ro}"]
        elif "emptyDir" in vol:
            cmd += ["--tmpfs", m["mountPath"]]
        else:
            raise KeyError(f"volume kind of {m['name']}")
    if "command" in c:
        cmd += ["--entrypoint", c["command"][0]]
    return [*cmd, c["image"], *c.get("command", [])[1:], *args]
