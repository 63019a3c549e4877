"""Progress lines for logs and pipes name their stage (rich markup must not eat it)."""

from winnow.console import LineReporter


def test_line_reporter_names_the_stage(capsys) -> None:
    reporter = LineReporter()
    reporter.start("problems", 4)
    reporter.advance("problems", 4)
    reporter.finish("problems")
    err = capsys.readouterr().err
    assert "[problems] started: 4 to do" in err
    assert "[problems] done" in err
