import HTTPTypes
import Hummingbird
import NIOCore

/// The dashboard's one page: plain HTML, CSS and a little JavaScript in the binary (no build
/// step, nothing fetched from elsewhere: it works offline). The script polls `api/state`
/// every 2 s and draws the rate charts as inline SVG. A partitioned stream is one row per group
/// (its figures over all partitions) whose button shows a row per partition; dead letters are
/// listed per partition stream, which the actions name.
enum DashboardPage {
    static var response: Response {
        Response(
            status: .ok,
            headers: [
                .contentType: "text/html; charset=utf-8",
                .cacheControl: "no-store",
                // Only this page's own script and style, and requests to where it came from; no
                // frame of another site may wrap the buttons.
                .contentSecurityPolicy:
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'",
                HTTPField.Name("X-Frame-Options")!: "DENY",
            ],
            body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>OrderShop operations</title>
        <style>
          body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f5f6f8; }
          header { display: flex; gap: 1.5em; align-items: center; padding: .6em 1.2em; background: #1d2330; color: #fff; flex-wrap: wrap; }
          header h1 { font-size: 1.15em; margin: 0; }
          header label { margin-left: auto; }
          header input { width: 16em; }
          main { padding: .4em 1.2em 2em; }
          h2 { font-size: 1.05em; margin: 1.2em 0 .4em; }
          table { border-collapse: collapse; background: #fff; width: 100%; }
          th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid #e3e6eb; vertical-align: middle; }
          th { background: #eceff3; font-weight: 600; white-space: nowrap; }
          td.num { text-align: right; font-variant-numeric: tabular-nums; }
          td.mono, td.id { font-family: ui-monospace, monospace; font-size: .92em; white-space: nowrap; }
          td.actions { white-space: nowrap; }
          .warn { color: #a34b00; font-weight: 600; }
          .bad { color: #b00020; font-weight: 600; }
          .muted { color: #7a8291; }
          .consumer { display: inline-block; margin-right: .8em; white-space: nowrap; }
          svg.chart { display: block; background: #fafbfc; border: 1px solid #e3e6eb; }
          td.rate { width: 190px; }
          .legend { font-size: .8em; color: #7a8291; white-space: nowrap; }
          .legend .added { color: #2f6fdb; } .legend .acked { color: #1e9e5a; }
          button { font: inherit; padding: .15em .7em; cursor: pointer; }
          button:disabled { cursor: not-allowed; }
          #message { padding: .3em 1.2em; }
          #message:empty { display: none; }
          #message.ok { background: #e3f5ea; } #message.error { background: #fde7ea; color: #b00020; }
          #unread { padding: .3em 1.2em; background: #fff4e5; color: #8a4b00; }
          #memory { padding: .3em 1.2em; color: #5a6270; font-size: .9em; }
          #memory .alarm { color: #b00020; font-weight: 600; }
          td.error { max-width: 28em; overflow-wrap: anywhere; }
          tr.partition td { background: #fafbfc; font-size: .92em; }
          tr.partition td:first-child { padding-left: 1.8em; }
          button.expand { font-size: .8em; padding: 0 .4em; margin-left: .5em; }
        </style>
        </head>
        <body>
        <header>
          <h1>OrderShop operations</h1>
          <span id="updated" class="muted">loading…</span>
          <label>Admin token <input id="token" type="password" autocomplete="off" placeholder="needed to replay or purge"></label>
        </header>
        <div id="message" role="status"></div>
        <div id="unread" role="alert" hidden></div>
        <div id="memory"></div>
        <main>
          <h2>Streams and consumer groups</h2>
          <table id="streams">
            <thead><tr><th>Stream</th><th>Length</th><th>Group</th><th>Lag</th><th>Pending</th><th>Oldest pending</th>
            <th>Dead letters</th><th>Consumers (pending, idle)</th><th>Rate, last minutes</th></tr></thead>
            <tbody></tbody>
          </table>
          <p id="hidden-replays" class="muted" hidden></p>
          <h2>Dead letters</h2>
          <table id="dlq">
            <thead><tr><th>Stream</th><th>Group</th><th>Dead-letter id</th><th>Original id</th><th>Deliveries</th>
            <th>Reason</th><th>Last error</th><th></th></tr></thead>
            <tbody></tbody>
          </table>
          <p id="no-dlq" class="muted" hidden>No dead letters.</p>
        </main>
        <script>
        "use strict";
        // One leading slash: opened as //dashboard, "//dashboard/api/state" named another host (a review).
        const base = location.pathname.replace(/^\/+/, "/").replace(/\/+$/, "");
        const tokenInput = document.getElementById("token");
        tokenInput.value = sessionStorage.getItem("ordershop-admin-token") || "";
        tokenInput.addEventListener("input", () => sessionStorage.setItem("ordershop-admin-token", tokenInput.value));

        function headers() {
          const h = { "Content-Type": "application/json" };
          if (tokenInput.value) h["Authorization"] = "Bearer " + tokenInput.value;
          return h;
        }
        function el(tag, attrs, ...children) {
          const e = document.createElement(tag);
          for (const [k, v] of Object.entries(attrs || {})) {
            if (k === "class") e.className = v; else e.setAttribute(k, v);
          }
          for (const c of children) if (c != null) e.append(c instanceof Node ? c : String(c));
          return e;
        }
        function duration(s) {
          if (s == null) return "–";
          if (s < 120) return s.toFixed(1) + " s";
          if (s < 7200) return (s / 60).toFixed(1) + " min";
          return (s / 3600).toFixed(1) + " h";
        }
        function message(text, kind) {
          const m = document.getElementById("message");
          m.textContent = text;
          m.className = kind || "";
        }
        const svgNS = "http://www.w3.org/2000/svg";
        function chart(series) {
          const w = 180, h = 40;
          const svg = document.createElementNS(svgNS, "svg");
          svg.setAttribute("class", "chart");
          svg.setAttribute("width", w);
          svg.setAttribute("height", h);
          const points = series ? series.points : [];
          if (points.length < 2) {
            const t = document.createElementNS(svgNS, "text");
            t.setAttribute("x", 6); t.setAttribute("y", 24); t.setAttribute("fill", "#7a8291"); t.setAttribute("font-size", "11");
            t.textContent = "collecting samples…";
            svg.append(t);
            return svg;
          }
          const t0 = points[0][0], t1 = points[points.length - 1][0];
          const top = Math.max(1, ...points.map(p => Math.max(p[1], p[2])));
          const x = p => ((p[0] - t0) / Math.max(1, t1 - t0) * (w - 4) + 2).toFixed(1);
          const y = v => (h - 3 - v / top * (h - 12)).toFixed(1);
          // Added: a light area; acknowledged: a line over it (where they match, the line tops the area).
          const area = document.createElementNS(svgNS, "polygon");
          area.setAttribute("fill", "#c9dbf7");
          area.setAttribute("points", x(points[0]) + "," + (h - 3) + " " + points.map(p => x(p) + "," + y(p[1])).join(" ")
            + " " + x(points[points.length - 1]) + "," + (h - 3));
          const line = document.createElementNS(svgNS, "polyline");
          line.setAttribute("fill", "none");
          line.setAttribute("stroke", "#1e9e5a");
          line.setAttribute("stroke-width", "1.5");
          line.setAttribute("points", points.map(p => x(p) + "," + y(p[2])).join(" "));
          const scale = document.createElementNS(svgNS, "text");
          scale.setAttribute("x", 3); scale.setAttribute("y", 9); scale.setAttribute("fill", "#7a8291"); scale.setAttribute("font-size", "9");
          scale.textContent = top.toFixed(top < 10 ? 1 : 0) + "/s";
          svg.append(area, line, scale);
          return svg;
        }
        function rateCell(series) {
          const points = series ? series.points : [];
          const last = points.length ? points[points.length - 1] : null;
          const legend = last
            ? el("div", { class: "legend" },
                el("span", { class: "added" }, "added " + last[1].toFixed(1)), " · ",
                el("span", { class: "acked" }, "acked " + last[2].toFixed(1) + "/s"), " · backlog " + last[3])
            : null;
          return el("td", { class: "rate" }, chart(series), legend);
        }

        // Logical streams whose partitions are shown (kept across refreshes).
        const expanded = new Set();
        function groupCells(name, length, s, series) {
          const lag = s.lag == null ? "?" : s.lag;
          const consumers = s.consumers.length === 0 ? el("span", { class: "muted" }, "none")
            : el("span", {}, ...s.consumers.map(c => el("span", { class: "consumer" },
                c.name + " (" + c.pending + ", " + duration(c.idleMilliseconds / 1000) + ")")));
          return [name, el("td", { class: "num" }, length),
            el("td", { class: "mono" }, s.group),
            el("td", { class: "num" + (s.lag > 0 ? " warn" : "") }, lag),
            el("td", { class: "num" + (s.pending > 0 ? " warn" : "") }, s.pending),
            el("td", { class: "num" }, duration(s.oldestPendingAge)),
            el("td", { class: "num dlq-count" + (s.deadLetters > 0 ? " bad" : "") }, s.deadLetters),
            el("td", {}, consumers),
            series === undefined ? el("td", {}) : rateCell(series)];
        }

        function render(state) {
          // Nodes not read (a primary down, its replica not yet promoted): their streams are missing.
          const unread = document.getElementById("unread");
          unread.hidden = !state.unread;
          unread.textContent = state.unread ? "Not read: " + state.unread.map(u => u.node + " (" + u.error + ")").join("; ")
            + ". Its streams are missing below, and a stream with partitions there is counted without them." : "";
          // Each node's memory: a full Redis refuses every write, an evicting one loses or doubles events.
          const memory = document.getElementById("memory");
          memory.replaceChildren(...(state.memory || []).map(m => {
            const alarm = m.policy !== "noeviction" || (m.maximum > 0 && m.used >= Math.floor(m.maximum / 10) * 9);
            return el("div", alarm ? { class: "alarm" } : {}, "Redis memory: " + m.summary);
          }));
          const rates = new Map(state.rates.map(r => [r.stream + "\u0000" + r.group, r]));
          const body = document.querySelector("#streams tbody");
          const rows = [];
          let hiddenReplays = 0;
          for (const stream of state.streams) {
            // A group's replay stream matters only while it holds work: idle ones are counted, not listed.
            if (stream.name.startsWith("replay:") && stream.groups.length > 0
                && stream.groups.every(g => !g.status.pending && !g.status.lag && !g.status.deadLetters)) {
              hiddenReplays += 1;
              continue;
            }
            if (stream.groups.length === 0) {
              rows.push(el("tr", { "data-stream": stream.name }, el("td", { class: "mono" }, stream.name),
                el("td", { class: "num" }, stream.length), el("td", { class: "muted", colspan: 7 }, "no consumer groups")));
            }
            const parts = stream.partitions || [];
            for (const g of stream.groups) {
              const s = g.status;
              const name = el("td", { class: "mono" }, stream.name);
              if (parts.length > 0) {
                // A logical stream: its figures over all partitions; the button shows each.
                const open = expanded.has(stream.name);
                const toggle = el("button", { class: "expand", "aria-expanded": String(open), title: "show or hide each partition" },
                  (open ? "▾ " : "▸ ") + parts.length + " partitions");
                toggle.onclick = () => {
                  if (expanded.has(stream.name)) expanded.delete(stream.name); else expanded.add(stream.name);
                  render(state);
                };
                name.append(toggle);
              }
              rows.push(el("tr", { "data-stream": stream.name, "data-group": s.group },
                ...groupCells(name, stream.length, s, rates.get(stream.name + "\u0000" + s.group))));
              if (!expanded.has(stream.name)) continue;
              for (const p of parts) {
                const pg = p.groups.find(x => x.status.group === s.group);
                if (!pg) continue;
                const pname = el("td", { class: "mono" }, p.name, p.node ? el("span", { class: "muted" }, " @ " + p.node) : null);
                rows.push(el("tr", { class: "partition", "data-stream": p.name, "data-group": s.group, "data-partition-of": stream.name },
                  ...groupCells(pname, p.length, pg.status)));
              }
            }
          }
          body.replaceChildren(...rows);
          const note = document.getElementById("hidden-replays");
          note.hidden = hiddenReplays === 0;
          note.textContent = hiddenReplays + " replay stream" + (hiddenReplays === 1 ? "" : "s")
            + " with nothing pending not shown (a group's replay stream carries the dead letters replayed to it).";

          const letters = [];
          // A partitioned stream's dead letters are its partitions': the actions name the partition stream.
          for (const stream of state.streams.flatMap(s => s.partitions || [s])) {
            for (const g of stream.groups) {
              for (const l of g.deadLetters) {
                const replay = el("button", { class: "replay", title: "re-deliver to group " + g.status.group + " only" }, "Replay");
                const purge = el("button", { class: "purge", title: "delete this dead letter" }, "Purge");
                replay.disabled = purge.disabled = !state.actions;
                replay.onclick = () => act("replay", stream.name, g.status.group, [l.id]);
                purge.onclick = () => {
                  if (confirm("Delete dead letter " + l.id + " of " + stream.name + " / " + g.status.group + "?"))
                    act("purge", stream.name, g.status.group, [l.id]);
                };
                letters.push(el("tr", { "data-id": l.id, "data-stream": stream.name, "data-group": g.status.group },
                  el("td", { class: "mono" }, stream.name), el("td", { class: "mono" }, g.status.group),
                  el("td", { class: "id" }, l.id), el("td", { class: "id" }, l.originalID),
                  el("td", { class: "num" }, l.deliveryCount), el("td", {}, l.reason),
                  el("td", { class: "error" }, l.error), el("td", { class: "actions" }, replay, " ", purge)));
              }
            }
          }
          document.querySelector("#dlq tbody").replaceChildren(...letters);
          document.getElementById("no-dlq").hidden = letters.length > 0;
          document.getElementById("updated").textContent = "updated " + new Date(state.time * 1000).toLocaleTimeString()
            + (state.actions ? "" : " · actions off (no admin token configured)");
        }

        async function refresh() {
          try {
            const response = await fetch(base + "/api/state", { headers: headers(), cache: "no-store" });
            const body = await response.json();
            if (response.ok) render(body);
            else message("cannot read the state (" + response.status + "): " + (body.error || response.statusText), "error");
          } catch (e) {
            message("cannot reach the dashboard: " + e, "error");
          }
        }
        async function act(kind, stream, group, ids) {
          try {
            const response = await fetch(base + "/api/" + kind, { method: "POST", headers: headers(), body: JSON.stringify({ stream, group, ids }) });
            const body = await response.json().catch(() => ({}));
            if (response.ok && body.notReplayed) {
              message("replayed " + body.replayed + "; " + body.why, "error");
            } else if (response.ok && body.notFound) {
              const done = kind === "replay" ? "replayed " + body.replayed : "purged " + body.purged;
              message(done + "; " + body.notFound + " of the selected are no longer dead letters (handled by someone else?)", "error");
            } else if (response.ok) {
              message(kind === "replay" ? "replayed " + body.replayed + " to " + body.to : "purged " + body.purged, "ok");
            } else {
              message(kind + " refused (" + response.status + "): " + (body.error || response.statusText), "error");
            }
          } catch (e) {
            message(kind + " failed: " + e, "error");
          }
          await refresh();
        }
        // Poll after each answer, not on a fixed timer: a slow Redis never piles requests up.
        (async function poll() {
          await refresh();
          setTimeout(poll, 2000);
        })();
        </script>
        </body>
        </html>
        """#
}
