"""A bar chart drawn on the server as SVG geometry (no JavaScript): the template draws one
<rect> per bar from these numbers, and a table beside it carries the same figures for screen
readers and for copying."""

from dataclasses import dataclass
from decimal import Decimal

WIDTH = 720
HEIGHT = 200
TOP = 10  # room above the tallest bar
AXIS = 24  # room under the bars for the day labels
LEFT = 48  # room for the scale
RIGHT = 24  # room for the last day label, centred under its bar


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    centre: float
    label: str
    value: Decimal
    tick: bool  # whether the label is drawn under this bar


@dataclass(frozen=True, slots=True)
class BarChart:
    width: int
    height: int
    baseline: float
    left: int
    right: int
    top: int
    maximum: Decimal
    bars: list[Bar]


def bar_chart(points: list[tuple[str, Decimal]], *, ticks: int = 7) -> BarChart:
    """Bars for (label, value) points, scaled so the largest fills the plot; negative values
    (a day where more was refunded than spent) are drawn as empty bars."""
    maximum = max((value for _, value in points), default=Decimal(0))
    plot_height = HEIGHT - TOP - AXIS
    slot = (WIDTH - LEFT - RIGHT) / max(len(points), 1)
    every = max(1, round(len(points) / ticks))
    bars = []
    for n, (label, value) in enumerate(points):
        share = float(value / maximum) if maximum > 0 and value > 0 else 0.0
        height = round(share * plot_height, 1)
        bars.append(
            Bar(
                x=round(LEFT + n * slot + slot * 0.15, 1),
                y=round(TOP + plot_height - height, 1),
                width=round(slot * 0.7, 1),
                centre=round(LEFT + (n + 0.5) * slot, 1),
                height=height,
                label=label,
                value=value,
                tick=(len(points) - 1 - n) % every == 0,
            )
        )
    return BarChart(WIDTH, HEIGHT, TOP + plot_height, LEFT, WIDTH - RIGHT, TOP, maximum, bars)
