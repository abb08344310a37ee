"""RunPod's REST v2 OpenAPI document as an executable contract (jsonschema, Draft 2020-12).

    contract = Contract()                      # tests/doubles/runpod-v2-pods.openapi.json
    route = contract.match("POST", "/v2/pods/abc/action")   # -> Route(op="podAction", params={"id": "abc"})
    problems = contract.check_request(route, query={"bucketSize": "hour"}, body=b'{"action": "stop"}')
    problems = contract.check_response(route.op, 200, "application/json", b"{...}", headers={})

Every check is the document's own schema run through `Draft202012Validator`, with a `referencing`
Registry that holds the whole document under one URI, so `#/components/...` refs resolve exactly as
written. Nothing here knows a field name of RunPod's API. Two things are computed rather than read
off the validator, both from the schemas themselves:

* "truly undeclared" properties: under `allOf` + `unevaluatedProperties: false` a validator drops
  the annotations of a failing branch, so one bad field makes every field of that branch look
  unknown. The undeclared set is instance keys minus every property name the schema declares
  anywhere below it (through $ref/allOf/anyOf/oneOf/if/then/else), and only those are reported, as
  RunPod reports them: `$: additional properties 'x' not allowed`.
* query parameters arrive as strings: each is coerced by its declared schema (`style: form,
  explode: false` arrays split on commas; integers, numbers, booleans parsed) before validation.

`format: date-time` is asserted (RFC 3339), since the default checker needs an optional package.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).with_name("runpod-v2-pods.openapi.json")
BASE_URI = "urn:runpod:v2:openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def parse_rfc3339(value: str) -> datetime:
    if not _RFC3339.match(value):
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))


FORMAT_CHECKER = FormatChecker()


@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parse_rfc3339(value)
    return True


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


@dataclass
class Route:
    op: str  # operationId
    method: str  # lower case
    template: str  # "/v2/pods/{id}"
    params: dict[str, str] = field(default_factory=dict)  # path parameters, percent-decoded
    pointer: str = ""  # JSON pointer of the operation object in the document


class Contract:
    def __init__(self, path: Path = SPEC_PATH):
        self.path = Path(path)
        self.raw = self.path.read_bytes()
        self.doc: dict = json.loads(self.raw)
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(BASE_URI, resource)
        self._resolver = self.registry.resolver(base_uri=BASE_URI)
        self._validators: dict[str, Draft202012Validator] = {}
        self.operations: dict[str, Route] = {}
        self._routes: list[tuple[re.Pattern, str, dict[str, Route]]] = []
        for template, item in self.doc["paths"].items():
            by_method: dict[str, Route] = {}
            for method in METHODS:
                op = item.get(method)
                if isinstance(op, dict) and "operationId" in op:
                    r = Route(op["operationId"], method, template,
                              pointer=f"/paths/{_escape(template)}/{method}")
                    by_method[method] = r
                    self.operations[r.op] = r
            regex = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
            self._routes.append((re.compile(regex), template, by_method))
        # literal paths before templated ones
        self._routes.sort(key=lambda x: x[1].count("{"))

    # ------------------------------------------------------------------ document access
    def get(self, pointer: str) -> Any:
        node: Any = self.doc
        for seg in [s for s in pointer.split("/") if s != ""]:
            seg = seg.replace("~1", "/").replace("~0", "~")
            node = node[int(seg)] if isinstance(node, list) else node[seg]
        return node

    def deref(self, pointer: str) -> tuple[str, Any]:
        """Follow OpenAPI (non-schema) `$ref`s: responses, parameters, headers. -> (pointer, object)."""
        node = self.get(pointer)
        for _ in range(20):
            if isinstance(node, dict) and "$ref" in node and node["$ref"].startswith("#/"):
                pointer = node["$ref"][1:]
                node = self.get(pointer)
            else:
                break
        return pointer, node

    def validator(self, pointer: str) -> Draft202012Validator:
        """A validator for the schema at this JSON pointer of the document."""
        v = self._validators.get(pointer)
        if v is None:
            v = Draft202012Validator({"$ref": f"{BASE_URI}#{pointer}"}, registry=self.registry,
                                     format_checker=FORMAT_CHECKER)
            self._validators[pointer] = v
        return v

    def schema_pointer(self, name: str) -> str:
        return f"/components/schemas/{_escape(name)}"

    # ------------------------------------------------------------------ routing
    def match(self, method: str, path: str) -> tuple[Route | None, list[str]]:
        """-> (route with path params, []) or (None, methods allowed on that path; [] = no such path)."""
        for regex, _template, by_method in self._routes:
            m = regex.match(path)
            if not m:
                continue
            r = by_method.get(method.lower())
            if r is None:
                return None, sorted(x.upper() for x in by_method)
            return Route(r.op, r.method, r.template, {k: unquote(v) for k, v in m.groupdict().items()},
                         r.pointer), []
        return None, []

    def parameters(self, route: Route) -> list[tuple[str, dict]]:
        """The operation's parameters (path-level ones merged in), each as (pointer, object)."""
        out: dict[tuple[str, str], tuple[str, dict]] = {}
        item_ptr = route.pointer.rsplit("/", 1)[0]
        for base in (item_ptr, route.pointer):
            params = self.get(base).get("parameters") or []
            for i, _ in enumerate(params):
                ptr, p = self.deref(f"{base}/parameters/{i}")
                out[(p["name"], p["in"])] = (ptr, p)
        return list(out.values())

    # ------------------------------------------------------------------ requests
    def check_request(self, route: Route, *, query: dict[str, list[str]], body: bytes | None,
                      content_type: str | None = None) -> "RequestCheck":
        """Validate path params, query params and body. Problems split into what the API rejects
        (`errors`, 422; `bad_json`, 400) and what it tolerates but lies outside the contract (`notes`)."""
        chk = RequestCheck()
        declared_query = set()
        for ptr, p in self.parameters(route):
            where, name = p["in"], p["name"]
            schema_ptr = f"{ptr}/schema"
            if where == "path":
                raw = route.params.get(name)
                if raw is None:
                    chk.errors.append(f"path.{name}: missing")
                    continue
                chk.errors += self._errors(schema_ptr, raw, f"path.{name}")
            elif where == "query":
                declared_query.add(name)
                if name not in query:
                    if p.get("required"):
                        chk.errors.append(f"query.{name}: required parameter missing")
                    continue
                value = self._coerce_query(schema_ptr, p, query[name])
                chk.query[name] = value
                chk.errors += self._errors(schema_ptr, value, f"query.{name}")
        for name in query:
            if name not in declared_query:
                chk.notes.append(f"query.{name}: parameter not declared by {route.op}")
        op = self.get(route.pointer)
        rb = op.get("requestBody")
        if rb is None:
            if body:
                chk.notes.append(f"body: {route.op} declares no request body")
            return chk
        rb_ptr, rb = self.deref(f"{route.pointer}/requestBody")
        if not body:
            if rb.get("required"):
                chk.errors.append("$: request body is required")
            return chk
        media = (content_type or "application/json").split(";")[0].strip().lower()
        if media not in rb.get("content", {}):
            chk.notes.append(f"body: content type {media!r} not declared (expects {sorted(rb['content'])})")
            media = next(iter(rb["content"]))
        try:
            chk.body = json.loads(body)
        except ValueError as e:
            chk.bad_json = f"request body is not valid JSON: {e}"
            return chk
        chk.errors += self._errors(f"{rb_ptr}/content/{_escape(media)}/schema", chk.body, "$")
        return chk

    def _coerce_query(self, schema_ptr: str, param: dict, values: list[str]) -> Any:
        schema = self._resolved_schema(schema_ptr)
        kind = schema.get("type")
        if kind == "array":
            items = self._resolved_schema(f"{schema_ptr}/items") if "items" in schema else {}
            if param.get("explode", param.get("style", "form") == "form") and len(values) > 1:
                parts = list(values)
            else:
                parts = [x for v in values for x in v.split(",")]
            return [self._scalar(items.get("type"), x) for x in parts]
        return self._scalar(kind, values[-1])

    @staticmethod
    def _scalar(kind: Any, raw: str) -> Any:
        try:
            if kind == "integer" and re.fullmatch(r"[+-]?\d+", raw):
                return int(raw)
            if kind == "number":
                return float(raw)
            if kind == "boolean" and raw in ("true", "false"):
                return raw == "true"
        except ValueError:
            pass
        return raw  # left as a string: the schema then says what is wrong with it

    def _resolved_schema(self, pointer: str) -> dict:
        node = self.get(pointer)
        resolver = self._resolver
        for _ in range(20):
            if isinstance(node, dict) and "$ref" in node:
                resolved = resolver.lookup(node["$ref"])
                node, resolver = resolved.contents, resolved.resolver
            else:
                break
        return node if isinstance(node, dict) else {}

    # ------------------------------------------------------------------ responses
    def check_response(self, op: str, status: int, content_type: str | None, body: bytes,
                       headers: dict[str, str] | None = None) -> list[str]:
        """Problems with a response the API (here: the emulator) sent, per the document."""
        route = self.operations[op]
        responses = self.get(route.pointer)["responses"]
        key = str(status) if str(status) in responses else (f"{str(status)[0]}XX" if f"{str(status)[0]}XX" in
                                                             responses else "default")
        if key not in responses:
            return [f"{op}: status {status} is not documented"]
        ptr, resp = self.deref(f"{route.pointer}/responses/{key}")
        problems: list[str] = []
        for hname, hobj in (resp.get("headers") or {}).items():
            hptr, h = self.deref(f"{ptr}/headers/{_escape(hname)}")
            value = next((v for k, v in (headers or {}).items() if k.lower() == hname.lower()), None)
            if value is None:
                if h.get("required"):
                    problems.append(f"{op} {status}: header {hname} missing")
                continue
            if "schema" in h:
                kind = self._resolved_schema(f"{hptr}/schema").get("type")
                problems += [f"{op} {status}: {m}" for m in
                             self._errors(f"{hptr}/schema", self._scalar(kind, value), f"header {hname}")]
        content = resp.get("content")
        if not content:
            if body:
                problems.append(f"{op} {status}: documented without a body, but one was sent")
            return problems
        media = (content_type or "").split(";")[0].strip().lower()
        if media not in content:
            return problems + [f"{op} {status}: content type {media!r} not documented ({sorted(content)})"]
        try:
            obj = json.loads(body)
        except ValueError as e:
            return problems + [f"{op} {status}: body is not JSON: {e}"]
        schema_ptr = f"{ptr}/content/{_escape(media)}/schema"
        if "schema" in content[media]:
            problems += [f"{op} {status}: {m}" for m in self._errors(schema_ptr, obj, "$")]
        return problems

    def validate_schema(self, name: str, instance: Any) -> list[str]:
        """Problems of `instance` against components/schemas/<name>."""
        return self._errors(self.schema_pointer(name), instance, "$")

    # ------------------------------------------------------------------ messages
    def _errors(self, pointer: str, instance: Any, root: str) -> list[str]:
        out: list[str] = []
        for e in self.validator(pointer).iter_errors(instance):
            out += self._messages(e, root)
        return sorted(set(out))

    def _messages(self, e, root: str) -> list[str]:
        where = root + e.json_path[1:]
        if e.validator in ("unevaluatedProperties", "additionalProperties") and e.validator_value is False \
                and isinstance(e.instance, dict):
            declared, open_ = self.declared_properties(e.schema)
            unknown = sorted(k for k in e.instance if not open_ and not self._is_declared(k, declared))
            if not unknown:
                return []  # every listed key is declared: another error explains the failure
            names = ", ".join(f"'{k}'" for k in unknown)
            return [f"{where}: additional properties {names} not allowed"]
        if e.context:  # anyOf/oneOf: say which branch came closest and why it failed
            best = best_match(e.context)
            return [f"{where}: {e.message} (closest: {root + best.json_path[1:]}: {best.message})"]
        return [f"{where}: {e.message}"]

    @staticmethod
    def _is_declared(key: str, declared: tuple[set[str], list[str]]) -> bool:
        names, patterns = declared
        return key in names or any(re.search(p, key) for p in patterns)

    def declared_properties(self, schema: Any) -> tuple[tuple[set[str], list[str]], bool]:
        """Every property name (and patternProperties pattern) `schema` declares anywhere beneath it,
        following $ref and the applicators; open_ = some branch allows any additional property."""
        names: set[str] = set()
        patterns: list[str] = []
        open_ = False
        seen: set[int] = set()

        def walk(node: Any, resolver) -> None:
            nonlocal open_
            if not isinstance(node, dict) or id(node) in seen:
                return
            seen.add(id(node))
            names.update((node.get("properties") or {}).keys())
            patterns.extend((node.get("patternProperties") or {}).keys())
            ap = node.get("additionalProperties")
            if ap is True or isinstance(ap, dict) and ap != {"not": {}}:
                open_ = True
            if "$ref" in node:
                r = resolver.lookup(node["$ref"])
                walk(r.contents, r.resolver)
            for k in ("allOf", "anyOf", "oneOf"):
                for sub in node.get(k) or []:
                    walk(sub, resolver)
            for k in ("if", "then", "else"):
                if k in node:
                    walk(node[k], resolver)
            for sub in (node.get("dependentSchemas") or {}).values():
                walk(sub, resolver)

        walk(schema, self._resolver)
        return (names, patterns), open_


@dataclass
class RequestCheck:
    errors: list[str] = field(default_factory=list)  # schema violations: the API answers 422
    notes: list[str] = field(default_factory=list)  # outside the contract but tolerated (ignored)
    bad_json: str | None = None  # malformed body: the API answers 400
    query: dict[str, Any] = field(default_factory=dict)  # declared query params, coerced
    body: Any = None

    @property
    def violations(self) -> list[str]:
        return self.errors + self.notes + ([self.bad_json] if self.bad_json else [])
