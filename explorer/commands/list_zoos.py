"""`explorer zoos`: the zoos that exist and which of them load offline right now."""
from __future__ import annotations

from ..demozoo.zoo import DEFAULT_DIR as DEMO_DIR


def add_parser(sub) -> None:
    parser = sub.add_parser("zoos", help="list zoos and whether each is available offline")
    parser.set_defaults(func=run)


def zoo_rows() -> list[dict[str, str]]:
    """One row per zoo and checkpoint family: name, family, arch, tasks, offline availability."""
    from ..zoo.openclip import named_sources, named_zoos

    rows = [{"zoo": "demo", "family": "-", "arch": "tiny ViT", "tasks": "8",
             "offline": "yes" if DEMO_DIR.is_dir()
             else "no (explorer/demozoo/weights/ missing: explorer zoo build-demo)"}]
    for name, spec in named_zoos().items():
        for family, fam in spec["families"].items():
            if fam.get("needs_root"):
                offline = "with local files (root=...)"
            else:
                offline = _offline(named_sources(spec, family))
            tasks = fam.get("tasks", spec["tasks"])
            rows.append({"zoo": name, "family": family, "arch": spec["arch"], "tasks": str(len(tasks)),
                         "offline": offline})
    return rows


def _offline(sources: dict) -> str:
    """"yes" when every file is a local file or already in the Hugging Face cache (no network used)."""
    from ..zoo.hub import HubFile, cached_file, parse_source
    from ..zoo.openclip import pretrained_tag, tag_source

    arch = sources["arch"]
    wanted = [sources["base"], sources["text"] or "openai", *sources["experts"].values()]
    missing = 0
    for src in wanted:
        ref = tag_source(arch, src) if pretrained_tag(arch, src) else parse_source(src)
        present = cached_file(ref) is not None if isinstance(ref, HubFile) else ref.is_file()
        missing += not present
    return "yes" if missing == 0 else f"no ({missing} of {len(wanted)} files not cached)"


def run(args) -> int:
    rows = zoo_rows()
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in rows[0]}
    print("  ".join(k.ljust(w) for k, w in widths.items()))
    for r in rows:
        print("  ".join(r[k].ljust(w) for k, w in widths.items()))
    print("\nLoad one with ex.load_zoo(NAME, family=FAMILY) (CLI: --zoo NAME:FAMILY); real zoos need network "
          "once (or a filled Hugging Face cache): see docs/real_zoos.md")
    return 0
