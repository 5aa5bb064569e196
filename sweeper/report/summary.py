"""A/B summary: for each varied parameter, how its values fared.

images = rows with status succeeded; failures = rows with status failed; the
means are over succeeded rows only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper.report.axis_choice import axis_values

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_COLUMNS = ["parameter", "value", "images", "failures", "mean_latency_s", "mean_bytes"]


def ab_summary(frame: pd.DataFrame, varied: list[str]) -> pd.DataFrame:
    import pandas as pd

    records = []
    for column in varied:
        for value in axis_values(frame, column):
            rows = frame[frame[column] == value]
            done = rows[rows["status"] == "succeeded"]
            records.append(
                {
                    "parameter": column,
                    "value": value,
                    "images": len(done),
                    "failures": int((rows["status"] == "failed").sum()),
                    "mean_latency_s": done["latency_s"].astype(float).mean(),
                    "mean_bytes": done["bytes"].astype(float).mean(),
                }
            )
    summary = pd.DataFrame.from_records(records, columns=SUMMARY_COLUMNS)
    # from_records would make an int seed 1.0 when a float guidance shares the column.
    summary["value"] = pd.Series([r["value"] for r in records], dtype=object)
    return summary
