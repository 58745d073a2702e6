// 2. 64 concurrent chat streams on the tiny model: every one answers 200 and ends with [DONE].
import { count, histogram, kvUsedAfter, percentile, sleep, streamChat } from '../lib/http.mjs';

export const name = 'streams';
export const title = '64 concurrent streams';

export async function run(ctx) {
  const { url } = ctx;
  const streams = 64;
  const maxTokens = ctx.short ? 64 : 256;
  const started = performance.now();
  const results = await Promise.all(Array.from({ length: streams }, (_, i) => streamChat(url, {
    model: 'tiny', messages: [{ role: 'user', content: `Stream ${i}: tell me a story.` }], max_tokens: maxTokens, seed: i,
  }, { timeoutMs: 300_000 })));
  const seconds = (performance.now() - started) / 1000;
  const done = results.filter((r) => r.end === 'done' && r.events > 0).length;
  const events = results.reduce((sum, r) => sum + r.events, 0);
  for (const r of results.filter((r) => r.end !== 'done')) {
    ctx.detail(`streams: ended ${r.end} after ${r.events} events: ${r.error ?? ''}`);
  }
  await sleep(300);
  const kv = await kvUsedAfter(url);
  const firstEvent = results.map((r) => r.firstEventMs).filter((ms) => ms !== null);
  return {
    pass: done === streams && kv === 0,
    figures: `${done}/${streams} streams ended with [DONE] (ends ${histogram(count(results, (r) => r.end))}); ${events} chunks in ${seconds.toFixed(1)} s ` +
      `(${(events / seconds).toFixed(0)} chunks/s); first chunk p50 ${percentile(firstEvent, 50).toFixed(0)} ms, p99 ${percentile(firstEvent, 99).toFixed(0)} ms; ` +
      `max_tokens ${maxTokens}; KV used after: ${kv ?? 'n/a'} B`,
  };
}
