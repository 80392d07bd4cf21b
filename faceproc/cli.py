"""`faceproc` command line: thin wrappers over the library."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from .cli_args import build_config

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


class _AnnotateCommand(click.Command):
    """annotate's help quotes the shipped models' measured figures, read from their cards when it is shown."""

    def format_help_text(self, ctx, formatter) -> None:
        self.help = (self.help or "").replace("{figures}", _model_figures())
        super().format_help_text(ctx, formatter)


def _model_figures(weights: Path = Path(__file__).parent / "weights") -> str:
    """The report half's group photos (faces no choice was made on), from each shipped model's card."""
    try:
        cards = {v: json.loads((weights / f"{v}.json").read_text(encoding="utf-8"))
                 for v in ("unfrozen", "frozen")}
        u, f = (cards[v]["photo_evaluation"]["photos"] for v in ("unfrozen", "frozen"))
        return (f"on {u['photos']} group photos kept apart from every choice ({u['n']} faces): unfrozen is off by "
                f"{u['age_mae']:.1f} years on average and gets {u['gender_acc']:.1%} of genders right; frozen "
                f"{f['age_mae']:.1f} years and {f['gender_acc']:.1%}")
    except (OSError, ValueError, KeyError, TypeError):
        return "each model's measured figures are in its card, faceproc/weights/unfrozen.json and frozen.json"


@main.command(cls=_AnnotateCommand)
@click.argument("inputs", nargs=-1)
@click.option("--input", "more_inputs", multiple=True, help="An input (repeatable; the same as INPUTS).")
@click.option("-o", "--output", required=True, help="Folder for the results (or s3://bucket/prefix).")
@click.option("--model", default=None, help="unfrozen (more accurate) | frozen | a .keras file.  [default: unfrozen]")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
              help="Settings file (YAML): `faceproc config` prints every setting with its default.")
@click.option("--batch-size", type=int, default=None, help="Faces the age/gender model takes at once (speed only).")
@click.option("--limit", type=int, default=None, help="Only the first N photos (to try settings).")
@click.option("--previews", type=int, default=None,
              help="Draw boxes and labels on the N photos with most faces, in OUTPUT/previews.  [default: 0]")
@click.option("--workers", type=int, default=None, help="Parallel workers (default: one per CPU).")
@click.option("--engine", type=click.Choice(["auto", "ray", "local"]), default="auto", show_default=True,
              help="auto: small runs in this process, larger ones on Ray; ray: a local Ray or the RAY_ADDRESS "
                   "cluster; local: in this process.")
@click.option("--shard-size", type=int, default=None,
              help="Photos saved together; a stopped run redoes at most this many per worker.  [default: 256]")
@click.option("--force", is_flag=True,
              help="Discard an earlier run in OUTPUT made with other settings (only files faceproc wrote are removed).")
@click.option("--prune", is_flag=True, help="Drop the rows of files no longer among the inputs (deleted, renamed).")
@click.option("--verify", is_flag=True, help="Re-hash files whose size and mtime are unchanged (copies that keep mtime).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON (for scripts and Ray jobs).")
@click.option("--random-init", is_flag=True, help="An untrained model: tests and benchmarks only.")
@click.option("--follow-external-symlinks", is_flag=True, default=None,
              help="Follow symlinks that lead outside the inputs (default: counted, not followed).")
@click.option("--no-faces-in-report", "no_faces", is_flag=True,
              help="No face in report.html: no gallery thumbnails, no previews (docs/privacy.md).")
def annotate(inputs, more_inputs, output, model, config, batch_size, limit, previews, workers, engine, shard_size, force,
             prune, verify, as_json, random_init, follow_external_symlinks, no_faces) -> None:
    """Find the faces in every photo under INPUTS and estimate each face's age and gender.

    INPUTS are folders, single photos or s3:// prefixes. OUTPUT gets one table row per file (images/) and one
    per face (faces/), as Parquet, and report.html to open in a browser. Running the same command again
    picks up only new and changed photos, and finishes a run that was stopped where it left off.

    \b
    Example:
      faceproc annotate ~/Pictures -o ~/faces
      faceproc annotate ~/Pictures -o ~/faces     # later: only the new and changed photos

    Which model (--model): unfrozen, the default, is the more accurate: the whole network was trained on
    faces. frozen keeps its ImageNet network fixed and trains only the two small output layers on top:
    faster to train, less accurate. Measured {figures}.

    Settings: `faceproc config > my.yaml` writes every setting with its default; edit it and pass
    --config my.yaml. Offline, name where the models lie with FACEPROC_INSIGHTFACE_ROOT (face detector)
    and FACEPROC_WEIGHTS_DIR (age/gender; shipped with faceproc).

    Exit status: 0 done, 1 error or refusal (also: an OUTPUT that is an input, inside one, or holds files
    faceproc did not write), 2 some photos unfinished (run the same command again), 64 bad command line,
    130 interrupted.
    """
    from .detectors.files import DetectorUnavailable
    from .engine import (ClusterUnreachable, DiskFull, Interrupted, OutputLocked, OutputNotWritable, RunConfigMismatch,
                         annotate as run)
    from .ownership import OutputRefused

    inputs = list(inputs) + list(more_inputs)
    if not inputs:
        raise click.UsageError("give at least one input (INPUTS or --input)")
    if not output.strip():
        raise click.UsageError("-o/--output is empty: name a folder for faceproc's output")
    cfg = build_config(config, **{"model.variant": model, "model.batch_size": batch_size, "run.shard_size": shard_size,
                                  "run.previews": previews, "run.workers": workers,
                                  "model.random_init": random_init or None,
                                  "run.follow_external_symlinks": follow_external_symlinks or None,
                                  "run.faces_in_report": False if no_faces else None})
    try:
        rep = run(inputs, output, cfg, engine=engine, force=force, limit=limit, prune=prune, verify=verify)
    except DiskFull as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(2)
    except Interrupted as e:
        click.echo(str(e), err=True)
        sys.exit(130)
    except (FileNotFoundError, OutputNotWritable, RunConfigMismatch, OutputLocked, ClusterUnreachable,
            DetectorUnavailable, ValueError, OutputRefused) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:  # a file faceproc must write that the system refuses (an immutable manifest.json, say)
        raise click.ClickException(f"{e}") from None
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
    from .progress import summary_lines  # the same lines close OUT/faceproc.log

    for line in summary_lines(rep):
        click.echo(line)


@main.command("config")
def config_cmd() -> None:
    """Print every annotate setting with its default, as YAML: save it, edit it, pass it with --config FILE."""
    from importlib.resources import files

    click.echo(files("faceproc").joinpath("default_config.yaml").read_text(encoding="utf-8"), nl=False)


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
@click.option("--faces-in-report/--no-faces-in-report", "faces", default=None,
              help="Show faces (gallery, previews) in report.html.  [default: as the run chose]")
def report(output, previews, faces) -> None:
    """Rebuild report.json / report.html (and previews) from OUTPUT's Parquet files (a folder or s3:// prefix)."""
    from .report import build_report
    from .storage import Store

    store = Store(output)
    if not store.remote and not Path(output).is_dir():
        raise click.ClickException(f"{output} does not exist")
    if not store.exists("manifest.json") and not store.list("images", ".parquet"):
        raise click.ClickException(f"{output} is not a faceproc output folder (no manifest.json, no images/)")
    output = store

    if previews and faces is False:
        raise click.UsageError("--previews draws faces: it cannot go with --no-faces-in-report")
    if previews:  # first, so the report links and shows them
        from .preview import write_previews

        write_previews(output, previews)
    if faces is None:  # as the run chose
        faces = ((store.read_json("manifest.json", {}) or {}).get("config") or {}).get("run", {}).get("faces_in_report", True)
    rep = build_report(output, faces)
    _print_summary(rep)


from .cli_models import COMMANDS  # noqa: E402 (after `main`: the model commands)

for _cmd in COMMANDS:
    main.add_command(_cmd)


# One-line summaries for `faceproc --help` (click cuts docstrings at ~45 characters).
for _name, _text in {
    "annotate": "Faces, age and gender of every photo under INPUTS -> Parquet.",
    "report": "Rebuild report.json/html (and previews) from an output.",
    "make-sample": "Write a small sample folder to try annotate on.",
    "config": "Print every setting with its default (YAML for --config).",
    "train": "Train an age/gender variant (frozen or unfrozen).",
    "evaluate": "Results table of models on the validation crops.",
    "evaluate-photos": "Models on validation faces inside group photos.",
    "pack-cache": "Pack a crop cache as WebP for a machine without images.",
    "ship": "Install a trained model + card as the shipped weights.",
}.items():
    main.commands[_name].short_help = _text


if __name__ == "__main__":
    main()
