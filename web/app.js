// tickcast dashboard: live price, next-minute forecast with its interval, past forecasts against
// what happened, model version and live accuracy against persistence, for one symbol at a time.
//
// Data: the HTTP API (/api/bars, /api/predictions, /api/accuracy, /api/model-changes, /api/symbols)
// for history, and the SignalR hub (targets prediction, bar, latestPrice, modelChanged) for live updates. The page
// lives at <app>/api/dashboard/, so the API base is the parent path. Units: prices in the quote
// currency of the symbol, times in ms since the Unix epoch (UTC) on the wire.
//
// For tests, #chart carries data-forecast-count (forecast points drawn) and data-bar-count, #forecast
// data-direction (up, down, flat) and data-bp, #model-changes data-count (changes listed from the API),
// and <body> carries data-connection (SignalR state), data-symbol and data-live-messages.
"use strict";

(function () {
  const API = new URL("../", window.location.href).href.replace(/\/$/, "");
  const MINUTE_MS = 60000;
  const HISTORY_ROWS = 12;
  // A forecast within 1 bp (0.01 %) of the last close is shown as essentially persistence: one-minute
  // BTC moves are typically several bp, so a sub-bp change is no call on the direction.
  const PERSISTENCE_BP = 1;
  const QUOTES = ["USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USD", "EUR", "GBP", "JPY", "BTC", "ETH"];
  const $ = (id) => document.getElementById(id);

  const state = {
    id: null, // URL id of the shown symbol, e.g. kraken:BTC-USD
    pair: null, // {id, exchange, symbol}
    symbols: [],
    chosen: window.location.hash.length > 1, // the user picked a symbol (no auto-switch)
    bars: new Map(), // open_time_ms -> bar
    forecasts: new Map(), // target_time_ms -> newest prediction for that minute
    live: null, // {price, event_time_ms}
    modelKeys: [], // registry keys whose changes concern the shown symbol (own, fallback)
    servingVersion: null, // champion version the model-changes route named
    changesLoadedAt: 0, // when the model changes were last asked for (ms, page clock)
    liveMessages: 0,
    loadSeq: 0,
  };

  // ---- formatting ---------------------------------------------------------------------------
  function digits(price) {
    const p = Math.abs(price);
    return p >= 1000 ? 2 : p >= 1 ? 4 : 6;
  }
  function fmt(x, ref) {
    if (x === null || x === undefined || !Number.isFinite(x)) return "–";
    const d = digits(ref === undefined ? x : ref);
    return x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
  }
  function pct(x) {
    return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %";
  }
  function minute(ms) {
    return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
  }
  function clock(ms) {
    return new Date(ms).toISOString().slice(11, 19) + " UTC";
  }
  // The quote currency of a pair: after "/" or "-" (BTC/USD, BTC-USD), else a known suffix (BTCUSDT).
  function quote(pair) {
    if (!pair) return "";
    const parts = pair.symbol.split(/[/-]/);
    if (parts.length > 1) return parts[parts.length - 1];
    return QUOTES.find((q) => pair.symbol.endsWith(q) && pair.symbol.length > q.length) || "";
  }
  // Model versions are YYYYMMDDTHHMMSSmmmZ-<8 hex>: shown as the first 6 hex digits, the full id on hover.
  function shortVersion(v) {
    if (!v) return "–";
    const m = /^\d{8}T\d{9}Z-([0-9a-f]{6})[0-9a-f]*$/.exec(v);
    return m ? m[1] : v.length > 14 ? v.slice(0, 12) + "…" : v;
  }
  function versionNode(v) {
    const abbr = document.createElement("abbr");
    abbr.textContent = shortVersion(v);
    abbr.title = v || "";
    abbr.className = "version";
    return abbr;
  }
  function signed(x, ref) {
    return (x > 0 ? "+" : x < 0 ? "−" : "±") + fmt(Math.abs(x), ref);
  }

  // ---- chart --------------------------------------------------------------------------------
  const LC = window.LightweightCharts;
  const bg = "#161b22";
  const chartEl = $("chart");
  const chart = LC.createChart(chartEl, {
    autoSize: true,
    layout: { background: { type: "solid", color: bg }, textColor: "#c9d1d9", attributionLogo: true },
    grid: { vertLines: { visible: false }, horzLines: { color: "#21262d" } },
    timeScale: {
      timeVisible: true, secondsVisible: false, rightOffset: 3,
      // UTC labels; a new day shows as MM-DD rather than a bare day number
      tickMarkFormatter: (t, type) => new Date(t * 1000).toISOString().slice(type < LC.TickMarkType.Time ? 5 : 11, type < LC.TickMarkType.Time ? 10 : 16),
    },
    rightPriceScale: { borderColor: "#30363d" },
    localization: { priceFormatter: (p) => fmt(p) },
  });
  const quiet = { priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false };
  // The interval band: the upper bound filled downwards, masked below the lower bound.
  const upperSeries = chart.addSeries(LC.AreaSeries, Object.assign({
    lineColor: "rgba(240,136,62,0.55)", lineWidth: 1, lineStyle: LC.LineStyle.Dashed,
    topColor: "rgba(240,136,62,0.18)", bottomColor: "rgba(240,136,62,0.18)",
  }, quiet));
  const lowerSeries = chart.addSeries(LC.AreaSeries, Object.assign({
    lineColor: "rgba(240,136,62,0.55)", lineWidth: 1, lineStyle: LC.LineStyle.Dashed,
    topColor: bg, bottomColor: bg,
  }, quiet));
  // No last-value tags on the price axis (they covered its tick labels): the legend shows the latest values.
  const closeSeries = chart.addSeries(LC.LineSeries, { color: "#58a6ff", lineWidth: 2, lastValueVisible: false });
  const forecastSeries = chart.addSeries(LC.LineSeries, {
    color: "#f0883e", lineWidth: 2, lineStyle: LC.LineStyle.Dotted,
    pointMarkersVisible: true, pointMarkersRadius: 3, lastValueVisible: false, priceLineVisible: false,
  });

  const sec = (ms) => Math.floor(ms / 1000);

  function renderChart(fit) {
    const bars = [...state.bars.values()].sort((a, b) => a.open_time_ms - b.open_time_ms);
    const closes = bars.map((b) => ({ time: sec(b.open_time_ms), value: b.close }));
    if (state.live) {
      const m = Math.floor(state.live.event_time_ms / MINUTE_MS) * MINUTE_MS;
      const last = bars.length ? bars[bars.length - 1].open_time_ms : -Infinity;
      if (m > last) closes.push({ time: sec(m), value: state.live.price });
    }
    const forecasts = [...state.forecasts.values()].sort((a, b) => a.target_time_ms - b.target_time_ms);
    closeSeries.setData(closes);
    forecastSeries.setData(forecasts.map((p) => ({ time: sec(p.target_time_ms), value: p.predicted_close })));
    upperSeries.setData(forecasts.map((p) => ({ time: sec(p.target_time_ms), value: p.upper })));
    lowerSeries.setData(forecasts.map((p) => ({ time: sec(p.target_time_ms), value: p.lower })));
    const lastClose = closes.length ? closes[closes.length - 1].value : null;
    const lastForecast = forecasts.length ? forecasts[forecasts.length - 1] : null;
    $("legend-close").textContent = lastClose == null ? "" : fmt(lastClose);
    $("legend-forecast").textContent = lastForecast ? fmt(lastForecast.predicted_close) : "";
    $("legend-band").textContent = lastForecast ? fmt(lastForecast.lower, lastForecast.predicted_close) + " … " + fmt(lastForecast.upper, lastForecast.predicted_close) : "";
    chartEl.dataset.forecastCount = String(forecasts.length);
    chartEl.dataset.barCount = String(bars.length);
    if (fit) chart.timeScale().fitContent();
  }

  // ---- cards and tables ---------------------------------------------------------------------
  function latestForecast() {
    let best = null;
    for (const p of state.forecasts.values()) if (!best || p.target_time_ms > best.target_time_ms) best = p;
    return best;
  }

  function renderCards() {
    const p = latestForecast();
    const bars = [...state.bars.values()];
    const lastBar = bars.reduce((a, b) => (a && a.open_time_ms > b.open_time_ms ? a : b), null);
    if (state.live) {
      $("price").textContent = fmt(state.live.price);
      $("price-time").textContent = "trade at " + clock(state.live.event_time_ms);
    } else if (lastBar) {
      $("price").textContent = fmt(lastBar.close);
      $("price-time").textContent = "close of " + minute(lastBar.open_time_ms) + " (no live trade yet)";
    } else {
      $("price").textContent = "–";
      $("price-time").textContent = "waiting for trades";
    }
    if (p) {
      const move = p.predicted_close - p.last_close;
      const bp = (10000 * move) / p.last_close;
      const flat = Math.abs(bp) < PERSISTENCE_BP;
      const direction = flat ? "flat" : move > 0 ? "up" : "down";
      const cur = quote(state.pair);
      const el = $("forecast");
      el.dataset.direction = direction;
      el.dataset.bp = bp.toFixed(2);
      el.className = "big " + direction;
      el.textContent = flat ? "≈ last close" : (move > 0 ? "▲ " : "▼ ") + (bp > 0 ? "+" : "−") + Math.abs(bp).toFixed(1) + " bp";
      $("forecast-change").textContent =
        signed(move, p.last_close) + (cur ? " " + cur : "") + " (" + (bp >= 0 ? "+" : "−") + Math.abs(bp).toFixed(2) + " bp)"
        + " → " + fmt(p.predicted_close) + " from last close " + fmt(p.last_close);
      $("forecast-interval").textContent =
        Math.round(p.interval_level * 100) + " % interval " + fmt(p.lower, p.predicted_close) + " … " + fmt(p.upper, p.predicted_close);
      $("forecast-target").textContent = "close of " + minute(p.target_time_ms) + " UTC" +
        (flat ? " · |change| < " + PERSISTENCE_BP + " bp: essentially persistence (next close = last close)" : "");
      $("model-version").replaceChildren(versionNode(p.model_version));
      $("model-detail").textContent =
        "drift alarms " + p.drift_alarms + " · latency " + p.latency_ms + " ms";
    } else {
      for (const id of ["forecast", "forecast-change", "forecast-interval", "forecast-target", "model-version", "model-detail"]) $(id).textContent = "–";
      $("forecast").className = "big";
    }
  }

  function renderHistory() {
    const body = $("history").querySelector("tbody");
    const rows = [...state.forecasts.values()].sort((a, b) => b.target_time_ms - a.target_time_ms).slice(0, HISTORY_ROWS);
    body.replaceChildren(...rows.map((p) => {
      const bar = state.bars.get(p.target_time_ms);
      const realised = bar ? bar.close : p.realised_close;
      const tr = document.createElement("tr");
      const cells = [
        minute(p.target_time_ms), fmt(p.predicted_close), fmt(p.lower, p.predicted_close) + " … " + fmt(p.upper, p.predicted_close),
        realised == null ? "pending" : fmt(realised),
        realised == null ? "–" : fmt(Math.abs(p.predicted_close - realised), realised),
        realised == null ? "–" : fmt(Math.abs(p.last_close - realised), realised),
        versionNode(p.model_version),
      ];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        if (typeof text === "string") td.textContent = text;
        else td.appendChild(text);
        if (i === 3 && realised != null) td.className = realised >= p.lower && realised <= p.upper ? "inside" : "outside";
        tr.appendChild(td);
      });
      return tr;
    }));
  }

  function renderAccuracy(a) {
    const o = a.overall;
    $("accuracy-window").textContent = "(last " + a.window_minutes + " min, " + o.realised_count + " realised)";
    $("mae-model").textContent = fmt(o.mae_model, o.mae_persistence || 1000);
    $("mae-persistence").textContent = fmt(o.mae_persistence, o.mae_persistence || 1000);
    $("mae-ratio").textContent = o.mae_ratio == null ? "–" : o.mae_ratio.toFixed(4);
    $("directional").textContent = pct(o.directional_accuracy) + (o.moves ? " of " + o.moves + " moves" : "");
    $("majority").textContent = o.moves
      ? pct(o.majority_direction_rate) + " (" + o.moves_up + " up, " + o.moves_down + " down)" : "–";
    $("coverage").textContent = pct(o.coverage) + (o.interval_level ? " (stated " + pct(o.interval_level) + ")" : "");
    $("accuracy-versions").replaceChildren(...a.by_model_version.flatMap((v, i) => [
      i ? " · " : "", versionNode(v.model_version),
      ": ratio " + (v.mae_ratio == null ? "–" : v.mae_ratio.toFixed(4)) + ", n=" + v.realised_count,
    ]));
  }

  function renderAll(fit) {
    renderChart(fit);
    renderCards();
    renderHistory();
  }

  // ---- HTTP API -----------------------------------------------------------------------------
  async function getJson(path) {
    const response = await fetch(API + path, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
    return body;
  }

  let accuracyTimer = null;
  function refreshAccuracySoon() {
    if (accuracyTimer) return;
    accuracyTimer = setTimeout(async () => {
      accuracyTimer = null;
      if (!state.id) return;
      try {
        renderAccuracy(await getJson("/accuracy/" + encodeURIComponent(state.id) + "?window=60"));
      } catch (err) {
        console.warn("accuracy:", err.message);
      }
    }, 1500);
  }

  // ---- model changes: the registry's decisions for this symbol (its own key and the fallback key) ----
  function renderModelChanges(body) {
    const list = $("model-changes");
    state.modelKeys = [body.keys.own, body.keys.fallback];
    state.servingVersion = body.serving ? body.serving.version : null;
    const serving = body.serving
      ? ["serving now: ", versionNode(body.serving.version), " (" + (body.serving.key === body.keys.own ? "own model" : "shared model '" + body.serving.key + "'") + ")"]
      : ["no champion registered yet"];
    $("model-serving").replaceChildren(...serving);
    list.dataset.count = String(body.changes.length);
    if (!body.changes.length) {
      list.replaceChildren(Object.assign(document.createElement("li"), { className: "small", textContent: "no promotion recorded" }));
      return;
    }
    list.replaceChildren(...body.changes.map((c) => {
      const li = document.createElement("li");
      const when = Object.assign(document.createElement("span"), { className: "when", textContent: minute(c.decided_at_ms) });
      const scope = c.scope === "own" ? "own" : "shared '" + c.key + "'";
      const reason = Object.assign(document.createElement("div"), { className: "small reason", textContent: c.reason || "" });
      li.append(when, " " + scope + ": ", versionNode(c.previous_version || "none"), " → ", versionNode(c.version), reason);
      return li;
    }));
  }

  async function loadModelChanges(id) {
    state.changesLoadedAt = Date.now();
    try {
      const body = await getJson("/model-changes/" + encodeURIComponent(id) + "?limit=8");
      if (id === state.id) renderModelChanges(body);
    } catch (err) {
      $("model-serving").textContent = "model changes unavailable: " + err.message;
    }
  }

  async function loadSymbol(id) {
    const seq = ++state.loadSeq;
    state.id = id;
    state.pair = state.symbols.find((s) => s.id === id) || null;
    state.bars.clear();
    state.forecasts.clear();
    state.live = null;
    document.body.dataset.symbol = id;
    $("symbol").value = id;
    renderAll(true);
    loadModelChanges(id);
    const enc = encodeURIComponent(id);
    try {
      const [bars, preds, acc] = await Promise.all([
        getJson("/bars/" + enc + "?limit=240"),
        getJson("/predictions/" + enc + "?limit=240"),
        getJson("/accuracy/" + enc + "?window=60"),
      ]);
      if (seq !== state.loadSeq) return; // another symbol was chosen meanwhile
      for (const b of bars.bars) state.bars.set(b.open_time_ms, b);
      for (const p of preds.predictions) addForecast(p);
      renderAccuracy(acc);
      renderAll(true);
    } catch (err) {
      console.warn("history of " + id + ":", err.message);
    }
  }

  function addForecast(p) {
    const known = state.forecasts.get(p.target_time_ms);
    if (!known || p.made_at_ms >= known.made_at_ms) state.forecasts.set(p.target_time_ms, p);
  }

  // ---- live updates over SignalR ------------------------------------------------------------
  const idOf = (m) => m.exchange + ":" + m.symbol.replace(/\//g, "-");

  function mine(m) {
    if (idOf(m) === state.id) return true;
    // Until the user picks a symbol, follow the first one that is live if the shown one is quiet.
    if (!state.chosen && state.bars.size === 0 && state.forecasts.size === 0 && state.symbols.some((s) => s.id === idOf(m))) {
      loadSymbol(idOf(m));
    }
    return false;
  }

  function countLive() {
    state.liveMessages += 1;
    document.body.dataset.liveMessages = String(state.liveMessages);
    $("live-count").textContent = String(state.liveMessages);
  }

  function setConnection(status) {
    document.body.dataset.connection = status;
    $("connection").textContent = status;
  }

  const connection = new signalR.HubConnectionBuilder()
    .withUrl(API)
    .withAutomaticReconnect({ nextRetryDelayInMilliseconds: (ctx) => Math.min(30000, 1000 * 2 ** Math.min(ctx.previousRetryCount, 5)) })
    .configureLogging(signalR.LogLevel.Warning)
    .build();

  connection.on("prediction", (p) => {
    countLive();
    if (!mine(p)) return;
    addForecast(p);
    // a version the model changes do not name yet (e.g. the first champion): ask again, at most every 30 s
    if (p.model_version !== state.servingVersion && p.model_version !== "cold-start" && Date.now() - state.changesLoadedAt > 30000) {
      loadModelChanges(state.id);
    }
    renderAll(true); // a new minute: keep the whole history in view
  });
  connection.on("bar", (b) => {
    countLive();
    if (!mine(b)) return;
    state.bars.set(b.open_time_ms, b);
    renderAll(true);
    refreshAccuracySoon();
  });
  connection.on("latestPrice", (u) => {
    countLive();
    if (!mine(u)) return;
    if (!state.live || u.event_time_ms >= state.live.event_time_ms) state.live = u;
    renderChart(false);
    renderCards();
  });
  connection.on("modelChanged", (c) => {
    countLive();
    if (!state.modelKeys.includes(c.key)) return; // another symbol's model
    loadModelChanges(state.id);
    refreshAccuracySoon();
  });
  connection.onreconnecting(() => setConnection("reconnecting"));
  connection.onreconnected(() => {
    setConnection("connected");
    if (state.id) loadSymbol(state.id); // fill what was missed while away
  });
  connection.onclose(() => {
    setConnection("disconnected");
    start(); // the reconnect policy gave up or the server closed for good: keep trying
  });

  let startDelay = 1000;
  async function start() {
    for (;;) {
      try {
        setConnection("connecting");
        await connection.start();
        setConnection("connected");
        startDelay = 1000;
        return;
      } catch (err) {
        setConnection("disconnected");
        console.warn("SignalR start failed, retrying:", err.message);
        await new Promise((r) => setTimeout(r, startDelay));
        startDelay = Math.min(30000, startDelay * 2);
      }
    }
  }

  // ---- start-up -----------------------------------------------------------------------------
  async function init() {
    try {
      state.symbols = (await getJson("/symbols")).symbols;
    } catch (err) {
      console.warn("symbols:", err.message);
    }
    const select = $("symbol");
    select.replaceChildren(...state.symbols.map((s) => {
      const option = document.createElement("option");
      option.value = s.id;
      option.textContent = s.exchange + " " + s.symbol;
      return option;
    }));
    select.addEventListener("change", () => {
      state.chosen = true;
      window.location.hash = select.value;
      loadSymbol(select.value);
    });
    const wanted = decodeURIComponent(window.location.hash.slice(1));
    const first = state.symbols.find((s) => s.id.toLowerCase() === wanted.toLowerCase()) || state.symbols[0];
    if (first) await loadSymbol(first.id);
    start();
  }

  init();
})();
