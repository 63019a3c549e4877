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
    assert "[judge] 2/5 done" in err and "[judge] done (2," in err


def test_line_reporter_says_rate_eta_kept_and_cost(capsys) -> None:
    reporter = LineReporter(every_s=0.0)
    reporter.start("judge", 10)
    reporter.advance("judge", 4)
    reporter.kept("judge", 3)
    reporter.spent(0.0125)
    reporter.spent(0.0025)
    reporter.advance("judge", 1)
    reporter.finish("judge")
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "5/10 done" in x)
    assert "/s" in line and "ETA" in line and "kept 3" in line
    assert "kept 3 so far" in line and "$0.0150 spent (2 requests)" in line
    assert "[judge] done (5, kept 3" in err


def test_tally_rate_and_time_left() -> None:
    from tasks.core.progress import StageCount, Tally, duration

    count = StageCount(total=100, done=25, started=1000.0)
    assert count.rate(now=1010.0) == 2.5  # rows a second since the stage started
    assert count.eta_s(now=1010.0) == 30.0  # 75 left at 2.5 a second
    assert StageCount(total=10, started=0.0).eta_s(now=5.0) is None  # no rate yet
    assert duration(75) == "1m15s" and duration(3725) == "1h02m" and duration(None) == "?"
    tally = Tally()
    tally.start("a", 2)
    tally.start("b", 2)
    tally.advance("a", 2)
    tally.kept("a", 2)
    tally.finish("a")
    tally.advance("b", 1)
    tally.kept("b", 1)
    assert tally.kept_so_far() == 1  # what the last stage kept: the run so far
    snap = tally.snapshot()
    assert snap["fraction_done"] == 0.75 and snap["kept_so_far"] == 1


def test_rich_bar_shows_rate_eta_kept_and_cost() -> None:
    from rich.console import Console

    from tasks.core import progress
    from winnow import console

    recorded = Console(record=True, width=150, force_terminal=False)
    tally = progress.Tally()
    bar = console.RunProgress(
        tally,
        console.TextColumn("{task.description}"),
        console.MofNCompleteColumn(),
        console.RateColumn(),
        console.EtaColumn(),
        console.TextColumn("kept {task.fields[kept]}"),
        console=recorded,
        auto_refresh=False,
    )
    reporter = console.RichReporter(bar, tally)
    with bar:
        reporter.start("solutions", 8)
        reporter.advance("solutions", 4)
        reporter.kept("solutions", 3)
        reporter.spent(0.02)
        bar.refresh()
    text = recorded.export_text()
    assert "solutions 4/8" in text and "/s" in text and "ETA" in text and "kept 3" in text
    assert "$0.0200 spent (1 request)" in text
