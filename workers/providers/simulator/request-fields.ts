import { SimHttpError } from './http-exchange.js';

/*
 * Readers for the fields of Ollama request bodies. A field of the wrong type is refused with a 400, worded
 * after the Go JSON decoder's message that real Ollama returns.
 */

/** num_predict when the request gives none (Ollama's default). */
export const DEFAULT_NUM_PREDICT = 128;

type Body = Record<string, unknown>;

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function typeError(struct: string, field: string, goType: string, value: unknown): SimHttpError {
  return new SimHttpError(
    400,
    `json: cannot unmarshal ${jsonType(value)} into Go struct field ${struct}.${field} of type ${goType}`,
  );
}

/** The `model` field; missing or empty → 400 "model is required", as in Ollama. */
export function requireModel(body: Body, struct: string): string {
  const model = body.model;
  if (model === undefined || model === null || model === '') throw new SimHttpError(400, 'model is required');
  if (typeof model !== 'string') throw typeError(struct, 'model', 'string', model);
  if (model.trim().length === 0) throw new SimHttpError(400, 'model is required');
  return model;
}

export function optionalString(body: Body, field: string, struct: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw typeError(struct, field, 'string', value);
  return value;
}

export function optionalBoolean(body: Body, field: string, struct: string): boolean | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw typeError(struct, field, 'bool', value);
  return value;
}

export function optionalNumber(body: Body, field: string, struct: string): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw typeError(struct, field, 'number', value);
  return value;
}

export function optionalStringArray(body: Body, field: string, struct: string): string[] | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw typeError(struct, field, '[]string', value);
  }
  return value as string[];
}

export function optionalNumberArray(body: Body, field: string, struct: string): number[] | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'number')) {
    throw typeError(struct, field, '[]int', value);
  }
  return value as number[];
}

/** The options the simulator acts on; the others are accepted and ignored. */
export interface SimGenerationOptions {
  /** Token cap; <= 0 (Ollama's -1 and -2) means no cap. */
  numPredict: number;
  seed: number | undefined;
  temperature: number | undefined;
  stop: string[];
  numCtx: number | undefined;
}

export function readOptions(body: Body): SimGenerationOptions {
  const raw = body.options;
  if (raw !== undefined && raw !== null && (typeof raw !== 'object' || Array.isArray(raw))) {
    throw typeError('GenerateRequest', 'options', 'map[string]interface {}', raw);
  }
  const options = (raw ?? {}) as Body;
  const stopValue = options.stop;
  const stop =
    typeof stopValue === 'string' ? [stopValue] : (optionalStringArray(options, 'stop', 'Options') ?? []);
  return {
    numPredict: optionalNumber(options, 'num_predict', 'Options') ?? DEFAULT_NUM_PREDICT,
    seed: optionalNumber(options, 'seed', 'Options'),
    temperature: optionalNumber(options, 'temperature', 'Options'),
    stop,
    numCtx: optionalNumber(options, 'num_ctx', 'Options'),
  };
}

/** A chat message as far as the simulator cares. */
export interface SimMessage {
  role: string;
  content: string;
}

export function readMessages(body: Body): SimMessage[] {
  const value = body.messages;
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw typeError('ChatRequest', 'messages', '[]api.Message', value);
  return value.map((entry: unknown, i) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw typeError('ChatRequest', `messages[${i}]`, 'api.Message', entry);
    }
    const message = entry as Body;
    return {
      role: optionalString(message, 'role', 'Message') ?? '',
      content: optionalString(message, 'content', 'Message') ?? '',
    };
  });
}

/** /api/embed `input`: a string or an array of strings; undefined when absent (a load-only request). */
export function readEmbedInput(body: Body): string[] | undefined {
  const value = body.input;
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return [value];
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value as string[];
  throw new SimHttpError(400, 'invalid input type');
}
