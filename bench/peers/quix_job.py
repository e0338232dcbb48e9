"""The peer of ``predict`` in Quix Streams: run by ``bench/peers/run_quix.py`` in ``.venv-peers``.

The same job written idiomatically: a tumbling one-minute window per key (the symbol) on event
time (``event_time_ms``) aggregating OHLCV, closed windows (``.final()``) to a River model kept in
the key's state (pickled with ``set_bytes``, so it is committed with the offsets like tickcast's
partition state), which learns the realised return of the previous forecast and predicts the next
close; predictions go to a topic. ``--expect N``: stop after N input messages and print the time
from the first to the last (the drain). Messages with ``probe`` are answered with ``ready`` on
stdout and dropped (the benchmark starts its paced stream once the job consumes).

Usage: ``quix_job.py BROKER INPUT OUTPUT GROUP STATE_DIR [--expect N]``.
"""

import argparse
import json
import math
import pickle
import sys
import time

from quixstreams import Application
from quixstreams.dataframe.windows import Count, First, Last, Max, Min, Sum
from river import linear_model, preprocessing


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("broker", "input", "output", "group", "state_dir"):
        p.add_argument(name)
    p.add_argument("--expect", type=int, default=0)
    args = p.parse_args()
    app = Application(broker_address=args.broker, consumer_group=args.group, auto_offset_reset="earliest",
                      state_dir=args.state_dir, loglevel="WARNING",
                      # the client tuning tickcast's driver and ingestor use on Tansu (local_stack/tansu.py):
                      # Tansu holds a fetch for the whole fetch.wait.max.ms (librdkafka default 500 ms)
                      consumer_extra_config={"fetch.wait.max.ms": 10}, producer_extra_config={"linger.ms": 5})
    ticks = app.topic(args.input, value_deserializer="json",
                      timestamp_extractor=lambda value, headers, ts, ts_type: value.get("event_time_ms", ts))
    out = app.topic(args.output, value_serializer="json")
    seen = [0, 0.0]

    def count(value):
        seen[0] += 1
        if seen[0] == 1:
            seen[1] = time.perf_counter()
        if seen[0] == args.expect:
            print(json.dumps({"messages": seen[0], "seconds": time.perf_counter() - seen[1]}), flush=True)
            app.stop()

    def probe(value) -> bool:
        if "probe" in value:
            print("ready", flush=True)
            return False
        return True

    def forecast(bar, state):
        value = bar
        models = state.get_bytes("model")
        model = pickle.loads(models) if models else preprocessing.StandardScaler() | linear_model.LinearRegression()
        prev = state.get("prev")
        x = {"ret": 0.0, "range": math.log(value["high"] / value["low"]), "lvol": math.log1p(value["volume"])}
        if prev is not None:
            x["ret"] = math.log(value["close"] / prev["close"])
            model.learn_one(prev["x"], x["ret"])
        predicted = value["close"] * math.exp(model.predict_one(x))
        state.set("prev", {"close": value["close"], "x": x})
        state.set_bytes("model", pickle.dumps(model))
        return {"type": "prediction", "symbol": value["symbol"], "target_time_ms": bar["end"],
                "last_close": value["close"], "predicted_close": predicted, "made_at_ms": int(time.time() * 1000)}

    sdf = app.dataframe(ticks)
    if args.expect:
        sdf = sdf.update(count)
    sdf = sdf.filter(probe)
    sdf = sdf.tumbling_window(duration_ms=60_000).agg(
        symbol=Last("symbol"), open=First("price"), high=Max("price"), low=Min("price"), close=Last("price"),
        volume=Sum("quantity"), trades=Count()).final()
    sdf = sdf.apply(forecast, stateful=True)
    sdf.to_topic(out)
    app.run()


if __name__ == "__main__":
    sys.exit(main())
