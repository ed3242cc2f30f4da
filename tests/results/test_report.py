"""The HTML run report: content taken from the run, self-contained, well-formed."""

import json
from html.parser import HTMLParser

import pytest

from mtinsar.config import RunConfig
from mtinsar.results.report import render_report
from mtinsar.results.writer import write_results
from mtinsar.workflows.pipeline import load_input, run_sbas


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.text, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        for key in ("href", "src"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.links.append(attrs[key])

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def result_folder(noise_free_frame, tmp_path_factory):
    cfg = RunConfig()
    run = run_sbas(load_input(noise_free_frame, cfg), cfg)
    return write_results(run, tmp_path_factory.mktemp("report") / "out", cfg.output), run


def test_report_holds_the_run_figures_and_numbers(result_folder):
    folder, run = result_folder
    page = _Collector()
    page.feed((folder / "report.html").read_text(encoding="utf-8"))
    text = " ".join(page.text)
    assert len(page.images) == 5 and all(
        s.startswith("data:image/png;base64,") for s in page.images
    )
    assert page.links == []  # nothing fetched from elsewhere: the file can be mailed alone
    ref = run.summary["reference"]
    assert f"lon {ref['lon']:.5f}, lat {ref['lat']:.5f}" in text
    assert f"{run.summary['n_pairs']} pairs" in text
    assert str(run.summary["n_pixels_reliable"]) in text
    assert json.loads(run.result.attrs["config"])["mask"]["min_temporal_coherence"] == 0.7
    assert '"min_temporal_coherence": 0.7' in text


def test_dropped_pairs_and_closure_sections_appear_when_given(result_folder):
    folder, run = result_folder
    summary = dict(run.summary)
    summary["pairs_dropped"] = [{"pair": "20190104_20190116", "reason": "mean coherence < 0.3"}]
    summary["closure"] = {"loops": 12, "median |closure| [rad]": 0.01}
    html = render_report(summary, {}, run.result.attrs["config"])
    assert "Dropped pairs (1)" in html and "mean coherence &lt; 0.3" in html  # escaped
    assert "Loop closure" in html and "median |closure| [rad]" in html
    summary["pairs_dropped"] = []
    assert "No pair was dropped." in render_report(summary, {}, run.result.attrs["config"])
