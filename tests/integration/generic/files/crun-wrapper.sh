#!/bin/sh
# crun for a throwaway test host: Debian's real crun (installed next to this as
# /usr/local/lib/berth-test/crun), with two things taken out of a bundle's
# config.json before `create`/`run`, because this sandbox lacks the privileges:
# - linux.resources.devices: on cgroup v2 crun loads a BPF program for them,
#   which needs more RLIMIT_MEMLOCK than a process without CAP_SYS_RESOURCE gets;
# - rlimits above the hard limits this process has (the same reason).
# Namespaces, the overlay rootfs, mounts and the process itself stay real.
bundle=
prev=
for arg in "$@"; do
	case "$prev" in --bundle | -b) bundle=$arg ;; esac
	case "$arg" in --bundle=*) bundle=${arg#--bundle=} ;; esac
	prev=$arg
done
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
	python3 - "$bundle/config.json" <<'PY' || exit 1
import json, resource, sys
path = sys.argv[1]
with open(path) as f:
    spec = json.load(f)
spec.get("linux", {}).get("resources", {}).pop("devices", None)
for limit in spec.get("process", {}).get("rlimits", []):
    kind = getattr(resource, limit.get("type", ""), None)
    if kind is None:
        continue
    hard = resource.getrlimit(kind)[1]
    if hard != resource.RLIM_INFINITY:
        limit["hard"] = min(limit["hard"], hard)
        limit["soft"] = min(limit["soft"], limit["hard"])
with open(path, "w") as f:
    json.dump(spec, f)
PY
fi
exec /usr/local/lib/berth-test/crun "$@"
