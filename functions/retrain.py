"""Blueprint ``retrain``: a timer that trains challengers from the history store.

Trigger: timer on the NCRONTAB schedule ``%RETRAIN_SCHEDULE%`` (default hourly,
``0 0 * * * *``). Per symbol of ``SYMBOLS`` it reads the last
``RETRAIN_LOOKBACK_DAYS`` of bars from MySQL, trains a challenger and writes it
as a candidate blob with holdout scores (see :mod:`shared.lifecycle.retrain`); too little
data means no blob and one log line. The candidate's creation triggers
``promote_model``.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.common import ProcessService
from shared.serving.wiring import make_retrain_service

bp = func.Blueprint()
log = logging.getLogger(__name__)
service = ProcessService(make_retrain_service, close=lambda s: s.history.close())


@bp.function_name("retrain")
@bp.timer_trigger(arg_name="timer", schedule="%RETRAIN_SCHEDULE%", run_on_startup=False, use_monitor=True)
def retrain(timer: func.TimerRequest) -> None:
    """Train and store one challenger per configured symbol that has enough history."""
    if timer.past_due:
        log.warning("retrain timer is past due; running now")
    outcomes = service.get().run()
    log.info("retrain: %d candidates, %d skipped, %d failed",
             sum(o.status == "candidate" for o in outcomes), sum(o.status == "skipped" for o in outcomes),
             sum(o.status == "failed" for o in outcomes))
