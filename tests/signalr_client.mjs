// A real SignalR client for the local hub's protocol test: the official @microsoft/signalr
// package (from node_modules) in Node 20, over WebSockets with the JSON hub protocol.
//
// Usage: node tests/signalr_client.mjs <base URL of the app's API, e.g. http://127.0.0.1:7071/api>
// Prints one JSON object per line (connected, message, reconnecting, reconnected, idle-done,
// invoke-error, closed) and obeys commands on stdin: "idle <ms>", "invoke", "stop".
// It times the server out after 1.5 s without any message, so it stays connected only when
// the hub pings; it pings the hub every 300 ms.
import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(import.meta.url);
const signalR = require("@microsoft/signalr");

// The client's Node HTTP path wraps fetch with fetch-cookie and a tough-cookie jar, but in this
// node_modules tree it resolves the top-level tough-cookie 2.5 (an Azurite dependency) while
// fetch-cookie 2 needs tough-cookie 4, so negotiate fails ("reading 'secure'"). Browsers never take
// that path. Node 20's own fetch, through the client's documented httpClient option, avoids it.
class NodeFetchHttpClient extends signalR.HttpClient {
  async send(request) {
    const abort = new AbortController();
    if (request.abortSignal) request.abortSignal.onabort = () => abort.abort();
    const timer = request.timeout ? setTimeout(() => abort.abort(), request.timeout) : null;
    try {
      const response = await fetch(request.url, {
        method: request.method, headers: request.headers, body: request.content, signal: abort.signal,
      });
      const text = await response.text();
      if (!response.ok) throw new signalR.HttpError(text || response.statusText, response.status);
      return new signalR.HttpResponse(response.status, response.statusText, text);
    } catch (err) {
      if (abort.signal.aborted) throw new signalR.AbortError();
      throw err;
    } finally {
      if (timer) clearTimeout(timer);
    }
  }
}

const base = process.argv[2];
const out = (event) => process.stdout.write(JSON.stringify(event) + "\n");

const connection = new signalR.HubConnectionBuilder()
  .withUrl(base, { httpClient: new NodeFetchHttpClient() })
  .withAutomaticReconnect([0, 200, 500, 1000])
  .configureLogging(signalR.LogLevel.Error)
  .build();
connection.serverTimeoutInMilliseconds = 1500;
connection.keepAliveIntervalInMilliseconds = 300;

for (const target of ["prediction", "bar", "latestPrice", "modelChanged"]) {
  connection.on(target, (...args) => out({ event: "message", target, args }));
}
connection.onreconnecting((err) => out({ event: "reconnecting", error: err ? err.message : null }));
connection.onreconnected((id) => out({ event: "reconnected", connectionId: id, state: connection.state }));
connection.onclose((err) => {
  out({ event: "closed", error: err ? err.message : null, state: connection.state });
  process.exit(0);
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

readline.createInterface({ input: process.stdin }).on("line", async (line) => {
  const [command, arg] = line.trim().split(/\s+/);
  if (command === "idle") {
    await sleep(Number(arg));
    out({ event: "idle-done", state: connection.state });
  } else if (command === "invoke") {
    try {
      await connection.invoke("subscribe", "kraken:BTC-USD");
      out({ event: "invoke-ok" });
    } catch (err) {
      out({ event: "invoke-error", error: err.message });
    }
  } else if (command === "stop") {
    await connection.stop();
  }
});

try {
  await connection.start();
  out({ event: "connected", connectionId: connection.connectionId, state: connection.state });
} catch (err) {
  out({ event: "start-failed", error: err.message });
  process.exit(1);
}
