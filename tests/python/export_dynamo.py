"""Reads DynamoDB import lines written by redstash's export (tests/export_dynamo.rs)
with boto3's TypeDeserializer and compares every item with the expected Python values.

    export_dynamo.py ITEMS EXPECTED

ITEMS: one `{"Item":{...}}` line per item. EXPECTED: one line per item, the expected
attributes as JSON with tags: {"$n": "1.5"} a Decimal, {"$b": base64} bytes,
{"$ss": [...]}, {"$ns": [...]}, {"$bs": [base64, ...]} sets; anything else as is.
"""

import base64
import json
import sys
from decimal import Decimal

from boto3.dynamodb.types import Binary, TypeDeserializer


def expected(v):
    if isinstance(v, dict) and len(v) == 1:
        ((tag, x),) = v.items()
        if tag == "$n":
            return Decimal(x)
        if tag == "$b":
            return base64.b64decode(x)
        if tag == "$ss":
            return set(x)
        if tag == "$ns":
            return {Decimal(n) for n in x}
        if tag == "$bs":
            return {base64.b64decode(b) for b in x}
    if isinstance(v, dict):
        return {k: expected(x) for k, x in v.items()}
    if isinstance(v, list):
        return [expected(x) for x in v]
    return v


def wire(av):
    """A DynamoDB JSON attribute value as boto3 gets it from the API: the base64 of B
    and BS decoded (strictly: only the standard alphabet, with padding)."""
    ((t, x),) = av.items()
    if t == "B":
        return {t: base64.b64decode(x, validate=True)}
    if t == "BS":
        return {t: [base64.b64decode(b, validate=True) for b in x]}
    if t == "L":
        return {t: [wire(e) for e in x]}
    if t == "M":
        return {t: {k: wire(e) for k, e in x.items()}}
    return av


def plain(v):
    """boto3's values with Binary as bytes."""
    if isinstance(v, Binary):
        return v.value
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, set):
        return {plain(x) for x in v}
    return v


def same(a, b, path):
    if type(a) is not type(b):
        return f"{path}: type {type(a).__name__} != expected {type(b).__name__} ({a!r} vs {b!r})"
    if isinstance(a, Decimal):
        # Exactly: the same digits and exponent, not only the same value.
        return None if a.as_tuple() == b.as_tuple() else f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            d = same(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} elements != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = same(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def main():
    items_path, expected_path = sys.argv[1], sys.argv[2]
    with open(items_path, "rb") as f:
        items = f.read().split(b"\n")
    with open(expected_path, "rb") as f:
        wants = [line for line in f.read().split(b"\n") if line]
    assert items[-1] == b"", "the file ends with a newline"
    items = items[:-1]
    assert len(items) == len(wants), (len(items), len(wants))
    des = TypeDeserializer()
    failures = []
    for i, (line, want) in enumerate(zip(items, wants)):
        obj = json.loads(line)
        assert list(obj) == ["Item"], f"line {i}: top level {list(obj)}"
        got = {k: plain(des.deserialize(wire(v))) for k, v in obj["Item"].items()}
        d = same(got, expected(json.loads(want)), f"line {i}")
        if d:
            failures.append(d + f"\n    line: {line.decode()}")
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print(f"boto3 TypeDeserializer: {len(items)} items as expected")


main()
