import Foundation
import ServalHTTP

/// `GET /dashboard`: one self-contained page (no external assets, no build step) that polls
/// `GET /dashboard/data` every second and shows the workers (health, circuit, load,
/// requests/s, cache hit rate) and the router's totals. With `--api-key`, open it as
/// `/dashboard#key=<key>`: the page sends the key from the URL fragment (never to the server
/// in the URL itself).
enum Dashboard {
    static func data(_ g: Gateway) -> JSONValue {
        let (rps, eps) = g.metrics.rate()
        let hits = g.metrics.total("smg_router_cache_hits_total")
        let misses = g.metrics.total("smg_router_cache_misses_total")
        let workers: [JSONValue] = g.registry.all.map { w in
            let lookups = w.cacheLookups.load(ordering: .relaxed)
            let h = w.cacheHits.load(ordering: .relaxed)
            return [
                "id": .string(w.id), "url": .string(w.url), "health": .string(w.health.rawValue),
                "circuit": .string(w.breaker.state.rawValue), "draining": .bool(w.isDraining),
                "load": .int(w.load), "routed": .int(w.routed.load(ordering: .relaxed)),
                "failures": .int(w.failures.load(ordering: .relaxed)),
                "cache_hit_rate": lookups > 0 ? .double(Double(h) / Double(lookups)) : .null,
            ]
        }
        return [
            "policy": .string(g.policy.name),
            "uptime_s": .double(Date().timeIntervalSince(g.startedAt)),
            "requests_per_s": .double(rps), "errors_per_s": .double(eps),
            "cache_hit_rate": hits + misses > 0 ? .double(hits / (hits + misses)) : .null,
            "queued": .int(g.admission.queuedCount), "active": .int(g.admission.activeCount),
            "retries": .double(g.metrics.total("smg_worker_retries_total")),
            "workers": .array(workers),
        ]
    }

    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <title>Serval router</title>
        <style>
         body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2330; background: #f6f7f9; }
         h1 { font-size: 20px; margin: 0 0 4px; }
         .sub { color: #667; margin-bottom: 16px; }
         .cards { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 16px; }
         .card { background: #fff; border: 1px solid #dde; border-radius: 8px; padding: 10px 16px; min-width: 120px; }
         .card b { display: block; font-size: 22px; }
         table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #dde; }
         th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #eef; }
         th { background: #eef0f5; }
         .healthy, .closed { color: #087f23; font-weight: 600; }
         .unhealthy, .open { color: #c62828; font-weight: 600; }
         .pending, .half_open { color: #b26a00; font-weight: 600; }
         .bar { display: inline-block; height: 10px; background: #4a78d0; vertical-align: middle; margin-right: 6px; }
         #err { color: #c62828; }
        </style>
        </head>
        <body>
        <h1>Serval router</h1>
        <div class="sub">policy <span id="policy">?</span> &middot; up <span id="uptime">?</span> &middot;
         updated <span id="updated">never</span> <span id="err"></span></div>
        <div class="cards">
         <div class="card">requests/s<b id="rps">-</b></div>
         <div class="card">errors/s<b id="eps">-</b></div>
         <div class="card">cache hit rate<b id="hit">-</b></div>
         <div class="card">in flight<b id="active">-</b></div>
         <div class="card">queued<b id="queued">-</b></div>
         <div class="card">retries<b id="retries">-</b></div>
        </div>
        <table id="workers">
         <thead><tr><th>id</th><th>url</th><th>health</th><th>circuit</th><th>load</th><th>req/s</th>
         <th>routed</th><th>failures</th><th>cache hit rate</th></tr></thead>
         <tbody></tbody>
        </table>
        <script>
        "use strict";
        const key = new URLSearchParams(location.hash.slice(1)).get("key");
        const headers = key ? { Authorization: "Bearer " + key } : {};
        let previous = null;
        function pct(x) { return x === null || x === undefined ? "-" : (100 * x).toFixed(1) + "%"; }
        function cell(row, text, cls) {
          const td = document.createElement("td");
          td.textContent = text;
          if (cls) td.className = cls;
          row.appendChild(td);
          return td;
        }
        async function tick() {
          try {
            const r = await fetch("dashboard/data", { headers, cache: "no-store" });
            if (!r.ok) throw new Error("HTTP " + r.status);
            const d = await r.json();
            const now = performance.now();
            document.getElementById("policy").textContent = d.policy;
            document.getElementById("uptime").textContent = Math.round(d.uptime_s) + " s";
            document.getElementById("rps").textContent = d.requests_per_s.toFixed(1);
            document.getElementById("eps").textContent = d.errors_per_s.toFixed(1);
            document.getElementById("hit").textContent = pct(d.cache_hit_rate);
            document.getElementById("active").textContent = d.active;
            document.getElementById("queued").textContent = d.queued;
            document.getElementById("retries").textContent = d.retries;
            const body = document.querySelector("#workers tbody");
            body.replaceChildren();
            const maxLoad = Math.max(1, ...d.workers.map(w => w.load));
            for (const w of d.workers) {
              const row = document.createElement("tr");
              row.dataset.id = w.id;
              cell(row, w.id);
              cell(row, w.url);
              cell(row, w.draining ? "draining" : w.health, w.health);
              cell(row, w.circuit, w.circuit);
              const load = cell(row, "");
              const bar = document.createElement("span");
              bar.className = "bar";
              bar.style.width = (60 * w.load / maxLoad) + "px";
              load.append(bar, String(w.load));
              let rate = "-";
              if (previous && previous.routed[w.id] !== undefined) {
                rate = ((w.routed - previous.routed[w.id]) / ((now - previous.at) / 1000)).toFixed(1);
              }
              cell(row, rate);
              cell(row, w.routed);
              cell(row, w.failures);
              cell(row, pct(w.cache_hit_rate));
              body.appendChild(row);
            }
            previous = { at: now, routed: Object.fromEntries(d.workers.map(w => [w.id, w.routed])) };
            document.getElementById("updated").textContent = new Date().toLocaleTimeString();
            document.getElementById("err").textContent = "";
          } catch (e) {
            document.getElementById("err").textContent = "(" + e.message + ")";
          }
        }
        tick();
        setInterval(tick, 1000);
        </script>
        </body>
        </html>
        """#
}
