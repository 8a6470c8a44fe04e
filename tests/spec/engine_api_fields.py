#!/usr/bin/env python3
"""Property names of the Engine API models the agent returns, from the spec.

Usage: engine_api_fields.py SPEC.yaml OUT.json
Writes {"Model": ["Field", ...], ...}: every definition with properties, plus
the inline response schemas ContainerInspectResponse (GET /containers/{id}/json)
and ExecInspectResponse (GET /exec/{id}/json), which v1.47 does not name.
"""
import json
import sys

import yaml


def props(schema, defs):
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    out = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        out |= props(part, defs)
    return out


def main():
    spec = yaml.safe_load(open(sys.argv[1]))
    defs = spec["definitions"]
    models = {name: sorted(props(d, defs)) for name, d in defs.items()}
    paths = spec["paths"]
    inline = {
        "ContainerInspectResponse": paths["/containers/{id}/json"]["get"],
        "ExecInspectResponse": paths["/exec/{id}/json"]["get"],
    }
    for name, op in inline.items():
        models[name] = sorted(props(op["responses"][200]["schema"], defs))
    models = {k: v for k, v in models.items() if v}
    with open(sys.argv[2], "w") as f:
        json.dump(models, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
