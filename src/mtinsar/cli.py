"""The `mtinsar` command line: simulate, ingest, run, demo, config.

Heavy imports happen inside the commands so that `mtinsar --help` stays fast. Every
`MtinsarError` is printed as one line without a traceback and exits with status 2.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mtinsar.errors import MtinsarError

app = typer.Typer(
    help="Multi-Temporal InSAR: interferogram stacks in, LOS time series and velocity out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config file (see `mtinsar config`).", exists=False),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or log lines.")]
BboxOpt = Annotated[
    tuple[float, float, float, float] | None,
    typer.Option(help="Crop: LON_MIN LAT_MIN LON_MAX LAT_MAX (degrees).", show_default=False),
]
MultilookOpt = Annotated[int | None, typer.Option(help="Integer multilook factor.")]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option("--exclude-pair", help="Pair to leave out (YYYYMMDD_YYYYMMDD); repeatable."),
]
IncludeOpt = Annotated[
    list[str] | None,
    typer.Option("--include-pair", help="Read only these pairs (YYYYMMDD_YYYYMMDD); repeatable."),
]
FormatOpt = Annotated[
    str | None,
    typer.Option(help="Product format: auto, licsar, hyp3, aria, isce or geotiff (default auto)."),
]
PolygonOpt = Annotated[
    str | None, typer.Option(help="Crop to a GeoJSON polygon (file or text; any CRS).")
]
StartOpt = Annotated[str | None, typer.Option(help="Only pairs from this date (YYYY-MM-DD).")]
EndOpt = Annotated[str | None, typer.Option(help="Only pairs up to this date (YYYY-MM-DD).")]
EndpointOpt = Annotated[
    str | None,
    typer.Option(help="S3-compatible endpoint URL (default: AWS_ENDPOINT_URL or AWS itself)."),
]
AnonymousOpt = Annotated[
    bool | None, typer.Option("--anonymous", help="Read object storage without credentials.")
]
MaxSpanOpt = Annotated[
    int | None, typer.Option("--max-span", help="Only pairs spanning at most this many days.")
]


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _ingest_overrides(**options: Any) -> dict[str, Any]:
    """The ingest options given on the command line (None and empty lists: not given)."""
    return {key: value for key, value in options.items() if value not in (None, [])}


@app.command()
def simulate(
    out: Annotated[Path, typer.Argument(help="Folder to write the LiCSAR-layout scene into.")],
    preset: Annotated[str, typer.Option(help="Scene size: small, medium or large.")] = "small",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same scene).")] = 0,
    noise_free: Annotated[
        bool, typer.Option("--noise-free", help="Deformation only, no nuisances.")
    ] = False,
    unwrap_errors: Annotated[
        float, typer.Option(help="Fraction of pairs with a ±2π unwrapping-error patch.")
    ] = 0.0,
    format: Annotated[
        str, typer.Option(help="Product layout: licsar, hyp3, aria, isce or geotiff.")
    ] = "licsar",
    quiet: QuietOpt = False,
) -> None:
    """Simulate a Sentinel-1 scene with known truth, written in a product layout."""
    _setup_logging(quiet)
    from mtinsar.simulate import WRITERS, SceneConfig, simulate_scene, write_truth

    if preset not in ("small", "medium", "large"):
        raise typer.BadParameter("preset must be small, medium or large", param_hint="--preset")
    if format not in WRITERS:
        raise typer.BadParameter(
            f"format must be one of {', '.join(WRITERS)}", param_hint="--format"
        )
    cfg = SceneConfig.preset(preset, seed=seed, unwrap_errors=unwrap_errors)
    if noise_free:
        cfg = SceneConfig.noise_free(**cfg.model_dump(exclude=_NUISANCES))
    scene = simulate_scene(cfg)
    WRITERS[format](scene, out, progress=not quiet)
    if not (out / "truth.zarr").exists():
        write_truth(scene.truth, out / "truth.zarr")
    typer.echo(f"scene written to {out} (truth in {out / 'truth.zarr'})")


_NUISANCES = {
    "turbulence",
    "stratified",
    "dem_error",
    "decorrelation",
    "water",
    "unwrap_errors",
}


@app.command()
def ingest(
    products: Annotated[
        str,
        typer.Argument(
            help="Product folder (local, s3:// or https://): LiCSAR frame or GEOC folder, HyP3 "
            "products, ARIA GUNW files, ISCE2 topsStack, or per-pair GeoTIFFs."
        ),
    ],
    store: Annotated[str, typer.Argument(help="Zarr stack store to write (local or s3://).")],
    config: ConfigOpt = None,
    endpoint_url: EndpointOpt = None,
    anonymous: AnonymousOpt = None,
    format: FormatOpt = None,
    bbox: BboxOpt = None,
    polygon: PolygonOpt = None,
    start_date: StartOpt = None,
    end_date: EndOpt = None,
    max_span: MaxSpanOpt = None,
    include_pair: IncludeOpt = None,
    exclude_pair: ExcludeOpt = None,
    multilook: MultilookOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Read interferogram products into a Zarr stack store."""
    _setup_logging(quiet)
    from mtinsar import stack
    from mtinsar.config import load_config
    from mtinsar.io.products import read_products
    from mtinsar.sources import remote
    from mtinsar.workflows.execution import executor

    run_cfg = load_config(
        config,
        ingest=_ingest_overrides(
            format=format,
            bbox=bbox,
            polygon=polygon,
            start_date=start_date,
            end_date=end_date,
            max_temporal_baseline_days=max_span,
            include_pairs=include_pair,
            exclude_pairs=exclude_pair,
            multilook=multilook,
        ),
        storage={"endpoint_url": endpoint_url, "anonymous": anonymous},
    )
    remote.configure(run_cfg.storage)
    cfg = run_cfg.ingest
    with executor(run_cfg.execution):
        ds = read_products(products, cfg, progress=not quiet)
        stack.save(ds, store, chunk_size=cfg.chunk_size, progress=not quiet)
    typer.echo(
        f"stack of {ds.sizes['pair']} pairs, {ds.sizes['y']}x{ds.sizes['x']} px written to {store}"
    )


@app.command()
def run(
    source: Annotated[
        str, typer.Argument(help="Stack store (from `ingest`) or product folder; local or s3://.")
    ],
    out: Annotated[Path, typer.Argument(help="Result folder (replaced if it holds a result).")],
    config: ConfigOpt = None,
    endpoint_url: EndpointOpt = None,
    anonymous: AnonymousOpt = None,
    format: FormatOpt = None,
    bbox: BboxOpt = None,
    polygon: PolygonOpt = None,
    start_date: StartOpt = None,
    end_date: EndOpt = None,
    max_span: MaxSpanOpt = None,
    include_pair: IncludeOpt = None,
    exclude_pair: ExcludeOpt = None,
    multilook: MultilookOpt = None,
    ref_lon: Annotated[float | None, typer.Option(help="Reference longitude (degrees).")] = None,
    ref_lat: Annotated[float | None, typer.Option(help="Reference latitude (degrees).")] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Dask scheduler: threads (default), processes, synchronous, or a "
            "dask.distributed address tcp://host:port."
        ),
    ] = None,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Ignore the checkpoints of an interrupted run into OUT and start over "
            "(by default a run resumes after the stages and regions already done).",
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """SBAS time series and velocity from a stack or product folder, in one command.

    Each stage checkpoints to .OUT.work/ beside OUT: run the same command again after a
    crash or kill and it resumes where it stopped.
    """
    _setup_logging(quiet)
    from mtinsar.config import load_config

    cfg = load_config(
        config,
        ingest=_ingest_overrides(
            format=format,
            bbox=bbox,
            polygon=polygon,
            start_date=start_date,
            end_date=end_date,
            max_temporal_baseline_days=max_span,
            include_pairs=include_pair,
            exclude_pairs=exclude_pair,
            multilook=multilook,
        ),
        reference={"lon": ref_lon, "lat": ref_lat},
        execution={"scheduler": scheduler},
        storage={"endpoint_url": endpoint_url, "anonymous": anonymous},
    )
    from mtinsar.workflows.jobs import run_to_folder

    summary = run_to_folder(source, out, cfg, progress=not quiet, fresh=fresh)
    _print_summary(summary, out)


def _print_summary(summary: dict, out: Path) -> None:
    ref = summary["reference"]
    vel = summary["velocity_mm_per_yr"]
    typer.echo(
        f"{summary['n_pairs']} pairs, {summary['n_dates']} dates "
        f"({summary['first_date']} .. {summary['last_date']})\n"
        f"reference ({ref['method']}): lon {ref['lon']:.5f}, lat {ref['lat']:.5f}\n"
        f"pixels: {summary['n_pixels_reliable']} reliable of {summary['n_pixels_estimated']} "
        f"estimated, {summary['n_pixels_disconnected']} disconnected (masked), "
        f"{summary['n_pixels_no_data']} without data"
    )
    if vel["median"] is not None:
        typer.echo(
            f"velocity [mm/yr]: 1st pct {vel['p01']:.1f}, median {vel['median']:.1f}, "
            f"99th pct {vel['p99']:.1f}"
        )
    typer.echo(f"results in {out}/ (report.html, velocity.tif, figures/, timeseries.zarr)")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the scene and the results.")] = Path(
        "demo_output"
    ),
    preset: Annotated[str, typer.Option(help="Scene size: small or medium.")] = "small",
    seed: Annotated[int, typer.Option(help="Random seed of the scene.")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Simulate a scene, run the SBAS job on it, and score the result against the truth."""
    _setup_logging(quiet)
    from mtinsar.config import RunConfig
    from mtinsar.simulate import SceneConfig, load_truth, simulate_scene, write_licsar
    from mtinsar.simulate.score import score_result
    from mtinsar.workflows.jobs import run_to_folder

    scene_dir, results = out / "scene", out / "results"
    cfg = SceneConfig.preset(preset, seed=seed)
    if not (scene_dir / "truth.zarr").exists():
        write_licsar(simulate_scene(cfg), scene_dir, progress=not quiet)
    summary = run_to_folder(scene_dir, results, RunConfig(), progress=not quiet)
    _print_summary(summary, results)
    import xarray as xr

    score = score_result(xr.open_zarr(results / "timeseries.zarr"), load_truth(scene_dir))
    typer.echo(
        f"against the simulator's truth: velocity RMSE {score['velocity_rmse'] * 1000:.2f} mm/yr "
        f"over {score['coverage'] * 100:.1f} % of the coherent area"
    )
    typer.echo(f"scene: {scene_dir}/  results: {results}/  figures: {results / 'figures'}/")


FullWhenDueOpt = Annotated[
    bool,
    typer.Option(
        "--full-when-due/--no-full-when-due",
        help="When the re-run policy says so (nrt.full_rerun_every, nrt.residual_growth_factor),"
        " re-invert the whole history from all products with the run's own config, as a new "
        "version.",
    ),
]


@app.command()
def update(
    results: Annotated[Path, typer.Argument(help="Result folder of `mtinsar run` to update.")],
    products: Annotated[
        str, typer.Argument(help="Product folder holding the new pairs (old ones are ignored).")
    ],
    config: ConfigOpt = None,
    endpoint_url: EndpointOpt = None,
    anonymous: AnonymousOpt = None,
    full_when_due: FullWhenDueOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Add new acquisitions to a result without re-inverting its history; writes a new version."""
    _setup_logging(quiet)
    from mtinsar.config import load_config

    cfg = load_config(config, storage={"endpoint_url": endpoint_url, "anonymous": anonymous})
    _update(results, products, cfg, quiet, full_when_due)


@app.command()
def watch(
    results: Annotated[
        Path, typer.Argument(help="Result folder of `mtinsar run` to keep current.")
    ],
    products: Annotated[
        str | None,
        typer.Argument(help="Product folder (local or s3://) where new pairs arrive (or --stac)."),
    ] = None,
    stac: Annotated[
        str | None,
        typer.Option(help="Poll this STAC API URL or static catalog.json instead of a folder."),
    ] = None,
    bbox: Annotated[
        tuple[float, float, float, float] | None,
        typer.Option(
            help="With --stac: LON_MIN LAT_MIN LON_MAX LAT_MAX (degrees).", show_default=False
        ),
    ] = None,
    collection: Annotated[
        list[str] | None, typer.Option(help="With --stac: collection to search; repeatable.")
    ] = None,
    track: Annotated[
        int | None, typer.Option(help="With --stac: relative orbit (sat:relative_orbit).")
    ] = None,
    asset: Annotated[
        str | None, typer.Option(help="With --stac: asset key of the product.")
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between two looks.")] = 600.0,
    once: Annotated[bool, typer.Option("--once", help="Look once, then stop.")] = False,
    full_when_due: FullWhenDueOpt = True,
    config: ConfigOpt = None,
    endpoint_url: EndpointOpt = None,
    anonymous: AnonymousOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Poll a product folder or a STAC search and run `update` whenever new acquisitions appear.

    With --stac, each look asks for the items whose time ends after the result's last date
    and reads their products in place. Idempotent (pairs not newer than the result's last
    date are ignored) and restartable: its only state is the result folder's versions. A bad
    product is logged and retried at the next look; Ctrl-C stops it. When a full re-run is
    due it is done, as a new version (--no-full-when-due: only say so).
    """
    import time

    _setup_logging(quiet)
    from mtinsar.config import load_config

    if (products is None) == (stac is None):
        raise typer.BadParameter("give a PRODUCTS folder or --stac URL (one of them)")
    source: Any = products
    if stac is not None:
        from mtinsar.sources.stac import Query

        if bbox is None:
            raise typer.BadParameter("--stac needs --bbox", param_hint="--bbox")
        source = Query(stac, bbox, track, tuple(collection) if collection else None, asset)
    cfg = load_config(config, storage={"endpoint_url": endpoint_url, "anonymous": anonymous})
    from mtinsar.workflows.jobs import warm_up

    warm_up()
    while True:
        try:
            _update(results, source, cfg, quiet, full_when_due)
        except (MtinsarError, OSError) as exc:
            if once:
                raise
            logging.getLogger("mtinsar.watch").error("update failed, retrying later: %s", exc)
        if once:
            return
        time.sleep(interval)


def _update(results: Path, products: Any, cfg: Any, quiet: bool, full_when_due: bool) -> None:
    from mtinsar.workflows.jobs import update_folder

    lines = update_folder(results, products, cfg, progress=not quiet, full_when_due=full_when_due)
    for line in lines:
        typer.echo(line)


@app.command()
def search(
    catalog: Annotated[
        str, typer.Argument(help="STAC API URL, or a static catalog's catalog.json (path/URL).")
    ],
    bbox: Annotated[
        tuple[float, float, float, float],
        typer.Option(help="LON_MIN LAT_MIN LON_MAX LAT_MAX (degrees).", show_default=False),
    ],
    start: Annotated[str, typer.Option(help="First date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last date, YYYY-MM-DD.")],
    track: Annotated[int | None, typer.Option(help="Relative orbit (sat:relative_orbit).")] = None,
    collection: Annotated[
        list[str] | None, typer.Option(help="STAC collection to search; repeatable.")
    ] = None,
    asset: Annotated[str | None, typer.Option(help="Asset key whose href to print.")] = None,
) -> None:
    """Find products in a STAC catalog or API; prints one href per line."""
    from mtinsar.sources.stac import search as stac_search

    for href in stac_search(catalog, bbox, start, end, track, collection, asset):
        typer.echo(href)


@app.command()
def infra(
    results: Annotated[
        Path, typer.Argument(help="Result folder of `mtinsar run` (or its timeseries.zarr).")
    ],
    lines: Annotated[
        Path, typer.Argument(help="Lines/polygons: GeoJSON, GeoPackage or Shapefile, any CRS.")
    ],
    out: Annotated[Path, typer.Argument(help="Folder for segments, CSV, report, summary.")],
    segment_length: Annotated[
        float | None, typer.Option(help="Segment length in metres (default 100).")
    ] = None,
    buffer: Annotated[
        float | None, typer.Option(help="Buffer half-width in metres (default 20).")
    ] = None,
    lines_crs: Annotated[
        str | None, typer.Option(help="CRS of a lines file that declares none.")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Stability of roads, railways and structures: per-segment metrics and risk classes."""
    _setup_logging(quiet)
    from mtinsar.infra import infra_config, run_infra

    cfg = infra_config(segment_length=segment_length, buffer=buffer, lines_crs=lines_crs)
    summary = run_infra(results, lines, out, cfg)
    typer.echo(
        f"{summary['n_segments']} segments, {len(summary['segments_at_risk'])} at risk "
        f"({summary['risk_counts']}); outputs in {out}/ (report.html, segments.gpkg)"
    )


@app.command()
def decompose(
    asc: Annotated[Path, typer.Argument(help="Ascending result folder (or its .zarr).")],
    desc: Annotated[Path, typer.Argument(help="Descending result folder (or its .zarr).")],
    out: Annotated[Path, typer.Argument(help="Folder for the vertical/east-west result.")],
    ref_lon: Annotated[
        float | None, typer.Option(help="Common reference longitude (degrees).")
    ] = None,
    ref_lat: Annotated[
        float | None, typer.Option(help="Common reference latitude (degrees).")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Vertical and east-west motion from an ascending and a descending result."""
    _setup_logging(quiet)
    from mtinsar.analysis.decompose import decompose as solve
    from mtinsar.results import versions
    from mtinsar.results import writer as output

    if (ref_lon is None) != (ref_lat is None):
        raise typer.BadParameter("give both --ref-lon and --ref-lat, or neither")
    reference = (ref_lon, ref_lat) if ref_lon is not None else None
    ds = solve(versions.open_result(asc), versions.open_result(desc), reference=reference)
    with output.result_folder(out) as tmp:
        output.write_store(ds, tmp, "decomposition.zarr")
        for name in ("velocity_up", "velocity_east", "velocity_up_std", "velocity_east_std"):
            output.write_cog(ds[name], tmp / f"{name}.tif")
        summary = {"software": _software(), "asc": str(asc), "desc": str(desc)}
        (tmp / output.SUMMARY).write_text(json.dumps(summary, indent=2))
    typer.echo(f"vertical and east-west velocity in {out}/ (velocity_up.tif, velocity_east.tif)")


@app.command()
def gnss(
    results: Annotated[Path, typer.Argument(help="Result folder of `mtinsar run`.")],
    stations: Annotated[
        list[Path], typer.Argument(help="Station files: UNR .tenv3, or CSV date,east,north,up.")
    ],
    out: Annotated[Path, typer.Argument(help="Folder for the tied result and the report.")],
    offset: Annotated[
        str, typer.Option(help="Reference motion removed: per_date, velocity or none.")
    ] = "per_date",
    window_days: Annotated[
        float, typer.Option(help="GNSS median window around each date, +- days.")
    ] = 3.0,
    quiet: QuietOpt = False,
) -> None:
    """Tie a result to GNSS stations and report their agreement."""
    _setup_logging(quiet)
    from mtinsar.analysis.gnss import read_stations, tie_to_gnss, write_report
    from mtinsar.results import versions
    from mtinsar.results import writer as output

    if offset not in ("per_date", "velocity", "none"):
        raise typer.BadParameter("choose per_date, velocity or none", param_hint="--offset")
    series = read_stations(stations)
    tied, report = tie_to_gnss(
        versions.open_result(results), series, offset=offset, half_window_days=window_days
    )
    with output.result_folder(out) as tmp:
        output.write_store(tied, tmp)
        write_report(report, tmp, series)
        summary = {"software": _software(), "stations": [str(p) for p in stations]}
        (tmp / output.SUMMARY).write_text(json.dumps(summary, indent=2))
    typer.echo(f"result tied to {len(series)} stations in {out}/ (gnss_agreement.csv, plots)")


def _software() -> str:
    from mtinsar import __version__

    return f"mtinsar {__version__}"


DataOpt = Annotated[
    Path,
    typer.Option("--data", help="Service folder: job folders and the default SQLite database."),
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database URL (default: SQLite in --data), e.g. postgresql+psycopg://u@h/db."
    ),
]
users_app = typer.Typer(help="Service users and their API keys.", no_args_is_help=True)
app.add_typer(users_app, name="users")


def _service_config(data: Path, db: str | None, **extra: Any) -> Any:
    from mtinsar.service.settings import ServiceConfig

    return ServiceConfig(data_dir=data, database_url=db, **extra)


@app.command()
def serve(
    data: DataOpt = Path("mtinsar_service"),
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    source_root: Annotated[
        list[Path] | None,
        typer.Option(help="Folder jobs may read products from; repeatable (default DATA/inbox)."),
    ] = None,
) -> None:
    """The HTTP service: OGC API - Processes, STAC results and the web map at /."""
    import uvicorn

    from mtinsar.service.app import create_app

    roots = [str(p) for p in source_root or []]
    cfg = _service_config(data, db, source_roots=roots)
    uvicorn.run(create_app(cfg), host=host, port=port, log_level="info")


@app.command()
def worker(
    data: DataOpt = Path("mtinsar_service"),
    db: DbOpt = None,
    max_jobs: Annotated[int | None, typer.Option(help="Stop after this many jobs.")] = None,
    lease: Annotated[
        float, typer.Option(help="Seconds without a heartbeat before a job is re-queued.")
    ] = 60.0,
    source_root: Annotated[
        list[Path] | None,
        typer.Option(help="Folder jobs may read products from; repeatable (default DATA/inbox)."),
    ] = None,
) -> None:
    """Run queued service jobs (as many workers as you like, on any machine sharing --db)."""
    import signal
    import threading

    from mtinsar.service.worker import work

    _setup_logging(False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # finish cleanly: the job goes back to the queue
        signal.signal(sig, lambda *_: stop.set())
    roots = [str(p) for p in source_root or []]
    cfg = _service_config(data, db, lease_seconds=lease, source_roots=roots)
    done = work(cfg, stop=stop, max_jobs=max_jobs)
    typer.echo(f"{done} job(s) run")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="admin, scientist or viewer.")] = "scientist",
    quota: Annotated[
        float | None, typer.Option(help="CPU-seconds the user may spend (default unlimited).")
    ] = None,
    data: DataOpt = Path("mtinsar_service"),
    db: DbOpt = None,
) -> None:
    """Create a user; prints their API key (shown only this once)."""
    from mtinsar.service import auth
    from mtinsar.service import db as tables

    engine = tables.connect(_service_config(data, db).url)
    with tables.sessions(engine).begin() as session:
        _, key = auth.create_user(session, name, role, quota)
    typer.echo(key)


@users_app.command("list")
def users_list(data: DataOpt = Path("mtinsar_service"), db: DbOpt = None) -> None:
    """List users, roles and CPU-seconds used / quota."""
    from sqlalchemy import select

    from mtinsar.service import db as tables

    engine = tables.connect(_service_config(data, db).url)
    with tables.sessions(engine)() as session:
        for user in session.scalars(select(tables.User).order_by(tables.User.name)):
            quota = "unlimited" if user.quota_cpu_seconds is None else f"{user.quota_cpu_seconds:g}"
            typer.echo(f"{user.name}\t{user.role}\t{user.cpu_seconds_used:.1f} / {quota} CPU-s")


@users_app.command("revoke")
def users_revoke(
    name: Annotated[str, typer.Argument(help="User whose keys to revoke.")],
    data: DataOpt = Path("mtinsar_service"),
    db: DbOpt = None,
) -> None:
    """Revoke every API key of a user."""
    from sqlalchemy import select

    from mtinsar.service import auth
    from mtinsar.service import db as tables

    engine = tables.connect(_service_config(data, db).url)
    with tables.sessions(engine).begin() as session:
        user = session.scalar(select(tables.User).where(tables.User.name == name))
        if user is None:
            raise MtinsarError(f"no user {name!r}; see `mtinsar users list`")
        typer.echo(f"{auth.revoke_keys(session, user)} key(s) revoked")


@app.command("versions")
def list_versions(
    results: Annotated[Path, typer.Argument(help="Result folder of `mtinsar run`.")],
) -> None:
    """List the versions of a result folder; pass a version's store to any command to read it."""
    from mtinsar.results import versions

    now = versions.current(results)
    for number in versions.versions(results):
        store = versions.store_path(results, number)
        ds = versions.open_version(results, number)
        kind = "update" if (store.parent / "update.json").is_file() else "full run"
        typer.echo(
            f"{'*' if number == now else ' '} v{number}  {kind:8}  {ds.sizes['time']} dates "
            f"to {str(ds['time'].values[-1])[:10]}  {store}"
        )


@app.command("config")
def show_config() -> None:
    """Print the default run configuration as commented TOML."""
    from mtinsar.config import default_toml

    typer.echo(default_toml())


def _version(value: bool) -> None:
    if value:
        from mtinsar import __version__

        typer.echo(f"mtinsar {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """Multi-Temporal InSAR: interferogram stacks in, LOS time series and velocity out."""


#: Thread pools of the BLAS libraries numpy and scipy may load (OpenBLAS, MKL, OpenMP).
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_blas() -> None:
    """One thread per BLAS call, unless the environment already says how many.

    Dask runs one task per core already; a BLAS thread pool inside every task oversubscribes
    the cores, and OpenBLAS's spinning threads then slow the inversion's many small
    factorisations (a pseudo-inverse per valid-pair pattern) by 10-100x on a busy machine:
    the medium scene's inversion stage took 64 s instead of 33 s on 2 shared cores.
    dask.distributed sets the same for its workers (``distributed.nanny.pre-spawn-environ``).
    It must run before numpy loads its BLAS, so it does nothing once numpy is imported.
    """
    if "numpy" in sys.modules:
        return
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


def main() -> None:
    """Console entry point: run the app, turning `MtinsarError` into exit status 2."""
    single_threaded_blas()  # here, not at import: a library import must not change threads
    try:
        app()
    except MtinsarError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
