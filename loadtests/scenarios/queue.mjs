// 3. Queue overflow: more concurrent requests than running slots + queue places. Pass: some 429s,
// each with Retry-After, no 5xx, every other request completes (200 with its choice / [DONE]).
import { count, histogram, isHealthy, postJson, streamChat } from '../lib/http.mjs';

export const name = 'queue';
export const title = 'queue overflow';

/** When the runner starts the server: a small queue and batch, so the overflow is certain. */
const OWN_SETTINGS = { MaxQueueLength: 4, MaxBatchSize: 2 };

export async function run(ctx) {
  let server = null;
  let url = ctx.url;
  let { queueLength, maxBatchSize } = ctx;
  if (ctx.managed) {
    server = await ctx.startServer({ label: 'queue', settings: OWN_SETTINGS });
    url = server.url;
    queueLength = OWN_SETTINGS.MaxQueueLength;
    maxBatchSize = OWN_SETTINGS.MaxBatchSize;
  }
  try {
    const requests = queueLength + maxBatchSize + (ctx.short ? 34 : 90);
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: requests }, async (_, i) => {
      const body = { model: 'tiny', messages: [{ role: 'user', content: `request ${i}` }], max_tokens: 96, ignore_eos: true };
      if (i % 2 === 0) {
        const r = await streamChat(url, body, { timeoutMs: 300_000 });
        return { status: r.status, complete: r.end === 'done', retryAfter: r.retryAfter, end: r.end };
      }
      try {
        const r = await postJson(url, '/v1/chat/completions', body, { timeoutMs: 300_000 });
        return { status: r.status, complete: r.status === 200 && r.json?.choices?.[0]?.finish_reason === 'length', retryAfter: r.headers.get('retry-after'), end: 'json' };
      } catch (error) {
        return { status: null, complete: false, retryAfter: null, end: String(error.cause?.code ?? error.name) };
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    const refused = results.filter((r) => r.status === 429);
    const withRetryAfter = refused.filter((r) => r.retryAfter !== null && Number(r.retryAfter) > 0).length;
    const serverErrors = results.filter((r) => r.status === null || r.status >= 500).length;
    const others = results.filter((r) => r.status !== 429);
    const completed = others.filter((r) => r.complete).length;
    for (const r of others.filter((r) => !r.complete)) {
      ctx.detail(`queue: a request neither refused nor completed: status ${r.status}, ${r.end}`);
    }
    const healthy = await isHealthy(url);
    return {
      pass: refused.length > 0 && withRetryAfter === refused.length && serverErrors === 0 && completed === others.length && healthy,
      figures: `${requests} concurrent requests (queue ${queueLength}, batch ${maxBatchSize}): ${refused.length} × 429 (${withRetryAfter} with Retry-After), ` +
        `${completed}/${others.length} others completed, ${serverErrors} × 5xx/no answer; statuses ${histogram(count(results, (r) => String(r.status)))}; ` +
        `healthy after: ${healthy ? 'yes' : 'NO'} (${seconds.toFixed(1)} s)`,
    };
  } finally {
    await server?.stop();
  }
}
