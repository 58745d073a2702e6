// Loads one of our model folders with transformers.js (onnxruntime-node, CPU, fp32 or a dtype), fully
// offline, and answers a JSON request read from stdin with one JSON object on stdout:
//   request:  {"model_dir": "...", "dtype": "fp32" (default) | "q4" | ..., "encode": ["text", ...], "chats": [[{"role","content"}...], ...],
//              "generate": {"prompt": "...", "max_new_tokens": 32}, "forward": [ids...]}
//   response: {"encode": [[ids]...], "chats": ["rendered", ...],
//              "generate": {"prompt_token_ids": [...], "token_ids": [...generated only...]},
//              "forward": [[logits of position 0], [position 1], ...]}
import { readRequest, offlineModel } from './offline.mjs';
import { env, AutoTokenizer, AutoModelForCausalLM, Tensor } from '@huggingface/transformers';

const request = await readRequest();
const modelId = offlineModel(env, request.model_dir);

const tokenizer = await AutoTokenizer.from_pretrained(modelId, { local_files_only: true });
const response = {};

response.encode = (request.encode ?? []).map((text) => Array.from(tokenizer(text).input_ids.data, Number));
response.chats = (request.chats ?? []).map((messages) =>
    tokenizer.apply_chat_template(messages, { tokenize: false, add_generation_prompt: true }));

// dtype picks the variant file as in the browser: q4 → onnx/model_q4.onnx, q8 → model_quantized, fp16 → model_fp16.
const model = await AutoModelForCausalLM.from_pretrained(modelId, { local_files_only: true, device: 'cpu', dtype: request.dtype ?? 'fp32' });
if (request.generate) {
    const { input_ids, attention_mask } = tokenizer(request.generate.prompt);
    const sequences = await model.generate({
        input_ids,
        attention_mask,
        max_new_tokens: request.generate.max_new_tokens,
        do_sample: false, // Gemma's generation_config.json says do_sample: true
        eos_token_id: null, // always generate max_new_tokens, logits untouched
    });
    const promptIds = Array.from(input_ids.data, Number);
    const all = Array.from(sequences.data, Number);
    response.generate = { prompt_token_ids: promptIds, token_ids: all.slice(promptIds.length) };
}

if (request.forward) {
    // One call over the whole sequence with an empty cache (transformers.js adds it).
    const ids = BigInt64Array.from(request.forward.map(BigInt));
    const input_ids = new Tensor('int64', ids, [1, ids.length]);
    const attention_mask = new Tensor('int64', ids.map(() => 1n), [1, ids.length]);
    const { logits } = await model({ input_ids, attention_mask });
    const vocab = logits.dims[2];
    response.forward = Array.from({ length: ids.length }, (_, s) => Array.from(logits.data.subarray(s * vocab, (s + 1) * vocab)));
}
await model.dispose();

process.stdout.write(JSON.stringify(response) + '\n');
