// The status page: polls the Prometheus endpoint (/metrics), keeps the last few minutes in
// memory and draws four uPlot charts. Counters become rates between two samples; latency is
// the mean of the histogram observations of the last `window` samples (one interval alone
// often holds no finished request).
"use strict";

const params = new URLSearchParams(location.search);
const intervalMs = Number(params.get("interval") ?? 1000);
const keep = 300;
const windowSamples = Number(params.get("window") ?? 10);

// Series colours; the test of this page looks for these exact colours in a screenshot.
const charts = {
  throughput: [["generated", "#1f77b4"], ["prompt", "#ff7f0e"]],
  latency: [["time to first token", "#2ca02c"], ["time per output token", "#d62728"]],
  queue: [["running", "#9467bd"], ["waiting", "#8c564b"]],
  kv: [["KV reserved", "#17becf"]],
};

// Prometheus text format: sums every series of each metric name (all models together).
function parse(text) {
  const totals = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const value = Number(match[3]);
    if (!Number.isFinite(value)) continue;
    totals.set(match[1], (totals.get(match[1]) ?? 0) + value);
    if (match[1] === "serving_sparse_kernel" && match[2]) {
      const isa = /serving_sparse_isa="([^"]*)"/.exec(match[2]);
      if (isa) totals.set("isa:" + isa[1], 1);
    }
    if (match[1] === "serving_model_device" && match[2]) {
      const model = /gen_ai_request_model="([^"]*)"/.exec(match[2]), device = /serving_device="([^"]*)"/.exec(match[2]);
      if (model && device) totals.set("device:" + model[1] + " on " + device[1], 1);
    }
  }
  return totals;
}

const get = (m, name) => m.get(name) ?? 0;

function rate(now, before, name, seconds) {
  return Math.max(0, get(now, name) - get(before, name)) / seconds;
}

function meanDelta(now, before, name) {
  const count = get(now, name + "_count") - get(before, name + "_count");
  return count > 0 ? (get(now, name + "_sum") - get(before, name + "_sum")) / count : null;
}

const data = {};
const plots = {};
for (const [id, series] of Object.entries(charts)) {
  data[id] = [[], ...series.map(() => [])];
  const element = document.getElementById(id);
  plots[id] = new uPlot({
    width: 600, height: 240, legend: { show: false },
    scales: { x: { time: true } },
    series: [{}, ...series.map(([label, colour]) => ({ label, stroke: colour, width: 2, spanGaps: true, points: { show: false } }))],
    axes: [{}, { size: 60 }],
  }, data[id], element);
  element.parentElement.querySelector(".key").innerHTML = series
    .map(([label, colour]) => `<span class="swatch" style="background:${colour}"></span>${label}`).join("");
}

function push(id, time, values) {
  const columns = data[id];
  columns[0].push(time);
  values.forEach((v, i) => columns[i + 1].push(v));
  if (columns[0].length > keep) columns.forEach(c => c.shift());
  plots[id].setData(columns);
}

const history = [];

async function sample() {
  let text;
  try {
    const response = await fetch("/metrics", { cache: "no-store" });
    if (!response.ok) throw new Error(`/metrics answered ${response.status} (is Serving:Telemetry:Enabled false?)`);
    text = await response.text();
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = String(e.message ?? e);
    return;
  }

  const now = parse(text);
  const time = Date.now() / 1000;
  history.push([time, now]);
  if (history.length > windowSamples + 1) history.shift();
  if (history.length > 1) {
    const [previousTime, previous] = history[history.length - 2];
    const oldest = history[0][1];
    const seconds = Math.max(time - previousTime, 1e-3);
    push("throughput", time, [
      rate(now, previous, "serving_generation_tokens_total", seconds),
      rate(now, previous, "serving_prompt_tokens_total", seconds),
    ]);
    push("latency", time, [
      meanDelta(now, oldest, "gen_ai_server_time_to_first_token_seconds"),
      meanDelta(now, oldest, "gen_ai_server_time_per_output_token_seconds"),
    ]);
  }

  push("queue", time, [get(now, "serving_requests_running"), get(now, "serving_requests_waiting")]);
  push("kv", time, [100 * get(now, "serving_kv_cache_usage")]);
  const labels = prefix => [...now.keys()].filter(k => k.startsWith(prefix)).map(k => k.slice(prefix.length)).join(", ");
  const isa = labels("isa:") || "unknown", devices = labels("device:") || "no model loaded";
  document.getElementById("summary").textContent =
    `${get(now, "serving_generation_tokens_total")} tokens generated, ` +
    `${get(now, "gen_ai_server_request_duration_seconds_count")} requests; ${devices}; sparse kernels: ${isa}; sampled every ${intervalMs} ms`;
}

sample();
setInterval(sample, intervalMs);
