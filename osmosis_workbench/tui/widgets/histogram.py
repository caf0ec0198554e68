"""A reward histogram: one horizontal bar per reward value (or per bin), with counts.

Horizontal bars stay readable from 40 columns up and need one line per bin, so the dataset
summary fits under the table at 100x30. Binary rewards (0/1, the common case) get two bars.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

#: At most this many distinct reward values get a bar each; more are binned.
DISTINCT_LIMIT = 8


@dataclass(frozen=True)
class Bin:
    """One bar: rewards in ``[low, high)`` (the last bin includes ``high``)."""

    low: float
    high: float
    count: int

    @property
    def label(self) -> str:
        """How the bin is named on its bar."""
        if self.low == self.high:
            return f"{self.low:g}"
        return f"{self.low:.2f}–{self.high:.2f}"


def reward_bins(values: Iterable[float], bins: int = DISTINCT_LIMIT) -> list[Bin]:
    """Count rewards per distinct value (when few), or in ``bins`` equal-width bins."""
    rewards = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not rewards:
        return []
    counts = Counter(rewards)
    if len(counts) <= bins:
        return [Bin(value, value, counts[value]) for value in sorted(counts)]
    # More distinct values than bars: equal-width bins from the lowest reward to the highest.
    low, high = min(rewards), max(rewards)
    width = (high - low) / bins
    totals = [0] * bins
    for reward in rewards:
        # The maximum belongs to the last bin, not to one past it.
        totals[min(bins - 1, int((reward - low) / width))] += 1
    return [Bin(low + i * width, low + (i + 1) * width, n) for i, n in enumerate(totals)]


class RewardHistogram(Widget):
    """Draws ``reward_bins`` of the rewards given to ``set_rewards`` as horizontal bars."""

    DEFAULT_CSS = """
    RewardHistogram {
        height: auto;
        min-height: 1;
        padding: 0 1;
    }
    """

    def __init__(
        self,
        rewards: Sequence[float] = (),
        *,
        bins: int = DISTINCT_LIMIT,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.bins_wanted = bins
        self.bins: list[Bin] = reward_bins(rewards, bins)

    def set_rewards(self, rewards: Iterable[float]) -> None:
        """Show these rewards (replaces what was shown)."""
        self.bins = reward_bins(rewards, self.bins_wanted)
        # A fixed height needs no layout pass (which would repaint the whole screen).
        self.refresh(layout=self.styles.height is None or self.styles.height.is_auto)

    def get_content_height(self, container, viewport, width: int) -> int:
        """One line per bin (one for the 'no rewards' note)."""
        return max(1, len(self.bins))

    def render(self) -> Text:
        """The bars, scaled to the widest count, sized to the widget's width."""
        if not self.bins:
            return Text("no rewards yet", style="dim")
        label_width = max(len(b.label) for b in self.bins)
        count_width = max(len(str(b.count)) for b in self.bins)
        bar_room = max(1, self.content_size.width - label_width - count_width - 4)
        peak = max(b.count for b in self.bins) or 1
        text = Text(no_wrap=True, overflow="crop")
        for index, item in enumerate(self.bins):
            if index:
                text.append("\n")
            # Scaled to the tallest bar, so the shape reads the same at any width.
            length = round(item.count / peak * bar_room)
            text.append(f"{item.label:>{label_width}} │", style="bold")
            text.append("█" * length, style="green" if item.high > 0 else "red")
            text.append(f" {item.count:>{count_width}}")
        return text
