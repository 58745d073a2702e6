// The official `openai` npm client (6.x) against a running Serving server.
// stdin: {"baseURL": "...", "model": "..."}; stdout: what the client saw, as JSON.
import OpenAI from 'openai';

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

process.stdout.write(JSON.stringify({
  stream: { text, finish, usage, chunks, roles },
  whole: { text: whole.choices[0].message.content, finish: whole.choices[0].finish_reason, usage: whole.usage },
  completionText,
  error,
}));
