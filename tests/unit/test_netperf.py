"""The throughput report's judgement (pure): paired ratios against node→node, the 10% tolerance, the verdict."""

from __future__ import annotations

from bench.netperf import BASELINE, Result, judge, markdown, verdict


def results(across: dict[str, list[float]]) -> list[Result]:
    made = []
    for datapath, gbps in across.items():
        made.append(Result(datapath, BASELINE, gbps=[10.0, 5.0, 10.0], rtt_us=[80, 90, 85]))
        made.append(Result(datapath, "pod→pod other node", gbps=gbps, rtt_us=[120, 130, 125]))
    return judge(made)


def test_ratio_pairs_each_run_with_its_rounds_baseline():
    judged = results({"terway-eniip": [9.5, 4.7, 9.0]})  # 0.95, 0.94, 0.90 of the same round's node→node
    other = next(r for r in judged if r.path != BASELINE)
    assert other.ratio == 0.94 and other.passed
    assert other.median_gbps == 9.0 and other.median_rtt_us == 125
    baseline = next(r for r in judged if r.path == BASELINE)
    assert baseline.ratio == 1.0 and baseline.passed


def test_below_the_tolerance_fails_and_the_verdict_says_so():
    judged = results({"terway-eniip": [9.5, 4.7, 9.0], "vpc-route": [8.0, 4.0, 8.5], "vxlan": [7.0, 3.5, 7.0]})
    by_dp = {r.datapath: r for r in judged if r.path != BASELINE}
    assert not by_dp["vpc-route"].passed and by_dp["vpc-route"].ratio == 0.8
    said = verdict(judged)
    assert said["claim_holds"] is False
    assert said["routed_ratios"] == {"terway-eniip": 0.94, "vpc-route": 0.8} and said["vxlan_ratio"] == 0.7
    assert "does not hold" in said["text"] and "VXLAN 0.70x (below" in said["text"]


def test_markdown_lists_every_figure_and_the_missing_ones():
    judged = results({"terway-eniip": [9.5, 4.7, 9.0]})
    report = {"started": "t", "commit": "c", "cpus": 2, "kernel": "k", "loadavg_before": "0", "seconds": 3,
              "repeats": 3, "results": [r.__dict__ for r in judged], "verdict": verdict(judged),
              "settings": {"terway-eniip": {"node→node: node eth0": {"mtu": "1500", **dict.fromkeys(
                  ("tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload",
                   "tx-checksumming", "rx-checksumming"), "on")}}}}
    text = markdown(report)
    assert "| terway-eniip | pod→pod other node | 9.00 | 9.5 / 4.7 / 9.0 | 0.94 | PASS |" in text
    assert "| all | pod→ClusterIP | n/a until Services (issue 6) |" in text
    assert "| terway-eniip | node→node: node eth0 | 1500 | on | on | on | on | on |" in text
