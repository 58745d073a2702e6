// The official `openai` npm client (6.x) against a running Serving server.
// stdin: {"baseURL": "...", "model": "..."}; stdout: what the client saw, as JSON.
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';

const input = JSON.parse(await new Promise(resolve => {
  let data = '';
  process.stdin.on('data', chunk => data += chunk);
  process.stdin.on('end', () => resolve(data));
}));
const client = new OpenAI({ baseURL: input.baseURL, apiKey: 'unused', maxRetries: 0 });
const messages = [{ role: 'user', content: 'In the beginning' }];

const stream = await client.chat.completions.create({
  model: input.model, messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let text = '', finish = null, usage = null, chunks = 0, roles = [];
for await (const chunk of stream) {
  chunks++;
  for (const choice of chunk.choices) {
    if (choice.delta.role) roles.push(choice.delta.role);
    text += choice.delta.content ?? '';
    finish = choice.finish_reason ?? finish;
  }
  if (chunk.usage) usage = chunk.usage;
}

const whole = await client.chat.completions.create({ model: input.model, messages, max_tokens: 12, temperature: 0 });

let completionText = '';
const completionStream = await client.completions.create({ model: input.model, prompt: 'And God said', max_tokens: 6, temperature: 0, stream: true });
for await (const chunk of completionStream) completionText += chunk.choices.map(c => c.text).join('');

let error = null;
try {
  await client.chat.completions.create({ model: 'no-such-model', messages });
} catch (e) {
  error = { status: e.status, code: e.code ?? null, param: e.param ?? null, type: e.type ?? null };
}

// Structured outputs as SDK users write them: a zod schema, parse() validates the reply with it.
const Movie = z.object({ title: z.string().max(12), genre: z.enum(['drama', 'comedy']), classic: z.boolean(), tags: z.array(z.enum(['a', 'b'])).max(2) });
const parsed = await client.chat.completions.parse({
  model: input.model, messages: [{ role: 'user', content: 'A movie as JSON' }], max_tokens: 120, temperature: 0,
  response_format: zodResponseFormat(Movie, 'movie'),
});
let streamedJson = '';
const jsonStream = await client.chat.completions.create({
  model: input.model, messages: [{ role: 'user', content: 'A movie as JSON' }], max_tokens: 120, temperature: 0, stream: true,
  response_format: zodResponseFormat(Movie, 'movie'),
});
for await (const chunk of jsonStream) streamedJson += chunk.choices.map(c => c.delta.content ?? '').join('');

process.stdout.write(JSON.stringify({
  parsed: { value: parsed.choices[0].message.parsed, finish: parsed.choices[0].finish_reason },
  streamedParsed: Movie.parse(JSON.parse(streamedJson)),
  stream: { text, finish, usage, chunks, roles },
  whole: { text: whole.choices[0].message.content, finish: whole.choices[0].finish_reason, usage: whole.usage },
  completionText,
  error,
}));
