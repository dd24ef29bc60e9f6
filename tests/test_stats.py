"""study.stats and the Table 4 verdicts, on hand-worked numbers (never on formatted text)."""
import math

import pytest

from tinydistil.study.results import table4_verdicts
from tinydistil.study.stats import (detectable_delta, macro, measurably_worse, paired_deltas, paired_t_lower,
                                    per_seed_macro, spread)

PER_TASK = {"cola": {0: 10.0, 1: 20.0, 2: 30.0}, "sst2": {0: 80.0, 1: 84.0, 2: 82.0}, "stsb": {1: 70.0, 2: 74.0}}


def test_macro_is_the_mean_of_per_task_medians():
    # medians: cola 20, sst2 82, stsb (70 + 74) / 2 = 72 -> (20 + 82 + 72) / 3
    assert macro(PER_TASK) == pytest.approx(58.0)
    assert macro({}) is None


def test_per_seed_macro_uses_the_seeds_every_task_has():
    # seed 0 is missing from stsb: only seeds 1 and 2; seed 1: (20 + 84 + 70) / 3 = 58, seed 2: (30 + 82 + 74) / 3 = 62
    assert per_seed_macro(PER_TASK) == pytest.approx({1: 58.0, 2: 62.0})


def test_paired_deltas_and_spread():
    assert paired_deltas({0: 1.0, 1: 5.0, 3: 2.0}, {0: 2.0, 1: 4.0, 2: 9.0}) == [-1.0, 1.0]
    sp = spread([1.0, 2.0, 3.0, 4.0])
    assert sp["sd"] == pytest.approx(math.sqrt(5 / 3)) and (sp["min"], sp["max"]) == (1.0, 4.0)
    assert spread([1.0]) is None


@pytest.mark.parametrize("delta, paired, rule, worse", [
    (-1.0, [-1, -2, -0.5, -1, 0.3], 4, True),     # lower by more than the sd, 4 of 5 seeds lower
    (-1.0, [-1, -2, -0.5, -1, 0.3], None, False),  # the earlier rule: every paired seed
    (-1.0, [-1, -2, 0.5, -1, 0.3], 4, False),     # only 3 of 5 lower
    (-0.4, [-1, -1, -1, -1, -1], 4, False),       # within the full loss's sd (0.5)
    (-1.0, [-1, -1, -1], 4, False),               # fewer paired seeds than the rule needs: undecided
    (None, [-1] * 5, 4, False),
])
def test_decision_rule(delta, paired, rule, worse):
    assert measurably_worse(delta, 0.5, paired, rule) is worse


def test_table4_verdicts_come_from_the_json_floats():
    full = {"score": 60.0, "per_seed": [59.0, 60.0, 61.0, 60.0, 60.0], "seeds": [0, 1, 2, 3, 4]}  # sd 0.707
    variants = {
        "full triple loss": full,
        "random init": {"score": 55.0, "per_seed": [54.0, 55.0, 56.0, 55.0, 61.0], "seeds": [0, 1, 2, 3, 4]},
        "- L_mlm": {"score": 59.5, "per_seed": [58.0, 59.0, 60.0, 59.0, 59.0], "seeds": [0, 1, 2, 3, 4]},
    }
    v = table4_verdicts({"variants": variants, "rule": {"min_paired_seeds_lower": 4}})
    assert v["worse"] == ["random init"] and v["rule"] == 4  # - L_mlm: 0.5 lower < sd 0.707
    assert table4_verdicts({"variants": variants})["worse"] == []  # no rule recorded: every seed must be lower
    assert table4_verdicts({}) == {"rule": None, "paired_t_alpha": None, "p_values": {}, "worse": [], "excl_sd": None,
                                   "excl_deltas": {}, "excl_worse": [], "better": [], "p_better": {}, "vs_control": {}}
    # the issue-26 protocol's paired t-test: - L_mlm, 1 point lower on every seed (deltas -1 -1 -1 -1 -1.5 have a
    # spread, so the test is defined), is worse at p < 0.05 even though its macro sits within 1.5 sd of the full loss
    t_variants = {**variants, "- L_mlm": {"score": 59.0, "per_seed": [58.0, 59.0, 60.0, 59.0, 58.5],
                                          "seeds": [0, 1, 2, 3, 4]}}
    t = table4_verdicts({"variants": t_variants, "rule": {"paired_t_alpha": 0.05}})
    # random init's deltas -5 -5 -5 -5 +1: mean -3.8, sd 2.683, t = -3.167 on 4 df: p = 0.017
    assert t["worse"] == ["random init", "- L_mlm"] and t["p_values"]["random init"] == pytest.approx(0.0170, abs=5e-4)


def test_a_row_that_adds_a_term_is_judged_better_and_every_row_against_the_control():
    seeds = [0, 1, 2]
    variants = {"full triple loss": {"score": 50.0, "per_seed": [50.0, 51.0, 49.0], "seeds": seeds},
                # + 1, + 2, + 3 over the full loss: the mirror of the hand-worked test below, p = 0.0371
                "+ L_sent": {"score": 52.0, "per_seed": [51.0, 53.0, 52.0], "seeds": seeds},
                "no distillation": {"score": 49.0, "per_seed": [49.0, 49.5, 48.0], "seeds": seeds}}
    v = table4_verdicts({"variants": variants, "rule": {"paired_t_alpha": 0.05}})
    t = -math.sqrt(12)
    assert v["better"] == ["+ L_sent"] and v["p_better"]["+ L_sent"] == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)))
    assert v["worse"] == ["no distillation"] and v["p_better"]["no distillation"] > 0.5  # below, not above
    # against the control: full +1.0 +1.5 +1.0 (mean 1.1667), + L_sent +2 +3.5 +4 (mean 3.1667)
    assert v["vs_control"]["full triple loss"][0] == pytest.approx(7 / 6)
    assert v["vs_control"]["+ L_sent"][0] == pytest.approx(19 / 6) and v["vs_control"]["+ L_sent"][1] < 0.05
    assert "no distillation" not in v["vs_control"]
    # the earlier sd-and-count rule has no such test
    assert table4_verdicts({"variants": variants})["better"] == []


def test_paired_t_test_by_hand():
    # deltas -1 -2 -3: mean -2, sd 1, t = -2 / (1 / sqrt 3) = -sqrt 12; with 2 df the t CDF is 1/2 + t / (2 sqrt(2 + t^2))
    t = -math.sqrt(12)
    p = 0.5 + t / (2 * math.sqrt(2 + t * t))  # 0.0371
    assert paired_t_lower([-1.0, -2.0, -3.0], 0.05) == (True, pytest.approx(p))
    assert paired_t_lower([-1.0, -2.0, -3.0], 0.01)[0] is False
    assert paired_t_lower([1.0, 2.0, 3.0], 0.05)[0] is False          # higher: one-sided
    assert paired_t_lower([-1.0], 0.05) == (False, None)              # one pair: nothing to test
    assert paired_t_lower([-1.0, -1.0, -1.0], 0.05) == (False, None)  # no spread: undefined, not "significant"


def test_detectable_delta_from_t_tables():
    # t-table quantiles at 4 df: t_0.95 = 2.132, t_0.80 = 0.941
    assert detectable_delta(1.0, 5) == pytest.approx((2.132 + 0.941) / math.sqrt(5), abs=1e-3)
    assert detectable_delta(2.0, 5) == pytest.approx(2 * detectable_delta(1.0, 5))


def test_mean_interval_hand_worked():
    from tinydistil.study.stats import mean_interval

    # [1, 2, 3]: mean 2, sd 1, t(0.975, 2 df) = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138
    m, lo, hi = mean_interval([1.0, 2.0, 3.0])
    assert m == 2.0 and lo == pytest.approx(2 - 2.484138, abs=1e-6) and hi == pytest.approx(2 + 2.484138, abs=1e-6)
    assert mean_interval([1.0]) is None


def test_accuracy_diff_se_hand_worked():
    from tinydistil.study.stats import accuracy_diff_se

    # 15 % vs 14 % on 10,000 tokens each: sqrt((.15 * .85 + .14 * .86) / 1e4) = 0.0049790
    assert accuracy_diff_se(0.15, 0.14, 10_000) == pytest.approx(0.0049790, abs=1e-7)


def test_holm_adjusted_hand_worked():
    from tinydistil.study.stats import holm_adjusted

    # m = 4: 0.01 x 4 = 0.04; 0.02 x 3 = 0.06; 0.03 x 2 = 0.06 (max with 0.06); 0.5 x 1 = 0.5
    adj = holm_adjusted({"a": 0.03, "b": 0.01, "c": 0.5, "d": 0.02})
    assert adj == pytest.approx({"a": 0.06, "b": 0.04, "c": 0.5, "d": 0.06})
    assert holm_adjusted({"x": 0.6, "y": 0.9}) == pytest.approx({"x": 1.0, "y": 1.0})
