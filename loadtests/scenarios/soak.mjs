// 6. Soak: mixed requests (chat, streams, completions, embeddings of text and images, tokenize,
// search, uploads, models, health) at a steady concurrency for a configured time. Reports the
// request count, RSS at start and end, and p50/p99 latency of the first against the last window.
// Pass: no failed request, KV back to 0, RSS growth and p50 drift within bounds.
import { loadavg } from 'node:os';
import { kvUsedAfter, mib, percentile, postJson, sleep, streamChat } from '../lib/http.mjs';
import { pngDataUrl } from '../lib/png.mjs';

export const name = 'soak';
export const title = 'soak';

const CONCURRENCY = 4;
const COLLECTION = 'soak';
/** Uploads upsert ids from this many, so the store stops growing once they are all written. */
const ID_POOL = 64;
const RSS_GROWTH_BYTES = 128 << 20;
const RSS_GROWTH_RATIO = 0.5;
/** The last window's p50 may be this many times the first's (plus 50 ms): a shared 2-core machine is noisy (load averages of 20 seen). */
const P50_DRIFT_RATIO = 3;

const get = async (url, path) => {
  const response = await fetch(url + path, { signal: AbortSignal.timeout(60_000) });
  await response.arrayBuffer();
  return response.status === 200;
};
const post = async (url, path, body) => (await postJson(url, path, body)).status === 200;

function operations(url) {
  const images = Array.from({ length: 8 }, (_, i) => pngDataUrl(100 + i));
  let n = 0;
  return [
    ['chat', () => post(url, '/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: `soak ${n++}` }], max_tokens: 16 })],
    ['chat-stream', async () => (await streamChat(url, { model: 'tiny', messages: [{ role: 'user', content: `soak stream ${n++}` }], max_tokens: 32 })).end === 'done'],
    ['completion-kjv', () => post(url, '/v1/completions', { model: 'kjv-gemma3', prompt: 'And it came to pass', max_tokens: 16, temperature: 0.8, seed: n++ })],
    ['embed-text', () => post(url, '/v1/embeddings', { model: 'clip-tiny', input: [`a red circle ${n++}`, 'a blue square'] })],
    ['embed-image', () => post(url, '/v1/embeddings', { model: 'shapes-clip', input: [{ type: 'image_url', image_url: { url: images[n++ % images.length] } }] })],
    ['tokenize', () => post(url, '/tokenize', { model: 'tiny', prompt: `tokenize this ${n++}` })],
    ['search', () => post(url, `/v1/collections/${COLLECTION}/search`, { text: `a shape ${n++ % 10}`, top_k: 5 })],
    ['upload', () => post(url, `/v1/collections/${COLLECTION}/items`, { items: [{ id: `s${n++ % ID_POOL}`, image: images[n % images.length], metadata: { n } }] })],
    ['models', () => get(url, '/v1/models')],
    ['health', () => get(url, '/health/ready')],
  ];
}

function stats(records) {
  const ms = records.map((r) => r.ms);
  return { count: records.length, p50: percentile(ms, 50), p99: percentile(ms, 99) };
}

export async function run(ctx) {
  const { url, server } = ctx;
  const seconds = ctx.soakSeconds;
  const window = Math.min(60, seconds / 3);
  const made = await postJson(url, '/v1/collections', { name: COLLECTION, model: 'clip-tiny' });
  if (made.status !== 201 && made.status !== 409) {
    return { pass: false, figures: `could not create the collection: ${made.status}` };
  }
  const ops = operations(url);
  for (const [, op] of ops) {
    await op(); // one of each first, so the start RSS is of a warmed-up server
  }
  const rssStart = server?.rssBytes() ?? null;
  let rssPeak = rssStart;
  const records = [];
  const failures = {};
  const started = performance.now();
  const end = started + seconds * 1000;
  let next = 0;
  // The machine's 1-minute load average at the end of the first window and at the end: on a shared
  // machine a slower last window next to a higher load is the neighbours, not the server.
  let loadFirst = null;
  let rssMid = null;
  const sampler = setInterval(() => {
    rssPeak = Math.max(rssPeak ?? 0, server?.rssBytes() ?? 0) || null;
    if (rssMid === null && performance.now() - started >= seconds * 500) {
      rssMid = server?.rssBytes() ?? null;
    }
    if (loadFirst === null && performance.now() - started >= window * 1000) {
      loadFirst = loadavg()[0];
    }
  }, 1000);
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (performance.now() < end) {
      const [label, op] = ops[next++ % ops.length];
      const t0 = performance.now();
      let ok;
      try {
        ok = await op();
      } catch (error) {
        ok = false;
        ctx.detail(`soak: ${label}: ${error.message}`);
      }
      records.push({ at: (t0 - started) / 1000, ms: performance.now() - t0, ok, label });
      if (!ok) {
        failures[label] = (failures[label] ?? 0) + 1;
      }
    }
  }));
  clearInterval(sampler);
  const elapsed = (performance.now() - started) / 1000;
  const loadEnd = loadavg()[0];
  await sleep(500);
  const rssEnd = server?.rssBytes() ?? null;
  const kv = await kvUsedAfter(url);
  const first = stats(records.filter((r) => r.at < window));
  const last = stats(records.filter((r) => r.at >= elapsed - window));
  const failed = records.filter((r) => !r.ok).length;
  const rssOk = rssStart === null || rssEnd <= rssStart + Math.max(RSS_GROWTH_BYTES, rssStart * RSS_GROWTH_RATIO);
  const driftOk = last.p50 <= first.p50 * P50_DRIFT_RATIO + 50;
  const f = (x) => x.toFixed(0);
  for (const [label] of ops) {
    const kind = stats(records.filter((r) => r.label === label));
    const a = stats(records.filter((r) => r.label === label && r.at < window));
    const b = stats(records.filter((r) => r.label === label && r.at >= elapsed - window));
    ctx.detail(`soak: ${label}: ${kind.count} requests, p50 ${f(kind.p50)} ms, p99 ${f(kind.p99)} ms; first window p50 ${f(a.p50)} ms (${a.count}), last window p50 ${f(b.p50)} ms (${b.count})`);
  }
  return {
    pass: failed === 0 && kv === 0 && rssOk && driftOk,
    figures: `${records.length} requests in ${elapsed.toFixed(0)} s (${(records.length / elapsed).toFixed(1)}/s, ${CONCURRENCY} at a time, ${ops.length} kinds), ` +
      `${failed} failed${failed ? ` (${JSON.stringify(failures)})` : ''}; RSS start ${mib(rssStart)}, half-way ${mib(rssMid)}, end ${mib(rssEnd)}, peak ${mib(rssPeak)}; ` +
      `latency first ${f(window)} s p50 ${f(first.p50)} ms / p99 ${f(first.p99)} ms (${first.count} req), last ${f(window)} s p50 ${f(last.p50)} ms / p99 ${f(last.p99)} ms (${last.count} req); load average ${loadFirst?.toFixed(1) ?? 'n/a'} → ${loadEnd.toFixed(1)}; KV used after: ${kv ?? 'n/a'} B`,
  };
}
