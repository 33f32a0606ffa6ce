"""`counterfeit screen MANIFEST --ray [ADDRESS]`: the same screening on a Ray cluster with Ray Data.

The manifest is read by Ray Data (read_csv / read_json / read_parquet), screened by `map_batches` on a pool
of actors that each load the ONNX model once and run the local path's own per-row logic
(evaluation.bulk.Screener), and written as Parquet part files with the local path's schema. Ray restarts
an actor that dies and retries its batch, so a lost worker loses no rows. Rerun with the same output to
skip the ids it holds already for this model version. Needs the `ray` extra (ray[data])."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluation.bulk import DEFAULT_CACHE, manifest_screener
from evaluation.bulk_output import ParquetOutput, parquet_counts, parquet_schema
from evaluation.manifest import MissingExtra, count_rows, manifest_format, to_row


@dataclass(frozen=True)
class RayOptions:
    id_column: str = "id"
    image_column: str = "image"
    cache: int = DEFAULT_CACHE  # answers kept per actor for repeated photos
    threads: int = 2  # photos fetched and decoded at once, per actor
    per_host: int = 4  # concurrent HTTP requests per host, per actor
    http_timeout_s: float = 15.0
    allow_local: str | None = None  # local reads only inside this folder (None: the manifest's)
    workers: int = 2  # actors, each with its own copy of the model
    cpus_per_worker: int = 1  # Ray CPUs reserved per actor, and onnxruntime's threads in it


# Reading the manifest and writing Parquet wait on storage more than they compute: they reserve no Ray CPU
# (the actors hold them), else actors holding every CPU of a small cluster would starve them: a deadlock.
IO_CPUS = 0


class ScreenActor:
    """One Ray Data actor: the model loaded once, then batches of manifest rows -> output rows (Arrow)."""

    def __init__(self, model: str, manifest: str, options: RayOptions) -> None:
        from api.settings import Settings
        from inference.predictor import Predictor

        settings = Settings()
        self.options = options
        self.screener = manifest_screener(Predictor(model, threads=options.cpus_per_worker), Path(manifest),
                                          settings.limits, settings.quality_thresholds, cache=options.cache,
                                          threads=options.threads, timeout_s=options.http_timeout_s,
                                          per_host=options.per_host,
                                          allow_local=Path(options.allow_local) if options.allow_local else None)

    def __call__(self, batch):
        import pyarrow as pa

        columns = (self.options.id_column, self.options.image_column)
        rows = [to_row(record, 0, *columns) for record in batch.select(list(columns)).to_pylist()]
        return pa.Table.from_pylist(self.screener.screen(rows), schema=parquet_schema())


def screen_on_ray(manifest: Path, model: Path, output: Path, address: str | None, options: RayOptions,
                  actor: type = ScreenActor) -> tuple[dict[str, int], int]:
    """Screen MANIFEST into the Parquet folder OUTPUT on Ray -> (rows per verdict written now, rows skipped).
    Connects to ADDRESS (or RAY_ADDRESS, or starts a local Ray) unless Ray is initialised already."""
    ray = _ray()
    from inference.predictor import MAX_BATCH, Predictor, images_per_call

    predictor = Predictor(model)
    version, batch_rows = predictor.metadata.version, images_per_call(predictor.spec.size, MAX_BATCH)
    del predictor  # the actors load their own
    done = ParquetOutput(output).done_ids(version)
    _, skipped = count_rows(manifest, options.id_column, options.image_column, done)  # exit 2 on bad ids first
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    dataset = _without(_read(ray, Path(manifest).resolve(), options), options.id_column, done)
    screened = dataset.map_batches(  # batches of one onnxruntime call, as the local path
        actor, fn_constructor_kwargs={"model": str(Path(model).resolve()), "manifest": str(Path(manifest).resolve()),
                                      "options": options},
        batch_size=batch_rows, batch_format="pyarrow", num_cpus=options.cpus_per_worker,
        compute=ray.data.ActorPoolStrategy(size=options.workers))
    screened.write_parquet(str(Path(output).resolve()), ray_remote_args={"num_cpus": IO_CPUS})
    return parquet_counts(output, version, done), skipped


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the data extra: ray[data])
    except ImportError as exc:
        raise MissingExtra("--ray needs Ray Data, which is not installed: pip install 'counterfeit-detector[ray]'"
                           ) from exc
    return ray


def _read(ray, manifest: Path, options: RayOptions):
    """The manifest as a Ray dataset of its id and image columns, both strings."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = [options.id_column, options.image_column]
    kind = manifest_format(manifest)
    if kind == "csv":
        types = {name: pa.string() for name in columns}  # ids such as 00123 stay as written
        dataset = ray.data.read_csv(str(manifest), convert_options=pacsv.ConvertOptions(column_types=types),
                                    num_cpus=IO_CPUS)
    elif kind == "jsonl":
        dataset = ray.data.read_json(str(manifest), lines=True, file_extensions=None, num_cpus=IO_CPUS)
    else:
        dataset = ray.data.read_parquet(str(manifest), columns=columns, num_cpus=IO_CPUS)
    return dataset  # the actors take the two columns: a select_columns step would want a CPU of its own


def _without(dataset, id_column: str, done: set[str]):
    """The dataset less the rows whose id is in `done` (already in the output)."""
    if not done:
        return dataset
    import pyarrow as pa
    import pyarrow.compute as pc

    known = pa.array(sorted(done), pa.string())

    def keep(batch):
        return batch.filter(pc.invert(pc.is_in(pc.cast(batch[id_column], pa.string()), value_set=known)))

    return dataset.map_batches(keep, batch_format="pyarrow", num_cpus=IO_CPUS)
