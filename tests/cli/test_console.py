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


def test_line_reporter_says_how_far_a_long_stage_is(capsys) -> None:
    reporter = LineReporter(every_s=0.0)
    reporter.start("judge", 0)  # a chained stage: its work arrives shard by shard
    reporter.extend("judge", 5)
    reporter.advance("judge", 2)
    reporter.finish("judge")
    err = capsys.readouterr().err
    assert "[judge] started: its work comes from the stage before" in err
    assert "[judge] 2/5 done" in err and "[judge] done (2)" in err
