"""What a bulk request must look like: checked whole, before anything is stored, so a
client gets every problem at once (by item and field) and a bad request stores nothing."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import msgspec

MAX_ITEMS = 1000
KINDS = ("web", "ios", "android", "desktop", "api")
FIELDS = ("name", "url", "kind")
MAX_NAME = 100
MAX_URL = 2000


class Platform(msgspec.Struct, frozen=True):
    name: str
    url: str
    kind: str = "web"


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """One thing wrong with the request: `index` and `field` say where (None: the
    request as a whole)."""

    message: str
    index: int | None = None
    field: str | None = None


def validate_platforms(body: Any) -> tuple[list[Platform], list[Problem]]:
    """The platforms of a request body `{"platforms": [...]}`, or the problems with it."""
    if not isinstance(body, dict) or not isinstance(body.get("platforms"), list):
        return [], [Problem('the body must be a JSON object {"platforms": [...]}')]
    extra = sorted(set(body) - {"platforms"})
    items = body["platforms"]
    problems = [Problem(f"unknown top-level field {name!r}") for name in extra]
    if not items:
        problems.append(Problem("platforms is empty: send 1 to 1000 platforms"))
    if len(items) > MAX_ITEMS:
        problems.append(Problem(f"too many platforms: {len(items)}, at most {MAX_ITEMS} per request"))
    if problems:
        return [], problems
    platforms: list[Platform] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        found = check_item(index, item)
        if not found:
            name = item["name"].strip()
            if name.casefold() in first_index:
                found.append(Problem(f"duplicate of item {first_index[name.casefold()]}: names must be "
                                     f"unique", index, "name"))
            first_index.setdefault(name.casefold(), index)
            platforms.append(Platform(name, item["url"].strip(), item.get("kind", "web")))
        problems.extend(found)
    return (platforms, []) if not problems else ([], problems)


def check_item(index: int, item: Any) -> list[Problem]:
    if not isinstance(item, dict):
        return [Problem(f"must be an object with {', '.join(FIELDS)}, not {type(item).__name__}", index)]
    problems = [Problem(f"unknown field (expected {', '.join(FIELDS)})", index, key)
                for key in sorted(set(item) - set(FIELDS))]
    name, url, kind = item.get("name"), item.get("url"), item.get("kind", "web")
    if not isinstance(name, str) or not name.strip():
        problems.append(Problem("is required: a non-empty string", index, "name"))
    elif len(name.strip()) > MAX_NAME:
        problems.append(Problem(f"is {len(name.strip())} characters long, at most {MAX_NAME}", index, "name"))
    if not isinstance(url, str) or not url.strip():
        problems.append(Problem("is required: an http:// or https:// URL", index, "url"))
    elif len(url) > MAX_URL:
        problems.append(Problem(f"is {len(url)} characters long, at most {MAX_URL}", index, "url"))
    else:
        try:
            parts = urlsplit(url.strip())
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:  # e.g. an unclosed IPv6 bracket
            valid = False
        if not valid:
            problems.append(Problem(f"{url!r} is not an http:// or https:// URL with a host", index, "url"))
    if kind not in KINDS:
        problems.append(Problem(f"{kind!r} is not one of {', '.join(KINDS)}", index, "kind"))
    return problems
