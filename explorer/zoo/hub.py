"""Checkpoint sources: local files, or Hugging Face Hub files fetched into the user's HF cache.

A source is a local path, or a hub id: `hf-hub:owner/repo` (the repo's weights file),
`hf-hub:owner/repo/path/in/repo.pt` (one file); the `hf-hub:` prefix may be left out when no local
file of that name exists. Offline (HF_HUB_OFFLINE=1, or the hub endpoint does not answer an HTTP request within 3 s),
missing files fail within seconds with one error naming them all and how to provide them: never a hang.
"""
from __future__ import annotations

import os
import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PREFIX = "hf-hub:"
WEIGHT_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(/[^@]+)?(@[\w./-]+)?")
PROBE_TIMEOUT_S = 3.0


class HubUnavailable(FileNotFoundError):
    """Hub files that are neither cached nor downloadable right now."""


@dataclass(frozen=True)
class HubFile:
    """A file in a hub repository: the first of `files` that the repository has."""

    repo: str
    files: tuple[str, ...] = WEIGHT_FILES
    revision: str | None = None

    def candidates(self) -> tuple[str, ...]:
        return self.files


def parse_source(source: "str | os.PathLike | HubFile") -> Path | HubFile:
    """A local Path, or the HubFile a hub id names."""
    if isinstance(source, HubFile):
        return source
    text = str(source)
    if not text.startswith(PREFIX):
        path = Path(text).expanduser()
        if path.exists() or text.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(text):
            return path
    ident = text[len(PREFIX):] if text.startswith(PREFIX) else text
    ident, _, revision = ident.partition("@")
    owner, _, rest = ident.partition("/")
    name, _, filename = rest.partition("/")
    if not owner or not name:
        raise ValueError(f"bad hub id {text!r}: use hf-hub:owner/repo or hf-hub:owner/repo/path/to/file")
    return HubFile(f"{owner}/{name}", (filename,) if filename else WEIGHT_FILES, revision or None)


def cached_file(ref: HubFile, cache_dir: str | None = None) -> Path | None:
    """The cached local copy of `ref`, or None (never touches the network)."""
    from huggingface_hub import try_to_load_from_cache

    for filename in ref.candidates():
        hit = try_to_load_from_cache(ref.repo, filename, cache_dir=cache_dir, revision=ref.revision)
        if isinstance(hit, str):
            return Path(hit)
    return None


def hub_offline_reason() -> str | None:
    """Why the hub cannot be used now (HF_HUB_OFFLINE, or no HTTP answer within a few seconds), else None."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    result: list[BaseException | None] = []

    def probe() -> None:  # any HTTP answer, even an error status, means the hub is reachable
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=PROBE_TIMEOUT_S).close()
            result.append(None)
        except urllib.error.HTTPError:
            result.append(None)
        except (OSError, ValueError) as err:
            result.append(err)

    thread = threading.Thread(target=probe, daemon=True)  # name resolution itself can block: bound it
    thread.start()
    thread.join(PROBE_TIMEOUT_S + 0.5)
    if not result:
        return f"no answer from {endpoint} within {PROBE_TIMEOUT_S:.0f} s"
    return None if result[0] is None else f"cannot reach {endpoint}: {result[0]}"


def resolve_sources(sources: "dict[str, str | os.PathLike | HubFile]", cache_dir: str | None = None) -> dict[str, Path]:
    """Local paths for every source (label -> source): local files as they are, hub files from the cache or
    downloaded. Raises one error naming every file that is missing."""
    paths: dict[str, Path] = {}
    pending: dict[str, HubFile] = {}
    absent = []
    for label, source in sources.items():
        ref = parse_source(source)
        if isinstance(ref, Path):
            paths[label] = ref
            if not ref.is_file():
                absent.append(f"  {label}: no such file {ref}")
        elif (hit := cached_file(ref, cache_dir)) is not None:
            paths[label] = hit
        else:
            pending[label] = ref
    if absent:
        raise FileNotFoundError(f"{len(absent)} checkpoint file(s) not found:\n" + "\n".join(absent)
                                + "\n(a hub id is written hf-hub:owner/repo or hf-hub:owner/repo/path/to/file)")
    if pending:
        reason = hub_offline_reason()
        if reason is not None:
            raise HubUnavailable(_missing_message(pending, reason))
        for label, ref in list(pending.items()):
            paths[label] = download(ref, cache_dir, lambda why: HubUnavailable(_missing_message(pending, why)))
            del pending[label]
    return paths


def download(ref: HubFile, cache_dir: str | None = None,
             unavailable: Callable[[str], Exception] | None = None) -> Path:
    """Fetch `ref` into the HF cache (the first of its candidate names that the repo has); a connection
    failure raises `unavailable(reason)`."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

    for filename in ref.candidates():
        try:
            return Path(hf_hub_download(ref.repo, filename, revision=ref.revision, cache_dir=cache_dir))
        except RemoteEntryNotFoundError:
            continue
        except LocalEntryNotFoundError as err:  # the hub stopped answering mid-way
            raise (unavailable or HubUnavailable)(f"download of {ref.repo}/{filename} failed: {err}") from None
    raise FileNotFoundError(f"hub repo {ref.repo} has none of {list(ref.candidates())}")


def _missing_message(pending: dict[str, HubFile], reason: str) -> str:
    lines = [f"  {label}: {ref.repo} ({' or '.join(ref.candidates())})" for label, ref in pending.items()]
    first = next(iter(pending.values()))
    return (f"the Hugging Face Hub cannot be used ({reason}) and {len(pending)} file(s) are not in the local cache:\n"
            + "\n".join(lines)
            + f"\nTo provide them: on a machine with network run e.g. `hf download {first.repo} "
              f"{first.candidates()[0]}` and copy the Hugging Face cache (~/.cache/huggingface, or $HF_HOME) here, "
              f"or pass local files instead of hub ids (experts={{task: '/path/to/file'}}, base='/path/to/base').")
