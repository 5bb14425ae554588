"""`explorer app` parses its flags and hands them to the repository's app.py main()."""
from __future__ import annotations

import json

import pytest

from explorer.cli import build_parser
from explorer.commands import app as command


def test_defaults_are_local_and_private():
    args = build_parser().parse_args(["app"])
    assert (args.host, args.port, args.zoo, args.share) == ("127.0.0.1", 7860, "demo", False)
    assert args.func is command.run


def test_flags_reach_app_main(tmp_path, monkeypatch):
    fake = tmp_path / "app.py"
    out = tmp_path / "argv.json"
    fake.write_text(f"import json\ndef main(argv):\n    open({str(out)!r}, 'w').write(json.dumps(argv))\n")
    monkeypatch.setattr(command, "APP", fake)
    args = build_parser().parse_args(["app", "--host", "0.0.0.0", "--port", "9001", "--share", "--threads", "1"])
    assert command.run(args) == 0
    assert json.loads(out.read_text()) == ["--host", "0.0.0.0", "--port", "9001", "--zoo", "demo", "--share",
                                           "--threads", "1"]


def test_missing_app_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(command, "APP", tmp_path / "app.py")
    with pytest.raises(FileNotFoundError, match="run `explorer app` from a clone"):
        command.run(build_parser().parse_args(["app"]))


def test_the_real_app_module_loads_without_launching(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    module = command.load_app()
    assert callable(module.build_demo) and callable(module.main)
    assert module.parse_args([]).share is False
