"""The infra output folder: vector files, CSV, HTML report, summary; atomic replacement."""

import base64
import json
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from mtinsar.errors import InputError
from mtinsar.infra import InfraConfig, analyse, run_infra
from mtinsar.infra.metrics import AT_RISK_FROM


@pytest.fixture(scope="module")
def infra_out(noise_free_railway, tmp_path_factory):
    out = tmp_path_factory.mktemp("infra") / "out"
    summary = run_infra(noise_free_railway.result_dir, noise_free_railway.lines, out)
    return out, summary


def test_outputs_hold_the_metrics_of_the_analysis(noise_free_railway, infra_out):
    out, summary = infra_out
    assert sorted(p.name for p in out.iterdir()) == [
        "report.html",
        "segments.csv",
        "segments.geojson",
        "segments.gpkg",
        "summary.json",
    ]
    expected = analyse(noise_free_railway.result, noise_free_railway.lines, InfraConfig())
    seg = expected.segments
    gpkg = gpd.read_file(out / "segments.gpkg", layer="segments")
    geojson = gpd.read_file(out / "segments.geojson")
    csv = pd.read_csv(out / "segments.csv")
    assert gpkg.crs.to_epsg() == 4326 and geojson.crs.to_epsg() == 4326  # the input's CRS
    for table in (gpkg, geojson, csv):
        assert len(table) == len(seg)
        np.testing.assert_allclose(
            table["diff_settlement_mm_yr_100m"], seg["diff_settlement_mm_yr_100m"], rtol=1e-6
        )
        assert table["risk"].tolist() == seg["risk"].tolist()
    # the segments written back project onto the same lines
    back = gpkg.to_crs(seg.crs).geometry.to_numpy()
    assert shapely.hausdorff_distance(back, seg.geometry.to_numpy()).max() < 0.01
    footprints = gpd.read_file(out / "segments.gpkg", layer="footprints")
    assert len(footprints) == len(seg)
    # the CSV midpoints lie on the railway
    rail = gpd.read_file(noise_free_railway.lines).to_crs(seg.crs).geometry.iloc[0]
    mid = gpd.GeoSeries.from_xy(csv["lon"], csv["lat"], crs="EPSG:4326").to_crs(seg.crs)
    assert mid.distance(rail).max() < 0.5
    # summary
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["n_segments"] == len(seg)
    at_risk = seg.loc[seg["risk_class"] >= AT_RISK_FROM, "segment_id"].tolist()
    assert summary["segments_at_risk"] == at_risk and len(at_risk) >= 15
    assert sum(summary["risk_counts"].values()) == len(seg)


def test_report_is_self_contained_with_map_and_worst_series(infra_out):
    out, summary = infra_out
    text = (out / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    assert len(images) == 2
    for img in images:
        assert base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in text.replace("http-equiv", "")  # nothing to fetch
    # the worst segments are the high-risk ones with the steepest gradients
    worst = re.findall(r"<tr><td>(\d+)</td><td>0</td>", text)
    assert len(worst) == InfraConfig().n_worst
    assert all(int(w) in summary["segments_at_risk"] for w in worst)
    for source in ("Rankin", "Skempton", "Bjerrum"):
        assert source in text


def test_dataset_and_folder_give_the_same_result(noise_free_railway, infra_out, tmp_path):
    _, summary = infra_out
    again = run_infra(noise_free_railway.result, noise_free_railway.lines, tmp_path / "o")
    assert again["segments_at_risk"] == summary["segments_at_risk"]
    assert again["max_abs_diff_settlement_mm_yr_100m"] == pytest.approx(
        summary["max_abs_diff_settlement_mm_yr_100m"]
    )


def test_segment_length_and_buffer_are_honoured(noise_free_railway, tmp_path):
    cfg = InfraConfig(segment_length=250.0, buffer=60.0)
    summary = run_infra(noise_free_railway.result, noise_free_railway.lines, tmp_path / "o", cfg)
    seg = gpd.read_file(tmp_path / "o" / "segments.gpkg", layer="segments").to_crs(
        summary["metric_crs"]
    )
    assert seg["length_m"].iloc[:-1].to_numpy() == pytest.approx(250.0)
    fp = gpd.read_file(tmp_path / "o" / "segments.gpkg", layer="footprints")
    # a straight segment's buffer: a 2 b x L rectangle plus two half-disc caps
    area = 2 * 60.0 * seg["length_m"] + np.pi * 60.0**2
    np.testing.assert_allclose(fp.to_crs(summary["metric_crs"]).area, area, rtol=0.02)


def test_rerun_replaces_output_and_foreign_folder_is_refused(noise_free_railway, tmp_path):
    out = tmp_path / "out"
    run_infra(noise_free_railway.result, noise_free_railway.lines, out)
    (out / "segments.csv").write_text("stale")
    run_infra(noise_free_railway.result, noise_free_railway.lines, out)
    assert (out / "segments.csv").read_text() != "stale"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match=r"mine exists and is not an mtinsar infra output"):
        run_infra(noise_free_railway.result, noise_free_railway.lines, mine)
    assert (mine / "thesis.tex").read_text() == "precious"


def test_failed_run_leaves_the_earlier_output_intact(noise_free_railway, tmp_path):
    out = tmp_path / "out"
    run_infra(noise_free_railway.result, noise_free_railway.lines, out)
    before = (out / "segments.csv").read_text()
    far = tmp_path / "far.geojson"
    gpd.GeoDataFrame(
        geometry=[shapely.LineString([(10.0, 45.0), (10.01, 45.0)])], crs="EPSG:4326"
    ).to_file(far)
    with pytest.raises(InputError, match=r"far\.geojson overlaps"):
        run_infra(noise_free_railway.result, far, out)
    assert (out / "segments.csv").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_not_a_result_is_refused(noise_free_railway, tmp_path):
    with pytest.raises(InputError, match=r"not an mtinsar result: no timeseries\.zarr"):
        run_infra(tmp_path, noise_free_railway.lines, tmp_path / "o")
    no_crs = noise_free_railway.result.drop_vars("spatial_ref")
    with pytest.raises(InputError, match="has no CRS"):
        run_infra(no_crs, noise_free_railway.lines, tmp_path / "o")
