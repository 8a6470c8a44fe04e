#!/usr/bin/env python3
"""A test double of the DigitalOcean API v2 for berth's integration tests and benches.

NOT DigitalOcean: a local stand-in on 127.0.0.1 that implements what berth's
DigitalOcean driver calls, with real state transitions, and checks every
request it receives and every response it sends against DigitalOcean's
official OpenAPI spec (violations are recorded; tests assert there are none).

Each droplet is backed by a real throwaway SSH host (scripts/testhost.sh, a
network namespace at 10.231.X.2) whose root accepts the create call's SSH
keys, so a client can go on to provision the droplet for real.

Power actions on a droplet (documented choice): the SAME host stays, so its
host keys and disk survive like a real droplet's. power_off/shutdown take the
host's end of its link down (packets dropped) and kill every process in it but sshd (like a
power cut); power_on brings the link up and runs /etc/rc.local (a boot);
reboot does both. DELETE destroys the host.

Usage: fake_do.py [--port 0] [--port-file F] [--token T] [--no-hosts] ...
Prints the port it listens on as the first line of stdout. SIGTERM/SIGINT
tear every host down and exit.

Control API (no auth; not part of DigitalOcean's API):
  (DigitalOcean: account, regions, sizes, images, account/keys, droplets, droplet actions, actions)
  GET  /_fake/state        droplets, keys, actions, hosts, request counts per operation, history
                           (when each request came and its status)
  GET  /_fake/violations   spec violations recorded so far (a JSON list)
  POST /_fake/faults       append faults: a JSON list of
       {"method": "GET"|"*", "path": "regex on the path", "kind": K, "times": n,
        "after": n (skip the first n matches), "retry_after": s, "seconds": s}
       K: "429" (retry-after, ratelimit-remaining 0), any other status ("500",
       "502", "503", "404", "422"...: an error body, nothing done),
       "create-then-500" / "act-then-<status>" (done, then that error),
       "slow" (done, answered after `seconds`, default 40),
       "slow-before" (answered after `seconds`, then done),
       "truncated-json" (done, the body cut in half), "drop" (done, connection closed, no answer),
       "404-after-create" (404 for GET of a droplet; use path regex to aim)
  DELETE /_fake/faults     clear pending faults
  POST /_fake/reset        delete everything (hosts too), faults, violations and counts
  POST /_fake/config       {"new_polls": n, "action_polls": n, "per_page_default": n}
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from spec_check import SpecChecker  # noqa: E402

REPO = HERE.parent.parent.parent
DEFAULT_SPEC = REPO.parent / "shared/specs/digitalocean/specification/DigitalOcean-public.v2.yaml"
if not DEFAULT_SPEC.exists():
    DEFAULT_SPEC = Path("/work/shared/specs/digitalocean/specification/DigitalOcean-public.v2.yaml")

EX_INDEX_TAKEN = 75


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(*args):
    print("fake_do:", *args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- catalogue
REGIONS = [
    ("nyc1", "New York 1", True), ("nyc2", "New York 2", False), ("nyc3", "New York 3", True),
    ("sfo3", "San Francisco 3", True), ("ams3", "Amsterdam 3", True), ("fra1", "Frankfurt 1", True),
    ("lon1", "London 1", True), ("sgp1", "Singapore 1", True), ("tor1", "Toronto 1", True),
    ("blr1", "Bangalore 1", True), ("syd1", "Sydney 1", True),
]
# 25 sizes: more than one default page (20), so clients must follow links.pages.next.
SIZES = []
for vcpus, mem_gb, disk, price in [(1, 0.5, 10, 4), (1, 1, 25, 6), (1, 2, 50, 12), (2, 2, 60, 18), (2, 4, 80, 24),
                                   (4, 8, 160, 48), (8, 16, 320, 96), (8, 32, 640, 192), (12, 48, 960, 288),
                                   (16, 64, 1280, 384), (20, 96, 1920, 576), (24, 128, 2560, 768),
                                   (32, 192, 3840, 1152)]:
    mem = "512mb" if mem_gb == 0.5 else f"{mem_gb}gb"
    SIZES.append((f"s-{vcpus}vcpu-{mem}", vcpus, int(mem_gb * 1024), disk, price, f"Basic {vcpus} vCPU"))
for vcpus, mem_gb, disk, price in [(2, 8, 25, 63), (4, 16, 50, 126), (8, 32, 100, 252), (16, 64, 200, 504),
                                   (32, 128, 400, 1008), (2, 4, 25, 42), (4, 8, 50, 84), (8, 16, 100, 168),
                                   (16, 32, 200, 336), (32, 64, 400, 672), (48, 96, 600, 1008), (2, 16, 25, 84)]:
    kind = "g" if mem_gb == 4 * vcpus else ("c" if mem_gb == 2 * vcpus else "m")
    SIZES.append((f"{kind}-{vcpus}vcpu-{mem_gb}gb", vcpus, mem_gb * 1024, disk, price, f"{kind.upper()}-class {vcpus} vCPU"))
SIZE_BY_SLUG = {s[0]: s for s in SIZES}

IMAGES = [
    (161120000, "ubuntu-24-04-x64", "24.04 (LTS) x64", "Ubuntu"),
    (161120001, "ubuntu-22-04-x64", "22.04 (LTS) x64", "Ubuntu"),
    (161120002, "debian-12-x64", "12 x64", "Debian"),
    (161120003, "rockylinux-9-x64", "9 x64", "Rocky Linux"),
]
IMAGE_BY_ID = {i[0]: i for i in IMAGES}
IMAGE_BY_SLUG = {i[1]: i for i in IMAGES}
AVAILABLE_REGIONS = [r[0] for r in REGIONS if r[2]]


def region_json(slug: str) -> dict:
    _, name, available = next(r for r in REGIONS if r[0] == slug)
    return {"name": name, "slug": slug,
            "features": ["backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"],
            "available": available, "sizes": [s[0] for s in SIZES] if available else []}


def size_json(slug: str) -> dict:
    s, vcpus, mem, disk, price, desc = SIZE_BY_SLUG[slug]
    return {"slug": s, "memory": mem, "vcpus": vcpus, "disk": disk, "transfer": float(max(1, vcpus)),
            "price_monthly": float(price), "price_hourly": round(price / 672.0, 5),
            "regions": list(AVAILABLE_REGIONS), "available": True, "description": desc}


def image_json(img) -> dict:
    iid, slug, name, dist = img
    return {"id": iid, "name": name, "type": "base", "distribution": dist, "slug": slug, "public": True,
            "regions": list(AVAILABLE_REGIONS), "created_at": "2024-04-25T15:00:00Z", "min_disk_size": 7,
            "size_gigabytes": 2.36, "description": f"{dist} {name}", "tags": [], "status": "available"}


def md5_fingerprint(public_key: str) -> str | None:
    parts = public_key.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return None
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


class ApiFailure(Exception):
    def __init__(self, status: int, err_id: str, message: str):
        super().__init__(message)
        self.status, self.err_id, self.message = status, err_id, message


def not_found():
    return ApiFailure(404, "not_found", "The resource you were accessing could not be found.")


def unprocessable(msg: str):
    return ApiFailure(422, "unprocessable_entity", msg)


# ---------------------------------------------------------------- hosts
class Hosts:
    """Real SSH hosts behind droplets, through scripts/testhost.sh."""

    def __init__(self, script: Path | None, first_index: int, prefix: str):
        self.script = script
        self.first_index = first_index
        self.prefix = prefix
        self.lock = threading.Lock()
        self.up_hosts: dict[str, int] = {}     # name -> index
        self.pending = 0                        # `up` calls in flight
        self.tmp = Path(tempfile.mkdtemp(prefix="fake-do-keys-"))
        self.env = dict(os.environ, BERTH_TESTHOST_OWNER=str(os.getpid()))

    def _run(self, *args, timeout=60) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.script), *args], capture_output=True, text=True, timeout=timeout, env=self.env)

    def up(self, droplet_id: int, public_keys: list[str]) -> tuple[str, str, int]:
        name = f"{self.prefix}-{droplet_id}"
        keyfile = self.tmp / f"{droplet_id}.pub"
        keyfile.write_text("\n".join(public_keys) + "\n")
        if self.script is None:   # --no-hosts: an address nothing answers on
            return name, f"10.231.{(self.first_index + droplet_id) % 254 + 1}.2", 0
        with self.lock:
            self.pending += 1
        try:
            return self._up(name, keyfile)
        finally:
            with self.lock:
                self.pending -= 1

    def _up(self, name: str, keyfile: Path) -> tuple[str, str, int]:
        start = self.first_index
        for i in range(254):
            index = 1 + (start - 1 + i) % 254
            with self.lock:
                if index in self.up_hosts.values():
                    continue
            r = self._run("up", name, str(index), str(keyfile))
            if r.returncode == EX_INDEX_TAKEN:
                continue
            if r.returncode != 0:
                raise RuntimeError(f"testhost.sh up {name} {index}: {r.stderr.strip()}")
            with self.lock:
                self.up_hosts[name] = index
            return name, r.stdout.strip(), index
        raise RuntimeError("no free test host index")

    def down(self, name: str):
        if self.script is None:
            return
        r = self._run("down", name)
        if r.returncode != 0:
            log(f"testhost.sh down {name} failed: {r.stderr.strip()}")
        with self.lock:
            self.up_hosts.pop(name, None)

    def power_off(self, name: str, index: int):
        """A power cut: unreachable, everything but sshd killed (disk kept)."""
        if self.script is None:
            return
        # The host's own end goes down: the root side keeps its route (so nothing
        # leaks to a default route) and packets to the host are dropped.
        subprocess.run(["ip", "-n", f"berth-th-{name}", "link", "set", "eth0", "down"], capture_output=True)
        r = self._run("pids", name)
        for line in r.stdout.splitlines():
            pid, _, args = line.partition(" ")
            if "/usr/sbin/sshd -D" in args:   # (it retitles itself "sshd: /usr/sbin/sshd -D ... [listener]")
                continue   # the host's own sshd holds its namespaces: it is the "machine"
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass

    def power_on(self, name: str, index: int):
        """A boot: the link comes back and /etc/rc.local runs."""
        if self.script is None:
            return
        subprocess.run(["ip", "-n", f"berth-th-{name}", "link", "set", "eth0", "up"], capture_output=True)
        self._run("exec", name, "sh", "-c", "[ -x /etc/rc.local ] && /etc/rc.local </dev/null >/dev/null 2>&1 || true",
                  timeout=60)

    def all_down(self):
        for _ in range(300):   # let `up` calls in flight finish, then down them too
            with self.lock:
                if self.pending == 0:
                    break
            time.sleep(0.1)
        with self.lock:
            names = list(self.up_hosts)
        for n in names:
            self.down(n)


# ---------------------------------------------------------------- state
class State:
    def __init__(self, args, hosts: Hosts):
        self.args = args
        self.hosts = hosts
        self.lock = threading.RLock()
        self.new_polls = args.new_polls
        self.action_polls = args.action_polls
        self.per_page_default = 20
        self.reset_all(initial=True)

    def reset_all(self, initial=False):
        with self.lock:
            old = list(getattr(self, "droplets", {}).values())
            self.droplets: dict[int, dict] = {}
            self.keys: dict[int, dict] = {}
            self.actions: dict[int, dict] = {}
            self.faults: list[dict] = []
            self.violations: list[dict] = []
            self.counts: dict[str, int] = {}
            self.total_requests = 0
            self.created_total = 0   # droplets made since the reset, deleted or not
            self.history: list[dict] = []   # {"t": epoch s, "op": "METHOD /template", "status": n}
            self.ratelimit_remaining = 5000
            self.ids = itertools.count(getattr(self, "_next_id", 400000001))
            self.host_errors: list[str] = []
        for t in [self._destroy_host(d) for d in old]:
            if t:
                t.join(120)

    def next_id(self) -> int:
        n = next(self.ids)
        self._next_id = n + 1
        return n

    # --- keys
    def find_key(self, ident: str | int) -> dict:
        for k in self.keys.values():
            if str(k["id"]) == str(ident) or k["fingerprint"] == str(ident):
                return k
        raise not_found()

    # --- droplets
    def droplet_json(self, d: dict) -> dict:
        v4 = []
        if d["status"] != "new" and d["ip"]:
            # DigitalOcean lists the VPC address first: clients must pick type "public".
            v4.append({"ip_address": f"10.116.{d['id'] % 250}.{d['id'] % 200 + 2}", "netmask": "255.255.240.0",
                       "gateway": "10.116.0.1", "type": "private"})
            gw = d["ip"].rsplit(".", 1)[0] + ".1"
            v4.append({"ip_address": d["ip"], "netmask": "255.255.255.252", "gateway": gw, "type": "public"})
        v6 = []
        if d["ipv6"] and d["status"] != "new":
            v6.append({"ip_address": f"2604:a880:800:10::{d['id'] % 65536:x}:1001", "netmask": 64,
                       "gateway": "2604:a880:800:10::1", "type": "public"})
        s = SIZE_BY_SLUG[d["size"]]
        features = ["droplet_agent", "private_networking"]
        if d["ipv6"]:
            features.append("ipv6")
        if d["backups"]:
            features.append("backups")
        if d["monitoring"]:
            features.append("monitoring")
        return {"id": d["id"], "name": d["name"], "memory": s[2], "vcpus": s[1], "disk": s[3], "locked": False,
                "status": d["status"], "kernel": None, "created_at": d["created_at"], "features": features,
                "backup_ids": [], "next_backup_window": None, "snapshot_ids": [],
                "image": image_json(d["image"]), "volume_ids": [], "size": size_json(d["size"]),
                "size_slug": d["size"], "networks": {"v4": v4, "v6": v6}, "region": region_json(d["region"]),
                "tags": list(d["tags"]), "vpc_uuid": d["vpc_uuid"]}

    def observe_droplet(self, d: dict):
        """A client looked at the droplet: time moves on for it."""
        d["polls"] += 1
        if d["status"] == "new" and d["host_ready"] and d["polls"] > self.new_polls:
            d["status"] = "active"
            if d["create_action"] in self.actions:
                a = self.actions[d["create_action"]]
                a["status"], a["completed_at"] = "completed", now_iso()
        for aid in d["pending_actions"]:
            self.actions[aid]["observed"] += 1

    def create_droplet(self, body: dict, port: int) -> tuple[dict, dict]:
        names = [body["name"]] if "name" in body else list(body.get("names", []))
        if len(names) != 1:
            raise unprocessable("berth's fake supports single droplet creates only.")
        name = names[0]
        region = body.get("region") or "nyc3"
        if region not in [r[0] for r in REGIONS]:
            raise unprocessable(f"You specified an invalid region for Droplet creation.")
        if region not in AVAILABLE_REGIONS:
            raise unprocessable(f"Region {region} is not available for new Droplets.")
        if body.get("size") not in SIZE_BY_SLUG:
            raise unprocessable("You specified an invalid size for Droplet creation.")
        image = body.get("image")
        img = IMAGE_BY_SLUG.get(image) if isinstance(image, str) else IMAGE_BY_ID.get(image)
        if img is None and isinstance(image, str) and image.isdigit():
            img = IMAGE_BY_ID.get(int(image))
        if img is None:
            raise unprocessable("You specified an invalid image for Droplet creation.")
        pubkeys = []
        for ident in body.get("ssh_keys") or []:
            try:
                pubkeys.append(self.find_key(ident)["public_key"])
            except ApiFailure:
                raise unprocessable(f"The SSH key {ident} could not be found.")
        tags = body.get("tags") or []
        for t in tags:
            if not re.fullmatch(r"[A-Za-z0-9:_.\-]{1,255}", t):
                raise unprocessable(f"Tag {t!r} is invalid: tags may contain letters, numbers, colons, dashes, "
                                    f"and underscores.")
        did = self.next_id()
        aid = self.next_id()
        d = {"id": did, "name": name, "region": region, "size": body["size"], "image": img,
             "tags": list(dict.fromkeys(tags)), "status": "new", "created_at": now_iso(), "polls": 0,
             "ipv6": bool(body.get("ipv6")), "backups": bool(body.get("backups")),
             "monitoring": bool(body.get("monitoring")), "user_data": body.get("user_data"),
             "vpc_uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, region + ".vpc.fake")),
             "ip": None, "host": None, "index": 0, "host_ready": False, "power": "on",
             "pending_actions": [], "create_action": aid, "ssh_key_count": len(pubkeys)}
        self.droplets[did] = d
        self.created_total += 1
        self.actions[aid] = {"id": aid, "status": "in-progress", "type": "create", "started_at": now_iso(),
                             "completed_at": None, "resource_id": did, "resource_type": "droplet",
                             "region_slug": region, "observed": 0, "droplet": did}
        threading.Thread(target=self._bring_up, args=(d, pubkeys), daemon=True).start()
        link = {"id": aid, "rel": "create", "href": f"http://127.0.0.1:{port}/v2/actions/{aid}"}
        return d, link

    def _bring_up(self, d: dict, pubkeys: list[str]):
        if not pubkeys:
            pubkeys = [self.args.fallback_pubkey]
        try:
            name, ip, index = self.hosts.up(d["id"], pubkeys)
        except Exception as e:  # noqa: BLE001
            log(f"droplet {d['id']}: host failed: {e}")
            with self.lock:
                self.host_errors.append(f"droplet {d['id']}: {e}")
            return
        with self.lock:
            if d["id"] not in self.droplets:   # deleted meanwhile
                gone = True
            else:
                gone = False
                d.update(host=name, ip=ip, index=index, host_ready=True)
        if gone:
            self.hosts.down(name)

    def _destroy_host(self, d: dict) -> threading.Thread | None:
        # A host still coming up is downed by _bring_up, which finds its droplet gone.
        if d.get("host"):
            t = threading.Thread(target=self.hosts.down, args=(d["host"],), daemon=True)
            t.start()
            return t
        return None

    def delete_droplet(self, did: int):
        d = self.droplets.pop(did, None)
        if d is None:
            raise not_found()
        for a in self.actions.values():
            if a.get("droplet") == did and a["status"] == "in-progress":
                a["status"], a["completed_at"] = "completed", now_iso()
        self._destroy_host(d)

    def droplet_action(self, d: dict, kind: str) -> dict:
        if kind not in ("power_on", "shutdown", "power_off", "reboot", "power_cycle"):
            raise unprocessable(f"berth's fake does not implement the {kind!r} action.")
        if d["status"] == "new":
            raise unprocessable("Droplet is currently being created; try again once it is active.")
        if kind in ("shutdown", "reboot") and d["status"] == "off":
            raise unprocessable("Droplet is already powered off.")
        aid = self.next_id()
        a = {"id": aid, "status": "in-progress", "type": kind, "started_at": now_iso(), "completed_at": None,
             "resource_id": d["id"], "resource_type": "droplet", "region_slug": d["region"], "observed": 0,
             "droplet": d["id"], "work_done": False}
        self.actions[aid] = a
        d["pending_actions"].append(aid)
        threading.Thread(target=self._do_action, args=(d, a), daemon=True).start()
        return a

    def _do_action(self, d: dict, a: dict):
        kind = a["type"]
        try:
            if d.get("host"):
                if kind in ("shutdown", "power_off"):
                    self.hosts.power_off(d["host"], d["index"])
                elif kind == "power_on":
                    if d["status"] == "off":
                        self.hosts.power_on(d["host"], d["index"])
                else:   # reboot, power_cycle
                    self.hosts.power_off(d["host"], d["index"])
                    self.hosts.power_on(d["host"], d["index"])
        finally:
            with self.lock:
                a["work_done"] = True
                if kind in ("shutdown", "power_off"):
                    d["status"] = "off"
                elif kind == "power_on":
                    d["status"] = "active"

    def observe_action(self, a: dict):
        a["observed"] += 1
        if a["status"] == "in-progress" and a.get("work_done", True) and a["observed"] >= self.action_polls \
                and a["type"] != "create":
            a["status"], a["completed_at"] = "completed", now_iso()
            d = self.droplets.get(a.get("droplet"))
            if d and a["id"] in d["pending_actions"]:
                d["pending_actions"].remove(a["id"])

    def action_json(self, a: dict) -> dict:
        out = {k: a[k] for k in ("id", "status", "type", "started_at", "completed_at", "resource_id",
                                 "resource_type", "region_slug")}
        out["region"] = region_json(a["region_slug"])
        return out

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "droplets": [{"id": d["id"], "name": d["name"], "status": d["status"], "tags": d["tags"],
                              "ip": d["ip"], "host": d["host"], "region": d["region"], "size": d["size"],
                              "image": d["image"][1], "ipv6": d["ipv6"], "backups": d["backups"],
                              "monitoring": d["monitoring"], "user_data": d["user_data"],
                              "ssh_key_count": d["ssh_key_count"]}
                             for d in self.droplets.values()],
                "keys": list(self.keys.values()),
                "actions": [self.action_json(a) for a in self.actions.values()],
                "hosts": sorted(self.hosts.up_hosts),
                "host_errors": list(self.host_errors),
                "counts": dict(self.counts),
                "total_requests": self.total_requests,
                "created_total": self.created_total,
                "history": list(self.history),
                "pending_faults": list(self.faults),
                "violations": len(self.violations),
            }

    def take_fault(self, method: str, path: str) -> dict | None:
        with self.lock:
            for f in self.faults:
                if f.get("method", "*") not in ("*", method):
                    continue
                if not re.search(f.get("path", ".*"), path):
                    continue
                if f.get("after", 0) > 0:
                    f["after"] -= 1
                    continue
                f["times"] = f.get("times", 1) - 1
                if f["times"] <= 0:
                    self.faults.remove(f)
                return dict(f)
        return None


# ---------------------------------------------------------------- HTTP
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-digitalocean/1.0"
    state: State
    checker: SpecChecker

    def log_message(self, fmt, *args):
        if self.server.verbose:  # type: ignore[attr-defined]
            log(self.address_string(), fmt % args)

    # -- plumbing
    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _ratelimit_headers(self, exhausted=False, reset_in=60) -> dict:
        st = self.state
        with st.lock:
            st.ratelimit_remaining = max(0, st.ratelimit_remaining - 1)
            remaining = 0 if exhausted else st.ratelimit_remaining
        return {"ratelimit-limit": "5000", "ratelimit-remaining": str(remaining),
                "ratelimit-reset": str(int(time.time()) + reset_in)}

    def _send_raw(self, status: int, headers: dict, body: bytes, declared_length: int | None = None):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if declared_length is None else declared_length))
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.wfile.flush()

    def _violation(self, messages: list[str]):
        if not messages:
            return
        with self.state.lock:
            for m in messages:
                self.state.violations.append({"request": f"{self.command} {self.path}", "message": m,
                                              "request_id": self.request_id})
        for m in messages:
            log("SPEC VIOLATION:", m)

    def _respond(self, status: int, doc: dict | None, extra_headers: dict | None = None, fault: dict | None = None,
                 exhausted=False, reset_in=60):
        headers = {"x-request-id": self.request_id, **self._ratelimit_headers(exhausted, reset_in)}
        with self.state.lock:
            if len(self.state.history) < 5000:
                self.state.history.append({"t": round(self.started, 3), "op": self.label, "status": status})
        if extra_headers:
            headers.update(extra_headers)
        body = b""
        if doc is not None:
            body = json.dumps(doc).encode()
            headers["content-type"] = "application/json; charset=utf-8"
        elif status == 204 and self.op is not None and self.op.template == "/v2/droplets/{droplet_id}":
            headers["content-type"] = "application/json; charset=utf-8"   # DO declares it on this 204
        if self.op is not None:
            self._violation(self.checker.check_response(self.op, status, {k.lower(): v for k, v in headers.items()},
                                                        body))
        kind = (fault or {}).get("kind", "")
        if kind == "truncated-json" and body:
            self._send_raw(status, headers, body[: max(1, len(body) // 2)])
            return
        if kind == "drop":
            self.close_connection = True
            return
        if kind == "slow":
            time.sleep(float(fault.get("seconds", 40)))
        try:
            self._send_raw(status, headers, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _error(self, status: int, err_id: str, message: str, extra_headers=None, exhausted=False, reset_in=60):
        self._respond(status, {"id": err_id, "message": message, "request_id": self.request_id}, extra_headers,
                      exhausted=exhausted, reset_in=reset_in)

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def _dispatch(self):
        self.request_id = str(uuid.uuid4())
        self.started = time.time()
        self.op = None
        self.label = f"{self.command} {self.path}"
        url = urlsplit(self.path)
        body = self._read_body()
        if url.path.startswith("/_fake/"):
            return self._control(url.path, body)
        query = parse_qs(url.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.op, violations = self.checker.check_request(self.command, url.path, query, headers, body)
        st = self.state
        label = self.label = f"{self.command} {self.op.template if self.op else url.path}"
        with st.lock:
            st.counts[label] = st.counts.get(label, 0) + 1
            st.total_requests += 1
        self._violation(violations)
        # Auth first, as DigitalOcean does.
        auth = headers.get("authorization", "")
        if auth != f"Bearer {self.server.token}":  # type: ignore[attr-defined]
            return self._error(401, "unauthorized", "Unable to authenticate you.")
        fault = st.take_fault(self.command, url.path)
        kind = (fault or {}).get("kind")
        if kind == "slow-before":
            time.sleep(float(fault.get("seconds", 40)))
            fault = None
        elif kind == "429":
            ra = int(fault.get("retry_after", 1))
            return self._error(429, "too_many_requests", "API Rate limit exceeded.", {"retry-after": str(ra)},
                               exhausted=True, reset_in=ra)
        elif kind and re.fullmatch(r"\d{3}", kind):
            return self._error(int(kind), *self._status_error(int(kind)))
        elif kind == "404-after-create":
            return self._error(404, "not_found", "The resource you were accessing could not be found.")
        if self.op is None:
            return self._error(404, "not_found", "The resource you were accessing could not be found.")
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            return self._error(400, "bad_request", "unable to parse JSON body")
        act_then = None
        if kind == "create-then-500":
            act_then = 500
        elif kind and kind.startswith("act-then-"):
            act_then = int(kind.split("-")[-1])
        try:
            with st.lock:
                status, out = self._route(self.command, self.op.template, url.path, query, doc)
        except ApiFailure as e:
            return self._error(e.status, e.err_id, e.message)
        except Exception:  # noqa: BLE001
            log(traceback.format_exc())
            return self._error(500, "server_error", "Internal fake error (see the fake's stderr).")
        if act_then:
            return self._error(act_then, *self._status_error(act_then))
        self._respond(status, out, fault=fault)

    @staticmethod
    def _status_error(status: int) -> tuple[str, str]:
        return {
            404: ("not_found", "The resource you were accessing could not be found."),
            422: ("unprocessable_entity", "The request could not be processed."),
            500: ("server_error", "Server Error"),
            502: ("bad_gateway", "Bad Gateway"),
            503: ("service_unavailable", "Service Unavailable"),
            504: ("gateway_timeout", "Gateway Timeout"),
        }.get(status, ("error", f"HTTP {status}"))

    # -- the API
    def _paginate(self, path: str, query: dict, key: str, items: list) -> dict:
        def one(name, default):
            try:
                return int(query.get(name, [default])[0])
            except ValueError:
                raise ApiFailure(400, "bad_request", f"{name} must be an integer")
        per_page = max(1, min(200, one("per_page", self.state.per_page_default)))
        page = max(1, one("page", 1))
        total = len(items)
        last = max(1, -(-total // per_page))
        start = (page - 1) * per_page
        out = {key: items[start:start + per_page], "links": {}, "meta": {"total": total}}

        def link(p):
            q = {k: v[0] for k, v in query.items()}
            q.update(page=str(p), per_page=str(per_page))
            return f"http://127.0.0.1:{self.server.server_port}{path}?{urlencode(q)}"
        pages = {}
        if page > 1:
            pages["first"], pages["prev"] = link(1), link(page - 1)
        if page < last:
            pages["last"], pages["next"] = link(last), link(page + 1)
        if pages:
            out["links"]["pages"] = pages
        return out

    def _route(self, method: str, template: str, path: str, query: dict, body: dict) -> tuple[int, dict | None]:
        st = self.state
        parts = path.split("/")
        if method == "GET" and template == "/v2/account":
            return 200, {"account": {"droplet_limit": 25, "floating_ip_limit": 3, "volume_limit": 100,
                                     "email": "berth-tests@example.invalid", "name": "berth tests",
                                     "uuid": "b6fr89dbf6d9156cace5f3c78dc9851d957381ef", "email_verified": True,
                                     "status": "active", "status_message": ""}}
        if method == "GET" and template == "/v2/regions":
            return 200, self._paginate(path, query, "regions", [region_json(r[0]) for r in REGIONS])
        if method == "GET" and template == "/v2/sizes":
            return 200, self._paginate(path, query, "sizes", [size_json(s[0]) for s in SIZES])
        if method == "GET" and template == "/v2/images":
            wanted = query.get("type", [None])[0]
            imgs = [image_json(i) for i in IMAGES]
            if wanted == "application" or query.get("private", ["false"])[0] == "true":
                imgs = []   # only public distribution images here
            return 200, self._paginate(path, query, "images", imgs)
        if method == "GET" and template == "/v2/images/{image_id}":
            ident = parts[3]
            img = IMAGE_BY_ID.get(int(ident)) if ident.isdigit() else IMAGE_BY_SLUG.get(ident)
            if img is None:
                raise not_found()
            return 200, {"image": image_json(img)}
        if template == "/v2/account/keys":
            if method == "GET":
                return 200, self._paginate(path, query, "ssh_keys", list(st.keys.values()))
            name, pub = body.get("name", ""), " ".join(str(body.get("public_key", "")).split()[:3])
            fp = md5_fingerprint(pub)
            if fp is None:
                raise unprocessable("Key invalid, type not supported")
            if not name:
                raise unprocessable("Name can't be blank")
            if any(k["fingerprint"] == fp for k in st.keys.values()):
                raise unprocessable("SSH Key is already in use on your account")
            k = {"id": st.next_id(), "fingerprint": fp, "public_key": pub, "name": name}
            st.keys[k["id"]] = k
            return 201, {"ssh_key": k}
        if template == "/v2/account/keys/{ssh_key_identifier}":
            k = st.find_key(parts[4])
            if method == "GET":
                return 200, {"ssh_key": k}
            del st.keys[k["id"]]
            return 204, None
        if template == "/v2/droplets":
            if method == "POST":
                d, link = st.create_droplet(body, self.server.server_port)
                return 202, {"droplet": st.droplet_json(d), "links": {"actions": [link]}}
            items = sorted(st.droplets.values(), key=lambda d: d["id"])
            if "tag_name" in query:
                items = [d for d in items if query["tag_name"][0] in d["tags"]]
            if "name" in query:
                items = [d for d in items if d["name"].lower() == query["name"][0].lower()]
            for d in items:
                st.observe_droplet(d)
            return 200, self._paginate(path, query, "droplets", [st.droplet_json(d) for d in items])
        if template.startswith("/v2/droplets/{droplet_id}"):
            d = st.droplets.get(int(parts[3]))
            if d is None:
                raise not_found()
            if template == "/v2/droplets/{droplet_id}":
                if method == "GET":
                    st.observe_droplet(d)
                    return 200, {"droplet": st.droplet_json(d)}
                st.delete_droplet(d["id"])
                return 204, None
            if template == "/v2/droplets/{droplet_id}/actions" and method == "POST":
                a = st.droplet_action(d, body.get("type", ""))
                return 201, {"action": st.action_json(a)}
            if template == "/v2/droplets/{droplet_id}/actions/{action_id}":
                a = st.actions.get(int(parts[5]))
                if a is None or a.get("droplet") != d["id"]:
                    raise not_found()
                st.observe_action(a)
                return 200, {"action": st.action_json(a)}
        if method == "GET" and template == "/v2/actions/{action_id}":
            a = st.actions.get(int(parts[3]))
            if a is None:
                raise not_found()
            st.observe_action(a)
            if a["type"] == "create" and a.get("droplet") in st.droplets:
                st.observe_droplet(st.droplets[a["droplet"]])
            return 200, {"action": st.action_json(a)}
        self._violation([f"{method} {template}: in the spec but not implemented by the fake (berth should not call it)"])
        raise ApiFailure(404, "not_found", "Not implemented by berth's fake DigitalOcean API.")

    # -- the control API
    def _control(self, path: str, body: bytes):
        st = self.state

        def send(status, doc):
            data = json.dumps(doc, indent=1).encode()
            self._send_raw(status, {"content-type": "application/json"}, data)
        try:
            doc = json.loads(body) if body else None
        except ValueError as e:
            return send(400, {"error": f"bad JSON: {e}"})
        if self.command == "GET" and path == "/_fake/state":
            return send(200, st.snapshot())
        if self.command == "GET" and path == "/_fake/violations":
            with st.lock:
                return send(200, list(st.violations))
        if self.command == "POST" and path == "/_fake/faults":
            faults = doc if isinstance(doc, list) else [doc]
            for f in faults:
                if not isinstance(f, dict) or "kind" not in f:
                    return send(400, {"error": "each fault needs at least a kind"})
                re.compile(f.get("path", ".*"))
            with st.lock:
                st.faults.extend(faults)
            return send(200, {"pending": len(st.faults)})
        if self.command == "DELETE" and path == "/_fake/faults":
            with st.lock:
                st.faults.clear()
            return send(200, {"pending": 0})
        if self.command == "POST" and path == "/_fake/reset":
            st.reset_all()
            return send(200, {"ok": True})
        if self.command == "POST" and path == "/_fake/config":
            with st.lock:
                for k in ("new_polls", "action_polls", "per_page_default"):
                    if doc and k in doc:
                        setattr(st, k, int(doc[k]))
            return send(200, {"new_polls": st.new_polls, "action_polls": st.action_polls,
                              "per_page_default": st.per_page_default})
        return send(404, {"error": f"no control endpoint {self.command} {path}"})


def main():
    ap = argparse.ArgumentParser(description="berth's fake DigitalOcean API (a test double)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="also write the port here (atomically)")
    ap.add_argument("--token", default="fake-do-token", help="the only bearer token accepted")
    ap.add_argument("--spec", default=str(DEFAULT_SPEC))
    ap.add_argument("--testhost", default=str(REPO / "scripts/testhost.sh"))
    ap.add_argument("--no-hosts", action="store_true", help="no real SSH hosts (self-tests, benches of the API only)")
    ap.add_argument("--first-index", type=int, default=100, help="first testhost index to try")
    ap.add_argument("--new-polls", type=int, default=3, help="GETs a droplet stays 'new' for")
    ap.add_argument("--action-polls", type=int, default=2, help="GETs an action stays 'in-progress' for")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    if not Path(args.spec).exists():
        print(f"fake_do: no OpenAPI spec at {args.spec}", file=sys.stderr)
        return 2
    if not args.no_hosts and os.geteuid() != 0:
        print("fake_do: real SSH hosts need root (or pass --no-hosts)", file=sys.stderr)
        return 2
    checker = SpecChecker(args.spec)
    hosts = Hosts(None if args.no_hosts else Path(args.testhost), args.first_index, f"dofk{os.getpid()}")
    # A key for droplets created without any (nobody can log in, as on DigitalOcean).
    keyfile = hosts.tmp / "fallback"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keyfile)], check=True)
    args.fallback_pubkey = (hosts.tmp / "fallback.pub").read_text().strip()
    state = State(args, hosts)

    Handler.state = state
    Handler.checker = checker
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.token = args.token          # type: ignore[attr-defined]
    server.verbose = args.verbose      # type: ignore[attr-defined]
    port = server.server_port
    if args.port_file:
        tmp = args.port_file + ".tmp"
        Path(tmp).write_text(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(port, flush=True)

    stopping = threading.Event()

    def stop(signum, frame):
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        state.reset_all()   # every droplet's host goes down
        time.sleep(0.2)
        hosts.all_down()
        subprocess.run(["rm", "-rf", str(hosts.tmp)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
