"""The monitor's SVG charts: gridlines on round numbers, times on round minutes, a tooltip per bucket, and a
gap (not a zero) where a bucket has no data."""

from sipup.observability.charts import line_chart, pick_range

HOUR = [1_800_000_000 + 60 * i for i in range(60)]  # 60 minute buckets starting on a round hour


def test_gridlines_fall_on_round_numbers_and_times_on_round_minutes():
    chart = line_chart(HOUR, [("requests", "c-main", [i % 7 * 3 for i in range(60)])])
    assert [label for _y, label in chart["yticks"]] == ["0", "5", "10", "15", "20"]
    assert [label for _x, label in chart["xticks"]] == ["08:00", "08:10", "08:20", "08:30", "08:40", "08:50"]
    assert len(chart["columns"]) == 60
    assert chart["columns"][3]["title"] == "08:03–08:04 UTC: requests 9"


def test_a_bucket_without_data_is_a_gap_not_a_zero():
    values = [0.5] * 20 + [None] * 10 + [0.8] + [None] * 5 + [0.9] * 24
    chart = line_chart(HOUR, [("hit rate", "c-main", values)], percent=True)
    line = chart["lines"][0]
    assert len(line["paths"]) == 2 and len(line["dots"]) == 1  # two runs, and the lone minute between gaps
    assert all(", 0" not in path for path in line["paths"])
    assert chart["columns"][25]["title"].endswith("hit rate no data")
    assert [label for _y, label in chart["yticks"]] == ["0%", "25%", "50%", "75%", "100%"]


def test_a_quiet_range_keeps_whole_numbers_and_says_when_it_is_empty():
    latency = line_chart(HOUR, [("p95", "c-warn", [250.0] * 60)], unit=" ms")
    assert [label for _y, label in latency["yticks"]] == ["0 ms", "100 ms", "200 ms", "300 ms", "400 ms"]
    quiet = line_chart(HOUR, [("429s", "c-bad", [0] * 59 + [1])])
    assert [label for _y, label in quiet["yticks"]] == ["0", "1", "2", "3", "4"] and not quiet["empty"]
    assert line_chart(HOUR, [("p95", "c-warn", [None] * 60)], unit=" ms")["empty"]


def test_a_day_is_labelled_every_six_hours():
    day = [1_800_000_000 + 3600 * i for i in range(24)]
    chart = line_chart(day, [("done", "c-main", list(range(24)))])
    assert [label for _x, label in chart["xticks"]] == ["12:00", "18:00", "00:00", "06:00"]


def test_only_known_ranges_are_taken():
    assert pick_range("day") == "day" and pick_range("month") == "hour" and pick_range(None) == "hour"
    assert pick_range("week") == "week"


def test_a_week_is_labelled_every_two_days_with_the_day():
    week = [1_800_000_000 + 3600 * i for i in range(7 * 24)]
    chart = line_chart(week, [("done", "c-main", list(range(7 * 24)))])
    assert [label for _x, label in chart["xticks"]] == ["Sat 16", "Mon 18", "Wed 20", "Fri 22"]
    assert chart["columns"][0]["title"] == "Fri 15 08:00–09:00 UTC: done 0"
