"""Background work, one module per family: each task is a thin shell around one workflow.

- :mod:`bot.tasks.registry` — names → functions; imports nothing of the project (the jobs facade
  looks tasks up there);
- :mod:`bot.tasks.decide` — the decision after an Approve / Reject / Force click;
- :mod:`bot.tasks.slack_command` — ``/billing sync`` and ``/billing run`` typed in Slack;
- :mod:`bot.tasks.scheduled` — syncs, billing runs, the SLA sweep, the digest (cron and the clock);
- :mod:`bot.tasks.documents` — invoice PDFs.

:func:`bot.runtime.wire` imports the families, which registers them in every process that runs or
submits tasks.
"""
