"""One pipeline for both jobs: a typed run context, one runner, one library of stage functions.

- :mod:`.context`: :class:`~.context.RunSettings` (what the caller asked for) and
  :class:`~.context.RunContext` (what the stages found and made), dataclasses, not a dict;
- :mod:`.runner`: :class:`~.runner.Stage` and :func:`~.runner.run_stages`, resumable, writing
  ``lineage.json``;
- :mod:`.stages`: the stage functions (data, load, train, test, profile, compare, report, gate,
  register);
- :mod:`.jobs`: the two stage lists, :data:`~.jobs.MAIN_JOB` (``neonsign main``) and
  :data:`~.jobs.LIFECYCLE` (``neonsign pipeline``), and their entry points
  :func:`~.jobs.run_main_job` and :func:`~.jobs.run_pipeline`.

Importing this package imports neither PyTorch nor MLflow; the stages import what they use.
"""

from __future__ import annotations

from .context import RunContext, RunSettings
from .jobs import LIFECYCLE, MAIN_JOB, run_main_job, run_pipeline
from .runner import Stage, run_stages

__all__ = [
    "LIFECYCLE",
    "MAIN_JOB",
    "RunContext",
    "RunSettings",
    "Stage",
    "run_main_job",
    "run_pipeline",
    "run_stages",
]
