"""The hand-written SVG plot of the scale curve (benchmarks/svgplot.py): well-formed, one line per series."""

from __future__ import annotations

import xml.dom.minidom
from pathlib import Path

import pytest

from benchmarks.svgplot import line_plot


def test_plot_is_valid_svg_with_a_line_per_series_and_refuses_bad_points(tmp_path: Path) -> None:
    path = tmp_path / "scale.svg"
    line_plot({"simulated": [(1000, 629), (1_000_000, 647)], "lab <ours>": [(100, 380), (1000, 494)]}, path,
              title="t", x_label="N", y_label="datagrams", dashed=frozenset({"simulated"}))
    doc = xml.dom.minidom.parse(str(path))
    assert len(doc.getElementsByTagName("polyline")) == 2
    assert "lab &lt;ours&gt;" in path.read_text()
    with pytest.raises(ValueError, match="every x above 0"):
        line_plot({"bad": [(0, 1)]}, path, title="t", x_label="x", y_label="y")
