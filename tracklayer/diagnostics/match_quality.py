"""Match quality: a 0–10 prediction, made at send time, of how well a platform can tie an
event to a person, from the identifiers its final payload carries.

Pure. Each destination declares a weight table (``match_weights``) for the keys it sends,
with the reason for each weight beside it, and says which keys an event's payload holds
(``match_keys``). The score is the present keys' share of the table's total weight, on a
0–10 scale. Platforms publish no formula (Meta's Event Match Quality is computed on its
side); this is our prediction, and the report shows which missing keys would lift it most.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def score(weights: Mapping[str, float], present: Iterable[str]) -> float:
    """0–10: the weight of the keys present over the weight of every key in the table."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    have = sum(weights.get(key, 0.0) for key in set(present))
    return round(min(10.0, 10.0 * have / total), 2)


def lift(weights: Mapping[str, float], key: str, missing_share: float) -> float:
    """How much the mean score would rise if the events lacking ``key`` had it."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    return round(missing_share * 10.0 * weights.get(key, 0.0) / total, 2)


def missing_ranked(
    weights: Mapping[str, float], coverage: Mapping[str, float]
) -> list[dict[str, float | str]]:
    """Keys not always present, ranked by the lift their presence would bring."""
    ranked = []
    for key in weights:
        share = round(1.0 - coverage.get(key, 0.0), 4)
        if share > 0:
            ranked.append({"key": key, "share": share, "lift": lift(weights, key, share)})
    ranked.sort(key=lambda item: (-float(item["lift"]), str(item["key"])))
    return ranked
