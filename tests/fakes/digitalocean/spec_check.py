"""Checks HTTP exchanges against DigitalOcean's official OpenAPI spec.

The spec is split over many files joined by relative $refs; jsonschema-path
resolves them (each node knows the file it came from), and
openapi-schema-validator checks instances with OpenAPI 3.0 semantics
(nullable, readOnly in requests, writeOnly in responses, formats).
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

from jsonschema_path import SchemaPath
from jsonschema_path.loaders import JsonschemaSafeLoader
from openapi_schema_validator import OAS30ReadValidator, OAS30Validator, OAS30WriteValidator

# OpenAPI 3 documents are YAML 1.2, where only true/false are booleans; PyYAML
# reads YAML 1.1, where `off`, `on`, `yes` and `no` are too (the droplet status
# enum lists `off`). Read them the 1.2 way.
_BOOL = "tag:yaml.org,2002:bool"
_resolvers = JsonschemaSafeLoader.yaml_implicit_resolvers
for _first in list(_resolvers):
    _resolvers[_first] = [(tag, rx) for tag, rx in _resolvers[_first] if tag != _BOOL]
JsonschemaSafeLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                           list("tTfF"))

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@dataclass
class Operation:
    template: str   # e.g. /v2/droplets/{droplet_id}
    method: str     # lower case
    node: SchemaPath


def _messages(errors) -> list[str]:
    out = []
    for e in errors:
        where = "/".join(str(p) for p in e.absolute_path) or "<root>"
        msg = e.message
        if len(msg) > 300:
            msg = msg[:300] + "..."
        # oneOf/anyOf failures: name the closest branch's reasons too.
        if e.context:
            best = sorted(e.context, key=lambda c: -len(c.absolute_path))[:3]
            msg += " [" + "; ".join(
                "/".join(str(p) for p in c.absolute_path) + ": " + c.message[:150] for c in best) + "]"
        out.append(f"{where}: {msg}")
    return out


class SpecChecker:
    def __init__(self, spec_file: str):
        self.spec = SchemaPath.from_file_path(spec_file)
        self._lock = threading.Lock()   # the resolver caches are not thread-safe
        self._validators: dict[tuple, Any] = {}
        self._routes: list[tuple[re.Pattern, int, str]] = []
        paths = self.spec / "paths"
        for template in paths.keys():
            params = template.count("{")
            rx = "^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template)) + "$"
            self._routes.append((re.compile(rx), params, template))
        # Literal segments win over parameters (/v2/droplets/actions vs /{droplet_id}).
        self._routes.sort(key=lambda r: r[1])

    # -- lookup --
    def match(self, method: str, path: str) -> tuple[Operation | None, dict[str, str]]:
        for rx, _, template in self._routes:
            m = rx.match(path)
            if not m:
                continue
            item = self.spec / "paths" / template
            if method.lower() not in item.keys():
                continue
            names = re.findall(r"\{([^}]+)\}", template)
            return Operation(template, method.lower(), item / method.lower()), dict(zip(names, m.groups()))
        return None, {}

    def _validator(self, key: tuple, node: SchemaPath, cls):
        v = self._validators.get(key)
        if v is None:
            with node.resolve() as resolved:
                v = cls(resolved.contents, _resolver=resolved.resolver)
            self._validators[key] = v
        return v

    def _parameters(self, op: Operation) -> list[SchemaPath]:
        params = []
        item = self.spec / "paths" / op.template
        for holder in (item, op.node):
            if "parameters" in holder.keys():
                params.extend(list(holder / "parameters"))
        return params

    @staticmethod
    def _coerce(raw: str, schema: SchemaPath) -> Any:
        """Path and query values arrive as text; read them as the schema's type."""
        with schema.resolve() as r:
            s = r.contents
        kinds = []
        if "type" in s:
            kinds = [s["type"]]
        for alt in s.get("anyOf", []) + s.get("oneOf", []):
            if isinstance(alt, dict) and "type" in alt:
                kinds.append(alt["type"])
        if "integer" in kinds and re.fullmatch(r"-?\d+", raw):
            return int(raw)
        if "number" in kinds:
            try:
                return float(raw)
            except ValueError:
                pass
        if "boolean" in kinds and raw in ("true", "false"):
            return raw == "true"
        return raw

    # -- checks; each returns a list of violation messages --
    def check_request(self, method: str, path: str, query: dict[str, list[str]],
                      headers: dict[str, str], body: bytes) -> tuple[Operation | None, list[str]]:
        with self._lock:
            op, path_values = self.match(method, path)
            if op is None:
                return None, [f"{method} {path}: no such operation in the spec"]
            label = f"{method} {op.template}"
            out = []
            declared = set()
            for p in self._parameters(op):
                where, name = str((p / "in").read_value()), str((p / "name").read_value())
                required = "required" in p.keys() and bool((p / "required").read_value())
                key = ("param", op.template, op.method, where, name)
                if where == "path":
                    values = [path_values.get(name)]
                elif where == "query":
                    declared.add(name)
                    values = query.get(name, [])
                elif where == "header":
                    values = [headers[name.lower()]] if name.lower() in headers else []
                else:
                    continue
                values = [v for v in values if v is not None]
                if not values:
                    if required:
                        out.append(f"{label}: required {where} parameter '{name}' missing")
                    continue
                if "schema" not in p.keys():
                    continue
                # readOnly on a parameter's schema (ids) means nothing for a request: plain OAS 3.0.
                v = self._validator(key, p / "schema", OAS30Validator)
                for raw in values:
                    value = self._coerce(raw, p / "schema")
                    out += [f"{label}: {where} parameter '{name}'={raw!r}: {m}" for m in _messages(v.iter_errors(value))]
            for name in query:
                if name not in declared:
                    out.append(f"{label}: query parameter '{name}' is not in the spec")
            has_body_spec = "requestBody" in op.node.keys()
            if not has_body_spec:
                if body:
                    out.append(f"{label}: sends a body but the operation takes none")
                return op, out
            rb = op.node / "requestBody"
            required = "required" in rb.keys() and bool((rb / "required").read_value())
            if not body:
                if required:
                    out.append(f"{label}: request body required")
                return op, out
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            content = rb / "content"
            if ctype not in content.keys():
                out.append(f"{label}: request Content-Type {ctype!r} not in {list(content.keys())}")
                return op, out
            try:
                doc = json.loads(body)
            except ValueError as e:
                out.append(f"{label}: request body is not JSON: {e}")
                return op, out
            v = self._validator(("req", op.template, op.method, ctype), content / ctype / "schema", OAS30WriteValidator)
            out += [f"{label}: request body {m}" for m in _messages(v.iter_errors(doc))]
            return op, out

    def check_response(self, op: Operation, status: int, headers: dict[str, str], body: bytes) -> list[str]:
        with self._lock:
            label = f"{op.method.upper()} {op.template} -> {status}"
            responses = op.node / "responses"
            code = str(status)
            if code not in responses.keys():
                code = "default" if "default" in responses.keys() else None
            if code is None:
                return [f"{label}: status not in the spec's responses {list(responses.keys())}"]
            resp = responses / code
            out = []
            if "headers" in resp.keys():
                for name, h in (resp / "headers").items():
                    lname = name.lower()
                    if lname not in headers:
                        if lname != "content-type" or body:
                            out.append(f"{label}: header {name} missing")
                        continue
                    if "schema" in h.keys():
                        v = self._validator(("hdr", op.template, op.method, code, lname), h / "schema", OAS30ReadValidator)
                        value = self._coerce(headers[lname], h / "schema")
                        out += [f"{label}: header {name}={headers[lname]!r}: {m}" for m in _messages(v.iter_errors(value))]
            if "content" not in resp.keys():
                if body:
                    out.append(f"{label}: sends a body but the spec declares none")
                return out
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            content = resp / "content"
            if ctype not in content.keys():
                out.append(f"{label}: Content-Type {ctype!r} not in {list(content.keys())}")
                return out
            try:
                doc = json.loads(body)
            except ValueError as e:
                return out + [f"{label}: body is not JSON: {e}"]
            if "schema" in (content / ctype).keys():
                v = self._validator(("resp", op.template, op.method, code, ctype), content / ctype / "schema", OAS30ReadValidator)
                out += [f"{label}: body {m}" for m in _messages(v.iter_errors(doc))]
            return out
