"""Every benchmark runs at quick size and reports a finite ratio against its baseline."""

import math

import pytest

import benchmarks


@pytest.mark.parametrize("name", benchmarks.names())
def test_benchmark_quick(name):
    result = benchmarks.load(name).run(quick=True)
    assert "baseline" in result, "a benchmark names its baseline"
    ratios = {k: v for k, v in result.items() if k.endswith("ratio")}
    assert ratios, "a benchmark reports at least one '*ratio' entry"
    assert all(math.isfinite(float(v)) and float(v) > 0 for v in ratios.values())
