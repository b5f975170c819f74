"""`snapsource bench`: the synthetic million-offer catalog, the catalog API and the upstream,
measured (docs/performance.md, docs/catalog.md, docs/upstream.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from snapsource.cli.common import err

CATALOG_PANEL = "bench catalog"
UPSTREAM_PANEL = "bench upstream"
SHARED_PANEL = "bench catalog and upstream"


def bench(
    suite: Annotated[
        str,
        typer.Argument(
            help="search: the synthetic catalog's searches; catalog: the catalog API (docs/catalog.md); upstream: "
            "fallback mode in front of the TMAPI stand-in (docs/upstream.md)."
        ),
    ] = "search",
    n: Annotated[int, typer.Option("--n", min=1000, help="Offers in the synthetic catalog.")] = 1_000_000,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Where to build it (replaced); default build/bench-data, for catalog build/bench-catalog, for upstream "
            "build/bench-upstream.",
        ),
    ] = None,
    queries: Annotated[int, typer.Option(min=10, help="Queries per case.")] = 200,
    output: Annotated[
        Path | None,
        typer.Option(
            help="Write the results as JSON here; default build/bench.json, for catalog build/bench-catalog.json, for "
            "upstream build/bench-upstream.json."
        ),
    ] = None,
    http_seconds: Annotated[float, typer.Option(help="Seconds of HTTP load against serve --workers 2; 0 skips it.")] = 30,
    concurrency: Annotated[int, typer.Option(min=1, help="Concurrent HTTP clients.")] = 16,
    reuse: Annotated[bool, typer.Option(help="Measure the catalog a previous run built in --data (same --n) again.")] = False,
    rescore: Annotated[bool, typer.Option(help="Re-score on float32 rows (the index_rescore setting).")] = True,
    profile: Annotated[
        str, typer.Option(help="default, or scaleout: also copy it into --catalog and --vectors and compare.")
    ] = "default",
    catalog: Annotated[str, typer.Option(help="scaleout: an empty PostgreSQL database (postgresql://...).")] = "",
    vectors: Annotated[
        str, typer.Option(help="scaleout: a Milvus collection that does not exist yet (milvus://host:port/name).")
    ] = "",
    offers: Annotated[
        int,
        typer.Option(
            min=1, help="Offers sent through the API and `ingest` (a quarter with 2 photos).", rich_help_panel=CATALOG_PANEL
        ),
    ] = 2000,
    batch: Annotated[int, typer.Option(min=1, help="Offers a POST /catalog/offers.", rich_help_panel=CATALOG_PANEL)] = 500,
    repeats: Annotated[
        int, typer.Option(min=1, help="API and ingest runs, each on a fresh data dir.", rich_help_panel=CATALOG_PANEL)
    ] = 3,
    freshness: Annotated[
        int, typer.Option(min=1, help="Single-offer upserts timed until every worker finds them.", rich_help_panel=CATALOG_PANEL)
    ] = 50,
    job_offers: Annotated[int, typer.Option(min=1, help="Offers of the import job.", rich_help_panel=CATALOG_PANEL)] = 100_000,
    job_images: Annotated[
        int, typer.Option(min=0, help="Distinct photos of the job's offers; 0: one per 5 offers.", rich_help_panel=CATALOG_PANEL)
    ] = 0,
    searches: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="catalog: searches while idle, before and after the job (200); upstream: searches replayed (1000).",
            rich_help_panel=SHARED_PANEL,
        ),
    ] = None,
    parts: Annotated[
        str, typer.Option(help="Comma-separated: throughput, freshness, job.", rich_help_panel=CATALOG_PANEL)
    ] = "throughput,freshness,job",
    luma: Annotated[Path, typer.Option(help="The luma catalog (photos and offers).", rich_help_panel=SHARED_PANEL)] = Path(
        "../shared/catalogs/luma"
    ),
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="`serve --workers` of the server measured (catalog: 2, upstream: 1).", rich_help_panel=SHARED_PANEL
        ),
    ] = None,
    photos: Annotated[
        int,
        typer.Option(
            min=2,
            help="Query photos: half distinct luma photos (main photos and other views), half a near-duplicate of each.",
            rich_help_panel=UPSTREAM_PANEL,
        ),
    ] = 300,
    latency: Annotated[
        float, typer.Option(min=0, help="Seconds the TMAPI stand-in takes to answer a search.", rich_help_panel=UPSTREAM_PANEL)
    ] = 2.5,
    clients: Annotated[
        int, typer.Option(min=1, help="Client threads sending the searches in draw order.", rich_help_panel=UPSTREAM_PANEL)
    ] = 4,
    min_similarity: Annotated[
        float,
        typer.Option(min=0, help="The server's upstream_min_similarity (fallback's rule).", rich_help_panel=UPSTREAM_PANEL),
    ] = 0.7,
    price_per_call: Annotated[
        float,
        typer.Option(min=0, help="The server's upstream_price_per_call (the estimated saving).", rich_help_panel=UPSTREAM_PANEL),
    ] = 0.01,
    ablation: Annotated[
        bool,
        typer.Option(
            help="Instead of the replay: the replay for upstream_min_similarity 0.5, 0.6, 0.7 and `same` matches only, "
            "each on a fresh data dir (the JSON keeps the replay of an earlier run).",
            rich_help_panel=UPSTREAM_PANEL,
        ),
    ] = False,
    ablation_latency: Annotated[
        float, typer.Option(min=0, help="The stand-in's latency in the ablation's runs.", rich_help_panel=UPSTREAM_PANEL)
    ] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the photos and the draws.", rich_help_panel=UPSTREAM_PANEL)] = 0,
) -> None:
    """Build a synthetic catalog of N offers and time filtered searches at every selectivity
    (docs/performance.md): latency p50/p99, recall@100, build time, memory, disk; then the
    same data dir served over HTTP under a bounded loopback load. With `--profile scaleout`, the
    same catalog in PostgreSQL + Milvus, measured side by side (docs/scale-out.md).

    `bench catalog`: the catalog API against `serve --workers 2` on fresh data dirs: batches
    against `snapsource ingest` of the same offers, how soon every worker finds an upserted
    offer, and an import job with searches meanwhile (docs/catalog.md, "Measured").

    `bench upstream`: `serve` in fallback mode on an empty catalog in front of the TMAPI stand-in:
    a replay of searches drawn from query photos (repeats and near-duplicates), answered locally,
    upstream or from stored upstream pages; calls made and saved, latency and the right product
    by source, and how soon a product is found locally after it first arrives from the upstream
    (docs/upstream.md). `--ablation`: the replay for each upstream_min_similarity."""
    import shutil

    if suite == "upstream":
        from rich.console import Console as Out

        from snapsource.tools import bench_upstream

        options_up = bench_upstream.Options(
            luma=luma,
            work=data or Path("build/bench-upstream"),
            output=output or Path("build/bench-upstream.json"),
            searches=searches or 1000,
            photos=photos,
            latency=latency,
            clients=clients,
            workers=workers or 1,
            min_similarity=min_similarity,
            price_per_call=price_per_call,
            ablation=ablation,
            ablation_latency=ablation_latency,
            seed=seed,
        )
        report = bench_upstream.run(options_up, say=err.print)
        shown = Out()
        for table in bench_upstream.tables({k: v for k, v in report.items() if k == ("ablation" if ablation else "replay")}):
            shown.print(table)
        err.print(f"written: {options_up.output}")
        return

    if suite == "catalog":
        from snapsource.tools import bench_catalog

        chosen = tuple(p.strip() for p in parts.split(",") if p.strip())
        if not chosen or set(chosen) - set(bench_catalog.PARTS):
            raise typer.BadParameter(f"expected some of {', '.join(bench_catalog.PARTS)}", param_hint="--parts")
        options = bench_catalog.Options(
            luma=luma,
            work=data or Path("build/bench-catalog"),
            output=output or Path("build/bench-catalog.json"),
            offers=offers,
            batch=batch,
            repeats=repeats,
            freshness=freshness,
            job_offers=job_offers,
            job_images=job_images,
            searches=searches or 200,
            parts=chosen,
            workers=workers or 2,
        )
        report = bench_catalog.run(options, say=err.print)
        typer.echo(bench_catalog.table(report))
        err.print(f"written: {options.output}")
        return
    if suite != "search":
        raise typer.BadParameter("expected search, catalog or upstream", param_hint="SUITE")
    data = data or Path("build/bench-data")
    output = output or Path("build/bench.json")

    from snapsource.tools import bench as benchmark

    if profile not in ("default", "scaleout"):
        raise typer.BadParameter("expected default or scaleout", param_hint="--profile")
    if profile == "scaleout" and not (catalog.startswith("postgres") and vectors.startswith("milvus://")):
        raise typer.BadParameter("give --catalog postgresql://... and --vectors milvus://...", param_hint="--profile scaleout")

    if reuse and benchmark.built(data, n):
        err.print(f"measuring the {n:,} offers built in {data} before")
    else:
        shutil.rmtree(data, ignore_errors=True)
        err.print(f"building {n:,} offers in {data}")
    report = benchmark.run(data, n, queries, None if profile == "scaleout" else output, http_seconds, concurrency, rescore)
    typer.echo(benchmark.table(report))
    if profile == "scaleout":
        from snapsource.store.postgres import redact
        from snapsource.tools import bench_scaleout

        err.print(f"copying it into {redact(catalog)} and {vectors}")
        scaleout: dict[str, Any] = {"load": bench_scaleout.load(data, catalog, vectors)}
        scaleout |= bench_scaleout.measure(data, catalog, vectors, queries)
        if http_seconds > 0:
            scaleout["http"] = benchmark.http(
                data,
                http_seconds,
                concurrency,
                log=data / "serve-scaleout.log",
                settings={"catalog": catalog, "vectors": vectors},
            )
        report["scaleout"] = scaleout
        typer.echo(bench_scaleout.side_by_side(report, scaleout))
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=1))
    err.print(f"written: {output}")
