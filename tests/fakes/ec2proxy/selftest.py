#!/usr/bin/env python3
"""Checks the EC2 test double (ec2fake.py) with boto3 through its proxy.

    selftest.py [--testhost-script PATH]   exit 0 when every check passed

Needs root (it brings up one SSH test host). Prints one line per check.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
failures = []


def check(name, cond, detail=""):
    print(f"{'ok  ' if cond else 'FAIL'} {name}{': ' + str(detail) if detail and not cond else ''}", flush=True)
    if not cond:
        failures.append(name)


def control(endpoint, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(endpoint + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def port_open(ip, port, timeout=0.5):
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait(cond, seconds, interval=0.2):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()


def code_of(fn):
    try:
        fn()
        return ""
    except ClientError as e:
        return e.response["Error"]["Code"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--testhost-script", default=os.path.join(HERE, "../../../scripts/testhost.sh"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ec2fake-selftest-")
    ready_file = os.path.join(tmp, "ready.json")
    fake = subprocess.Popen([sys.executable, os.path.join(HERE, "ec2fake.py"), "--ready-file", ready_file,
                             "--testhost-script", args.testhost_script, "--first-index", "200",
                             "--parent-pid", str(os.getpid())])
    try:
        if not wait(lambda: os.path.exists(ready_file) or fake.poll() is not None, 90):
            check("fake starts", False, "no ready file after 90 s")
            return 1
        if fake.poll() is not None:
            check("fake starts", False, f"exited {fake.returncode}")
            return 1
        ready = json.load(open(ready_file))
        ep = ready["endpoint"]
        cfg = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=10)
        ec2 = boto3.client("ec2", aws_access_key_id=ready["access_key"], aws_secret_access_key=ready["secret_key"],
                           region_name=ready["region"], endpoint_url=ep, config=cfg)
        bad = boto3.client("ec2", aws_access_key_id=ready["access_key"], aws_secret_access_key="not-the-secret",
                           region_name=ready["region"], endpoint_url=ep)
        unknown = boto3.client("ec2", aws_access_key_id="AKIAUNKNOWNUNKNOWN00", aws_secret_access_key="x",
                               region_name=ready["region"], endpoint_url=ep)

        check("signed request accepted", len(ec2.describe_images(ImageIds=[ready["ami"]])["Images"]) == 1)
        check("wrong secret refused with AuthFailure", code_of(bad.describe_instances) == "AuthFailure")
        check("unknown access key refused", code_of(unknown.describe_instances) in ("AuthFailure",))
        check("bad AMI refused", code_of(lambda: ec2.run_instances(
            ImageId="ami-00000000", MinCount=1, MaxCount=1)) == "InvalidAMIID.NotFound")

        keyfile = os.path.join(tmp, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keyfile], check=True)
        pub = open(keyfile + ".pub").read().strip()
        ec2.import_key_pair(KeyName="selftest", PublicKeyMaterial=pub.encode())
        sg = ec2.create_security_group(GroupName="selftest", Description="selftest")["GroupId"]
        run = dict(ImageId=ready["ami"], MinCount=1, MaxCount=1, KeyName="selftest", SecurityGroupIds=[sg],
                   InstanceType="t3.micro")
        first = ec2.run_instances(ClientToken="tok-1", **run)["Instances"][0]
        again = ec2.run_instances(ClientToken="tok-1", **run)["Instances"][0]
        check("same ClientToken gives the same instance", first["InstanceId"] == again["InstanceId"])
        check("launch answers pending without a public IP",
              first["State"]["Name"] == "pending" and "PublicIpAddress" not in first, first)
        check("same ClientToken, other parameters: IdempotentParameterMismatch", code_of(
            lambda: ec2.run_instances(ClientToken="tok-1", **dict(run, InstanceType="t3.small")))
            == "IdempotentParameterMismatch")
        bad_replay = code_of(lambda: bad.run_instances(ClientToken="tok-1", **run))
        check("replay with a wrong signature refused", bad_replay == "AuthFailure", bad_replay)
        iid = first["InstanceId"]

        def describe():
            return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]

        d1 = describe()
        check("first describe is still pending", d1["State"]["Name"] == "pending", d1["State"])
        inst = {}

        def running():
            inst.update(describe())
            return inst["State"]["Name"] == "running" and inst.get("PublicIpAddress")

        check("instance becomes running with a public IP", wait(running, 30), inst.get("State"))
        ip = inst.get("PublicIpAddress", "")
        check("public IP is the test host's", ip.startswith("10.231.") and ip.endswith(".2"), ip)
        if not ip.startswith("10.231."):
            print(f"public IP {ip!r} is not a test host's: stopping before any connection to it")
            return 1
        ssh = ["ssh", "-i", keyfile, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"root@{ip}"]
        r = subprocess.run(ssh + ["echo", "hi"], capture_output=True, text=True, timeout=30)
        check("ssh with the imported key works", r.stdout.strip() == "hi", r.stderr)

        # Faults.
        control(ep, "POST", "/_fake/faults", {"kind": "throttle", "action": "DescribeInstances", "count": 2})
        check("throttling is retried by boto3", describe()["InstanceId"] == iid)
        fired = control(ep, "GET", "/_fake/faults")["fired"]
        check("two throttles fired", sum(1 for f in fired if f["kind"] == "throttle") == 2, fired)
        control(ep, "POST", "/_fake/faults", {"kind": "not_found", "action": "DescribeInstances"})
        check("not_found fault", code_of(describe) == "InvalidInstanceID.NotFound")
        control(ep, "POST", "/_fake/faults", {"kind": "error", "status": 500, "action": "DescribeInstances"})
        check("500 is retried by boto3", describe()["InstanceId"] == iid)
        control(ep, "POST", "/_fake/faults", {"kind": "slow", "delay_ms": 1500, "action": "DescribeKeyPairs"})
        t0 = time.time()
        ec2.describe_key_pairs()
        check("slow fault delays the answer", time.time() - t0 >= 1.4)
        control(ep, "POST", "/_fake/faults", {"kind": "drop", "action": "RunInstances"})
        second = ec2.run_instances(ClientToken="tok-2", **run)["Instances"][0]
        st = control(ep, "GET", "/_fake/state")
        check("dropped RunInstances retried with its token: one more instance",
              len(st["instances"]) == 2, st["instances"])
        log = [e for e in control(ep, "GET", "/_fake/log") if e["client_token"] == "tok-2"]
        check("the retry was answered from the first launch",
              len(log) == 2 and log[0]["fault"] == "drop" and log[1].get("idempotent_replay"), log)

        # Power: a boot script written now must run at start, and the disk must persist.
        boot = ("mkdir -p /etc/local.d && printf '#!/bin/sh\\necho booted >/root/booted\\n' "
                ">/etc/local.d/selftest.start && chmod +x /etc/local.d/selftest.start && echo ok")
        r = subprocess.run(ssh + [boot], capture_output=True, text=True, timeout=30)
        check("boot script written inside the host", r.stdout.strip() == "ok", r.stderr)
        ec2.stop_instances(InstanceIds=[iid])
        check("stopped host is unreachable", wait(lambda: not port_open(ip, 22), 5))
        check("stopped instance has no public IP", "PublicIpAddress" not in describe())
        ec2.start_instances(InstanceIds=[iid])
        check("started instance runs again at the same IP", wait(running, 30) and inst["PublicIpAddress"] == ip)
        check("started host answers ssh", wait(lambda: port_open(ip, 22), 10))
        r = subprocess.run(ssh + ["cat", "/root/booted"], capture_output=True, text=True, timeout=30)
        check("start ran the boot scripts", r.stdout.strip() == "booted", r.stderr)

        check("a group in use cannot be deleted (DependencyViolation)",
              code_of(lambda: ec2.delete_security_group(GroupId=sg)) == "DependencyViolation")
        # Clean-up leaves nothing.
        ec2.terminate_instances(InstanceIds=[iid, second["InstanceId"]])
        ec2.delete_key_pair(KeyName="selftest")
        ec2.delete_security_group(GroupId=sg)
        st = control(ep, "GET", "/_fake/state")
        check("state is empty after clean-up",
              not st["instances"] and not st["key_pairs"] and not st["security_groups"], st)
        check("test hosts go down with their instances",
              wait(lambda: control(ep, "GET", "/_fake/state")["hosts_up"] == 0, 15))

        # A host still up at SIGTERM is torn down.
        ec2.import_key_pair(KeyName="selftest2", PublicKeyMaterial=pub.encode())
        last = ec2.run_instances(ClientToken="tok-3", ImageId=ready["ami"], MinCount=1, MaxCount=1,
                                 KeyName="selftest2")["Instances"][0]
        wait(lambda: control(ep, "GET", "/_fake/state")["hosts_up"] == 1, 20)
        host_ns = f"berth-th-ec2-{last['InstanceId']}"
        check("host is up before SIGTERM", os.path.exists(f"/run/netns/{host_ns}"))
        fake.send_signal(signal.SIGTERM)
        fake.wait(60)
        check("fake exits on SIGTERM", fake.returncode == 0, fake.returncode)
        check("SIGTERM tears the hosts down", not os.path.exists(f"/run/netns/{host_ns}"))
    finally:
        if fake.poll() is None:
            fake.send_signal(signal.SIGTERM)
            try:
                fake.wait(60)
            except subprocess.TimeoutExpired:
                fake.kill()
        subprocess.run(["rm", "-rf", tmp])
    print(f"{len(failures)} failed" if failures else "all checks passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
