"""The measuring tools say what they measured: a round of the pages benchmark that completed no request is
reported as such, and the run goes on to print its table."""

from types import SimpleNamespace

from benchmarks import pages


def test_a_round_without_requests_is_said_and_the_table_still_prints(monkeypatch, capsys):
    server = SimpleNamespace(port=1, cpu_seconds=lambda: 1.0)
    targets = [pages.Target("hello (Flask)", server), pages.Target("catalog", server, "/products")]

    def wrk(url, cookie, seconds, connections, script, prefix):
        """The catalog completes nothing on one connection; everything else 300 requests."""
        return (0.0, 0, 0) if url.endswith("/products") and connections == 1 else (100.0, 300, 0)

    monkeypatch.setattr(pages, "_wrk", wrk)
    figures = pages.measure(targets, SimpleNamespace(rounds=2, seconds=1), ())
    assert figures[("catalog", 1)] == (0, None)
    assert figures[("catalog", 32)] == figures[("hello (Flask)", 1)] == (100.0, 0.0)
    assert capsys.readouterr().out.count("0 requests completed on catalog at 1 connections") == 2
    pages.table([t.label for t in targets], figures, {}, figures[("hello (Flask)", 32)][0], floor=(1.0, 1.0))
    assert "no request completed in any round" in capsys.readouterr().out
