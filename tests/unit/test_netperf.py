"""The throughput report's judgement (pure): paired ratios against node→node, the 10% tolerance, the SLB's own
expectation, the verdict, the Markdown."""

from __future__ import annotations

from bench.netperf import BASELINE, CLUSTER_IP, EXPECTED, SLB, Result, judge, markdown, verdict

OFFLOADS = ("tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload",
            "tx-checksumming", "rx-checksumming")


def results(across: dict[str, list[float]], services: dict[str, dict[str, list[float]]] | None = None
            ) -> list[Result]:
    made = []
    for datapath, gbps in across.items():
        made.append(Result(datapath, BASELINE, gbps=[10.0, 5.0, 10.0], rtt_us=[80, 90, 85]))
        made.append(Result(datapath, "pod→pod other node", gbps=gbps, rtt_us=[120, 130, 125], rr_us=[300, 310, 290]))
        for path, figures in (services or {}).get(datapath, {}).items():
            made.append(Result(datapath, path, gbps=figures, rr_us=[400, 420, 410], connections=[2, 2, 3]
                               if path == SLB else []))
    return judge(made)


def report_of(judged: list[Result]) -> dict:
    return {"started": "t", "commit": "c", "cpus": 2, "kernel": "k", "loadavg_before": "0", "seconds": 3,
            "repeats": 3, "results": [r.__dict__ for r in judged], "verdict": verdict(judged),
            "settings": {"terway-eniip": {"node→node: node eth0": {"mtu": "1500", **dict.fromkeys(OFFLOADS, "on")}}}}


def test_ratio_pairs_each_run_with_its_rounds_baseline():
    judged = results({"terway-eniip": [9.5, 4.7, 9.0]})  # 0.95, 0.94, 0.90 of the same round's node→node
    other = next(r for r in judged if r.path != BASELINE)
    assert other.ratio == 0.94 and other.passed
    assert other.median_gbps == 9.0 and other.median_rtt_us == 125 and other.median_rr_us == 300
    baseline = next(r for r in judged if r.path == BASELINE)
    assert baseline.ratio == 1.0 and baseline.passed and baseline.median_rr_us is None


def test_below_the_tolerance_fails_and_the_verdict_says_so():
    judged = results({"terway-eniip": [9.5, 4.7, 9.0], "vpc-route": [8.0, 4.0, 8.5], "vxlan": [7.0, 3.5, 7.0]})
    by_dp = {r.datapath: r for r in judged if r.path != BASELINE}
    assert not by_dp["vpc-route"].passed and by_dp["vpc-route"].ratio == 0.8
    said = verdict(judged)
    assert said["claim_holds"] is False and said["services_ok"] is None  # no Service rows measured
    assert said["routed_ratios"] == {"terway-eniip": 0.94, "vpc-route": 0.8} and said["vxlan_ratio"] == 0.7
    assert "does not hold" in said["text"] and "VXLAN 0.70x (below" in said["text"]


def test_cluster_ip_has_the_tolerance_and_the_slb_its_own_expectation():
    slb = EXPECTED[SLB]
    assert 0 < slb < 1 - 0.10
    judged = results({"terway-eniip": [9.5, 4.7, 9.0]},
                     {"terway-eniip": {CLUSTER_IP: [8.5, 4.0, 9.5],  # 0.85, 0.80, 0.95 → 0.85: below 0.9
                                       SLB: [10 * slb + 0.1, 5 * slb, 10 * slb - 0.5]}})  # median ratio = slb
    rows = {r.path: r for r in judged}
    assert rows[CLUSTER_IP].ratio == 0.85 and rows[CLUSTER_IP].expected == 0.9 and not rows[CLUSTER_IP].passed
    assert rows[SLB].expected == slb and rows[SLB].ratio == round(slb, 3) and rows[SLB].passed
    assert rows[SLB].median_rtt_us is None and rows[SLB].median_rr_us == 410  # no ping through a proxy
    assert rows[CLUSTER_IP].direct_ratio == 0.895  # 8.5/9.5, 4.0/4.7, 9.5/9.0: against pod→pod other node
    assert rows["pod→pod other node"].direct_ratio is None
    said = verdict(judged)
    assert said["claim_holds"] is True  # the Service rows do not decide the datapaths' claim
    assert said["services_ok"] is False
    assert f"{CLUSTER_IP}: terway-eniip 0.85x (expected >= 0.90x: NOT met)" in said["text"]
    assert f"{SLB}: terway-eniip {slb:.2f}x (expected >= {slb:.2f}x: met)" in said["text"]


def test_a_slow_slb_fails_only_its_own_row():
    judged = results({"terway-eniip": [9.5, 4.7, 9.0]},
                     {"terway-eniip": {CLUSTER_IP: [9.5, 4.8, 9.6], SLB: [1.0, 0.5, 1.0]}})
    rows = {r.path: r for r in judged}
    assert rows[CLUSTER_IP].passed and not rows[SLB].passed and rows[SLB].ratio == 0.1
    said = verdict(judged)
    assert said["claim_holds"] is True and said["services_ok"] is False


def test_markdown_lists_every_figure_with_its_expectation():
    judged = results({"terway-eniip": [9.5, 4.7, 9.0]},
                     {"terway-eniip": {CLUSTER_IP: [9.5, 4.8, 9.6], SLB: [8.0, 4.0, 8.5]}})
    text = markdown(report_of(judged))
    assert ("| terway-eniip | pod→pod other node | 9.00 | 9.5 / 4.7 / 9.0 | 0.94 | ≥ 0.90 | PASS |  | 125 | 300 | 0 |"
            in text)
    # 9.5/9.5, 4.8/4.7, 9.6/9.0 of the direct path in the same round → median 1.02
    assert ("| terway-eniip | pod→ClusterIP | 9.50 | 9.5 / 4.8 / 9.6 | 0.96 | ≥ 0.90 | PASS | 1.02 | — | 410 | 0 |"
            in text)
    assert (f"| terway-eniip | client→SLB→pod | 8.00 | 8.0 / 4.0 / 8.5 | 0.80 | ≥ {EXPECTED[SLB]:.2f} | PASS | 0.85 "
            "| — | 410 | 0 |") in text
    assert "n/a" not in text.split("## MTU")[0]
    assert "forwards in the kernel" in text  # the SLB's expectation is explained
    assert "| terway-eniip | node→node: node eth0 | 1500 | on | on | on | on | on |" in text
