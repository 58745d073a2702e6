// Loads one of our CLIP folders with transformers.js (onnxruntime-node, CPU, fp32), fully
// offline, and answers a JSON request read from stdin with one JSON object on stdout:
//   request:  {"model_dir": "...", "encode": ["text", ...], "images": ["/path/a.png", ...]}
//   response: {"encode": [[ids]...], "text_embeds": [[...]...],
//              "pixels": [[3·224·224 floats]...], "image_embeds": [[...]...]}
import path from 'node:path';
import {
    env, AutoTokenizer, AutoImageProcessor, CLIPTextModelWithProjection, CLIPVisionModelWithProjection, RawImage,
} from '@huggingface/transformers';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString('utf8'));

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.useFSCache = false;
env.useBrowserCache = false;
const modelDir = path.resolve(request.model_dir);
env.localModelPath = path.dirname(modelDir) + '/';
const modelId = path.basename(modelDir);
const options = { local_files_only: true, device: 'cpu', dtype: 'fp32' };

const tokenizer = await AutoTokenizer.from_pretrained(modelId, { local_files_only: true });
const texts = request.encode ?? [];
const response = {};
response.encode = texts.map((text) => Array.from(tokenizer(text, { truncation: true }).input_ids.data, Number));

const textModel = await CLIPTextModelWithProjection.from_pretrained(modelId, options);
response.text_embeds = [];
for (const text of texts) {
    const { text_embeds } = await textModel(tokenizer(text, { truncation: true }));
    response.text_embeds.push(Array.from(text_embeds.data));
}
await textModel.dispose();

const processor = await AutoImageProcessor.from_pretrained(modelId, { local_files_only: true });
const visionModel = await CLIPVisionModelWithProjection.from_pretrained(modelId, options);
response.pixels = [];
response.image_embeds = [];
for (const file of request.images ?? []) {
    const { pixel_values } = await processor(await RawImage.read(file));
    response.pixels.push(Array.from(pixel_values.data));
    const { image_embeds } = await visionModel({ pixel_values });
    response.image_embeds.push(Array.from(image_embeds.data));
}
await visionModel.dispose();

process.stdout.write(JSON.stringify(response) + '\n');
