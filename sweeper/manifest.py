"""The manifest: one row per output image saying exactly which request made it.

Built from the journal with one SQL join, written as `DIR/manifest.csv` and
`DIR/manifest.parquet` (real types kept), each replaced atomically so a reader
never sees half a file. `export_manifest` writes the same table anywhere.

The two files are written together, streaming: rows are read in batches of
BATCH_ROWS, typed once with pyarrow, and appended to both (the Parquet file in
row groups of ROW_GROUP_ROWS), so a manifest of any size needs the memory of a
few batches, not of a pandas frame of the whole run.
`manifest_frame` is the same table as one pandas frame, for the report.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import ExitStack, closing, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from sweeper.contract import PARAMS
from sweeper.errors import SpecError
from sweeper.journal import Journal

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

COLUMNS = [
    "job_id", "output_index", "status", "file", "sha256", "bytes", "width", "height",
    "prompt", "image", "image_sha256", "asset_path", "seed", "guidance",
    "num_inference_steps", "output_quality", "megapixels", "format", "num_outputs",
    "go_fast", "disable_safety_checker", "model", "api_base", "record_uuid", "remote_path",
    "attempts", "error", "submitted_at", "finished_at", "latency_s", "request_json",
]  # fmt: skip

PARAM_SELECT = ", ".join(f"j.{name}" for name in PARAMS if name != "prompt")

QUERY = f"""
SELECT j.job_id, coalesce(o.output_index, 0) AS output_index,
    CASE WHEN o.status = 'done' THEN 'succeeded'
         WHEN o.status = 'failed' OR j.state = 'failed' THEN 'failed'
         ELSE 'pending' END AS status,
    o.file, o.sha256, o.bytes, o.width, o.height,
    j.prompt, j.image_given AS image, j.image_sha256, j.asset_path, {PARAM_SELECT},
    j.model, j.api_base, j.record_uuid, o.remote_path, j.attempts,
    coalesce(o.error, j.error) AS error, j.submitted_at, j.finished_at, j.latency_s,
    j.request_json
FROM jobs j LEFT JOIN outputs o USING (job_id)
ORDER BY j.idx, o.output_index
"""

NULLABLE_INTS = ("bytes", "width", "height", "attempts", "output_index")
TEXT_COLUMNS = ("file", "sha256", "asset_path", "record_uuid", "remote_path", "error")
EXPORT_SUFFIXES = (".csv", ".parquet", ".jsonl")
# Rows per read: the query's rows are Python tuples of ~1 KB each (request_json is most
# of it), so up to READ_AHEAD + 2 batches in memory stay a few tens of MB at any size.
BATCH_ROWS = 5_000
READ_AHEAD = 2
# Rows per Parquet row group, gathered from several typed batches.
ROW_GROUP_ROWS = 20_000
PLAIN_INTS = ("seed", "num_inference_steps", "output_quality", "num_outputs")
BOOL_COLUMNS = ("go_fast", "disable_safety_checker")
FLOAT_COLUMNS = ("guidance", "latency_s")
TIME_COLUMNS = ("submitted_at", "finished_at")
# Arrow's %S carries the fraction: 2025-10-27T08:43:17.647000Z, as pandas wrote it.
CSV_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def manifest_frame(journal: Journal) -> pd.DataFrame:
    """The manifest table, typed: ints, floats, bools, UTC timestamps, text."""
    import pandas as pd

    frame = pd.read_sql_query(QUERY, journal.connection)
    for name in NULLABLE_INTS:
        frame[name] = frame[name].astype("Int64")
    for name in PLAIN_INTS:
        frame[name] = frame[name].astype("int64")
    for name in BOOL_COLUMNS:
        frame[name] = frame[name].astype(bool)
    for name in FLOAT_COLUMNS:
        frame[name] = frame[name].astype("float64")
    for name in TIME_COLUMNS:
        frame[name] = _utc_micros(frame[name])
    for name in TEXT_COLUMNS:
        frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    frame["megapixels"] = frame["megapixels"].astype(str)
    return frame[COLUMNS]


def _utc_micros(seconds: pd.Series) -> pd.Series:
    import pandas as pd

    # An explicit unit: pandas 2 and 3 infer different resolutions.
    return pd.to_datetime(seconds, unit="s", utc=True).astype("datetime64[us, UTC]")


def write_manifest(journal: Journal, run_dir: Path) -> int:
    """Write DIR/manifest.csv and DIR/manifest.parquet from the journal; returns rows."""
    return write_streaming(journal, [run_dir / "manifest.csv", run_dir / "manifest.parquet"])


def write_streaming(journal: Journal, targets: list[Path]) -> int:
    """Write the manifest to each .csv / .parquet target batch by batch; returns rows."""
    schema = arrow_schema()
    partials = [target.with_name(f".{target.name}.part") for target in targets]
    try:
        rows = _write_partials(journal, targets, partials, schema)
    except BaseException:
        for partial in partials:  # a full disk should not also keep half-written files
            with suppress(OSError):
                partial.unlink(missing_ok=True)
        raise
    for partial, target in zip(partials, targets, strict=True):
        partial.replace(target)
    return rows


def _write_partials(
    journal: Journal, targets: list[Path], partials: list[Path], schema: pa.Schema
) -> int:
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    text_schema = csv_schema(schema)
    no_header = pa_csv.WriteOptions(include_header=False)
    rows = 0
    with ExitStack() as stack:
        csv_writers, parquet_writers = [], []
        for target, partial in zip(targets, partials, strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            if checked_suffix(target) == ".csv":
                sink = stack.enter_context(partial.open("wb"))
                sink.write((",".join(COLUMNS) + "\n").encode())  # unquoted, as before
                writer = pa_csv.CSVWriter(sink, text_schema, write_options=no_header)
                csv_writers.append(stack.enter_context(writer))
            else:
                parquet_writers.append(stack.enter_context(pq.ParquetWriter(partial, schema)))
        group: list[pa.RecordBatch] = []  # typed rows waiting for their Parquet row group
        for order, batch in _row_batches(journal):
            typed, text = _typed_batch(batch, order, schema, text_schema)
            for csv_writer in csv_writers:
                csv_writer.write_batch(text)
            group.append(typed)
            rows += len(batch)
            if sum(map(len, group)) >= ROW_GROUP_ROWS:
                _write_row_group(parquet_writers, group)
        _write_row_group(parquet_writers, group)
    return rows


def _write_row_group(parquet_writers: list, group: list[pa.RecordBatch]) -> None:
    """Typed batches (compact Arrow memory, unlike the query's tuples) as one row group."""
    import pyarrow as pa

    if group:
        table = pa.Table.from_batches(group)
        for parquet_writer in parquet_writers:
            parquet_writer.write_table(table, row_group_size=len(table))
        group.clear()


def _row_batches(journal: Journal) -> Iterator[tuple[list[int], list[tuple]]]:
    """The query's rows in batches, read by a second connection in a thread.

    SQLite's join and sort run without the GIL, so they overlap with the typing
    and writing of the previous batch; at most READ_AHEAD batches wait in memory.
    """
    journal.flush()
    batches: queue.Queue[tuple[list[int], list[tuple]] | BaseException | None] = queue.Queue(
        READ_AHEAD
    )
    done = threading.Event()

    def read() -> None:
        try:
            uri = f"{journal.path.resolve().as_uri()}?mode=ro"
            with closing(sqlite3.connect(uri, uri=True)) as db:
                cursor = db.execute(QUERY)
                names = [column[0] for column in cursor.description]
                order = [names.index(name) for name in COLUMNS]
                while not done.is_set() and (batch := cursor.fetchmany(BATCH_ROWS)):
                    batches.put((order, batch))
        except BaseException as error:
            batches.put(error)
            return
        batches.put(None)

    reader = threading.Thread(target=read, name="manifest-reader", daemon=True)
    reader.start()
    try:
        while (item := batches.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        done.set()
        while reader.is_alive():  # unblock a reader waiting to put
            with suppress(queue.Empty):
                batches.get(timeout=0.1)
        reader.join()


def _typed_batch(
    rows: list[tuple], order: list[int], schema: pa.Schema, text_schema: pa.Schema
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """Query rows (their columns in `order` give COLUMNS), typed, and as the CSV shows them.

    The CSV keeps pandas' spelling of the same values: True/False, Python's float
    repr (1.0, not 1), and ISO timestamps with microseconds and a Z.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    by_query = list(zip(*rows, strict=True))
    typed, text = [], []
    for name in COLUMNS:
        values = by_query[order[len(typed)]]
        if name in TIME_COLUMNS:  # seconds since the epoch, converted as manifest_frame does
            array = pa.array(_utc_micros(pd.Series(values, dtype="float64")))
            shown = pc.strftime(array, format=CSV_TIME_FORMAT)
        elif name in BOOL_COLUMNS:  # SQLite keeps 0/1
            array = pa.array([bool(value) for value in values], pa.bool_())
            shown = pc.if_else(array, "True", "False")
        elif name in FLOAT_COLUMNS:
            array = pa.array(values, pa.float64())
            shown = pa.array([None if v is None else repr(v) for v in values], pa.string())
        else:
            array = shown = pa.array(values, schema.field(name).type)
        typed.append(array)
        text.append(shown)
    return (
        pa.RecordBatch.from_arrays(typed, schema=schema),
        pa.RecordBatch.from_arrays(text, schema=text_schema),
    )


def csv_schema(schema: pa.Schema) -> pa.Schema:
    """The columns the CSV writer gets: the typed ones, with those we spell ourselves as text."""
    import pyarrow as pa

    spelled = {*TIME_COLUMNS, *BOOL_COLUMNS, *FLOAT_COLUMNS}
    return pa.schema([(f.name, pa.string() if f.name in spelled else f.type) for f in schema])


def arrow_schema() -> pa.Schema:
    """The manifest's column types, with pandas metadata so read_parquet restores Int64."""
    import pandas as pd
    import pyarrow as pa

    types: dict[str, tuple[pa.DataType, str]] = {name: (pa.string(), "object") for name in COLUMNS}
    types |= {name: (pa.int64(), "Int64") for name in NULLABLE_INTS}
    types |= {name: (pa.int64(), "int64") for name in PLAIN_INTS}
    types |= {name: (pa.bool_(), "bool") for name in BOOL_COLUMNS}
    types |= {name: (pa.float64(), "float64") for name in FLOAT_COLUMNS}
    types |= {name: (pa.timestamp("us", tz="UTC"), "datetime64[us, UTC]") for name in TIME_COLUMNS}
    empty = pd.DataFrame({name: pd.Series([], dtype=types[name][1]) for name in COLUMNS})
    metadata = pa.Schema.from_pandas(empty, preserve_index=False).metadata
    return pa.schema([(name, types[name][0]) for name in COLUMNS], metadata=metadata)


def write_jsonl(frame: pd.DataFrame, target: Path) -> None:
    """Write `frame` as JSON lines to a temporary name beside `target`, then rename it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    # pandas' defaults would cut timestamps to milliseconds and floats to 10 decimals.
    frame.to_json(
        partial,
        orient="records",
        lines=True,
        date_format="iso",
        date_unit="us",
        double_precision=15,
    )
    partial.replace(target)


def export_manifest(run_dir: Path, target: Path) -> int:
    """Rebuild the manifest of `run_dir` from its journal into `target`; returns rows."""
    suffix = checked_suffix(target)
    with Journal.open_existing(run_dir) as journal:
        if suffix in (".csv", ".parquet"):
            return write_streaming(journal, [target])
        frame = manifest_frame(journal)
    write_jsonl(frame, target)
    return len(frame)


def checked_suffix(target: Path) -> str:
    suffix = target.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        allowed = ", ".join(EXPORT_SUFFIXES)
        raise SpecError(f"{target}: unknown format {suffix or '(none)'}; use {allowed}")
    return suffix
