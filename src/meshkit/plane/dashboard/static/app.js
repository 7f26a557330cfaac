/* meshkit dashboard: topology graph, metrics, alerts and traces, polled from the REST API.
 *
 * Every value from the mesh is put into the page as text (textContent, SVG text, cytoscape
 * labels drawn on canvas), never as HTML, so names, tags and metadata cannot inject markup.
 * The token is kept in sessionStorage and sent only in the Authorization header.
 */
(function () {
  "use strict";
  performance.mark("meshkit-start");
  var charts = window.meshkitCharts;
  var TOKEN_KEY = "meshkit.token";
  var S = {
    cfg: null, cy: null, timer: null, selected: null, topology: null, stats: {}, rules: null,
    edgeCalls: {}, lastPoll: 0, ready: false, traceId: null
  };

  // -- DOM helpers: text only --------------------------------------------------------------
  function $(id) { return document.getElementById(id); }
  function el(tag, props, children) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (k) {
      if (k === "text") node.textContent = props[k];
      else if (k === "className") node.className = props[k];
      else if (k === "onclick") node.addEventListener("click", props[k]);
      else if (k.indexOf("data-") === 0) node.setAttribute(k, String(props[k]));
      else node[k] = props[k];
    });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function td(text, className) { return el("td", { text: text === null || text === undefined ? "–" : String(text), className: className || "" }); }
  function pct(v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%"; }
  function ms(v) { return v === null || v === undefined ? "–" : (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + " ms"; }
  function rate(v) { return v === null || v === undefined ? "–" : (v >= 10 ? v.toFixed(0) : v.toFixed(2)) + "/s"; }
  function time(t) { return t ? new Date(t * 1000).toLocaleTimeString() : "–"; }

  // -- API -----------------------------------------------------------------------------------
  function AuthError() { this.name = "AuthError"; }
  async function api(path, params) {
    var url = S.cfg.api + path;
    if (params) {
      var q = new URLSearchParams();
      Object.keys(params).forEach(function (k) {
        if (params[k] !== null && params[k] !== undefined && params[k] !== "") q.set(k, params[k]);
      });
      if (q.toString()) url += "?" + q.toString();
    }
    var headers = { Accept: "application/json" };
    var token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    var resp = await fetch(url, { headers: headers, credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" });
    if (resp.status === 401) throw new AuthError();
    var body = await resp.json().catch(function () { return null; });
    if (!resp.ok) {
      var detail = body && body.detail !== undefined ? body.detail : resp.statusText;
      throw new Error(resp.status + ": " + (typeof detail === "string" ? detail : JSON.stringify(detail)));
    }
    return body;
  }

  // -- login -----------------------------------------------------------------------------------
  function showLogin(message) {
    stopPolling();
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").focus();
  }
  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();  // the token never leaves in a form submission (and so never in a URL)
    var input = $("token");
    var token = input.value.trim();
    input.value = "";
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    start();
  });
  $("logout").addEventListener("click", function () {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("Signed out.");
  });

  // -- graph -----------------------------------------------------------------------------------
  var GRAPH_STYLE = [
    { selector: "node", style: {
      label: "data(label)", "text-wrap": "wrap", "text-valign": "bottom", "text-margin-y": 3,
      "font-size": 10, width: 26, height: 26, "background-color": "#8a8f98", color: "#1d232b",
      "border-width": 2, "border-color": "#ffffff", "min-zoomed-font-size": 7 } },
    { selector: "node.healthy", style: { "background-color": "#2e9d5b" } },
    { selector: "node.degraded", style: { "background-color": "#e0a100" } },
    { selector: "node.unhealthy", style: { "background-color": "#d3352b" } },
    { selector: "node.external", style: { shape: "round-rectangle", "background-color": "#c9ced6" } },
    { selector: "node.breaker-open", style: { "border-width": 4, "border-style": "dashed", "border-color": "#d3352b" } },
    { selector: "node:selected", style: { "border-width": 4, "border-color": "#2f6fd6", "border-style": "solid" } },
    { selector: "edge", style: {
      width: 1.5, "curve-style": "bezier", "target-arrow-shape": "triangle", "line-color": "#9aa3ae",
      "target-arrow-color": "#9aa3ae", label: "data(label)", "font-size": 8, color: "#4a5260",
      "text-background-color": "#ffffff", "text-background-opacity": 0.8, "text-background-padding": 1,
      "text-rotation": "autorotate" } },
    { selector: "edge.errors", style: { "line-color": "#d3352b", "target-arrow-color": "#d3352b" } },
    { selector: "edge.quiet", style: { label: "", "curve-style": "straight" } }
  ];

  function initGraph() {
    if (S.cy) return;
    S.cy = window.cytoscape({
      container: $("graph"), elements: [], style: GRAPH_STYLE, minZoom: 0.05, maxZoom: 4,
      textureOnViewport: true, hideEdgesOnViewport: true, boxSelectionEnabled: false
    });
    window.meshkitCy = S.cy;
    S.cy.on("tap", "node", function (ev) { openService(ev.target.id()); });
  }

  function serviceStatus(entry) {
    var r = S.rules || { service_healthy_ratio: 0.8, service_degraded_ratio: 0.5 };
    var ratio = entry.total ? entry.healthy / entry.total : 0;
    if (ratio >= r.service_healthy_ratio) return "healthy";
    return ratio >= r.service_degraded_ratio ? "degraded" : "unhealthy";
  }

  function openBreakers(entry) {
    return entry.instances.filter(function (i) { return i.circuit_breaker === "open"; }).length;
  }

  function desiredElements(topology, deps, now) {
    var nodes = {}, edges = {};
    Object.keys(topology.services).forEach(function (name) {
      var e = topology.services[name];
      var status = serviceStatus(e), open = openBreakers(e);
      nodes[name] = {
        data: { id: name, label: name + "\n" + e.healthy + "/" + e.total, status: status, healthy: e.healthy,
          total: e.total, open_breakers: open, registered: true },
        classes: status + (open ? " breaker-open" : "")
      };
    });
    var many = Object.keys(nodes).length > 100;
    deps.forEach(function (d) {
      [d.caller, d.callee].forEach(function (name) {
        if (!nodes[name]) nodes[name] = { data: { id: name, label: name, status: "external", registered: false }, classes: "external" };
      });
      var id = "edge:" + d.caller + "->" + d.callee;
      var prev = S.edgeCalls[id];
      var perSecond = prev && now > prev.t && d.calls >= prev.calls ? (d.calls - prev.calls) / ((now - prev.t) / 1000) : null;
      S.edgeCalls[id] = { t: now, calls: d.calls };
      var label = (perSecond === null ? d.calls + " calls" : rate(perSecond)) + " · " + pct(d.error_rate) + " err · p99 " + ms(d.p99_ms);
      edges[id] = {
        data: { id: id, source: d.caller, target: d.callee, label: label, calls: d.calls, rate: perSecond,
          error_rate: d.error_rate, p50_ms: d.p50_ms, p99_ms: d.p99_ms },
        classes: (d.errors ? "errors" : "") + (many ? " quiet" : "")
      };
    });
    return { nodes: nodes, edges: edges };
  }

  function renderGraph(topology, deps) {
    var cy = S.cy, want = desiredElements(topology, deps, Date.now()), added = [], gone;
    cy.batch(function () {
      gone = cy.elements().filter(function (ele) {
        return !(ele.isNode() ? want.nodes[ele.id()] : want.edges[ele.id()]);
      });
      cy.remove(gone);
      [want.nodes, want.edges].forEach(function (group, i) {
        Object.keys(group).forEach(function (id) {
          var spec = group[id], existing = cy.getElementById(id);
          if (existing.nonempty()) {
            existing.data(spec.data);
            existing.classes(spec.classes);
          } else {
            added.push({ group: i === 0 ? "nodes" : "edges", data: spec.data, classes: spec.classes });
          }
        });
      });
      if (added.length) cy.add(added);  // one call: cytoscape indexes the whole set at once
    });
    var changed = added.length > 0 || gone.length > 0;
    performance.mark("meshkit-elements");
    if (changed) layout();
    performance.mark("meshkit-layout");
    if (!S.ready) {
      S.ready = true;
      performance.mark("meshkit-graph-ready");
      window.meshkitGraphReady = {
        ms: performance.now(), nodes: cy.nodes().length, edges: cy.edges().length,
        script_ms: performance.measure("meshkit-render", "meshkit-start", "meshkit-graph-ready").duration
      };
    }
  }

  function layout() {
    var cy = S.cy, nodes = cy.nodes(), n = nodes.length;
    if (n <= 60) {  // small meshes: callers above callees, deterministic and readable
      cy.layout({ name: "breadthfirst", directed: true, animate: false, spacingFactor: 1.4, avoidOverlap: true,
        nodeDimensionsIncludeLabels: true }).run();
      cy.fit(undefined, 30);
      return;
    }
    // large ones: a grid by name, placed directly (O(n), no label measuring), then a computed viewport
    var DX = 120, DY = 70, cols = Math.ceil(Math.sqrt(n * 1.6)), index = {};
    nodes.map(function (node) { return node.id(); }).sort().forEach(function (id, i) { index[id] = i; });
    nodes.positions(function (node) {
      var i = index[node.id()];
      return { x: (i % cols) * DX, y: Math.floor(i / cols) * DY };
    });
    var w = (cols - 1) * DX + DX, h = Math.ceil(n / cols) * DY, box = cy.container();
    var zoom = Math.min(box.clientWidth / w, box.clientHeight / h) * 0.95;
    cy.viewport({ zoom: zoom, pan: { x: (box.clientWidth - (w - DX) * zoom) / 2, y: (box.clientHeight - (h - DY) * zoom) / 2 } });
  }

  // -- header, alerts, services table, charts ---------------------------------------------------
  function renderHealth(health, history) {
    var badge = $("mesh-status");
    badge.dataset.status = health.status;
    badge.textContent = health.status;
    var traffic = history.window || {};
    clear($("mesh-figures"));
    [["health", (100 * health.health_score).toFixed(0) + "%"],
     ["success", pct(traffic.success_rate)],
     ["requests", rate(traffic.request_rate)],
     ["instances", health.healthy_instances + "/" + health.total_instances + " healthy"],
     ["services", String(health.total_services)],
     ["open breakers", String(health.open_circuit_breakers)]].forEach(function (f) {
      $("mesh-figures").appendChild(el("span", { "data-figure": f[0], text: f[0] + " " + f[1] }));
    });
  }

  function renderAlerts(body) {
    S.rules = body.rules;
    var tbody = clear($("alerts").tBodies[0]);
    body.alerts.forEach(function (a) {
      var row = el("tr", { className: "alert-row" + (a.service ? " clickable" : ""), "data-name": a.name,
        "data-severity": a.severity, "data-service": a.service || "" }, [
        td(a.severity, "sev-" + a.severity), td(a.message), td(time(a.since))]);
      if (a.service) row.addEventListener("click", function () { openService(a.service); });
      tbody.appendChild(row);
    });
    $("alert-count").textContent = String(body.alerts.length);
    $("no-alerts").hidden = body.alerts.length > 0;
  }

  function renderServices(topology) {
    var tbody = clear($("services").tBodies[0]);
    Object.keys(topology.services).sort().forEach(function (name) {
      var e = topology.services[name], st = S.stats[name] || {}, status = serviceStatus(e);
      var row = el("tr", { className: "clickable", "data-service": name }, [
        td(name), td(status, "state-" + status), td(e.healthy + "/" + e.total), td(rate(st.request_rate)),
        td(pct(st.error_rate)), td(ms(st.p50_ms)), td(ms(st.p95_ms)), td(ms(st.p99_ms))]);
      row.addEventListener("click", function () { openService(name); });
      tbody.appendChild(row);
    });
  }

  function series(points, key) { return points.map(function (p) { return { at: p.at, value: p[key] }; }); }

  function renderMeshCharts(points) {
    var box = clear($("mesh-charts"));
    charts.lineChart(box, series(points, "health_score"), { key: "health_score", title: "Health score", unit: "%", min: 0, max: 1, scale: 100 });
    charts.lineChart(box, series(points, "success_rate"), { key: "success_rate", title: "Success rate", unit: "%", min: 0, max: 1, scale: 100 });
    charts.lineChart(box, series(points, "request_rate"), { key: "request_rate", title: "Requests", unit: "/s", min: 0 });
  }

  // -- service detail --------------------------------------------------------------------------
  function openService(name) {
    S.selected = name;
    if (S.cy) { S.cy.nodes().unselect(); S.cy.getElementById(name).select(); }
    $("detail").hidden = false;
    $("detail-name").textContent = name;
    renderDetail();
    refreshDetail();
  }
  $("detail-close").addEventListener("click", function () {
    S.selected = null;
    $("detail").hidden = true;
    if (S.cy) S.cy.nodes().unselect();
  });

  function renderDetail() {
    var name = S.selected, entry = S.topology && S.topology.services[name];
    var status = entry ? serviceStatus(entry) : "external";
    var badge = $("detail-status");
    badge.dataset.status = status;
    badge.textContent = status;
    var st = S.stats[name] || {};
    var stats = clear($("detail-stats"));
    [["requests", rate(st.request_rate)], ["errors", pct(st.error_rate)], ["p50", ms(st.p50_ms)],
     ["p95", ms(st.p95_ms)], ["p99", ms(st.p99_ms)]].forEach(function (f) {
      stats.appendChild(el("span", { "data-figure": f[0], text: f[0] + " " + f[1] }));
    });
    var tbody = clear($("detail-instances").tBodies[0]);
    (entry ? entry.instances : []).forEach(function (i) {
      tbody.appendChild(el("tr", { "data-instance": i.id }, [td(i.id), td(i.address), td(i.state, "state-" + i.state),
        td(i.circuit_breaker, "state-" + i.circuit_breaker), td(i.connections)]));
    });
    if (!entry) tbody.appendChild(el("tr", {}, [td("not registered with this control plane")]));
  }

  function instanceBlock(inst) {
    var box = el("div", { className: "instance-info", "data-instance": inst.id });
    box.appendChild(el("h3", { text: inst.id + " (" + inst.state + ", breaker " + inst.circuit_breaker + ")" }));
    box.appendChild(el("div", { className: "tags", text: "tags: " + (inst.tags.length ? inst.tags.join(", ") : "none") }));
    var meta = Object.keys(inst.metadata || {}).map(function (k) { return k + "=" + inst.metadata[k]; });
    box.appendChild(el("div", { className: "metadata", text: "metadata: " + (meta.length ? meta.join(", ") : "none") }));
    var checks = (inst.checks || []).slice(-5).reverse();
    box.appendChild(el("div", { className: "checks", text: "recent checks: " + (checks.length ? checks.map(function (c) {
      return time(c.at) + " " + (c.ok ? "pass" : "fail") + (c.detail ? " (" + c.detail + ")" : "");
    }).join("; ") : "none yet") }));
    var moves = (inst.transitions || []).slice(-5).reverse();
    if (moves.length) box.appendChild(el("div", { className: "transitions", text: "transitions: " + moves.map(function (t) {
      return time(t.at) + " " + t.old + " → " + t.new + (t.reason ? " (" + t.reason + ")" : "");
    }).join("; ") }));
    return box;
  }

  async function refreshDetail() {
    var name = S.selected;
    if (!name) return;
    var entry = S.topology && S.topology.services[name];
    var ids = entry ? entry.instances.slice(0, 10).map(function (i) { return i.id; }) : [];
    var results = await Promise.all([
      Promise.all(ids.map(function (id) { return api("/instances/" + encodeURIComponent(id)).catch(function () { return null; }); })),
      api("/history", { service: name }).catch(function () { return null; }),
      api("/traces", { service_name: name, limit: 10 }).catch(function () { return []; })
    ]);
    if (S.selected !== name) return;
    var info = clear($("detail-instance-info"));
    results[0].forEach(function (inst) { if (inst) info.appendChild(instanceBlock(inst)); });
    var box = clear($("detail-charts"));
    var points = results[1] ? results[1].points : [];
    charts.lineChart(box, series(points, "request_rate"), { key: "request_rate", title: "Requests", unit: "/s", min: 0 });
    charts.lineChart(box, series(points, "error_rate"), { key: "error_rate", title: "Error rate", unit: "%", min: 0, max: 1, scale: 100 });
    charts.lineChart(box, series(points, "p99_ms"), { key: "p99_ms", title: "p99", unit: " ms", min: 0 });
    renderTraceRows($("detail-traces").tBodies[0], results[2]);
  }

  // -- traces ------------------------------------------------------------------------------------
  function renderTraceRows(tbody, traces) {
    clear(tbody);
    traces.forEach(function (t) {
      var row = el("tr", { className: "clickable trace-row", "data-trace": t.trace_id }, [
        td(t.trace_id.slice(0, 12)), td(t.root_service + ": " + t.root_operation), td(t.services.join(", ")),
        td(t.span_count), td(ms(t.duration_ms)), td(t.error_count, t.error_count ? "sev-critical" : "")]);
      row.addEventListener("click", function () { showTrace(t.trace_id); });
      tbody.appendChild(row);
    });
    if (!traces.length) tbody.appendChild(el("tr", {}, [td("no traces found")]));
  }

  $("trace-search").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var form = new FormData(ev.target), params = {};
    ["service_name", "operation_name", "min_duration", "max_duration", "limit"].forEach(function (k) {
      params[k] = String(form.get(k) || "").trim();
    });
    if (form.get("error_only")) params.error_only = "true";
    $("trace-error").textContent = "";
    try {
      renderTraceRows($("trace-results").tBodies[0], await api("/traces", params));
    } catch (err) {
      if (err instanceof AuthError) return showLogin("Your session has expired.");
      $("trace-error").textContent = String(err.message || err);
    }
  });

  function flatten(spans, depth, out) {
    spans.forEach(function (s) { out.push({ span: s, depth: depth }); flatten(s.children || [], depth + 1, out); });
    return out;
  }

  async function showTrace(traceId) {
    var trace;
    try { trace = await api("/traces/" + encodeURIComponent(traceId)); } catch (err) {
      if (err instanceof AuthError) return showLogin("Your session has expired.");
      $("trace-error").textContent = String(err.message || err);
      return;
    }
    S.traceId = traceId;
    var rows = flatten(trace.spans, 0, []);
    var t0 = Math.min.apply(null, rows.map(function (r) { return r.span.start_ns; }));
    var t1 = Math.max.apply(null, rows.map(function (r) { return r.span.end_ns; }));
    var total = Math.max(t1 - t0, 1);
    $("waterfall").hidden = false;
    $("waterfall-id").textContent = traceId;
    var sum = trace.summary;
    $("waterfall-summary").textContent = sum.span_count + " spans · " + ms(sum.duration_ms) + " · " + sum.error_count + " errors";
    var box = clear($("waterfall-rows"));
    rows.forEach(function (r) {
      var s = r.span, left = 100 * (s.start_ns - t0) / total, width = 100 * (s.end_ns - s.start_ns) / total;
      var label = el("div", { className: "wf-label", text: s.service + ": " + s.operation });
      label.style.paddingLeft = (r.depth * 14) + "px";
      var bar = el("div", { className: "wf-bar" + (s.error ? " error" : ""), title: s.operation });
      bar.style.left = left.toFixed(3) + "%";
      bar.style.width = Math.max(width, 0.2).toFixed(3) + "%";
      var when = el("span", { className: "wf-time", text: ms(s.duration_ms) });
      when.style.left = Math.min(left + width, 92).toFixed(3) + "%";
      var row = el("div", { className: "wf-row", "data-span": s.span_id }, [label, el("div", { className: "wf-track" }, [bar, when])]);
      row.addEventListener("click", function () { showSpan(s); });
      box.appendChild(row);
    });
    $("waterfall").scrollIntoView({ block: "nearest" });
  }

  function showSpan(s) {
    var box = clear($("span-detail"));
    box.appendChild(el("div", { text: s.service + ": " + s.operation + " (" + s.kind + ", " + ms(s.duration_ms) +
      (s.error ? ", error: " + (s.status_message || "yes") : "") + ")" }));
    box.appendChild(el("pre", { text: JSON.stringify(s.attributes, null, 1) }));
  }

  // -- polling -----------------------------------------------------------------------------------
  function refreshMs() {
    var local = parseInt(localStorage.getItem("meshkit.refreshMs") || "", 10);
    return local >= 100 ? local : S.cfg.refresh_ms;
  }
  function stopPolling() { if (S.timer) clearTimeout(S.timer); S.timer = null; }

  async function poll() {
    try {
      var r = await Promise.all([api("/topology"), api("/health"), api("/dependencies").catch(function () { return []; }),
        api("/alerts"), api("/history")]);
      S.topology = r[0];
      S.stats = r[4].services || {};
      renderAlerts(r[3]);
      renderGraph(r[0], r[2]);
      renderHealth(r[1], r[4]);
      await new Promise(function (done) { setTimeout(done, 0); });  // let the graph paint first
      performance.mark("meshkit-painted");
      renderServices(r[0]);
      renderMeshCharts(r[4].points);
      performance.mark("meshkit-tables");
      if (S.selected) { renderDetail(); refreshDetail(); }
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.dataset.polls = String((parseInt(document.body.dataset.polls || "0", 10)) + 1);
    } catch (err) {
      if (err instanceof AuthError) {
        var had = sessionStorage.getItem(TOKEN_KEY);
        sessionStorage.removeItem(TOKEN_KEY);
        return showLogin(had ? "That token was not accepted." : "");
      }
      $("updated").textContent = "update failed: " + String(err.message || err);
    }
    S.timer = setTimeout(poll, refreshMs());
  }

  async function start() {
    stopPolling();
    try {
      await api("/topology");  // a read endpoint: 401 without a valid token unless --public-read
    } catch (err) {
      if (err instanceof AuthError) {
        sessionStorage.removeItem(TOKEN_KEY);
        return showLogin(S.cfg.public_read ? "" : "Sign in with a token to see the mesh.");
      }
    }
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = !sessionStorage.getItem(TOKEN_KEY);
    initGraph();
    poll();
  }

  fetch("/dashboard/config", { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (cfg) {
    S.cfg = cfg;
    start();
  });
})();
