// 7. SIGTERM during streams: streams that outlast the shutdown drain are open when the server gets
// SIGTERM. Pass: every stream ends cleanly, with [DONE] (finished within the drain) or a final
// error event then [DONE]; a connection reset or a stream cut without [DONE] is a failure.
import { count, histogram, sleep, streamChat } from '../lib/http.mjs';

export const name = 'sigterm';
export const title = 'SIGTERM during streams';

/**
 * A short drain, so the streams (several seconds each) outlast it: Serving:ShutdownDrainSeconds
 * where the server has it (the host's stop timeout is then the drain + 5 s), else the host's own
 * shutdownTimeoutSeconds (its default of 30 s would let these streams finish).
 */
const DRAIN_SECONDS = 2;

export async function run(ctx) {
  if (!ctx.managed) {
    return { pass: null, figures: 'skipped: needs a server the runner starts (it sends SIGTERM)' };
  }
  const streams = ctx.short ? 48 : 64;
  const server = await ctx.startServer({
    label: 'sigterm',
    settings: { ShutdownDrainSeconds: DRAIN_SECONDS },
    hostArgs: [`--shutdownTimeoutSeconds=${DRAIN_SECONDS + 1}`],
  });
  let started = 0;
  const running = Array.from({ length: streams }, (_, i) => streamChat(server.url, {
    model: 'tiny', messages: [{ role: 'user', content: `stream ${i} until the server stops` }], max_tokens: 2000, ignore_eos: true,
  }, { onEvent: (n) => { started += n === 1 ? 1 : 0; }, timeoutMs: 120_000 }));
  const deadline = Date.now() + 30_000;
  while (started < streams && Date.now() < deadline) {
    await sleep(50);
  }
  await sleep(500);
  const sigtermAt = performance.now();
  server.signal('SIGTERM');
  // A request that arrives during the drain: 503 (a draining server) or a refused connection, reported only.
  await sleep(200);
  const late = await fetch(`${server.url}/v1/models`).then((r) => String(r.status), (e) => String(e.cause?.code ?? e.message));
  const results = await Promise.all(running);
  const exit = await server.exited;
  const exitedAfter = (performance.now() - sigtermAt) / 1000;
  const ends = count(results, (r) => r.end);
  const clean = results.filter((r) => r.end === 'done' || r.end === 'error_done').length;
  for (const r of results.filter((r) => r.end !== 'done' && r.end !== 'error_done').slice(0, 5)) {
    ctx.detail(`sigterm: a stream ended ${r.end} after ${r.events} chunks: ${r.error ?? ''}`);
  }
  const errorEvent = results.find((r) => r.end === 'error_done')?.error;
  if (errorEvent) {
    ctx.detail(`sigterm: final error event: ${errorEvent}`);
  }
  return {
    pass: clean === streams,
    figures: `${streams} streams open at SIGTERM (drain ${DRAIN_SECONDS} s): ${clean}/${streams} ended cleanly; ends ${histogram(ends)} ` +
      `(done = finished in the drain, error_done = error event then [DONE], reset = connection reset); a request during the drain: ${late}; ` +
      `exit ${exit.signal ?? exit.code} after ${exitedAfter.toFixed(1)} s`,
  };
}
