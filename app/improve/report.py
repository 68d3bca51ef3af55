"""The round report: OUT/report.json, OUT/success.png and the table the CLI prints.

Per round: the oracle success rate of the round's policy on the evaluation
seeds (95% Wilson interval); for its rollouts, how many the oracle calls
successes, how many the judge kept, and the filter's precision (kept
rollouts that were real successes) and recall (real successes that were
kept) against the oracle, both for the LRM's own verdicts and for the
verdicts that counted (the operator's where given). The judge's provenance
says what it was trained on; `phases` gives the wall time of every step.

On a robot there is no oracle and no oracle number is reported: a round's
success is that of its evaluation rollouts as judged (the operator's verdict
where given, else the LRM's; `success_measure` says so, and `judged_by` how
many of each), and the LRM filter's precision and recall are measured
against the operator's verdicts where both exist ("n/a" without any).

What the rules of app.improve.rules decided is reported per round: the
judge's precision and recall on held-out calibration episodes and the
threshold it judged at (`judge_check`; "selection skipped" where no threshold
reached the floor), and a policy not carried forward (`eval.carry`, marked
in its table row, the test against the best so far said in a line).

`round_metrics` flattens one finished round into the row the run's tracker
logs (OUT/metrics.jsonl, step = the round; TensorBoard / W&B with `report_to`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, TYPE_CHECKING
from policies.eval_report import wilson_interval

if TYPE_CHECKING:
    from recordings.store import EpisodeStore

log = logging.getLogger(__name__)

__all__ = ["build_report", "filter_metrics", "format_table", "judged_success", "mcnemar_exact", "phase_records",
           "round_metrics", "success_figure", "write_report"]

ORACLE = "oracle"
JUDGED = "operator/LRM-judged"
ALPHA = 0.05  # the significance level the table's statement uses


def mcnemar_exact(base: list[bool], other: list[bool], alpha: float = ALPHA) -> dict[str, Any]:
    """Exact (binomial) McNemar test of two policies' success flags on the same evaluation seeds.

    Only the discordant seeds carry information: `gained` (base failed, other
    succeeded) and `lost` (the reverse). Under "no change" each discordant seed
    is a fair coin, so the two-sided p-value is twice the binomial tail of the
    smaller count, capped at 1. Paired, this is far more sensitive than
    comparing two Wilson intervals, because the seeds both policies solve (or
    both fail) cancel out.
    """
    if len(base) != len(other):
        raise ValueError(f"paired flags differ in length ({len(base)} vs {len(other)})")
    gained = sum(1 for b, o in zip(base, other) if o and not b)
    lost = sum(1 for b, o in zip(base, other) if b and not o)
    n = gained + lost
    tail = sum(math.comb(n, i) for i in range(min(gained, lost) + 1)) / 2 ** n if n else 1.0
    p = min(1.0, 2 * tail)
    return {"test": "exact McNemar (paired, same seeds)", "seeds": len(base), "gained": gained, "lost": lost,
            "p_value": p, "alpha": alpha, "significant": p < alpha}


def _significance_statement(round_: int, change: float, test: dict[str, Any] | None, robot: bool = False) -> str:
    """One plain sentence: how the round's policy differs from the base and whether that could be chance."""
    head = f"round {round_} vs base: {100 * change:+.1f} points"
    if test is None and robot:
        return f"{head}; no paired test (a robot's evaluation episodes do not repeat the same start states)"
    if test is None:
        return f"{head}; no paired test (per-seed success flags not stored for both)"
    counts = f"{test['gained']} seeds gained, {test['lost']} lost of {test['seeds']}"
    level = f"at the {test['alpha']:g} level"
    verdict = f"significant {level}" if test["significant"] else f"not significant {level}: could be chance"
    return f"{head} ({counts}); exact McNemar p = {test['p_value']:.3g}: {verdict}"


def filter_metrics(kept: list[bool], truth: list[bool]) -> dict[str, Any]:
    """Counts and precision / recall (lrm.evaluation.metrics) of a keep-or-drop filter against ground truth; None when undefined."""
    from lrm.evaluation.metrics import confusion_counts, precision, recall

    counts = confusion_counts(list(kept), list(truth))
    p, r = precision(counts), recall(counts)
    return {**counts, "precision": None if math.isnan(p) else p, "recall": None if math.isnan(r) else r}


def phase_records(store: EpisodeStore, round_: int, phase: str) -> list[Any]:
    """The episodes of one round's phase ("rollout", "calibration", "eval") in a run's store."""
    return [r for r in store.episodes(round=round_) if (r.meta.extra.get("improve") or {}).get("phase") == phase]


def _round_rollouts(store: EpisodeStore, round_: int, robot: bool = False) -> dict[str, Any]:
    records = phase_records(store, round_, "rollout")
    valid = [r for r in records if not r.meta.aborted]
    judged = [r for r in valid if r.meta.lrm_verdict is not None]
    out: dict[str, Any] = {
        "episodes": len(records),
        "aborted": len(records) - len(valid),
        "judged": len(judged),
        "operator_verdicts": sum(r.meta.operator_verdict is not None for r in valid),
    }
    with_oracle = [r for r in judged if r.meta.oracle_success is not None]
    if valid and all(r.meta.oracle_success is not None for r in valid):
        out["oracle_successes"] = sum(bool(r.meta.oracle_success) for r in valid)
        out["oracle_success_rate"] = out["oracle_successes"] / len(valid)
    out["kept"] = sum(bool(r.meta.accepted) for r in judged)
    if with_oracle:
        truth = [bool(r.meta.oracle_success) for r in with_oracle]
        out["lrm_filter"] = filter_metrics([bool(r.meta.lrm_verdict) for r in with_oracle], truth)
        out["filter"] = filter_metrics([bool(r.meta.accepted) for r in with_oracle], truth)
    elif robot:
        # the operator's verdict is the only truth there is; the verdicts that counted would equal it
        both = [r for r in judged if r.meta.operator_verdict is not None]
        out["filter_truth"] = "operator"
        out["lrm_filter"] = filter_metrics([bool(r.meta.lrm_verdict) for r in both],
                                           [bool(r.meta.operator_verdict) for r in both]) if both else None
    return out


def judged_success(records: list[Any]) -> dict[str, Any]:
    """Success of evaluation episodes by the verdict that counts (operator over LRM), with a 95% interval."""

    valid = [r for r in records if not r.meta.aborted and r.meta.accepted is not None]
    n, k = len(valid), sum(bool(r.meta.accepted) for r in valid)
    return {"episodes": n, "successes": k, "success_rate": k / n if n else None,
            "ci95": list(wilson_interval(k, n)) if n else None, "measure": JUDGED,
            "judged_by": {"operator": sum(r.meta.operator_verdict is not None for r in valid),
                          "lrm": sum(r.meta.operator_verdict is None for r in valid)},
            "aborted": sum(r.meta.aborted for r in records)}


def build_report(config: Any, steps: dict[str, Any], store: EpisodeStore, eval_store: EpisodeStore | None = None) -> dict[str, Any]:
    """The report of everything finished so far (steps: the run state's finished steps).

    On a robot the evaluation is recounted from `eval_store` (OUT/eval-store),
    so that operator verdicts given after the step count in the next report.
    """
    robot = config.env.is_robot
    rounds = []
    for r in range(0, config.rounds + 1):
        entry: dict[str, Any] = {"round": r}
        ev = steps.get(f"eval-{r}")
        if ev and ev.get("episodes") and robot and eval_store is not None:
            recount = judged_success(phase_records(eval_store, r, "eval"))
            ev = recount if recount["episodes"] else None
        if ev and ev.get("episodes") and robot:
            entry["eval"] = {k: ev[k] for k in ("episodes", "successes", "success_rate", "ci95", "measure",
                                                "judged_by", "aborted")}
        elif ev and ev.get("episodes"):
            entry["eval"] = {k: ev[k] for k in ("episodes", "successes", "success_rate", "ci95", "mean_max_dense_reward",
                                                "seeds") if k in ev}
        carry = (steps.get(f"eval-{r}") or {}).get("carry")
        if "eval" in entry and carry:
            entry["eval"]["carry"] = carry
        tr = steps.get(f"train-{r}")
        if tr:
            entry["train"] = {"selected": tr["selected"], "checkpoint": tr["checkpoint"], "init_from": tr["init_from"]}
            entry["train"].update({k: tr[k] for k in ("start_round", "skipped") if k in tr})
        check = (steps.get(f"judge-{r}") or {}).get("calibration_check")
        if check:
            entry["judge_check"] = check
        if r >= 1 and steps.get(f"rollouts-{r}") and store is not None:
            entry["rollouts"] = _round_rollouts(store, r, robot)
        if len(entry) > 1:
            rounds.append(entry)
    base = next((e["eval"]["success_rate"] for e in rounds if e["round"] == 0 and "eval" in e), None)
    base_flags = (steps.get("eval-0") or {}).get("success_flags")
    for e in rounds:
        if base is not None and "eval" in e:
            e["eval"]["change_from_base"] = e["eval"]["success_rate"] - base
            flags = (steps.get(f"eval-{e['round']}") or {}).get("success_flags")
            if e["round"] >= 1 and not robot and base_flags and flags and len(flags) == len(base_flags):
                e["eval"]["vs_base"] = mcnemar_exact([bool(x) for x in base_flags], [bool(x) for x in flags])
    judge = steps.get("judge-train")
    if judge is None:
        judge = {"backend": config.judge.backend.describe(),
                 "trained_on": "not trained here: a pretrained completion backend"}
    else:
        # the trainer's held-out split is frames of the very demos and calibration rollouts it trained
        # beside: in-distribution, usually far kinder than the rollouts it judges, so the key says so
        judge = {k: v for k, v in judge.items() if k != "validation"}
        judge["validation_in_distribution"] = steps["judge-train"].get("validation", {})
    judge = {**judge, "accuracy_on_rollouts": _rollout_accuracy(rounds, robot)}
    return {
        "env": config.env.name,
        "success_measure": JUDGED if robot else ORACLE,
        "policy": config.policy.type,
        "run_seed": getattr(config, "seed", 0),
        "rounds_planned": config.rounds,
        "rollouts_per_round": config.rollouts_per_round,
        "selection": {"demos": config.selection.demos, "rollouts": config.selection.rollouts,
                      "rounds": config.selection.rounds},
        "judge": {"frames": config.judge.frames, "combine": config.judge.combine,
                  "threshold": config.judge.threshold, "min_precision": getattr(config.judge, "min_precision", None),
                  **judge},
        "rounds": rounds,
        "phases": {name: info.get("seconds") for name, info in steps.items() if isinstance(info, dict)},
        "finished": all(f"eval-{r}" in steps for r in range(config.rounds + 1)),
    }


def _rollout_accuracy(rounds: list[dict[str, Any]], robot: bool) -> dict[str, Any] | None:
    """The judge's own verdicts on this run's rollouts against the truth there (oracle, or the operator on a robot)."""
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for e in rounds:
        f = (e.get("rollouts") or {}).get("lrm_filter")
        for k in counts:
            counts[k] += int((f or {}).get(k, 0))
    n = sum(counts.values())
    if not n:
        return None
    pos, neg = counts["tp"] + counts["fn"], counts["tn"] + counts["fp"]
    recalls = [x for x in (counts["tp"] / pos if pos else None, counts["tn"] / neg if neg else None) if x is not None]
    return {"episodes": n, "truth": "operator" if robot else ORACLE,
            "accuracy": (counts["tp"] + counts["tn"]) / n, "balanced_accuracy": sum(recalls) / len(recalls)}


def round_metrics(report: dict[str, Any], steps: dict[str, Any], round_: int) -> dict[str, Any] | None:
    """Round `round_`'s numbers, flat (`eval/success_rate`, `judge/precision`, `seconds/train`, ...); None until
    the round's evaluation is done.

    eval: the round's policy on the evaluation episodes; rollouts: round r's rollouts (run by round r-1's
    policy), how many the oracle (sim) calls successes, how many were judged and kept; judge: the LRM's own
    verdicts against the truth (oracle, or the operator on a robot); filter: the verdicts that counted;
    train: what the round trained on and its last loss; seconds: the wall time of each of the round's steps.
    """
    if f"eval-{round_}" not in steps:
        return None
    entry = next((e for e in report["rounds"] if e["round"] == round_), {"round": round_})
    row: dict[str, Any] = {"round": round_}
    ev = entry.get("eval") or {}
    for key in ("success_rate", "successes", "episodes", "change_from_base"):
        if ev.get(key) is not None:
            row[f"eval/{key}"] = ev[key]
    if ev.get("ci95"):
        row["eval/ci95_low"], row["eval/ci95_high"] = ev["ci95"]
    if (ev.get("vs_base") or {}).get("p_value") is not None:
        row["eval/p_value_vs_base"] = ev["vs_base"]["p_value"]
    roll = entry.get("rollouts") or {}
    for key in ("episodes", "aborted", "judged", "kept", "operator_verdicts", "oracle_successes", "oracle_success_rate"):
        if roll.get(key) is not None:
            row[f"rollouts/{key}"] = roll[key]
    for name, key in (("judge", "lrm_filter"), ("filter", "filter")):
        for metric in ("precision", "recall", "tp", "fp", "fn", "tn"):
            value = (roll.get(key) or {}).get(metric)
            if value is not None:
                row[f"{name}/{metric}"] = value
    train = steps.get(f"train-{round_}") or {}
    for key, value in (train.get("selected") or {}).items():
        row[f"train/{key}"] = value
    if train.get("train_loss") is not None:
        row["train/loss"] = train["train_loss"]
    for phase in ("rollouts", "judge", "train", "eval"):
        seconds = (steps.get(f"{phase}-{round_}") or {}).get("seconds")
        if seconds is not None:
            row[f"seconds/{phase}"] = seconds
    return row


def write_report(report: dict[str, Any], out: Path) -> None:
    """report.json (atomically) and success.png."""
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(tmp, out / "report.json")
    try:
        _plot(report, out / "success.png")
    except Exception as exc:  # a missing plot must not cost a run
        log.warning("could not draw %s: %s", out / "success.png", exc)


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = success_figure(report)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def success_figure(report: dict[str, Any]) -> Any:
    """success.png's figure: success per round against the base's line, and the filter's precision / recall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [(e["round"], e["eval"]) for e in report["rounds"] if "eval" in e]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    if evals:
        xs = [r for r, _ in evals]
        ys = [100 * e["success_rate"] for _, e in evals]
        lo = [100 * (e["success_rate"] - e["ci95"][0]) for _, e in evals]
        hi = [100 * (e["ci95"][1] - e["success_rate"]) for _, e in evals]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=4, label="policy (eval seeds, 95% CI)")
        base = next((e for r, e in evals if r == 0), None)
        if base is not None:  # the line every later round is read against
            ax.axhline(100 * base["success_rate"], color="grey", linestyle=":", label="base (round 0)")
    rolls = [(e["round"], e["rollouts"]) for e in report["rounds"] if "oracle_success_rate" in e.get("rollouts", {})]
    if rolls:
        # round r's rollouts are run by round r-1's policy
        ax.plot([r - 1 for r, _ in rolls], [100 * x["oracle_success_rate"] for _, x in rolls], "s--",
                label="its rollouts (oracle)")
    ticks = list(range(report["rounds_planned"] + 1))
    ax.set_xticks(ticks)
    ax.set_xlabel("round")
    ax.set_ylabel(f"success, {report.get('success_measure', ORACLE)} (%)")
    ax.set_title(f"{report['env']}: success per round")
    ax.set_ylim(0, 100)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax = axes[1]
    pr = [(e["round"], e["rollouts"]["lrm_filter"]) for e in report["rounds"] if e.get("rollouts", {}).get("lrm_filter")]
    if pr:
        xs = [r for r, _ in pr]
        for key, marker in (("precision", "o"), ("recall", "s")):
            ax.plot(xs, [100 * (m[key] if m[key] is not None else math.nan) for _, m in pr], marker=marker, label=key)
    ax.set_xticks(ticks[1:] or ticks)
    ax.set_xlabel("round (its rollouts)")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title("LRM filter vs " + ("operator" if report.get("success_measure") == JUDGED else "oracle"))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def format_table(report: dict[str, Any]) -> str:
    """The plain-text table of success per round (oracle, or judged on a robot) and the filter's precision / recall."""
    robot = report.get("success_measure") == JUDGED
    success_head = f"success, {JUDGED} (95% CI)" if robot else "policy success (95% CI)"
    roll_head = "its next rollouts: kept" if robot else "its next rollouts: oracle / kept"
    head = f"{'round':>5}  {success_head:<28} {'vs base':>8}  {roll_head:<32} {'precision':>9} {'recall':>7}"
    lines = [head, "-" * len(head)]
    by_round = {e["round"]: e for e in report["rounds"]}
    for r in sorted(by_round):
        e = by_round[r]
        ev = e.get("eval")
        succ = "-" if not ev else f"{ev['successes']}/{ev['episodes']} = {_pct(ev['success_rate'])} " \
                                  f"[{_pct(ev['ci95'][0])}, {_pct(ev['ci95'][1])}]"
        nxt = by_round.get(r + 1, {}).get("rollouts")  # round r's policy ran round r+1's rollouts
        roll, prec, rec = "-", "-", "-"
        if nxt and robot:
            n = nxt["episodes"] - nxt["aborted"]
            roll = f"{nxt['kept']}/{n} kept ({nxt['operator_verdicts']} by operator)"
            f = nxt.get("lrm_filter")
            prec, rec = (_pct(f["precision"]), _pct(f["recall"])) if f else ("n/a", "n/a")
        elif nxt:
            oracle = nxt.get("oracle_successes")
            n = nxt["episodes"] - nxt["aborted"]
            roll = f"{'-' if oracle is None else oracle}/{n} / {nxt['kept']} kept"
            f = nxt.get("filter")
            if f:
                prec, rec = _pct(f["precision"]), _pct(f["recall"])
        if nxt and (by_round[r + 1].get("judge_check") or {}).get("action") == "skip":
            roll += " (unused)"  # the precision floor skipped that round's selection
        change = "-" if not ev or r == 0 or ev.get("change_from_base") is None else f"{100 * ev['change_from_base']:+.1f}pp"
        carried = "" if not ev or (ev.get("carry") or {}).get("carried_forward", True) else "  not carried forward"
        lines.append(f"{r:>5}  {succ:<28} {change:>8}  {roll:<32} {prec:>9} {rec:>7}{carried}")
    if robot:
        lines.append("(row r: the policy after round r on its evaluation rollouts, a success by the operator's verdict"
                     " where given, else the LRM's; its next rollouts are round r+1's, kept by the verdict that counts;"
                     " precision and recall: the LRM's verdicts against the operator's, n/a without any)")
    else:
        lines.append("(row r: the policy after round r on the evaluation seeds; its next rollouts are round r+1's,"
                     " kept by the judge with that precision and recall against the oracle)")
    for r in sorted(by_round):
        ev = by_round[r].get("eval")
        if r >= 1 and ev and ev.get("change_from_base") is not None:
            lines.append(_significance_statement(r, ev["change_from_base"], ev.get("vs_base"), robot))
    for r in sorted(by_round):
        lines.extend(_rule_lines(r, by_round[r]))
    trained = report["judge"].get("trained_on")
    if isinstance(trained, dict):
        labels = f" ({trained['calibration_labels']} labels)" if trained.get("calibration_labels") else ""
        lines.append(f"judge: compact model trained on {len(trained['demonstrations'])} demonstrations"
                     f" + {len(trained['calibration_episodes'])} calibration rollouts on their own seeds{labels};"
                     " never on a rollout it judged")
    else:
        lines.append(f"judge: {report['judge'].get('backend')} ({trained})")
    lines.append(_judge_accuracy_line(report["judge"]))
    return "\n".join(lines)


def _rule_lines(round_: int, entry: dict[str, Any]) -> list[str]:
    """What app.improve.rules decided in this round: the judge's precision check, and whether it was carried forward."""
    lines = []
    check = entry.get("judge_check")
    if check:
        where = (f"on {check['episodes']} held-out calibration episodes at threshold {check['configured_threshold']:g}"
                 f" (floor {_pct(check['min_precision'])})")
        head = f"round {round_} judge: precision {_pct(check['precision'])}, recall {_pct(check['recall'])} {where}"
        if check["action"] == "raised":
            head += (f": threshold raised to {check['threshold']:.4g} (precision {_pct(check['precision_after'])},"
                     f" recall {_pct(check['recall_after'])} there)")
        elif check["action"] == "skip":
            head += ": selection skipped, no fine-tuning on judged rollouts this round"
        elif check.get("reason"):
            head += f"; {check['reason']}"
        lines.append(head)
    carry = (entry.get("eval") or {}).get("carry")
    if carry and not carry["carried_forward"]:
        t = carry["vs_best"]
        lines.append(f"round {round_}: not carried forward: significantly worse than round {carry['best_round']}"
                     f" ({t['gained']} seeds gained, {t['lost']} lost of {t['seeds']}; exact McNemar"
                     f" p = {t['p_value']:.3g} < {t['alpha']:g}); round {round_ + 1} starts from round"
                     f" {carry['next_from']}'s checkpoint")
    return lines


def _judge_accuracy_line(judge: dict[str, Any]) -> str:
    """The judge's held-out accuracy, labelled in-distribution, beside its accuracy on the rollouts it judged."""
    val = judge.get("validation_in_distribution") or {}
    parts = []
    if "completion_accuracy" in val:
        bal = val.get("completion_balanced_accuracy")
        parts.append(f"in-distribution validation (held-out frames of its own training episodes) accuracy "
                     f"{_pct(val['completion_accuracy'])}" + ("" if bal is None else f", balanced {_pct(bal)}"))
    roll = judge.get("accuracy_on_rollouts")
    if roll:
        parts.append(f"on this run's rollouts (vs {roll['truth']}, {roll['episodes']} episodes) accuracy "
                     f"{_pct(roll['accuracy'])}, balanced {_pct(roll['balanced_accuracy'])}")
    else:
        parts.append("on this run's rollouts: no verdict with a truth to check yet")
    return "judge accuracy: " + "; ".join(parts)
