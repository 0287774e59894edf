"""The chart primitives /monitor and the load-test report share: round steps, the plot's scales, gaps, the svg."""

from sipup.charts import Plot, axis_top, nice_step, path_d, polyline_points, segments, svg, tooltip


def test_steps_are_round_and_whole_numbers_stay_whole():
    assert [nice_step(v) for v in (0, 0.3, 1.2, 2.2, 4.9, 7, 23)] == [1, 0.5, 2, 2.5, 5, 10, 25]
    assert nice_step(0.3, whole=True) == 1 and nice_step(2.2, whole=True) == 5  # no 2.5 requests
    assert axis_top(210, factors=(1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)) == 240  # 0, 60, 120, 180, 240
    assert axis_top(3) == 4 and axis_top(0) == 4


def test_the_plot_places_values_inside_its_margins_and_caps_the_top():
    plot = Plot(100, 60, (10, 5, 4, 6), x_max=10, y_max=200)
    assert (plot.left, plot.right, plot.top, plot.bottom, plot.inner_w, plot.inner_h) == (10, 95, 4, 54, 85, 50)
    assert plot.x(0) == 10 and plot.x(10) == 95 and plot.x(5) == 52.5
    assert plot.y(0) == 54 and plot.y(200) == 4 and plot.y(999) == 4 and plot.y(100) == 29
    assert plot.bucket(1, 5) == (27, 17) and plot.bucket(0.5, 5)[0] == 18.5
    assert plot.gridlines(4) == [(54, 0), (41.5, 50), (29, 100), (16.5, 150), (4, 200)]


def test_a_gap_breaks_a_line_and_a_lone_point_stays_alone():
    runs = segments([(1, 1), (2, 2), None, None, (4, 4), None, (6, 6), (7, 7)])
    assert runs == [[(1, 1), (2, 2)], [(4, 4)], [(6, 6), (7, 7)]]
    assert segments([None, None]) == []
    assert path_d([(1, 2), (3.25, 4)]) == "M1.0,2.0 L3.2,4.0"
    assert polyline_points([(1, 2), (3.26, 4)]) == "1.0,2.0 3.3,4.0"


def test_the_svg_and_its_tooltips_escape_what_they_show():
    assert tooltip("GET /a?b=1&c=<2>") == "<title>GET /a?b=1&amp;c=&lt;2&gt;</title>"
    picture = svg(760, 220, ["<line/>", "<rect/>"], 'p95 "slow" & <bad>')
    assert picture.startswith(
        '<svg viewBox="0 0 760 220" role="img" aria-label="p95 &quot;slow&quot; &amp; &lt;bad&gt;"'
    )
    assert picture.endswith("<line/><rect/></svg>") and 'xmlns="http://www.w3.org/2000/svg"' in picture
