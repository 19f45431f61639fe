// Public API.

export { MgLlava } from './model/mg-llava.js';
export type { VisualTokens, ChatRequest, LoadOptions } from './model/mg-llava.js';
export { ChatStream } from './model/chat.js';
export type { ChatResult, ChatTurn, ChatTimings } from './model/chat.js';
export type { GenerationOptions, GeneratedToken, TokenLogprob, FinishReason } from './generate/generate.js';
export type { ModelSpec, ModelFiles } from './model/model-files.js';
export { readVisualCache, writeVisualCache } from './model/visual-cache.js';
export { Tokenizer } from './tokenizer/tokenizer.js';
export { getTemplate, buildPrompt, TEMPLATE_NAMES } from './tokenizer/templates.js';
export type { PromptTemplate } from './tokenizer/templates.js';
export { decodeImage } from './preprocess/decode.js';
export type { RgbImage } from './preprocess/image.js';
export { parseBoxJson, detectionsFromObject, prepareBoxes } from './preprocess/boxes.js';
export type { Detections, BoxOptions } from './preprocess/boxes.js';
export { readBoxFile } from './preprocess/box-file.js';
export { InputError } from './core/errors.js';
export { quantizeLlm } from './model/llm/quantize.js';
export type { QuantizeLlmOptions, QuantizeLlmResult } from './model/llm/quantize.js';
export { Owlv2Detector, detectionsJson, toDetections, DEFAULT_DETECTION_THRESHOLD } from './detect/owlv2.js';
export type { DetectionResult, DetectOptions, DetectorLoadOptions } from './detect/owlv2.js';
export { COCO_80, cocoTags, fixedTags, parseTagList } from './detect/tags.js';
export type { TagSource } from './detect/tags.js';
export { train, trainableSelector } from './train/trainer.js';
export type { TrainOptions, TrainResult, StepReport } from './train/trainer.js';
export { exportXtuner } from './train/export-xtuner.js';
export type { XtunerExportOptions, XtunerExport } from './train/export-xtuner.js';
export { loadTrainData, collate } from './train/data.js';
export type { TrainSample, TrainData } from './train/data.js';
export { encodeConversation } from './train/labels.js';
export { appendBackward } from './graph/autodiff.js';
export type { CacheOptions } from './model/mg-llava.js';
export { readVideoCache, readAnyVisualCache } from './model/visual-cache.js';
export { loadVideoFrames, probeVideo, sampleIndices } from './video/frames.js';
export type { VideoFrames } from './video/frames.js';
export type { VideoTokens } from './video/video-tokens.js';
export { readVideoBoxFile } from './video/boxes.js';
export { startServer } from './server/server.js';
export type { ServeOptions, RunningServer } from './server/server.js';
export { runEval } from './eval/run.js';
export type { EvalRunOptions, EvalRunResult } from './eval/run.js';
export { scoreBenchmark } from './eval/score.js';
export { mergeRuns } from './eval/merge.js';
export { BENCHMARKS } from './eval/benchmarks.js';

import { MgLlava, LoadOptions } from './model/mg-llava.js';
import { ModelSpec } from './model/model-files.js';

/** Load a model from a folder with mgllava_config.json, or from its parts. */
export function loadModel(spec: string | ModelSpec, opts: LoadOptions = {}): Promise<MgLlava> {
  return MgLlava.load(typeof spec === 'string' ? { model: spec } : spec, opts);
}
