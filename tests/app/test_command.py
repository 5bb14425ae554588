"""`explorer app` parses its flags and hands them to the packaged dashboard (explorer.app.serve.main)."""
from __future__ import annotations

import socket

import pytest

from explorer.app import serve
from explorer.cli import build_parser, main
from explorer.commands import app as command


def test_defaults_are_local_and_private():
    args = build_parser().parse_args(["app"])
    assert (args.host, args.port, args.zoo, args.share) == ("127.0.0.1", 7860, "demo", False)
    assert args.func is command.run


def test_flags_reach_the_packaged_main(monkeypatch):
    seen = []
    monkeypatch.setattr(serve, "main", lambda argv: seen.append(argv) or 0)
    args = build_parser().parse_args(["app", "--host", "0.0.0.0", "--port", "9001", "--share", "--threads", "1"])
    assert command.run(args) == 0
    assert seen == [["--host", "0.0.0.0", "--port", "9001", "--zoo", "demo", "--share", "--threads", "1"]]


def test_root_app_py_is_a_thin_entry_point_to_the_package():
    import app

    assert app.main is serve.main and app.build_demo.__module__ == "explorer.app.ui"


def test_a_taken_port_prints_one_line_naming_it_and_how_to_choose_another(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["app", "--port", str(port), "--zoo", "demo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == serve.port_taken("127.0.0.1", port)
    assert f"port {port} on 127.0.0.1 is already in use" in err and f"make app PORT={port + 1}" in err


def test_a_slow_first_page_is_retried_not_reported_as_unreachable(monkeypatch):
    calls, closed = [], []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise ValueError("When localhost is not accessible, a shareable link must be created.")

    class Demo:
        def close(self):
            closed.append(True)

    monkeypatch.setattr(serve, "launch", flaky)
    serve.start(Demo(), "127.0.0.1", 7999, False)
    assert len(calls) == 2 and closed == [True]
    monkeypatch.setattr(serve, "launch", lambda *a, **k: (_ for _ in ()).throw(ValueError("other problem")))
    with pytest.raises(ValueError, match="other problem"):
        serve.start(Demo(), "127.0.0.1", 7999, False)


def test_warming_a_zoo_that_does_not_load_logs_why_instead_of_hiding_it(monkeypatch, caplog):
    def broken(zoo):
        raise FileNotFoundError(f"zoo folder {zoo!r} not found")

    monkeypatch.setattr(serve.jit, "warm", lambda: None)
    monkeypatch.setattr(serve.handlers, "warm", broken)
    with caplog.at_level("WARNING", logger="explorer.app.serve"):
        serve.warm("/no/such/zoo")  # the background warm-up never raises: the page shows the error
    assert "'/no/such/zoo'" in caplog.text and "FileNotFoundError" in caplog.text and "not found" in caplog.text
