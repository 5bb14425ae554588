"""A folder that runs as a Hugging Face Space (gradio SDK, CPU): the explorer package, a pinned requirements.txt,
an `app.py` that serves the dashboard as Spaces start it (`python app.py`, 0.0.0.0:7860 from GRADIO_SERVER_NAME /
GRADIO_SERVER_PORT) and a README.md whose YAML front matter tells Spaces how to run it. `build_space` writes it."""
from __future__ import annotations

import importlib.metadata as md
import re
import shutil
import sys
from pathlib import Path

from .zoo.local import ZOO_FILES, is_demo_build, read_zoo_file

PKG = Path(__file__).resolve().parent
DIST = "model-merging-explorer"
ZOO_DIR = "zoo"  # where a zoo of your own goes inside the Space folder
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "*.nbi", "*.nbc")
FRONT = """---
title: Model Merging Explorer
emoji: 🧬
colorFrom: indigo
colorTo: green
sdk: gradio
sdk_version: {gradio}
app_file: app.py
python_version: "{python}"
pinned: false
short_description: Merge CLIP experts and see what happened, in the browser
---
"""
ABOUT = """
# Model Merging Explorer

A dashboard for **model merging**: combining expert models fine-tuned from one base into a single multi-task model,
without the experts' training data. Pick the experts and a merge method (task arithmetic, TIES, DARE, TALL masks,
AdaMerging, ...), move its sliders, and see per-task accuracy of the merged model against the experts and the base,
cosine and sign conflicts between task vectors, mask overlaps and layer-wise scaling. It runs on a CPU.

This Space shows {zoo}.

It was written by `explorer space` (Model Merging Explorer {version}, Python {python_full}, gradio {gradio}): the
`explorer/` folder is the library and dashboard, `requirements.txt` pins the versions it was built with, and
`app.py` starts the dashboard as Spaces run it (`python app.py`, port 7860). Run it anywhere with
`pip install -r requirements.txt && python app.py`.
"""
APP = '''"""Model Merging Explorer as a Hugging Face Space: `python app.py` serves the dashboard on {zoo_doc}.
Spaces set GRADIO_SERVER_NAME=0.0.0.0 and GRADIO_SERVER_PORT=7860; elsewhere it listens on 127.0.0.1:7860."""
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the explorer package beside this file (it is not on PyPI)
ZOO = {zoo_expr}

if __name__ == "__main__":
    from explorer.app.serve import main

    sys.exit(main(["--zoo", ZOO, *sys.argv[1:]]))
'''


def python_version() -> str:
    """The running Python's major.minor, as the Space's `python_version`."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def dependencies() -> list[str]:
    """The names of the explorer's runtime dependencies (pyproject's `dependencies`, no extras): from the checkout's
    pyproject.toml when the package runs from one, else from the installed distribution's metadata."""
    pyproject = PKG.parent / "pyproject.toml"
    if pyproject.is_file() and sys.version_info >= (3, 11):
        import tomllib

        project = tomllib.loads(pyproject.read_text()).get("project", {})
        if project.get("name") == DIST:
            return [requirement_name(r) for r in project.get("dependencies", [])]
    requires = md.requires(DIST) or []
    return [requirement_name(r) for r in requires if "extra ==" not in r.partition(";")[2]]


def requirement_name(requirement: str) -> str:
    """The distribution name of a requirement string ("open_clip_torch>=2.24" -> "open_clip_torch")."""
    return re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)


def requirements() -> list[str]:
    """One `name==version` per runtime dependency: the exact versions installed here."""
    lines = []
    for name in dependencies():
        try:
            lines.append(f"{md.metadata(name)['Name']}=={md.version(name)}")
        except md.PackageNotFoundError:
            raise ValueError(f"the dependency {name!r} is not installed here, so it cannot be pinned; install the "
                             "explorer's requirements (pip install .) and try again") from None
    return lines


def zoo_references(zoo_file: Path) -> list[Path]:
    """The files and folders a zoo file names (base, experts, an arch .json, a text tower file, the data root),
    resolved; one clear error when one is missing or lies outside the zoo file's folder (it could not travel)."""
    spec, here = read_zoo_file(zoo_file), zoo_file.parent.resolve()
    named = {"base": spec["base"]}
    experts = spec["experts"]
    named.update({f"experts.{t}": f for t, f in experts.items()} if isinstance(experts, dict) else
                 {"experts": experts})
    if str(spec.get("arch") or "").endswith(".json"):
        named["arch"] = spec["arch"]
    if spec.get("text") and (here / Path(str(spec["text"])).expanduser()).exists():  # a file, not a tag ("openai")
        named["text"] = spec["text"]
    if spec.get("data_root"):
        named["data_root"] = spec["data_root"]
    found = []
    for key, value in named.items():
        if str(value).startswith("hf-hub:"):
            continue  # a hub id: the Space downloads it
        path = (here / Path(str(value)).expanduser()).resolve()
        if not path.is_relative_to(here):
            raise ValueError(f"zoo file {str(zoo_file)!r} points outside its folder ({key}: {value!r}), which a "
                             "Space cannot carry: put the file beside the zoo file and name it by a relative path")
        if not path.exists():
            raise ValueError(f"zoo file {str(zoo_file)!r} names {key}: {value!r}, which does not exist")
        found.append(path)
    return found


def check_zoo(zoo: str, out: Path) -> Path | None:
    """The zoo's path (None for the demo zoo), checked before anything is written: it exists, is a folder or a zoo
    file, does not hold the Space folder nor lie in it, and (a zoo file) names only files it can bring along."""
    if zoo == "demo":
        return None
    src = Path(zoo).expanduser()
    if not src.exists():
        raise ValueError(f"--zoo {zoo!r}: no such folder or zoo file (give demo, a folder of checkpoints, a demo-zoo "
                         "build or a zoo file)")
    if src.is_file() and src.suffix not in (".json", ".yaml", ".yml"):
        raise ValueError(f"--zoo {zoo!r} is a {src.suffix or 'plain'} file, not a zoo file (.json, .yaml)")
    inner = next((src / n for n in ZOO_FILES if (src / n).is_file()), None) if src.is_dir() else src
    refs = zoo_references(inner) if inner is not None and not is_demo_build(src) else []
    target = out.resolve()  # a folder travels whole (its zoo file must not point out of it); a zoo file with its refs
    for path in [src.resolve()] + ([] if src.is_dir() else refs):
        if target.is_relative_to(path) or path.is_relative_to(target):
            raise ValueError(f"--zoo {zoo!r} and the Space folder {str(out)!r} overlap ({str(path)!r}); write the "
                             "Space elsewhere")
    return src


def copy_zoo(src: Path, dest: Path) -> str:
    """Copy the checked zoo `src` (a folder, or a zoo file and what it names) to `dest`; its path in the Space."""
    if src.is_dir():
        shutil.copytree(src, dest, ignore=IGNORE)
        return ZOO_DIR
    here = src.parent.resolve()
    dest.mkdir(parents=True)
    for path in zoo_references(src):
        target = dest / path.relative_to(here)
        if path.is_dir():
            shutil.copytree(path, target, ignore=IGNORE, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    shutil.copy2(src, dest / src.name)
    return f"{ZOO_DIR}/{src.name}"


def check_target(out: Path, force: bool) -> None:
    """Refuse a non-empty folder without `force` (and anything that is not a folder)."""
    if out.resolve().is_relative_to(PKG):
        raise ValueError(f"{str(out)!r} lies inside the explorer package it would copy; write the Space elsewhere")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{str(out)!r} is a file, not a folder for the Space")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ValueError(f"{str(out)!r} is not empty; choose a new folder or pass --force to replace its contents")
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def build_space(out: str | Path, zoo: str = "demo", force: bool = False) -> Path:
    """Write the Space folder `out` serving `zoo` ("demo", a folder or a zoo file, copied in); the folder. Every
    check runs before anything is written, so a refusal leaves `out` as it was."""
    out = Path(out)
    pins, src = requirements(), check_zoo(zoo, out)
    check_target(out, force)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PKG, out / "explorer", ignore=IGNORE)
    if src is None:
        zoo_expr, zoo_doc = '"demo"', "the embedded demo zoo"
        shown = ("the embedded demo zoo (a small open_clip ViT and 8 experts on synthetic image tasks, shipped inside "
                 "the `explorer` package)")
    else:
        rel = copy_zoo(src, out / ZOO_DIR)
        zoo_expr, zoo_doc = f'str(HERE / "{rel}")', f"the zoo in {rel}"
        shown = f"a zoo of its own, copied into `{rel}` from `{src.name}`"
    (out / "app.py").write_text(APP.format(zoo_expr=zoo_expr, zoo_doc=zoo_doc), encoding="utf-8")
    (out / "requirements.txt").write_text("\n".join(pins) + "\n", encoding="utf-8")
    gradio = md.version("gradio")
    (out / "README.md").write_text(FRONT.format(gradio=gradio, python=python_version()) + ABOUT.format(
        zoo=shown, version=_version(), python_full=sys.version.split()[0], gradio=gradio), encoding="utf-8")
    return out


def _version() -> str:
    try:
        return md.version(DIST)
    except md.PackageNotFoundError:
        return "(from source)"
