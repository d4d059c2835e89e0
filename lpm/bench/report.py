"""The rows of :func:`~lpm.bench.bench_ndlib` as a text table."""

from __future__ import annotations

from typing import Any, Sequence

from lpm.bench.common import AB_DEFINITION, HK_DEFINITION, IC_DEFINITION


def _agreement_text(row: dict[str, Any]) -> str:
    if row["model"] == "independent_cascade":
        capped = " (NDlib budget)" if row["ic"]["ndlib_runs_capped"] else ""
        return (f"KS={row['ks']:.3f} p={row['ks_pvalue']:.3g} over {row['runs']} runs{capped}; "
                f"mean size lpm {row['mean_size_lpm']:.1f} / NDlib {row['mean_size_ndlib']:.1f}")
    if row["model"] == "algorithmic_bias":
        return (f"KS={row['ks']:.3f} after {row['ndlib_iterations']} iters "
                f"(lpm at 2x steps: {row['ks_lpm_2k_steps']:.3f}; NDlib vs initial: {row['ks_ndlib_vs_initial']:.3f})")
    if row["ks"] is None:
        return "n/a (NDlib did not finish an iteration)"
    if row["hk_rule_agents"]:
        rule_text = (f"rule |d|={row['hk_rule_max_abs_diff']:.1e} (tau->0), "
                     f"{row['hk_rule_max_abs_diff_at_tau']:.1e} (tau={row['lpm_params']['tau']:g}) "
                     f"on {row['hk_rule_agents']} agent(s)")
    else:
        rule_text = "rule: n/a (nobody moved)"
    return (f"KS={row['ks']:.3f} after {row['ndlib_iterations']} iters (NDlib moved {row['ndlib_agents_moved']} "
            f"agents, lpm all); {rule_text}")


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a plain-text table, with set-up times and iteration definitions below it."""
    header = ["model", "n", "NDlib s/iter", "lpm s/iter", "ratio", "ratio (CPU time)", "lpm batched s/iter/B",
              "agreement"]
    body = []
    for row in rows:
        capped = row["ndlib_capped"]
        ndlib_text = f">={row['ndlib_s_per_iter']:.4g}" if capped else f"{row['ndlib_s_per_iter']:.4g}"
        ratio_text = f"{'>=' if capped else ''}{row['ratio']:.0f}x"
        cpu_text = "n/a" if row["ratio_cpu"] is None else f"{row['ratio_cpu']:.0f}x"
        batched = row["lpm_batched_s_per_iter"]
        batched_text = "-" if batched is None else f"{batched:.3g} (B={row['ic']['lpm_batch_size']})"
        body.append([row["model"], f"{row['n']:.0e}".replace("+0", ""), ndlib_text,
                     f"{row['lpm_s_per_iter']:.3g}", ratio_text, cpu_text, batched_text, _agreement_text(row)])
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if rows:
        first = rows[0]
        lines.append("")
        lines.append(f"wall-clock medians over timed iterations; device=cpu, lpm torch threads={first['threads']}, "
                     f"NDlib single-threaded; ndlib {first['ndlib_version']}, torch {first['torch_version']}")
        lines.append("ratio (CPU time): the same with process CPU time, less sensitive to other load on a shared "
                     "machine (it sums torch threads, so it favours NDlib when threads > 1)")
        lines.append("set-up (s), not included above: model, n, graph lpm / networkx, model setup lpm / NDlib")
        for row in rows:
            lines.append(f"  {row['model']}, {row['n']}: {row['lpm_graph_s']:.3f} / {row['ndlib_graph_s']:.3f}, "
                         f"{row['lpm_setup_s']:.4f} / {row['ndlib_setup_s']:.4f}")
        if any(r["ndlib_capped"] for r in rows):
            lines.append("'>=': NDlib did not finish one iteration within the cap; its time is the cap and "
                         "the ratio a lower bound")
        models = {r["model"] for r in rows}
        if "independent_cascade" in models:
            lines.append("independent_cascade: NDlib s/iter is the median over the first iterations of every run "
                         "(ndlib_s_per_iter_all_median: all iterations), lpm s/iter the median step of one cascade "
                         "(B=1); lpm batched: one simulate() of all runs as B scenarios, wall time / steps / B")
            for row in rows:
                if row["model"] == "independent_cascade":
                    ic = row["ic"]
                    lines.append(
                        f"  n={row['n']}: {row['runs']}/{ic['runs_requested']} NDlib runs of {ic['seeds_per_run']} "
                        f"seeds, {ic['ndlib_iterations_per_run_mean']:.1f} iterations and "
                        f"{ic['ndlib_run_s_median']:.3g} s per run (median), {ic['ndlib_run_s_total']:.1f} s in all; "
                        f"lpm: {ic['lpm_batched_steps']} steps in {ic['lpm_batched_run_s']:.1f} s, cascades stop "
                        f"after {ic['lpm_cascade_steps_mean']:.1f} steps (max {ic['lpm_cascade_steps_max']}); "
                        f"size sd lpm {ic['std_size_lpm']:.1f} / NDlib {ic['std_size_ndlib']:.1f}")
            lines.append(f"independent_cascade iteration: {IC_DEFINITION}")
        if "algorithmic_bias" in models:
            lines.append(f"algorithmic_bias iteration: {AB_DEFINITION}")
        if "hegselmann_krause" in models:
            lines.append(f"hegselmann_krause iteration: {HK_DEFINITION}")
            lines.append("rule |d|: NDlib's new opinion vs the confidence-set mean (self excluded, as NDlib) "
                         "from lpm's aggregation kernel, for every agent NDlib moved, from the opinions before that "
                         "iteration; at tau -> 0 (the hard indicator) and at the benchmark's tau")
    return "\n".join(lines)

