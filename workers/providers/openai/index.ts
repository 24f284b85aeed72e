export {
  OpenAIClient,
  OPENAI_PROVIDER,
  openAIErrorInfo,
  openAIHttpError,
  SseEvents,
  sseEvents,
  type OpenAIClientOptions,
  type OpenAIErrorInfo,
  type SseEvent,
} from './openai-client.js';
export type * from './types.js';
