#!/usr/bin/env python3
"""Test double for Amazon EC2: moto_server behind a small fault-injecting proxy.

    ec2fake.py --ready-file PATH [--testhost-script PATH] [--first-index 150] [--no-hosts]

What it does (all on 127.0.0.1, nothing leaves this machine):
  * starts `moto_server` on a free port with INITIAL_NO_AUTH_ACTION_COUNT=3 and
    uses those three unsigned calls to make an IAM user, its policy and a real
    access key; from then on moto refuses any request not signed with that key;
  * starts a proxy (the endpoint berth talks to) that forwards each request
    unchanged (Host, headers and body kept, so SigV4 stays valid) and
      - emulates what moto 5.2.1 lacks: RunInstances ClientToken idempotency,
        DependencyViolation for a group still in use, real RequestIDs in errors,
      - backs every instance launched with an imported key pair by a real
        throwaway SSH host (scripts/testhost.sh, 10.231.X.2) whose
        authorized_keys holds that key, rewriting the instance's public IP in
        the XML; Stop powers the host off, Start boots it, Terminate removes it,
      - injects faults on request (/_fake/faults);
  * writes the ready file (JSON: endpoint, moto, access_key, secret_key,
    region, ami, pid) once everything answers.

Control API (plain JSON, on the proxy's port):
  GET  /_fake/state    resources in moto: instances not terminated, key pairs,
                       security groups other than "default", test hosts up
  POST /_fake/faults   add a rule {"kind": K, "action": "RunInstances"|"*", "count": N, ...}
                       K = throttle | error (status, code, message) | slow (delay_ms)
                           | drop (executed, then the connection is closed unanswered)
                           | not_found (InvalidInstanceID.NotFound for requests naming instances)
  GET  /_fake/faults   rules left and faults fired; DELETE clears both
  GET  /_fake/log      every API request seen: action, time, status, fault, client_token,
                       request_id (errors), idempotent_replay (RunInstances answered from the token cache)
  DELETE /_fake/log    clears the log
  POST /_fake/purge    deletes everything in moto (test clean-up after a failure)

SIGTERM/SIGINT (or the death of --parent-pid) tears down every test host and moto.
"""
import argparse
import base64
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
import xml.etree.ElementTree as ET

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"
USER = "berth-it"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-connection", "content-length"}


def log(msg):
    print(f"ec2fake: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def namespace_of(root):
    """moto answers in xmlns="http://ec2.amazonaws.com/doc/2016-11-15" (no trailing slash, unlike AWS)."""
    return root.tag[1:].partition("}")[0] if root.tag.startswith("{") else ""


def qualified(ns):
    return (lambda tag: f"{{{ns}}}{tag}") if ns else (lambda tag: tag)


def error_xml(code, message, request_id):
    """EC2's own error document (<Response><Errors>...)."""
    from xml.sax.saxutils import escape
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>").encode()


# ---------------------------------------------------------------- moto


class Moto:
    """moto_server on a free loopback port, with signature checking after setup."""

    SETUP_CALLS = 3  # CreateUser, PutUserPolicy, CreateAccessKey

    def __init__(self, binary):
        self.proc = None
        for _ in range(5):
            self.port = free_port()
            env = dict(os.environ,
                       INITIAL_NO_AUTH_ACTION_COUNT=str(self.SETUP_CALLS),
                       MOTO_ENABLE_AMI_VALIDATION="true",
                       MOTO_ENABLE_KEYPAIR_VALIDATION="true",
                       AWS_DEFAULT_REGION=REGION)
            self.proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(self.port)], env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, start_new_session=True)
            if self._wait_up(60):
                threading.Thread(target=self._drain, daemon=True).start()
                break
            self.stop()
        else:
            raise RuntimeError("moto_server did not start")
        self.url = f"http://127.0.0.1:{self.port}"
        self._setup_iam()

    def _drain(self):
        for line in self.proc.stderr:
            if os.environ.get("EC2FAKE_VERBOSE"):
                sys.stderr.write("moto: " + line.decode(errors="replace"))

    def _wait_up(self, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.1)
        return False

    def _setup_iam(self):
        anon = dict(aws_access_key_id="setup", aws_secret_access_key="setup", region_name=REGION,
                    endpoint_url=self.url)
        iam = boto3.client("iam", **anon)
        iam.create_user(UserName=USER)
        iam.put_user_policy(UserName=USER, PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName=USER)["AccessKey"]
        self.access_key = key["AccessKeyId"]
        self.secret_key = key["SecretAccessKey"]
        # Every call from here on is signature-checked, ours included.
        self.ec2 = boto3.client("ec2", aws_access_key_id=self.access_key,
                                aws_secret_access_key=self.secret_key, region_name=REGION,
                                endpoint_url=self.url)
        images = self.ec2.describe_images(Owners=["amazon"])["Images"] or self.ec2.describe_images()["Images"]
        linux = [i for i in images if "ubuntu" in (i.get("Name") or "").lower()] or images
        self.ami = sorted(linux, key=lambda i: i["ImageId"])[0]["ImageId"]

    def state(self):
        instances = [i for r in self.ec2.describe_instances()["Reservations"] for i in r["Instances"]
                     if i["State"]["Name"] != "terminated"]
        keys = self.ec2.describe_key_pairs()["KeyPairs"]
        groups = [g for g in self.ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"]
        return {
            "instances": [{"id": i["InstanceId"], "state": i["State"]["Name"], "key": i.get("KeyName", ""),
                           "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])}} for i in instances],
            "key_pairs": [k["KeyName"] for k in keys],
            "security_groups": [{"id": g["GroupId"], "name": g["GroupName"]} for g in groups],
        }

    def purge(self):
        st = self.state()
        ids = [i["id"] for i in st["instances"]]
        if ids:
            self.ec2.terminate_instances(InstanceIds=ids)
        for k in st["key_pairs"]:
            self.ec2.delete_key_pair(KeyName=k)
        for g in st["security_groups"]:
            try:
                self.ec2.delete_security_group(GroupId=g["id"])
            except Exception as e:  # noqa: BLE001 - best effort clean-up
                log(f"purge: {g['id']}: {e}")
        return st

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()


# ---------------------------------------------------------------- test hosts


class Host:
    def __init__(self, name):
        self.name = name
        self.index = None
        self.ip = None
        self.status = "booting"   # booting | up | off | failed | down
        self.coming_up = False    # testhost.sh up is running for it
        self.describes = 0        # DescribeInstances answers seen since launch


class Hosts:
    """Real SSH hosts behind instances (scripts/testhost.sh), one per instance."""

    def __init__(self, script, first_index, enabled, workdir):
        self.script = script
        self.first_index = first_index
        self.enabled = enabled
        self.workdir = workdir
        self.lock = threading.Lock()
        self.by_instance = {}   # instance id -> Host
        self.moto_ip = {}       # moto's public IP -> instance id
        self.keys = {}          # key pair name -> OpenSSH public key line
        self.used_indexes = set()
        self.threads = []

    def _run(self, *args, timeout=60):
        env = dict(os.environ, BERTH_TESTHOST_OWNER=str(os.getpid()))
        return subprocess.run([self.script, *args], env=env, capture_output=True, text=True, timeout=timeout)

    def remember_key(self, name, material):
        with self.lock:
            self.keys[name] = material

    def forget_key(self, name):
        with self.lock:
            self.keys.pop(name, None)

    def _background(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        with self.lock:
            self.threads.append(t)

    def launch(self, instance_id, key_name):
        with self.lock:
            if instance_id in self.by_instance:
                return
            material = self.keys.get(key_name or "")
            host = Host(f"ec2-{instance_id}"[:40])
            self.by_instance[instance_id] = host
        if not self.enabled or not material:
            host.status = "up"  # no SSH host behind it: the instance keeps moto's IP
            return
        host.coming_up = True
        self._background(self._up, host, material)

    def _up(self, host, material):
        keyfile = os.path.join(self.workdir, host.name + ".pub")
        with open(keyfile, "w") as f:
            f.write(material.strip() + "\n")
        index = self.first_index
        while index <= 254:
            with self.lock:
                while index in self.used_indexes:
                    index += 1
                if index > 254:
                    break
                self.used_indexes.add(index)
            r = self._run("up", host.name, str(index), keyfile)
            if r.returncode == 0:
                with self.lock:
                    host.index, host.ip = index, r.stdout.strip()
                    if host.status == "booting":
                        host.status = "up"
                    terminated = host.status == "down"
                    host.coming_up = False
                log(f"{host.name} is up at {host.ip}")
                if terminated:  # terminated while it was coming up
                    self._down(host)
                return
            if r.returncode != 75:
                log(f"testhost up {host.name} failed: {r.stderr.strip()}")
                break
            index += 1  # taken by someone else: keep it marked, try the next
        with self.lock:
            host.coming_up = False
            if host.status != "down":
                host.status = "failed"

    def _pids(self, host):
        r = self._run("pids", host.name)
        return [int(line.split()[0]) for line in r.stdout.splitlines() if line.strip()]

    def _sshd_pid(self, host):
        try:
            with open(f"/run/berth-testhost/{host.name}/sshd.pid") as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _power_off(self, host):
        """Like pulling the plug: everything but sshd dies, the network goes away, the disk stays."""
        if host.ip is None:
            return
        keep = self._sshd_pid(host)
        subprocess.run(["ip", "-n", f"berth-th-{host.name}", "link", "set", "eth0", "down"],
                       capture_output=True)
        for pid in self._pids(host):
            if pid != keep:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _boot(self, host):
        if host.ip is None:
            host.status = "up"
            return
        subprocess.run(["ip", "-n", f"berth-th-{host.name}", "link", "set", "eth0", "up"], capture_output=True)
        # What init would run at boot on a host without systemd or OpenRC.
        boot = ("for f in /etc/local.d/*.start; do [ -x \"$f\" ] && \"$f\"; done; "
                "[ -x /etc/rc.local ] && /etc/rc.local; exit 0")
        r = self._run("exec", host.name, "sh", "-c", boot, timeout=60)
        if r.returncode != 0:
            log(f"boot of {host.name}: {r.stderr.strip()}")
        with self.lock:
            if host.status == "booting":
                host.status = "up"

    def stop(self, instance_id):
        host = self.by_instance.get(instance_id)
        if host and host.status in ("up", "booting"):
            self._power_off(host)
            host.status = "off"

    def start(self, instance_id):
        host = self.by_instance.get(instance_id)
        if host and host.status == "off":
            host.status = "booting"
            host.describes = 0
            self._background(self._boot, host)

    def reboot(self, instance_id):
        host = self.by_instance.get(instance_id)
        if host and host.status == "up":
            self._power_off(host)
            host.status = "booting"
            self._background(self._boot, host)

    def terminate(self, instance_id):
        with self.lock:
            host = self.by_instance.get(instance_id)
        if host and host.status != "down":
            host.status = "down"
            self._background(self._down, host)

    def _down(self, host):
        if host.ip is None:
            return
        r = self._run("down", host.name)
        if r.returncode != 0:
            log(f"testhost down {host.name}: {r.stderr.strip()}")
        with self.lock:
            self.used_indexes.discard(host.index)
            host.ip = None

    def up_count(self):
        with self.lock:
            return sum(1 for h in self.by_instance.values() if h.ip is not None or h.coming_up)

    def down_all(self):
        with self.lock:
            threads = list(self.threads)
        for t in threads:
            t.join(timeout=30)
        for iid, host in list(self.by_instance.items()):
            if host.ip is not None:
                self._down(host)

    # ---- XML rewriting

    def rewrite_instances(self, root, count_describe):
        """Replaces moto's public IPs by the hosts' and holds instances in
        `pending` until their host answers (and for the first describe)."""
        q = qualified(namespace_of(root))
        for item in root.iter(q("item")):
            iid_el = item.find(q("instanceId"))
            state_el = item.find(q("instanceState"))
            if iid_el is None or state_el is None:
                continue
            iid = iid_el.text
            with self.lock:
                host = self.by_instance.get(iid)
            if host is None:
                continue
            name_el = state_el.find(q("name"))
            code_el = state_el.find(q("code"))
            ip_el = item.find(q("ipAddress"))
            dns_el = item.find(q("dnsName"))
            if ip_el is not None and ip_el.text:
                with self.lock:
                    self.moto_ip[ip_el.text] = iid
            moto_state = name_el.text if name_el is not None else ""
            if count_describe:
                host.describes += 1
            pending = moto_state in ("pending", "running") and (host.status in ("booting", "failed")
                                                                  or (count_describe and host.describes <= 1))
            if pending:
                if name_el is not None:
                    name_el.text = "pending"
                if code_el is not None:
                    code_el.text = "0"
            # The same address also shows in networkInterfaceSet/item/association.
            nested = [e for tag in ("publicIp", "publicDnsName") for e in item.iter(q(tag))]
            if pending or moto_state not in ("running", "pending"):
                if ip_el is not None:
                    item.remove(ip_el)
                for el in [dns_el, *nested]:
                    if el is not None:
                        el.text = None
            elif host.ip is not None:
                for el in [ip_el, dns_el, *nested]:
                    if el is not None:
                        el.text = host.ip


# ---------------------------------------------------------------- faults


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.fired = []

    def add(self, rule):
        rule = dict(rule)
        rule.setdefault("action", "*")
        rule.setdefault("count", 1)
        if rule.get("kind") not in ("throttle", "error", "slow", "drop", "not_found"):
            raise ValueError(f"unknown fault kind {rule.get('kind')!r}")
        with self.lock:
            self.rules.append(rule)

    def take(self, action, params):
        with self.lock:
            for rule in self.rules:
                if rule["action"] not in ("*", action):
                    continue
                if rule["kind"] == "not_found" and not any(k.startswith("InstanceId") for k in params):
                    continue
                rule["count"] -= 1
                if rule["count"] <= 0:
                    self.rules.remove(rule)
                self.fired.append({"action": action, "kind": rule["kind"]})
                return dict(rule)
        return None

    def snapshot(self):
        with self.lock:
            return {"rules": list(self.rules), "fired": list(self.fired)}

    def clear(self):
        with self.lock:
            self.rules.clear()
            self.fired.clear()


# ---------------------------------------------------------------- the proxy


class Fake:
    def __init__(self, moto, hosts):
        self.moto = moto
        self.hosts = hosts
        self.faults = Faults()
        self.log_lock = threading.Lock()
        self.log = []
        self.run_lock = threading.Lock()
        self.tokens = {}   # ClientToken -> (params, response status, headers, body)

    def record(self, entry):
        with self.log_lock:
            self.log.append(entry)

    def group_in_use(self, params):
        """Whether an instance that is not terminated uses the group DeleteSecurityGroup names."""
        gid, gname = params.get("GroupId"), params.get("GroupName")
        for r in self.moto.ec2.describe_instances()["Reservations"]:
            for i in r["Instances"]:
                if i["State"]["Name"] == "terminated":
                    continue
                for g in i.get("SecurityGroups", []):
                    if (gid and g["GroupId"] == gid) or (gname and g["GroupName"] == gname):
                        return True
        return False

    def verify_signature(self, method, path, headers, body):
        """Checks SigV4 the way moto does, for answers the proxy gives itself."""
        auth = headers.get("Authorization", "")
        if self.moto.access_key not in auth:
            return False
        signed = auth.partition("SignedHeaders=")[2].partition(",")[0].split(";")
        hdrs = {k: v for k, v in headers.items() if k.lower() in signed}
        request = AWSRequest(method=method, url=path, data=body, headers=hdrs)
        request.context["timestamp"] = headers.get("X-Amz-Date", "")
        signer = SigV4Auth(Credentials(self.moto.access_key, self.moto.secret_key), "ec2", REGION)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        return auth.partition("Signature=")[2].partition(",")[0] == expected


def make_handler(fake):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ec2fake"

        def log_message(self, fmt, *args):
            if os.environ.get("EC2FAKE_VERBOSE"):
                log(fmt % args)

        # ---- plumbing

        def _body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _send(self, status, body, headers=(), content_type="text/xml;charset=UTF-8"):
            try:
                self.send_response(status)
                sent_type = False
                for k, v in headers:
                    if k.lower() in HOP_BY_HOP or k.lower() in ("server", "date"):
                        continue
                    sent_type |= k.lower() == "content-type"
                    self.send_header(k, v)
                if not sent_type:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _json(self, status, obj):
            self._send(status, json.dumps(obj, indent=1).encode(), content_type="application/json")

        def _ec2_error(self, status, code, message, extra_headers=(), entry=None):
            rid = str(uuid.uuid4())
            if entry is not None:  # answered by the proxy itself: log it
                entry["status"] = status
                entry["request_id"] = rid
                fake.record(entry)
            self._send(status, error_xml(code, message, rid), [("x-amzn-RequestId", rid), *extra_headers])

        # ---- control API

        def _control(self, method, body):
            path = urllib.parse.urlsplit(self.path).path
            try:
                if path == "/_fake/state" and method == "GET":
                    st = fake.moto.state()
                    st["hosts_up"] = fake.hosts.up_count()
                    return self._json(200, st)
                if path == "/_fake/faults":
                    if method == "POST":
                        fake.faults.add(json.loads(body or b"{}"))
                        return self._json(200, fake.faults.snapshot())
                    if method == "DELETE":
                        fake.faults.clear()
                    return self._json(200, fake.faults.snapshot())
                if path == "/_fake/log":
                    if method == "DELETE":
                        with fake.log_lock:
                            fake.log.clear()
                    with fake.log_lock:
                        return self._json(200, list(fake.log))
                if path == "/_fake/purge" and method == "POST":
                    was = fake.moto.purge()
                    for inst in was["instances"]:
                        fake.hosts.terminate(inst["id"])
                    return self._json(200, was)
                return self._json(404, {"error": f"no control route {method} {path}"})
            except Exception as e:  # noqa: BLE001 - reported to the test
                return self._json(500, {"error": str(e), "trace": traceback.format_exc()})

        # ---- EC2

        def _forward(self, method, body):
            conn = http.client.HTTPConnection("127.0.0.1", fake.moto.port, timeout=120)
            try:
                conn.putrequest(method, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    if k.lower() not in HOP_BY_HOP:
                        conn.putheader(k, v)
                conn.putheader("Content-Length", str(len(body)))
                conn.putheader("Connection", "close")
                conn.endheaders(body)
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            finally:
                conn.close()

        def _handle(self, method):
            body = self._body()
            if self.path.startswith("/_fake/"):
                return self._control(method, body)
            params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            if "form-urlencoded" in self.headers.get("Content-Type", "") or (body and b"Action=" in body):
                params.update(urllib.parse.parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
            action = params.get("Action", "")
            entry = {"action": action, "time": time.time(), "client_token": params.get("ClientToken", "")}
            fault = fake.faults.take(action, params)
            entry["fault"] = fault["kind"] if fault else ""

            if fault and fault["kind"] == "throttle":
                return self._ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.", entry=entry)
            if fault and fault["kind"] == "error":
                return self._ec2_error(int(fault.get("status", 500)), fault.get("code", "InternalError"),
                                       fault.get("message", "An internal error has occurred"), entry=entry)
            if fault and fault["kind"] == "not_found":
                ids = [v for k, v in sorted(params.items()) if k.startswith("InstanceId")]
                return self._ec2_error(400, "InvalidInstanceID.NotFound",
                                       f"The instance ID '{', '.join(ids)}' does not exist", entry=entry)

            if action == "DeleteSecurityGroup" and fake.group_in_use(params):
                # AWS refuses this; moto 5.2.1 deletes a group its instances still use.
                if not fake.verify_signature(method, self.path, dict(self.headers.items()), body):
                    return self._ec2_error(401, "AuthFailure", "AWS was not able to validate the provided "
                                                               "access credentials", entry=entry)
                group = params.get("GroupId") or params.get("GroupName", "")
                return self._ec2_error(400, "DependencyViolation", f"resource {group} has a dependent object",
                                       entry=entry)

            if action == "RunInstances" and params.get("ClientToken"):
                with fake.run_lock:
                    status, headers, out = self._run_instances(method, body, params, entry)
            else:
                status, headers, out = self._forward(method, body)
                out = self._after(action, params, status, out)
            if status >= 400:
                out = self._real_request_id(out, headers, entry)
            entry["status"] = status
            fake.record(entry)

            if fault and fault["kind"] == "slow":
                time.sleep(int(fault.get("delay_ms", 5000)) / 1000)
            if fault and fault["kind"] == "drop":
                # Executed, but the answer never arrives.
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return None
            return self._send(status, out, headers)

        def _real_request_id(self, out, headers, entry):
            """moto's error bodies say <RequestID>request-id</RequestID>; AWS puts the
            real id there. Use the one moto sends in its x-amzn-RequestId header."""
            rid = next((v for k, v in headers if k.lower() == "x-amzn-requestid"), "") or str(uuid.uuid4())
            if b"<RequestID>request-id</RequestID>" in out:
                out = out.replace(b"<RequestID>request-id</RequestID>", f"<RequestID>{rid}</RequestID>".encode())
            entry["request_id"] = rid
            return out

        def _run_instances(self, method, body, params, entry):
            token = params["ClientToken"]
            same = {k: v for k, v in params.items()}
            if token in fake.tokens:
                if not fake.verify_signature(method, self.path, dict(self.headers.items()), body):
                    rid = str(uuid.uuid4())
                    return 401, [("x-amzn-RequestId", rid)], error_xml(
                        "AuthFailure", "AWS was not able to validate the provided access credentials", rid)
                first_params, status, headers, out = fake.tokens[token]
                entry["idempotent_replay"] = True
                if first_params != same:
                    rid = str(uuid.uuid4())
                    return 400, [("x-amzn-RequestId", rid)], error_xml(
                        "IdempotentParameterMismatch",
                        "Arguments on this idempotent request are inconsistent with arguments used in "
                        "previous request(s).", rid)
                return status, headers, self._rewrite(out, count_describe=False)
            status, headers, out = self._forward(method, body)
            out = self._after("RunInstances", params, status, out)
            if status == 200:
                fake.tokens[token] = (same, status, headers, out)
            return status, headers, out

        def _rewrite(self, out, count_describe):
            try:
                root = ET.fromstring(out)
            except ET.ParseError:
                return out
            ns = namespace_of(root)
            if ns:
                ET.register_namespace("", ns)
            fake.hosts.rewrite_instances(root, count_describe)
            return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)

        def _after(self, action, params, status, out):
            """Mirrors successful calls onto the test hosts; rewrites IPs."""
            if status != 200:
                return out
            ids = [v for k, v in params.items() if k.startswith("InstanceId.")]
            if action == "ImportKeyPair":
                material = params.get("PublicKeyMaterial", "")
                try:
                    decoded = base64.b64decode(material, validate=True).decode()
                    if decoded.startswith(("ssh-", "ecdsa-")):
                        material = decoded
                except (ValueError, UnicodeDecodeError):
                    pass
                fake.hosts.remember_key(params.get("KeyName", ""), material)
            elif action == "DeleteKeyPair":
                fake.hosts.forget_key(params.get("KeyName", ""))
            elif action == "RunInstances":
                try:
                    root = ET.fromstring(out)
                    q = qualified(namespace_of(root))
                    key = params.get("KeyName", "")
                    for item in root.iter(q("item")):
                        iid = item.find(q("instanceId"))
                        if iid is not None and item.find(q("instanceState")) is not None:
                            fake.hosts.launch(iid.text, key)
                except ET.ParseError:
                    pass
                return self._rewrite(out, count_describe=False)
            elif action == "DescribeInstances":
                return self._rewrite(out, count_describe=True)
            elif action == "StopInstances":
                for iid in ids:
                    fake.hosts.stop(iid)
            elif action == "StartInstances":
                for iid in ids:
                    fake.hosts.start(iid)
            elif action == "RebootInstances":
                for iid in ids:
                    fake.hosts.reboot(iid)
            elif action == "TerminateInstances":
                for iid in ids:
                    fake.hosts.terminate(iid)
            return out

        def do_POST(self):
            self._handle("POST")

        def do_GET(self):
            self._handle("GET")

        def do_DELETE(self):
            self._handle("DELETE")

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--testhost-script",
                    default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../scripts/testhost.sh"))
    ap.add_argument("--first-index", type=int, default=150)
    ap.add_argument("--no-hosts", action="store_true", help="no SSH hosts behind instances")
    ap.add_argument("--parent-pid", type=int, default=0, help="exit when this process dies")
    args = ap.parse_args()

    binary = shutil.which("moto_server")
    if not binary:
        log("moto_server is not on PATH")
        return 3
    workdir = tempfile.mkdtemp(prefix="ec2fake-")
    hosts = Hosts(os.path.abspath(args.testhost_script), args.first_index, not args.no_hosts, workdir)
    moto = None
    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = None
    try:
        moto = Moto(binary)
        fake = Fake(moto, hosts)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        ready = {"endpoint": f"http://127.0.0.1:{server.server_address[1]}", "moto": moto.url,
                 "access_key": moto.access_key, "secret_key": moto.secret_key, "region": REGION,
                 "ami": moto.ami, "pid": os.getpid()}
        tmp = args.ready_file + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(ready, f)
        os.rename(tmp, args.ready_file)
        log(f"ready: proxy {ready['endpoint']} -> moto {moto.url}")
        while not stopping.wait(0.25):
            if args.parent_pid and not os.path.exists(f"/proc/{args.parent_pid}"):
                log("parent is gone")
                break
        return 0
    finally:
        if server:
            server.shutdown()
        hosts.down_all()
        if moto:
            moto.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        log("stopped")


if __name__ == "__main__":
    sys.exit(main())
