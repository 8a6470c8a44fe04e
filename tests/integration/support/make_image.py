#!/usr/bin/env python3
"""Builds a docker-archive tarball (what `docker save` writes and `docker load`
reads) from layers given as directories or as raw tar files, on top of an
optional base docker-archive, with config fields merged in. Tests use it to
make hostile images: a config whose Volumes name host paths, a layer whose
entries go through its own symlinks, a /etc/passwd that is a device link.

usage: make_image.py OUT.tar REF [--from BASE.tar] [--layer DIR|TAR]...
                     [--config JSON]
"""
import argparse
import hashlib
import io
import json
import os
import tarfile


def dir_layer(path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(root, name)
                info = t.gettarinfo(full, os.path.relpath(full, path))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 1704067200
                if info.isreg():
                    with open(full, "rb") as f:
                        t.addfile(info, f)
                else:
                    t.addfile(info)
    return buf.getvalue()


def base_layers(path):
    with tarfile.open(path) as t:
        manifest = json.load(t.extractfile("manifest.json"))[0]
        config = json.load(t.extractfile(manifest["Config"]))
        layers = [t.extractfile(name).read() for name in manifest["Layers"]]
    return config, layers


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("ref")
    p.add_argument("--from", dest="base")
    p.add_argument("--layer", action="append", default=[])
    p.add_argument("--config", default="{}")
    a = p.parse_args()

    config, layers = ({"config": {}}, [])
    if a.base:
        config, layers = base_layers(a.base)
    for layer in a.layer:
        layers.append(dir_layer(layer) if os.path.isdir(layer) else open(layer, "rb").read())
    config.setdefault("config", {}).update(json.loads(a.config))
    config.update({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z"})
    config["rootfs"] = {"type": "layers",
                        "diff_ids": ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]}
    config["history"] = [{"created": "2024-01-01T00:00:00Z", "created_by": "make_image.py"}
                         for _ in layers]
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"

    with tarfile.open(a.out, "w", format=tarfile.PAX_FORMAT) as out:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1704067200
            out.addfile(info, io.BytesIO(data))
        names = []
        for layer in layers:
            name = hashlib.sha256(layer).hexdigest() + "/layer.tar"
            add(name, layer)
            names.append(name)
        add(config_name, config_bytes)
        ref = a.ref if ":" in a.ref.split("/")[-1] else a.ref + ":latest"
        add("manifest.json", json.dumps([{"Config": config_name, "RepoTags": [ref],
                                          "Layers": names}]).encode())


if __name__ == "__main__":
    main()
