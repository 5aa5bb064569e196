"""`sweeper review`: a local web app for blind pairwise votes and star ratings of a run's images.

`serve_review` is the command; `run_review` serves inside an `async with` block
(tests). Votes go to the run's journal through `sweeper.votes`, one commit each.
"""

from __future__ import annotations

from sweeper.review.server import RunningReview, run_review, serve_review
from sweeper.review.session import ReviewSettings

__all__ = ["ReviewSettings", "RunningReview", "run_review", "serve_review"]
