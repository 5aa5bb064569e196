"""The manifest: one row per output image saying exactly which request made it.

Built from the journal with one SQL join, written as `DIR/manifest.csv` and
`DIR/manifest.parquet` (real types kept), each replaced atomically so a reader
never sees half a file. `export_manifest` writes the same table anywhere.

Each column's type is defined once, in COLUMN_KINDS; the Arrow schema, the
pandas dtypes and the CSV spelling all follow from it. The two files are written
together, streaming: rows are read in batches of BATCH_ROWS, typed once with
pyarrow, and appended to both (the Parquet file in row groups of
ROW_GROUP_ROWS), so a manifest of any size needs the memory of a few batches,
not of a pandas frame of the whole run. `manifest_frame` is the same table as
one pandas frame, typed the same way, so it equals `read_parquet` of the file.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import ExitStack, closing, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from sweeper.atomic import replacing
from sweeper.contract import IMAGE, PARAMS
from sweeper.errors import SpecError
from sweeper.journal import INPUT_FILE_META, Journal
from sweeper.run_folder import MANIFEST_CSV, MANIFEST_PARQUET

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

TEXT, INT, NULLABLE_INT, FLOAT, BOOL, TIME = "text", "int", "nullable int", "float", "bool", "time"
NULLABLE_BOOL = "nullable bool"
_PARAMETER_KINDS = {int: INT, float: FLOAT, bool: BOOL, str: TEXT}

COLUMN_KINDS: dict[str, str] = {
    "job_id": TEXT,
    "output_index": NULLABLE_INT,
    "status": TEXT,
    "file": TEXT,
    "sha256": TEXT,
    "bytes": NULLABLE_INT,
    "width": NULLABLE_INT,
    "height": NULLABLE_INT,
    IMAGE: TEXT,
    **{name: _PARAMETER_KINDS[param.kind] for name, param in PARAMS.items()},
    "image_sha256": TEXT,
    "input_file": TEXT,
    "asset_path": TEXT,
    "model": TEXT,
    "api_base": TEXT,
    "record_uuid": TEXT,
    "remote_path": TEXT,
    "attempts": NULLABLE_INT,
    "unanswered_attempts": NULLABLE_INT,
    "error": TEXT,
    "submitted_at": TIME,
    "finished_at": TIME,
    "latency_s": FLOAT,
    "link_expires_at": TIME,
    "request_json": TEXT,
}
"""Every manifest column the journal's query gives, in order, with its kind."""

VOTE_KINDS: dict[str, str] = {
    "stars_mean": FLOAT,
    "stars_n": NULLABLE_INT,
    "favourite": NULLABLE_BOOL,
    "pref_wins": NULLABLE_INT,
    "pref_losses": NULLABLE_INT,
    "pref_ties": NULLABLE_INT,
}
"""People's votes on each image (see sweeper.votes): empty where there are none."""

QUERY_COLUMNS = list(COLUMN_KINDS)
COLUMN_KINDS |= VOTE_KINDS
COLUMNS = list(COLUMN_KINDS)
TEXT_COLUMNS = tuple(name for name, kind in COLUMN_KINDS.items() if kind == TEXT)

QUERY = f"""
SELECT j.job_id, coalesce(o.output_index, 0) AS output_index,
    CASE WHEN o.status = 'done' THEN 'succeeded'
         WHEN j.state IN ('lost', 'unanswered') THEN j.state
         WHEN o.status = 'failed' OR j.state = 'failed' THEN 'failed'
         ELSE 'pending' END AS status,
    o.file, o.sha256, o.bytes, o.width, o.height,
    j.image_given AS {IMAGE}, {", ".join(f"j.{name}" for name in PARAMS)},
    j.image_sha256, json_extract(mi.value, '$') AS input_file, j.asset_path, j.model,
    j.api_base, j.record_uuid, o.remote_path,
    j.attempts, j.unanswered_attempts, coalesce(o.error, j.error) AS error, j.submitted_at,
    j.finished_at, j.latency_s, o.expires_at AS link_expires_at, j.request_json
FROM jobs j LEFT JOIN outputs o USING (job_id)
    LEFT JOIN meta mi ON mi.key = '{INPUT_FILE_META}' || j.image_sha256
ORDER BY j.idx, o.output_index
"""

EXPORT_SUFFIXES = (".csv", ".parquet", ".jsonl")
# Rows per read: the query's rows are Python tuples of ~1 KB each (request_json is most
# of it), so up to READ_AHEAD + 2 batches in memory stay a few tens of MB at any size.
BATCH_ROWS = 5_000
READ_AHEAD = 2
# Rows per Parquet row group, gathered from several typed batches.
ROW_GROUP_ROWS = 20_000
# Arrow's %S carries the fraction: 2025-10-27T08:43:17.647000Z, as pandas wrote it.
CSV_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Kinds the CSV spells itself, the way pandas would: True/False, 1.0, ISO times with a Z.
SPELLED_KINDS = (TIME, BOOL, FLOAT)


def manifest_frame(journal: Journal) -> pd.DataFrame:
    """The manifest table as one pandas frame, with the same dtypes `read_parquet` gives."""
    import pyarrow as pa

    schema = arrow_schema()
    text_schema = csv_schema(schema)
    votes = vote_values(journal)
    batches = [
        _typed_batch(rows, order, schema, text_schema, votes)[0]
        for order, rows in _row_batches(journal)
    ]
    return pa.Table.from_batches(batches, schema=schema).to_pandas()


def vote_values(journal: Journal) -> dict[str, tuple]:
    """Each voted-on image's vote columns, in VOTE_KINDS order (None where empty)."""
    import pandas as pd

    from sweeper.ranking import manifest_vote_columns
    from sweeper.votes import list_votes

    votes = list_votes(journal.path.parent)
    if votes.empty:
        return {}
    files = pd.concat([votes["file"], votes["other_file"].dropna()]).astype(object)
    columns = manifest_vote_columns(pd.DataFrame({"file": files.drop_duplicates()}), votes)
    return {
        row["file"]: tuple(None if pd.isna(row[name]) else row[name] for name in VOTE_KINDS)
        for row in columns.to_dict("records")
    }


def _utc_micros(seconds: pd.Series) -> pd.Series:
    import pandas as pd

    # An explicit unit: pandas 2 and 3 infer different resolutions.
    return pd.to_datetime(seconds, unit="s", utc=True).astype("datetime64[us, UTC]")


def write_manifest(journal: Journal, run_dir: Path) -> int:
    """Write DIR/manifest.csv and DIR/manifest.parquet from the journal; returns rows."""
    return write_streaming(journal, [run_dir / MANIFEST_CSV, run_dir / MANIFEST_PARQUET])


def write_streaming(journal: Journal, targets: list[Path]) -> int:
    """Write the manifest to each .csv / .parquet target batch by batch; returns rows.

    Every target is replaced only once all of them are complete; on an error (a full
    disk) none is, and no partial file is left behind.
    """
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    schema = arrow_schema()
    text_schema = csv_schema(schema)
    no_header = pa_csv.WriteOptions(include_header=False)
    rows = 0
    with ExitStack() as renames:
        partials = [renames.enter_context(replacing(target)) for target in targets]
        with ExitStack() as writers:
            csv_writers, parquet_writers = [], []
            for target, partial in zip(targets, partials, strict=True):
                if checked_suffix(target) == ".csv":
                    sink = writers.enter_context(partial.open("wb"))
                    sink.write((",".join(COLUMNS) + "\n").encode())  # unquoted, as before
                    writer = pa_csv.CSVWriter(sink, text_schema, write_options=no_header)
                    csv_writers.append(writers.enter_context(writer))
                else:
                    parquet_writers.append(writers.enter_context(pq.ParquetWriter(partial, schema)))
            group: list[pa.RecordBatch] = []  # typed rows waiting for their Parquet row group
            votes = vote_values(journal)
            for order, batch in _row_batches(journal):
                typed, text = _typed_batch(batch, order, schema, text_schema, votes)
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
            with closing(journal.reader()) as db:
                cursor = db.execute(QUERY)
                names = [column[0] for column in cursor.description]
                order = [names.index(name) for name in QUERY_COLUMNS]
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
    rows: list[tuple],
    order: list[int],
    schema: pa.Schema,
    text_schema: pa.Schema,
    votes: dict[str, tuple],
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """Query rows (their columns in `order` give QUERY_COLUMNS) and their files' vote
    columns from `votes`, typed, and as the CSV shows them.

    The CSV keeps pandas' spelling of the same values: True/False, Python's float
    repr (1.0, not 1), and ISO timestamps with microseconds and a Z.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    by_query = list(zip(*rows, strict=True))
    files = by_query[order[QUERY_COLUMNS.index("file")]]
    no_votes = (None,) * len(VOTE_KINDS)
    by_vote = list(zip(*(votes.get(file, no_votes) for file in files), strict=True))
    typed, text = [], []
    for position, (name, kind) in enumerate(COLUMN_KINDS.items()):
        if position < len(QUERY_COLUMNS):
            values = by_query[order[position]]
        else:
            values = by_vote[position - len(QUERY_COLUMNS)]
        if kind == TIME:  # seconds since the epoch
            array = pa.array(_utc_micros(pd.Series(values, dtype="float64")))
            shown = pc.strftime(array, format=CSV_TIME_FORMAT)
        elif kind == BOOL:  # SQLite keeps 0/1
            array = pa.array([bool(value) for value in values], pa.bool_())
            shown = pc.if_else(array, "True", "False")
        elif kind == NULLABLE_BOOL:
            array = pa.array(values, pa.bool_())
            shown = pc.if_else(array, "True", "False")
        elif kind == FLOAT:
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

    return pa.schema(
        [(f.name, pa.string() if COLUMN_KINDS[f.name] in SPELLED_KINDS else f.type) for f in schema]
    )


def arrow_schema() -> pa.Schema:
    """The manifest's column types, with pandas metadata so read_parquet restores Int64."""
    import pandas as pd
    import pyarrow as pa

    types: dict[str, tuple[pa.DataType, str]] = {
        TEXT: (pa.string(), "object"),
        INT: (pa.int64(), "int64"),
        NULLABLE_INT: (pa.int64(), "Int64"),
        FLOAT: (pa.float64(), "float64"),
        BOOL: (pa.bool_(), "bool"),
        NULLABLE_BOOL: (pa.bool_(), "boolean"),
        TIME: (pa.timestamp("us", tz="UTC"), "datetime64[us, UTC]"),
    }
    empty = pd.DataFrame(
        {name: pd.Series([], dtype=types[kind][1]) for name, kind in COLUMN_KINDS.items()}
    )
    metadata = pa.Schema.from_pandas(empty, preserve_index=False).metadata
    return pa.schema(
        [(name, types[kind][0]) for name, kind in COLUMN_KINDS.items()], metadata=metadata
    )


def write_jsonl(frame: pd.DataFrame, target: Path) -> None:
    """Write `frame` as JSON lines, replacing `target` atomically.

    The request goes in as a nested object, `request`, not as the text of
    `request_json`: a JSON reader gets the request itself.
    """
    import json

    request = frame["request_json"].map(
        lambda text: json.loads(text) if isinstance(text, str) else None
    )
    frame = frame.assign(request_json=request).rename(columns={"request_json": "request"})
    with replacing(target) as partial:
        # pandas' defaults would cut timestamps to milliseconds and floats to 10 decimals.
        frame.to_json(
            partial,
            orient="records",
            lines=True,
            date_format="iso",
            date_unit="us",
            double_precision=15,
        )


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
