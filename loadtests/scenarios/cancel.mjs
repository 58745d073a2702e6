// 4. Cancellation storm: many streams aborted mid-way (before the first chunk, after a few, after
// many). Pass: the KV blocks running sequences hold go back to 0, no request is left running,
// and (when the runner started the server) its RSS comes back near the baseline.
import { count, histogram, kvUsedBytes, metric, mib, sleep, streamChat } from '../lib/http.mjs';

export const name = 'cancel';
export const title = 'cancellation storm';

/** RSS may settle this far above the warmed-up baseline: the GC keeps some heap it grew. */
const RSS_SLACK_BYTES = 64 << 20;
const RSS_SLACK_RATIO = 0.25;

async function storm(url, streams, round) {
  return Promise.all(Array.from({ length: streams }, (_, i) => {
    const controller = new AbortController();
    const kind = i % 3;
    // kind 0: abort on a timer (often before the first chunk); 1: after a few chunks; 2: after many.
    const after = kind === 1 ? 1 + (i % 7) : 20 + ((i * 13) % 200);
    if (kind === 0) {
      setTimeout(() => controller.abort(), (i * 37) % 300);
    }
    return streamChat(url, {
      model: 'tiny', messages: [{ role: 'user', content: `round ${round} stream ${i}` }], max_tokens: 1500, ignore_eos: true,
    }, { signal: controller.signal, onEvent: (n) => kind !== 0 && n >= after && controller.abort(), timeoutMs: 120_000 });
  }));
}

async function waitFor(check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  const started = Date.now();
  for (;;) {
    if (await check()) {
      return Date.now() - started;
    }
    if (Date.now() > deadline) {
      return null;
    }
    await sleep(250);
  }
}

export async function run(ctx) {
  const { url, server } = ctx;
  const rounds = ctx.short ? 3 : 10;
  const perRound = 48;
  // Warm up (JIT, pools, buffers) so the baseline is the steady state, not a cold process.
  await Promise.all(Array.from({ length: 16 }, (_, i) => streamChat(url, { model: 'tiny', messages: [{ role: 'user', content: `warm ${i}` }], max_tokens: 64 })));
  await sleep(1000);
  const baseline = server?.rssBytes() ?? null;
  const started = performance.now();
  const results = [];
  let peak = baseline;
  for (let round = 0; round < rounds; round++) {
    results.push(...await storm(url, perRound, round));
    peak = Math.max(peak ?? 0, server?.rssBytes() ?? 0) || null;
  }
  const kvZeroMs = await waitFor(async () => (await kvUsedBytes(url)) === 0 && (await metric(url, 'serving_requests_running', 'model="tiny"')) === 0, 30_000);
  const kv = await kvUsedBytes(url);
  const running = await metric(url, 'serving_requests_running', 'model="tiny"');
  const limit = baseline === null ? null : baseline + Math.max(RSS_SLACK_BYTES, baseline * RSS_SLACK_RATIO);
  const rssBackMs = limit === null ? null : await waitFor(async () => server.rssBytes() <= limit, 15_000);
  const after = server?.rssBytes() ?? null;
  const seconds = (performance.now() - started) / 1000;
  const unexpected = results.filter((r) => !['aborted', 'done'].includes(r.end));
  for (const r of unexpected) {
    ctx.detail(`cancel: a stream ended ${r.end} (${r.status}): ${r.error ?? ''}`);
  }
  const rssOk = limit === null || rssBackMs !== null;
  return {
    pass: kvZeroMs !== null && rssOk && unexpected.length === 0,
    figures: `${results.length} streams in ${rounds} rounds, ends ${histogram(count(results, (r) => r.end))}; KV used after: ${kv} B ` +
      `(0 after ${kvZeroMs ?? '>30000'} ms), running after: ${running}; RSS baseline ${mib(baseline)}, peak ${mib(peak)}, after ${mib(after)} ` +
      `(limit ${mib(limit)}${limit === null ? ', not measured: server not started by the runner' : ''}) (${seconds.toFixed(1)} s)`,
  };
}
