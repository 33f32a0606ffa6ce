"""Commands that need only a model file: screen, evaluate, serve, keys. No torch."""

from __future__ import annotations

import contextlib
import errno
import socket
import sys
import threading
from pathlib import Path

from counterfeit.errors import CliError
from counterfeit.evidence_commands import open_evidence, recorded


def _predictor(model_path: Path | None):
    from api.settings import Settings
    from inference.metadata import ModelFileError
    from inference.predictor import Predictor

    try:
        return Predictor(model_path or Settings().model_path)
    except ModelFileError as exc:
        raise CliError(str(exc)) from exc


def cmd_screen(args) -> int:
    """Exit 0, or 1 when there were files and every one failed (the lines say why), 2 for bad arguments."""
    from evaluation.manifest import manifest_format
    from evaluation.screen import find_images, screen_files, write_jsonl

    if any(manifest_format(path) and not path.is_dir() for path in args.paths):
        return _screen_manifest(args)
    _check_folder_output(args.output)
    try:
        files = find_images(args.paths)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from exc
    from api.settings import Settings

    predictor, settings = _predictor(args.model), Settings()
    # As the API answers: the upload limits and the quality gate (a blurred or glared photo is a retake).
    records = screen_files(files, predictor, settings.limits, gate=settings.quality_thresholds)
    if args.record:
        records = recorded(records, predictor, open_evidence(None, create=True))
    records = _with_progress(records, len(files))
    if args.output is None:
        counts = write_jsonl(records, sys.stdout)
    else:
        counts = _write_file_atomically(args.output, records)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no images"
    print(f"screened {len(files)} files: {summary}", file=sys.stderr)
    return 1 if files and counts.get("error", 0) == len(files) else 0


def _check_folder_output(output: Path | None) -> None:
    """Before any photo is scored (issue 23: a folder, or x.parquet written as JSON lines, was found out only
    at the end, or never): screening files writes JSON lines, to a file that can be written."""
    if output is None:
        return
    if output.suffix.lower() not in (".jsonl", ".ndjson"):
        raise CliError(f"--output {output}: screening image files writes JSON lines; name a .jsonl file "
                       "(Parquet output is for manifests: `counterfeit screen MANIFEST --output OUT.parquet`)")
    if output.is_dir():
        raise CliError(f"--output {output} is a folder: name a .jsonl file, e.g. {output / 'screening.jsonl'}")
    if not output.parent.is_dir():
        raise CliError(f"no such folder for --output: {output.parent}")


def _screen_manifest(args) -> int:
    """`counterfeit screen MANIFEST`: locally, or on Ray with --ray. Problems with the manifest, the output
    or a missing extra exit 2 with one line; a bad row is only a row with an error."""
    from evaluation.bulk_output import OutputError, output_lock
    from evaluation.manifest import ManifestError, MissingExtra

    if len(args.paths) > 1:
        raise CliError("give one manifest, or image files and folders: not both, nor several manifests")
    if args.record:
        raise CliError("--record works with folders and image files; screen a manifest without it")
    try:
        with output_lock(args.output):
            return _screen_on_ray(args) if args.ray is not None else _screen_manifest_locally(args)
    except (ManifestError, MissingExtra, OutputError) as exc:
        raise CliError(str(exc)) from exc


def _screen_manifest_locally(args) -> int:
    from api.settings import Settings
    from evaluation.bulk import manifest_screener, not_done, screen_rows
    from evaluation.bulk_output import open_output
    from evaluation.manifest import count_rows, read_rows

    manifest, settings, predictor = args.paths[0], Settings(), _predictor(args.model)
    output = open_output(args.output, args.part_rows)
    done = output.done_ids(predictor.metadata.version)
    total, skipped = count_rows(manifest, args.id_column, args.image_column, done)
    screener = manifest_screener(predictor, manifest, settings.limits, settings.quality_thresholds, cache=args.cache,
                                 threads=args.threads, timeout_s=args.http_timeout, per_host=args.per_host,
                                 allow_local=args.allow_local)
    rows = not_done(read_rows(manifest, args.id_column, args.image_column), done)
    try:
        counts = _write_batches(screen_rows(rows, screener), output, _manifest_progress(total, skipped))
    finally:
        screener.close()
    return _manifest_summary(counts, skipped, args.output)


def _write_batches(batches, output, progress) -> dict[str, int]:
    """Write each batch of rows as it comes; -> rows per verdict (and 'error'). The output is closed (its
    last rows written) also on Ctrl-C."""
    from evaluation.screen import outcome

    counts: dict[str, int] = {}
    try:
        with progress:
            for rows in batches:
                output.write(rows)
                for row in rows:
                    counts[outcome(row)] = counts.get(outcome(row), 0) + 1
                progress.update(len(rows))
    finally:
        output.close()
    return counts


def _manifest_progress(total: int, skipped: int):
    """Progress over the whole manifest, starting at the rows already done: rate and ETA count only the
    rows screened in this run."""
    from tqdm import tqdm

    return tqdm(total=total, initial=skipped, unit="photo", desc="screen", file=sys.stderr, smoothing=0)


def _manifest_summary(counts: dict[str, int], skipped: int, output: Path | None) -> int:
    screened = sum(counts.values())
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing new"
    print(f"screened {screened} rows: {summary}; {skipped} skipped (already in {output})"
          if skipped else f"screened {screened} rows: {summary}", file=sys.stderr)
    return 1 if screened and counts.get("error", 0) == screened else 0


def _screen_on_ray(args) -> int:
    from evaluation.ray_screen import RayOptions, screen_on_ray

    if args.output is None or args.output.suffix.lower() != ".parquet":
        raise CliError("--ray writes Parquet: give --output OUT.parquet (a folder of part files)")
    model = args.model or _default_model_path()
    _predictor(model)  # a bad model file is one line here, not a failure in every Ray worker
    options = RayOptions(id_column=args.id_column, image_column=args.image_column, cache=args.cache,
                         threads=args.threads, per_host=args.per_host, http_timeout_s=args.http_timeout,
                         workers=args.workers, allow_local=str(args.allow_local) if args.allow_local else None)
    counts, skipped = screen_on_ray(args.paths[0], model, args.output, args.ray or None, options)
    return _manifest_summary(counts, skipped, args.output)


def _default_model_path() -> Path:
    from api.settings import Settings

    return Path(Settings().model_path)


def _with_progress(records, total: int):
    """Records passed through while a progress bar on stderr counts them, wherever the lines go. The rate
    is the average since the start (smoothing 0): photos come a few at a time, and a moving average of
    those bursts would swing between zero and several times the real rate."""
    from tqdm import tqdm

    return tqdm(records, total=total, unit="photo", desc="screen", file=sys.stderr, smoothing=0)


def _write_file_atomically(path: Path, records) -> dict:
    """Write the records as JSON lines to a new temporary file beside PATH (inference.atomic), then rename it
    to PATH: never a half-written PATH."""
    from evaluation.screen import write_jsonl
    from inference.atomic import atomic_path

    try:  # also on Ctrl-C or a failing model: no stray temporary file, PATH as it was
        with atomic_path(path) as tmp, tmp.open("w") as out:
            counts = write_jsonl(records, out)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return counts


def cmd_evaluate(args) -> int:
    from evaluation.evaluate import evaluate_folder, write_report
    from inference.layout import DataError

    if args.robustness or args.changes:
        return _evaluate_robustness(args)
    if args.report:
        _report_extra_needed()
    predictor = _predictor(args.model)
    try:
        metrics = evaluate_folder(args.data, predictor)
    except DataError as exc:
        raise CliError(str(exc)) from exc
    keys = ("n", "roc_auc", "pr_auc", "accuracy_decided", "inconclusive_rate", "ece")
    print("  ".join(f"{k} {metrics[k]:.4g}" for k in keys))
    _small_sample_note(metrics["scores"])
    for error in metrics["errors"]:
        print(f"skipped {error['path']}: {error['error']}", file=sys.stderr)
    if args.report:
        write_report(metrics, args.report)
        print(f"wrote {_html_report(metrics, args.report)}", file=sys.stderr)
    return 0


def _evaluate_robustness(args) -> int:
    from pydantic import ValidationError

    from api.settings import Settings
    from evaluation.robustness import evaluate_robustness, format_table, parse_changes, write_report
    from inference.layout import DataError, list_labelled, resolve_labelled

    if not args.robustness:
        raise CliError("--changes needs --robustness")
    try:
        changes = parse_changes(args.changes)
        samples = list_labelled(resolve_labelled(args.data, "test"))
        settings = Settings()  # the served quality gate: COUNTERFEIT_QUALITY_* as the server reads them
    except ValidationError as exc:
        raise CliError(f"invalid setting: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc
    except (ValueError, DataError) as exc:
        raise CliError(str(exc)) from exc
    report = evaluate_robustness(samples, _predictor(args.model), settings, changes)
    print(format_table(report))
    if args.report:
        print(f"wrote {write_report(report, args.report)}", file=sys.stderr)
    return 0


def _small_sample_note(scores: list[dict]) -> None:
    """Issue 23: 4 photos reported ROC-AUC 1.000 with no caution. Under SMALL_SAMPLE photos of a class, the
    ROC-AUC's 95% bootstrap interval says how little such a figure pins down."""
    import numpy as np

    from inference.metrics import SMALL_SAMPLE, bootstrap_interval

    labels = np.array([row["label"] for row in scores])
    counts = [int((labels == value).sum()) for value in (0, 1)]
    if min(counts) >= SMALL_SAMPLE:
        return
    low, high = bootstrap_interval(np.array([row["score"] for row in scores]), labels)
    interval = f"95% bootstrap interval of the ROC-AUC {low:.2f}-{high:.2f}" if counts[0] and counts[1] else \
        "no ROC-AUC can be measured without both classes"
    print(f"note: only {counts[0]} genuine and {counts[1]} counterfeit photos were scored ({interval}): figures "
          f"from fewer than {SMALL_SAMPLE} photos of a class are rough; measure on more", file=sys.stderr)


def _report_extra_needed() -> None:
    """Before any photo is scored (issue 23: metrics were written, then the plots failed with exit 2)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise CliError("--report draws plots, which need matplotlib (the `report` extra): pip install "
                       "'counterfeit-detector[report]', or leave out --report")


def _html_report(metrics: dict, report_dir: Path) -> Path:
    from evaluation.report import write_html_report

    try:
        return write_html_report(metrics, report_dir)
    except ModuleNotFoundError as exc:
        if exc.name != "matplotlib":
            raise
        raise CliError("metrics.json is written; the plots need matplotlib: pip install "
                       "'counterfeit-detector[report]'") from exc


def cmd_serve(args) -> int:
    from pydantic import ValidationError
    from uvicorn.config import STARTUP_FAILURE

    from api.serve import serve
    from api.settings import Settings
    from inference.metadata import ModelFileError

    # Only what was given on the command line: COUNTERFEIT_* variables and .env fill in the rest.
    overrides = {"model_path": args.model, "host": args.host, "port": args.port}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
        _check_port_free(settings.host, settings.port)
        with _announce_when_listening(settings.host, settings.port):
            serve(settings)
    except ValidationError as exc:
        raise CliError(f"invalid setting: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc
    except (ValueError, ModelFileError) as exc:
        raise CliError(str(exc)) from exc
    except SystemExit as exc:  # uvicorn could not bind after all: the port was taken since the check
        if exc.code != STARTUP_FAILURE:
            raise
        raise CliError(f"cannot listen on {settings.host} port {settings.port}: see the error above") from exc
    return 0


WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # listen-on-all -> reach it locally


def _check_port_free(host: str, port: int) -> None:
    """Bind each address the server will, as it will (SO_REUSEADDR, IPv6-only), and let go: a port
    already taken is one plain sentence here, rather than a JSON log line after the model loaded."""
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CliError(f"cannot listen on {host}: {exc.strerror}; set COUNTERFEIT_HOST (or --host)") from exc
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise CliError(f"port {port} on {host} is in use: stop the other server or set "
                                   "COUNTERFEIT_PORT (or --port)") from exc
                if exc.errno == errno.EACCES:
                    raise CliError(f"port {port} on {host} needs administrator rights: choose a port above "
                                   "1023 with COUNTERFEIT_PORT (or --port)") from exc
                # Anything else (an IPv6 address on a host without IPv6, ...): the server decides, as before.


def _browser_url(host: str, port: int) -> str:
    local = WILDCARD_HOSTS.get(host, host)
    return f"http://[{local}]:{port}/" if ":" in local else f"http://{local}:{port}/"


@contextlib.contextmanager
def _announce_when_listening(host: str, port: int, poll_s: float = 0.2):
    """Say where to point a browser once the server accepts connections. `serve` blocks until the
    server stops; the port answering is the one sign from outside that startup (model loaded, port
    bound) succeeded, so nothing is announced for a server that fails to start."""
    stopped = threading.Event()
    local = WILDCARD_HOSTS.get(host, host)

    def announce() -> None:
        while not stopped.wait(poll_s):
            try:
                socket.create_connection((local, port), timeout=1).close()
            except OSError:
                continue
            url = _browser_url(host, port)
            print(f"open {url} in a browser (the API's docs: {url}docs)", file=sys.stderr, flush=True)
            return

    threading.Thread(target=announce, name="announce-url", daemon=True).start()
    try:
        yield
    finally:
        stopped.set()


def cmd_keys_new(args) -> int:
    from api.auth import key_entry_json, new_key

    key, entry = new_key(args.subject, args.role)
    print(f"API key for {args.subject} ({args.role}), shown once; hand it over securely:\n  {key}\n"
          f"Add this entry to the COUNTERFEIT_API_KEYS JSON list of the server:\n  {key_entry_json(entry)}")
    return 0
