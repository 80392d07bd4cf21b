"""`faceproc` command line: thin wrappers over the library."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from .config import Config
from .agegender.architecture import VARIANTS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# Exit codes: 0 done; 1 an error or a refusal (message says why); 2 some shards unfinished (rerun to finish);
# 64 a bad command line (click's default of 2 would read as "rerun"); 130 interrupted.
EXIT_USAGE = 64


class _Group(click.Group):
    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.UsageError as e:
            e.show()
            sys.exit(EXIT_USAGE)
        except click.ClickException as e:
            e.show()
            sys.exit(1)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_Group, context_settings={"max_content_width": 120})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Find every face in photo archives; record box, age and gender per face in Parquet."""
    _setup_logging(verbose)


def build_config(config: str | None, **overrides) -> Config:
    from .config import ConfigError

    try:
        return Config.load(config, {k: v for k, v in overrides.items() if v is not None})
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.argument("inputs", nargs=-1)
@click.option("--input", "more_inputs", multiple=True, help="An input (repeatable; the same as INPUTS).")
@click.option("-o", "--output", required=True, help="Output folder (faces/, images/, report), or s3://bucket/prefix.")
@click.option("--model", default=None, help="frozen | unfrozen | path to a .keras file.  [default: unfrozen]")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False), help="YAML config (configs/annotate.yaml).")
@click.option("--batch-size", type=int, default=None, help="Face crops per age/gender batch.")
@click.option("--limit", type=int, default=None, help="Process only the first N files (in discovery order).")
@click.option("--previews", type=int, default=None,
              help="Write N annotated JPEGs (the photos with most faces) to OUT/previews.  [default: 0]")
@click.option("--workers", type=int, default=None, help="Ray worker actors (default: one per CPU).")
@click.option("--engine", type=click.Choice(["ray", "local"]), default="ray", show_default=True,
              help="ray: local Ray (or RAY_ADDRESS cluster); local: in this process.")
@click.option("--shard-size", type=int, default=None, help="At most this many files per shard.  [default: 256]")
@click.option("--force", is_flag=True, help="Discard an earlier run in OUTPUT made with other settings.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON (for scripts and Ray jobs).")
@click.option("--random-init", is_flag=True, help="An untrained model: tests and benchmarks only.")
@click.option("--follow-external-symlinks", is_flag=True, default=None,
              help="Follow symlinks that lead outside the inputs (default: counted, not followed).")
def annotate(inputs, more_inputs, output, model, config, batch_size, limit, previews, workers, engine, shard_size, force,
             as_json, random_init, follow_external_symlinks) -> None:
    """Detect faces and estimate age and gender for every image under INPUTS (folders, files or s3:// prefixes).

    Model locations (for offline use): FACEPROC_INSIGHTFACE_ROOT (InsightFace pack root, default
    ~/.insightface, downloaded once), FACEPROC_DETECTOR_PACK, FACEPROC_DETECTOR_FILE (an SCRFD .onnx),
    FACEPROC_WEIGHTS_DIR (age/gender weights; default: shipped in the package). Exit status: 0 done,
    1 error or refusal, 2 some shards unfinished (rerun), 64 bad command line, 130 interrupted.
    """
    from .detectors.files import DetectorUnavailable
    from .engine import (ClusterUnreachable, DiskFull, Interrupted, OutputLocked, OutputNotWritable, RunConfigMismatch,
                         annotate as run)

    inputs = list(inputs) + list(more_inputs)
    if not inputs:
        raise click.UsageError("give at least one input (INPUTS or --input)")
    cfg = build_config(config, **{"model.variant": model, "model.batch_size": batch_size, "run.shard_size": shard_size,
                                  "run.previews": previews, "run.workers": workers,
                                  "model.random_init": random_init or None,
                                  "run.follow_external_symlinks": follow_external_symlinks or None})
    try:
        rep = run(inputs, output, cfg, engine=engine, force=force, limit=limit)
    except DiskFull as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(2)
    except Interrupted as e:
        click.echo(str(e), err=True)
        sys.exit(130)
    except (FileNotFoundError, OutputNotWritable, RunConfigMismatch, OutputLocked, ClusterUnreachable,
            DetectorUnavailable, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        import resource

        summary = {k: rep[k] for k in ("files", "faces", "failed_files", "status_counts", "throughput", "output")}
        summary["driver_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        click.echo(json.dumps(summary, indent=1, default=str))
    else:
        _print_summary(rep)
    if rep.get("failed_shards"):
        sys.exit(2)


def _print_summary(rep: dict) -> None:
    from .schema import READ_OK

    tp = rep["throughput"]
    bad = {k: v for k, v in sorted(rep["status_counts"].items()) if k not in READ_OK}
    counts = rep["status_counts"]
    click.echo(f"{rep['files']} files ({counts.get('ok', 0)} with faces, {counts.get('no_faces', 0)} without), "
               f"{rep['faces']} faces, {rep['failed_files']} files failed"
               + (f" ({', '.join(f'{k}={v}' for k, v in bad.items())})" if bad else ""))
    from .skipped import skipped_lines

    for line in skipped_lines(rep.get("skipped")):  # what under the inputs is not a row, never silently
        click.echo(f"not rows: {line}")
    if tp.get("last_run_seconds") is not None:
        click.echo(f"last run: {tp['last_run_files']} files in {tp['last_run_seconds']:.1f} s")
    from .storage import join

    click.echo(f"report: {join(rep['output'], 'report.html')}")


@main.command("export-openvino", short_help="Write a model's OpenVINO copy (workers then need no TensorFlow).")
@click.argument("models", nargs=-1, required=True)
def export_openvino_cmd(models) -> None:
    """Write each MODEL's OpenVINO copy beside it (MODEL.openvino.xml/.bin/.json): annotate workers then load
    it without TensorFlow (model.runtime auto). MODEL: frozen, unfrozen or a .keras path."""
    from .agegender.files import export_openvino
    from .agegender.spec import ModelSpec
    from .config import ModelConfig

    for m in models:
        xml = export_openvino(ModelSpec.resolve(ModelConfig(variant=m, runtime="keras")))
        click.echo(f"{xml} ({xml.with_suffix('.bin').stat().st_size / 1e6:.1f} MB)")


@main.command("make-sample")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--utkface", type=click.Path(exists=True, file_okay=False), default=None,
              help="UTKFace folder: adds multi-face mosaics (up to 12 MP) built from its crops.")
@click.option("-n", "n_mosaics", type=int, default=20, show_default=True)
def make_sample(folder, utkface, n_mosaics) -> None:
    """Write a small sample folder (package photos, UTKFace mosaics, broken files) to try annotate on."""
    from .synth import sample_folder

    files = sample_folder(folder, utkface, n_mosaics)
    click.echo(f"{len(files)} files in {folder}")


@main.command()
@click.argument("output")
@click.option("--previews", type=int, default=0, help="Also (re)draw N preview JPEGs.")
def report(output, previews) -> None:
    """Rebuild report.json / report.html (and previews) from OUTPUT's Parquet files (a folder or s3:// prefix)."""
    from .report import build_report
    from .storage import Store

    store = Store(output)
    if not store.remote and not Path(output).is_dir():
        raise click.ClickException(f"{output} does not exist")
    if not store.exists("manifest.json") and not store.list("images", ".parquet"):
        raise click.ClickException(f"{output} is not a faceproc output folder (no manifest.json, no images/)")
    output = store

    if previews:  # first, so the report links and shows them
        from .preview import write_previews

        write_previews(output, previews)
    rep = build_report(output)
    _print_summary(rep)


@main.command()
@click.option("--variant", type=click.Choice(VARIANTS), default=None, help="Age/gender variant to train [default: the config's].")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True), help="UTKFace folder (repeatable).")
@click.option("--ffhq-labels", type=click.Path(exists=True, dir_okay=False), help="FFHQ-Aging ffhq_aging_labels.csv.")
@click.option("--ffhq-images", type=click.Path(exists=True, file_okay=False), help="FFHQ images folder.")
@click.option("-o", "--output", required=True, type=click.Path(), help="Run folder (model.keras, log.csv, checkpoints).")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False), help="configs/train_*.yaml")
@click.option("--cache", type=click.Path(), default=None, help="Crop cache parquet (shared between runs).")
@click.option("--epochs", type=int, default=None, help="Epochs (fine-tuning, or head training for frozen) [default: the config's].")
@click.option("--batch-size", type=int, default=None, help="Crops per training batch [default: the config's].")
@click.option("--backbone-weights", default=None, help="imagenet or a local MobileNetV2 no-top .h5.")
@click.option("--time-budget", type=float, default=None, help="Seconds for the fine-tuning epochs (caps --epochs).")
def train(variant, data, ffhq_labels, ffhq_images, output, config, cache, epochs, batch_size, backbone_weights,
          time_budget) -> None:
    """Train one age/gender variant through the crop cache (a packed cache alone needs no --data)."""
    from .train import TrainConfig, train as run

    cfg = TrainConfig.load(config, variant=variant, cache=cache, epochs=epochs, batch_size=batch_size,
                           backbone_weights=backbone_weights, time_budget_s=time_budget)
    datasets = [{"type": "utkface", "root": d} for d in data]
    if ffhq_labels:
        datasets.append({"type": "ffhq_aging", "labels": ffhq_labels, "images": ffhq_images})
    if datasets:
        cfg.datasets = datasets
    elif cache and Path(cache).exists() and not all(Path(d.get("root") or d["labels"]).exists() for d in cfg.datasets):
        # The config's data folders are absent here (a GPU machine given a packed cache): train from the cache alone.
        logging.getLogger(__name__).info("data folders of %s not found: training from %s alone", config, cache)
        cfg.datasets = []
    card = run(cfg, output)
    from .evaluate import format_table

    click.echo(format_table({card["variant"]: {"val": card["metrics"]["val"]}}))


@main.command("pack-cache")
@click.argument("cache", type=click.Path(exists=True, dir_okay=False))
@click.argument("dest", type=click.Path(dir_okay=False))
@click.option("--quality", type=int, default=80, show_default=True, help="WebP quality.")
@click.option("--policy", default=None, help="Cut the crops again under this crop policy (e.g. arcface5-s1.3-up0.15-128).")
@click.option("--fill", type=click.Choice(["none", "real"]), default="none", show_default=True,
              help="With --policy: what training crops show outside their source image.")
def pack_cache(cache, dest, quality, policy, fill) -> None:
    """Re-encode a crop cache as WebP with its split manifests: a training set for a machine without the images."""
    from .crop import parse_policy
    from .data.recut import pack_cache as run

    info = run(cache, dest, quality, policy=parse_policy(policy) if policy else None,
               fill=None if fill == "none" else fill)
    click.echo(f"{info['path']}: {info['rows']} crops, {info['bytes'] / 2**20:.1f} MiB")


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", "data", multiple=True, type=click.Path(exists=True), help="UTKFace folder (repeatable).")
@click.option("--cache", type=click.Path(), default=None, help="Crop cache parquet (default: from the first model's run).")
@click.option("--split", type=click.Choice(["val", "train"]), default="val", show_default=True)
@click.option("--flip/--no-flip", default=False, show_default=True, help="Average over the mirror image.")
@click.option("--json", "json_out", type=click.Path(), default=None, help="Write the results as JSON here.")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False), help="Training config (split seed).")
@click.option("--halves", is_flag=True, help="Selection and report halves: calibration fitted on the selection half, "
              "figures and whom the model fails (ethnicity, gender, age) on the report half.")
def evaluate(models, data, cache, split, flip, json_out, config, halves) -> None:
    """Print the results table (train loss, val loss, age MAE, gender accuracy, per band) for MODELS."""
    from .evaluate import evaluate_models, format_table, write_results
    from .train import TrainConfig, prepare_data

    cfg = TrainConfig.load(config, cache=cache)
    if data:
        cfg.datasets = [{"type": "utkface", "root": d} for d in data]
    if not cfg.datasets:
        raise click.ClickException("give --data (the dataset the split manifest refers to)")
    out = Path(models[0]).parent
    if halves:
        from .card_eval import evaluate_model_halves, format_halves, split_files

        cache_path, manifest = split_files(cfg) or (lambda p: (p["cache"], p["manifest"]))(prepare_data(cfg, out))
        res = {m: evaluate_model_halves(m, cache_path, manifest, cfg.seed) for m in models}
        click.echo(format_halves(res))
        path = Path(json_out or out / "evaluation-halves.json")
        path.write_text(json.dumps(res, indent=1))
        click.echo(f"results: {path}")
        return
    prepared = prepare_data(cfg, out)  # builds or reuses the cache and the split manifest
    results = evaluate_models(list(models), prepared["cache"], prepared["manifest"], split=split, flip=flip)
    click.echo(format_table(results))
    path = json_out or str(out / f"evaluation-{split}{'-flip' if flip else ''}.json")
    write_results(results, path)
    click.echo(f"results: {path}")


@main.command("evaluate-photos")
@click.argument("models", nargs=-1, required=True)
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="UTKFace folder: the validation split's faces are pasted into the photos.")
@click.option("--work", type=click.Path(file_okay=False), default="runs/photo_eval", show_default=True,
              help="Where the photos, the annotate outputs and the results go (photos are reused).")
@click.option("--photos", "n_photos", type=click.IntRange(1), default=150, show_default=True)
@click.option("--set", "photo_set", type=click.Choice(["standard", "hard"]), default="standard", show_default=True,
              help="standard: faces from 48 px, JPEG 90; hard: faces from 24 px, JPEG 25-60, another seed.")
@click.option("--seed", type=int, default=None, help="Photo seed [default: the set's].")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False), help="Annotate config (detector etc.).")
@click.option("--no-crops", is_flag=True, help="Skip the same faces as bare crops (no gap figure).")
@click.option("--json", "json_out", type=click.Path(), default=None, help="Results JSON [default: WORK/results.json].")
def evaluate_photos(models, data, work, n_photos, photo_set, seed, engine, config, no_crops, json_out) -> None:
    """Age/gender/detection on validation faces inside group photos, through `annotate`, for MODELS
    (frozen, unfrozen or .keras paths), next to the same faces as bare crops."""
    from .photo_eval import evaluate_photos as run, format_photo_table

    from .groups import format_groups

    res = run(list(models), data, work, n_photos=n_photos, seed=seed, cfg=build_config(config), engine=engine,
              crops=not no_crops, photo_set=photo_set)
    click.echo(format_photo_table(res))
    for r in res["models"].values():
        click.echo(f"\n{r['version']}: photos, by group (report half)\n" + format_groups(r["photos"]["groups"]))
    path = Path(json_out or Path(work) / "results.json")
    path.write_text(json.dumps(res, indent=1))
    click.echo(f"results: {path}")


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--variant", type=click.Choice(VARIANTS), required=True, help="Which shipped variant this model replaces.")
@click.option("--to", "dest", type=click.Path(file_okay=False), default=None, help="Weights folder [default: the package's].")
@click.option("--evaluation", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON written by `faceproc evaluate` to embed in the card (its entry for this model).")
@click.option("--halves", "halves_json", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON written by `faceproc evaluate --halves`: its calibration, report-half figures and groups go "
                   "into the card (the calibration changes the rows, so the version gets a +cal suffix).")
@click.option("--photo-evaluation", type=click.Path(exists=True, dir_okay=False), multiple=True,
              help="JSON written by `faceproc evaluate-photos` to embed in the card (its entry for this model).")
def ship(model, variant, dest, evaluation, photo_evaluation, halves_json) -> None:
    """Copy a trained model and its card into the weights folder `annotate --model VARIANT` loads."""
    from .agegender.files import publish
    from .agegender.spec import ModelSpec
    from .config import ModelConfig

    extra = {}
    if evaluation:
        results = json.loads(Path(evaluation).read_text())
        mine = [r for r in results.values() if Path(r["path"]).resolve() == Path(model).resolve()]
        if not mine:
            raise click.ClickException(f"{evaluation} has no results for {model}")
        extra["evaluation"] = {k: v for k, v in mine[0].items() if k != "path"} | {"source": Path(evaluation).name}
    for pe in photo_evaluation:  # one key per photo set: photo_evaluation (standard), photo_evaluation_hard, ...
        res = json.loads(Path(pe).read_text())
        version = ModelSpec.resolve(ModelConfig(variant=str(model), runtime="keras")).card.get("version")
        mine = [r for m, r in res["models"].items() if r.get("version") == version
                or Path(m).resolve() == Path(model).resolve()]
        if not mine:
            raise click.ClickException(f"{pe} has no results for {model} ({version})")
        name = res["photo_set"].get("set", "standard")
        extra["photo_evaluation" + ("" if name == "standard" else f"_{name}")] = {
            "photo_set": res["photo_set"], **{k: mine[0][k] for k in ("photos", "crops", "gap") if k in mine[0]},
            "source": Path(pe).name,
            "command": f"faceproc evaluate-photos MODEL --data ../shared/data/utkface --set {name}"}
    if halves_json:
        from .card_eval import card_fields

        res = json.loads(Path(halves_json).read_text())
        mine = [r for m, r in res.items() if Path(m).resolve() == Path(model).resolve()]
        if not mine:
            raise click.ClickException(f"{halves_json} has no results for {model}")
        extra.update(card_fields(mine[0]))
    card = publish(model, variant, dest, extra or None)
    click.echo(f"{card['file']} ({card['bytes'] / 1e6:.1f} MB, version {card['version']})")


# One-line summaries for `faceproc --help` (click cuts docstrings at ~45 characters).
for _name, _text in {
    "annotate": "Faces, age and gender of every photo under INPUTS -> Parquet.",
    "report": "Rebuild report.json/html (and previews) from an output.",
    "make-sample": "Write a small sample folder to try annotate on.",
    "train": "Train an age/gender variant (frozen or unfrozen).",
    "evaluate": "Results table of models on the validation crops.",
    "evaluate-photos": "Models on validation faces inside group photos.",
    "pack-cache": "Pack a crop cache as WebP for a machine without images.",
    "ship": "Install a trained model + card as the shipped weights.",
}.items():
    main.commands[_name].short_help = _text


if __name__ == "__main__":
    main()
