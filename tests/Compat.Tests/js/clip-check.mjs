// Loads one of our CLIP folders with transformers.js (onnxruntime-node, CPU, fp32), fully
// offline, and answers a JSON request read from stdin with one JSON object on stdout:
//   request:  {"model_dir": "...", "encode": ["text", ...], "images": ["/path/a.png", ...]}
//   response: {"encode": [[ids]...], "text_embeds": [[...]...],
//              "pixels": [[3·224·224 floats]...], "image_embeds": [[...]...]}
import { readRequest, offlineModel } from './offline.mjs';
import {
    env, AutoTokenizer, AutoImageProcessor, CLIPTextModelWithProjection, CLIPVisionModelWithProjection, RawImage,
} from '@huggingface/transformers';

const request = await readRequest();
const modelId = offlineModel(env, request.model_dir);
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
