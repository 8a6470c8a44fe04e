#!/usr/bin/env python3
"""Self-test of the fake DigitalOcean API (no real hosts): python3 selftest.py"""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKEN = "selftest-token"


class FakeDo(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc = subprocess.Popen([sys.executable, str(HERE / "fake_do.py"), "--no-hosts", "--token", TOKEN],
                                    stdout=subprocess.PIPE, text=True)
        cls.base = f"http://127.0.0.1:{cls.proc.stdout.readline().strip()}"
        d = tempfile.mkdtemp()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/k"], check=True)
        cls.pub = Path(f"{d}/k.pub").read_text().strip()

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(30)

    def setUp(self):
        self.call("POST", "/_fake/reset", auth=False)

    def call(self, method, path, body=None, auth=True, token=TOKEN, ctype="application/json"):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if auth:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, dict(r.headers), json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, dict(e.headers), json.loads(raw) if raw else None

    def violations(self):
        return self.call("GET", "/_fake/violations", auth=False)[2]

    def create(self, **extra):
        _, _, k = self.call("POST", "/v2/account/keys", {"name": "berth-test", "public_key": self.pub})
        body = {"name": "d1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64",
                "ssh_keys": [k["ssh_key"]["id"]], "tags": ["berth", "berth-machine-0123abcd"], **extra}
        status, _, out = self.call("POST", "/v2/droplets", body)
        self.assertEqual(status, 202, out)
        return out["droplet"]["id"], k["ssh_key"]

    def test_lifecycle_without_violations(self):
        did, key = self.create()
        statuses = [self.call("GET", f"/v2/droplets/{did}")[2]["droplet"]["status"] for _ in range(5)]
        self.assertEqual(statuses[:3], ["new"] * 3)
        self.assertEqual(statuses[3:], ["active"] * 2)
        nets = self.call("GET", f"/v2/droplets/{did}")[2]["droplet"]["networks"]["v4"]
        self.assertEqual([n["type"] for n in nets], ["private", "public"])
        status, _, a = self.call("POST", f"/v2/droplets/{did}/actions", {"type": "power_off"})
        self.assertEqual(status, 201)
        aid = a["action"]["id"]
        seen = [self.call("GET", f"/v2/actions/{aid}")[2]["action"]["status"] for _ in range(3)]
        self.assertEqual(seen[0], "in-progress")
        self.assertEqual(seen[-1], "completed")
        self.assertEqual(self.call("GET", f"/v2/droplets/{did}")[2]["droplet"]["status"], "off")
        _, _, a = self.call("POST", f"/v2/droplets/{did}/actions", {"type": "power_on"})
        for _ in range(3):
            self.call("GET", f"/v2/droplets/{did}/actions/{a['action']['id']}")
        self.assertEqual(self.call("GET", f"/v2/droplets/{did}")[2]["droplet"]["status"], "active")
        self.assertEqual(self.call("DELETE", f"/v2/droplets/{did}")[0], 204)
        self.assertEqual(self.call("DELETE", f"/v2/account/keys/{key['fingerprint']}")[0], 204)
        self.assertEqual(self.call("GET", f"/v2/droplets/{did}")[0], 404)
        state = self.call("GET", "/_fake/state", auth=False)[2]
        self.assertEqual((state["droplets"], state["keys"]), ([], []))
        self.assertEqual(self.violations(), [])

    def test_headers_errors_and_auth(self):
        status, headers, body = self.call("GET", "/v2/regions", token="wrong")
        self.assertEqual(status, 401)
        self.assertEqual(body["id"], "unauthorized")
        self.assertEqual(body["request_id"], headers["x-request-id"])
        for h in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
            self.assertIn(h, headers)
        self.assertEqual(self.violations(), [])

    def test_pagination_follows_next(self):
        status, _, page = self.call("GET", "/v2/sizes")
        self.assertEqual(len(page["sizes"]), 20)
        nxt = page["links"]["pages"]["next"]
        _, _, page2 = self.call("GET", nxt[len(self.base):])
        self.assertEqual(len(page2["sizes"]), 5)
        self.assertNotIn("next", page2["links"]["pages"])
        self.assertEqual(self.violations(), [])

    def test_faults(self):
        self.call("POST", "/_fake/faults", [{"method": "GET", "path": "^/v2/regions$", "kind": "429",
                                             "retry_after": 3, "times": 2}], auth=False)
        s1, h1, _ = self.call("GET", "/v2/regions")
        s2, _, _ = self.call("GET", "/v2/regions")
        s3, _, _ = self.call("GET", "/v2/regions")
        self.assertEqual((s1, s2, s3), (429, 429, 200))
        self.assertEqual(h1["retry-after"], "3")
        self.assertEqual(h1["ratelimit-remaining"], "0")
        self.call("POST", "/_fake/faults", [{"method": "POST", "path": "^/v2/droplets$", "kind": "create-then-500"}],
                  auth=False)
        _, _, k = self.call("POST", "/v2/account/keys", {"name": "k", "public_key": self.pub})
        s, _, body = self.call("POST", "/v2/droplets", {"name": "x", "region": "nyc3", "size": "s-1vcpu-1gb",
                                                       "image": "ubuntu-24-04-x64", "tags": ["berth"]})
        self.assertEqual(s, 500)
        self.assertEqual(len(self.call("GET", "/v2/droplets?tag_name=berth")[2]["droplets"]), 1)
        self.call("POST", "/_fake/faults", [{"method": "GET", "path": "^/v2/droplets$", "kind": "truncated-json"}],
                  auth=False)
        req = urllib.request.Request(self.base + "/v2/droplets", headers={"Authorization": f"Bearer {TOKEN}"})
        raw = urllib.request.urlopen(req, timeout=10).read()
        with self.assertRaises(ValueError):
            json.loads(raw)
        self.assertEqual(self.violations(), [])

    def test_bad_requests_are_recorded(self):
        self.call("POST", "/v2/droplets", {"name": "bad name!", "region": "nyc3"})   # no size/image, bad name
        self.call("GET", "/v2/droplets?bogus=1")
        self.call("POST", "/v2/account/keys", {"name": "k", "public_key": self.pub}, ctype="text/plain")
        self.call("GET", "/v2/no-such-thing")
        got = [v["message"] for v in self.violations()]
        self.assertTrue(any("POST /v2/droplets: request body" in m for m in got), got)
        self.assertTrue(any("'bogus'" in m for m in got), got)
        self.assertTrue(any("Content-Type" in m for m in got), got)
        self.assertTrue(any("no such operation" in m for m in got), got)

    def test_semantic_errors(self):
        s, _, body = self.call("POST", "/v2/droplets", {"name": "x", "region": "nowhere", "size": "s-1vcpu-1gb",
                                                       "image": "ubuntu-24-04-x64"})
        self.assertEqual((s, body["id"]), (422, "unprocessable_entity"))
        self.assertEqual(self.call("GET", "/v2/images/no-such-image")[0], 404)
        self.assertEqual(self.call("GET", "/v2/images/161120000")[2]["image"]["slug"], "ubuntu-24-04-x64")
        self.assertEqual(self.violations(), [])


if __name__ == "__main__":
    unittest.main()
