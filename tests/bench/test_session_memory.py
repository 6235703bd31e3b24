"""Figure 17's arithmetic: RSS after the last round over after the first, so growth reads as more than 1."""

from __future__ import annotations

from bench import memory
from bench.report import session_memory_table


def sample(gateway: float, worker: float, children: float) -> dict[str, dict[str, float]]:
    return {"gateway": {"rss_mib": gateway, "total_rss_mib": gateway},
            "worker": {"rss_mib": worker, "total_rss_mib": worker + children}}


def test_growth_over_the_rounds_reads_as_a_ratio_above_one_and_a_bounded_process_near_one() -> None:
    rounds = [sample(250, 560, 240), sample(330, 570, 240), sample(500, 565, 250)]
    assert memory.growth(rounds, "gateway")["last_over_first"] == 2.0
    worker = memory.growth(rounds, "worker")
    assert worker["last_over_first"] == round(565 / 560, 3)
    assert worker["total_after_last_mib"] == 815 and worker["total_after_first_mib"] == 800


def test_the_table_names_both_processes_and_the_rounds() -> None:
    rounds = [sample(250, 560, 240), sample(500, 565, 250)]
    text = session_memory_table({"rounds": rounds, "faces": True, "gateway": memory.growth(rounds, "gateway"),
                                 "worker": memory.growth(rounds, "worker")})
    assert "gateway RSS after 2 newcomer rounds (with the face engine) / after the first | **2.000**" in text
    assert "worker RSS after 2" in text and "(565 / 560 MiB; with its descendants 815 / 800 MiB)" in text
