// KV-memory workloads against a running Serving server, sampling its /metrics and the
// process's RSS while they run. One JSON line per workload.
//   node workload.mjs URL MODEL PID mixed LONG SHORT        one LONG-token prompt + SHORT prompts of 20–50 tokens, 64 new tokens each
//   node workload.mjs URL MODEL PID decode C1,C2,...        one stream of 64 new tokens after a prompt of C tokens
//   node workload.mjs URL MODEL PID capacity N SECONDS      N streams of 1,000-token prompts, max_tokens 1,000, cancelled after SECONDS
import { readFileSync } from 'node:fs';

const [url, model, pid, workload, a, b] = process.argv.slice(2);
let seed = 4242;
const ids = n => Array.from({ length: n }, () => 10 + ((seed = (seed * 1103515245 + 12345) % 2147483648) % 1000));
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
const MiB = x => +(x / 1048576).toFixed(1);

async function metrics() {
  const text = await (await fetch(`${url}/metrics`)).text();
  const values = {};
  for (const line of text.split('\n')) {
    const m = /^(serving_[a-z_]+)(?:\{[^}]*\})? ([0-9.e+-]+)/.exec(line);
    if (m) values[m[1]] = (values[m[1]] ?? 0) + Number(m[2]);
  }
  return values;
}

// Samples every 50 ms until stopped: the peak of each serving_* series and of RSS.
function sampler() {
  const peak = { rss: rss() };
  let running = true;
  const loop = (async () => {
    while (running) {
      const m = await metrics();
      for (const [k, v] of Object.entries(m)) peak[k] = Math.max(peak[k] ?? 0, v);
      peak.rss = Math.max(peak.rss, rss());
      await new Promise(r => setTimeout(r, 50));
    }
  })();
  return async () => { running = false; await loop; return peak; };
}

async function stream(prompt, maxTokens, signal) {
  try {
    return await streamOnce(prompt, maxTokens, signal);
  } catch (e) {
    if (e.name !== 'AbortError') throw e;
    return { ok: false, aborted: true };
  }
}

async function streamOnce(prompt, maxTokens, signal) {
  const start = performance.now();
  const response = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, signal,
    body: JSON.stringify({ model, prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
  });
  if (!response.ok) return { ok: false, status: response.status, error: await response.text() };
  const decoder = new TextDecoder();
  let buffer = '', first = null, last = null, tokens = 0, error = null;
  for await (const bytes of response.body) {
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const line = buffer.slice(0, end); buffer = buffer.slice(end + 2);
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      const chunk = JSON.parse(line.slice(6));
      if (chunk.error) error = chunk.error.message;
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
      if (chunk.choices?.length > 0) { const now = performance.now(); first ??= now; last = now; }
    }
  }
  return { ok: error === null && tokens === maxTokens, error, tokens, start, first, last };
}

const kvPeaks = peak => ({
  kv_used_peak_mib: MiB(peak.serving_kv_cache_used_bytes ?? 0),
  kv_allocated_peak_mib: MiB(peak.serving_kv_cache_allocated_bytes ?? 0),
  kv_batch_buffers_peak_mib: MiB(peak.serving_kv_cache_batch_buffers_bytes ?? 0),
  kv_capacity_mib: MiB(peak.serving_kv_cache_capacity_bytes ?? 0),
});

if (workload === 'mixed') {
  const base = rss();
  const stop = sampler();
  const t0 = performance.now();
  const prompts = [ids(Number(a)), ...Array.from({ length: Number(b) }, (_, i) => ids(20 + (i * 7) % 31))];
  const results = await Promise.all(prompts.map(p => stream(p, 64)));
  const peak = await stop();
  const m = await metrics();
  console.log(JSON.stringify({
    workload, long_prompt: Number(a), short_prompts: Number(b), completed: results.filter(r => r.ok).length, of: results.length,
    wall_s: +((performance.now() - t0) / 1000).toFixed(1), ...kvPeaks(peak),
    rss_before_mib: MiB(base), rss_growth_mib: MiB(peak.rss - base), preemptions: m.serving_preemptions_total ?? 0,
  }));
} else if (workload === 'decode') {
  await stream(ids(64), 4);  // warm-up: ONNX Runtime's first run of a shape allocates and plans
  for (const context of a.split(',').map(Number)) {
    const r = await stream(ids(context), 64);
    console.log(JSON.stringify({ workload, context, ok: r.ok, decode_tokens_per_s: +((r.tokens - 1) / ((r.last - r.first) / 1000)).toFixed(2), ttft_ms: Math.round(r.first - r.start),
      prefill_tokens_per_s: +(context / ((r.first - r.start) / 1000)).toFixed(1) }));
  }
} else if (workload === 'capacity') {
  const stop = sampler();
  const abort = new AbortController();
  const results = Promise.all(Array.from({ length: Number(a) }, () => stream(ids(1000), 1000, abort.signal)));
  await new Promise(r => setTimeout(r, Number(b) * 1000));
  const peak = await stop();
  abort.abort();
  await results;
  console.log(JSON.stringify({ workload, streams: Number(a), seconds: Number(b), running_peak: peak.serving_requests_running ?? 0, waiting_peak: peak.serving_requests_waiting ?? 0, ...kvPeaks(peak), preemptions: (await metrics()).serving_preemptions_total ?? 0 }));
}
