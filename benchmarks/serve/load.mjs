// Load generator for a running Serving (or any OpenAI-compatible) server.
//   node load.mjs URL MODEL CONCURRENCY[,CONCURRENCY...] MAX_TOKENS [--ttft]
// For each concurrency c: c streaming /v1/completions requests at once, each with its own
// prompt (so no prefix-cache hits), greedy, ignore_eos. Prints one JSON line per level.
// With --ttft: time to first token of a 1,000-token prompt, fresh vs with its first 900 tokens cached.
const [url, model, levels, maxTokens, ttftFlag] = process.argv.slice(2);
const text = 'In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep.';

async function stream(body) {
  const start = performance.now();
  const response = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream: true, stream_options: { include_usage: true }, temperature: 0, ignore_eos: true, ...body }),
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  const decoder = new TextDecoder();
  let buffer = '', first = null, last = null, usage = null;
  for await (const bytes of response.body) {
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const line = buffer.slice(0, end); buffer = buffer.slice(end + 2);
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      const chunk = JSON.parse(line.slice(6));
      if (chunk.usage) usage = chunk.usage;
      if (chunk.choices.length > 0) { const now = performance.now(); first ??= now; last = now; }
    }
  }
  return { start, first, last, end: performance.now(), tokens: usage.completion_tokens, cached: usage.prompt_tokens_details?.cached_tokens ?? 0 };
}

const median = xs => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

// Warm-up: ONNX Runtime's first run of a shape allocates and plans.
await stream({ prompt: `Warm-up. ${text}`, max_tokens: 4 });

for (const c of levels.split(',').map(Number)) {
  const results = await Promise.all(Array.from({ length: c }, (_, i) => stream({ prompt: `Request ${i} of ${c}. ${text}`, max_tokens: Number(maxTokens) })));
  const wall = (Math.max(...results.map(r => r.end)) - Math.min(...results.map(r => r.start))) / 1000;
  const tokens = results.reduce((sum, r) => sum + r.tokens, 0);
  const decode = results.map(r => (r.tokens - 1) / ((r.last - r.first) / 1000));
  console.log(JSON.stringify({
    concurrency: c, total_tokens: tokens, wall_s: +wall.toFixed(2), aggregate_tokens_per_s: +(tokens / wall).toFixed(1),
    median_ttft_ms: +median(results.map(r => r.first - r.start)).toFixed(0), median_stream_decode_tokens_per_s: +median(decode).toFixed(1),
  }));
}

if (ttftFlag !== '--ttft') process.exit(0);

// 1,000-token prompts as token ids (ids 10..1009, valid in every preset's vocabulary), unique per trial.
let seed = 12345;
const randomIds = n => Array.from({ length: n }, () => 10 + ((seed = (seed * 1103515245 + 12345) % 2147483648) % 1000));
const fresh = [], cached = [], reused = [];
for (let trial = 0; trial < 3; trial++) {
  const prefix = randomIds(900);
  fresh.push(await stream({ prompt: randomIds(1000), max_tokens: 2 }));
  await stream({ prompt: [...prefix, ...randomIds(100)], max_tokens: 2 });
  const hit = await stream({ prompt: [...prefix, ...randomIds(100)], max_tokens: 2 });
  cached.push(hit); reused.push(hit.cached);
}
const ttft = rs => median(rs.map(r => r.first - r.start));
console.log(JSON.stringify({
  prompt_tokens: 1000, uncached_ttft_ms: +ttft(fresh).toFixed(0), cached_900_ttft_ms: +ttft(cached).toFixed(0),
  cached_tokens: reused, ratio: +(ttft(cached) / ttft(fresh)).toFixed(3),
}));
