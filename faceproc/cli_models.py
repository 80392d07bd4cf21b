"""`faceproc` commands for the models: train, pack-cache, evaluate, evaluate-photos, ship, export-openvino
(faceproc/cli.py registers them on the `faceproc` group)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from .agegender.architecture import VARIANTS


@click.command("export-openvino", short_help="Write a model's OpenVINO copy (workers then need no TensorFlow).")
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


@click.command()
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


@click.command("pack-cache")
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


@click.command()
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


@click.command("evaluate-photos")
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
    from .cli_args import build_config
    from .groups import format_groups
    from .photo_eval import evaluate_photos as run, format_photo_table

    res = run(list(models), data, work, n_photos=n_photos, seed=seed, cfg=build_config(config), engine=engine,
              crops=not no_crops, photo_set=photo_set)
    click.echo(format_photo_table(res))
    for r in res["models"].values():
        click.echo(f"\n{r['version']}: photos, by group (report half)\n" + format_groups(r["photos"]["groups"]))
    path = Path(json_out or Path(work) / "results.json")
    path.write_text(json.dumps(res, indent=1))
    click.echo(f"results: {path}")


@click.command()
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


COMMANDS = (export_openvino_cmd, train, pack_cache, evaluate, evaluate_photos, ship)
