import {
  batchFileId,
  openAIBatchObject,
  openAIResultLine,
  parseBatchFileId,
  parseOpenAIBatchCreate,
} from '../../producers/api/openai/openai-batches';
import { type BatchResultLine, type BatchView } from '../../producers/batches/batch-model';
import { ValidationError } from '../../shared/errors';

const BATCH = 'batch_0123456789abcdef01234567';
const result = {
  model: 'qwen2.5:0.5b',
  text: 'Paris.',
  doneReason: 'stop',
  usage: { promptTokens: 7, completionTokens: 2, totalTokens: 9 },
};

describe("OpenAI's batch output and error lines", () => {
  const completed: BatchResultLine = {
    custom_id: 'a',
    line: 1,
    status: 'completed',
    queue: 'inference',
    job_id: 'i-00ff',
    cached: false,
    result,
  };
  const failed: BatchResultLine = {
    custom_id: 'b',
    line: 2,
    status: 'failed',
    queue: 'inference',
    job_id: 'i-11ee',
    error: { code: 'CELL0_MODEL_NOT_FOUND', message: 'no such model' },
  };
  const cancelled: BatchResultLine = {
    custom_id: 'c',
    line: 3,
    status: 'cancelled',
    queue: 'inference',
    error: { code: 'CELL0_BATCH_CANCELLED', message: 'the batch was cancelled' },
  };

  it('puts an answered line in the output file as the route would have answered it', () => {
    const chat = JSON.parse(openAIResultLine(BATCH, completed, '/v1/chat/completions', 'output')!);
    expect(chat).toMatchObject({
      custom_id: 'a',
      error: null,
      response: {
        status_code: 200,
        request_id: 'i-00ff',
        body: {
          id: 'chatcmpl-00ff',
          object: 'chat.completion',
          model: 'qwen2.5:0.5b',
          choices: [{ index: 0, message: { role: 'assistant', content: 'Paris.' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 },
        },
      },
    });
    expect(chat.id).toMatch(/^batch_req_[0-9a-f]{24}$/);
    const text = JSON.parse(openAIResultLine(BATCH, completed, '/v1/completions', 'output')!);
    expect(text.response.body).toMatchObject({ object: 'text_completion', choices: [{ text: 'Paris.' }] });
    const list = { object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.5] }] };
    const emb = JSON.parse(
      openAIResultLine(
        BATCH,
        { ...completed, queue: 'embedding', result: list },
        '/v1/embeddings',
        'output',
      )!,
    );
    expect(emb.response.body).toEqual(list);
    expect(openAIResultLine(BATCH, completed, '/v1/chat/completions', 'errors')).toBeUndefined();
  });

  it('puts a failed line in the error file with its status and error, a cancelled one with batch_cancelled', () => {
    expect(JSON.parse(openAIResultLine(BATCH, failed, '/v1/chat/completions', 'errors')!)).toMatchObject({
      custom_id: 'b',
      error: null,
      response: {
        status_code: 404,
        request_id: 'i-11ee',
        body: { error: { message: 'no such model', code: 'model_not_found', param: 'model' } },
      },
    });
    expect(JSON.parse(openAIResultLine(BATCH, cancelled, '/v1/chat/completions', 'errors')!)).toMatchObject({
      custom_id: 'c',
      response: null,
      error: { code: 'batch_cancelled', message: 'the batch was cancelled' },
    });
    expect(openAIResultLine(BATCH, failed, '/v1/chat/completions', 'output')).toBeUndefined();
    expect(openAIResultLine(BATCH, cancelled, '/v1/chat/completions', 'output')).toBeUndefined();
  });

  it('gives each line of a batch its own stable request line id', () => {
    const id = (l: BatchResultLine, b = BATCH) =>
      (
        JSON.parse(
          openAIResultLine(b, l, '/v1/chat/completions', l.status === 'completed' ? 'output' : 'errors')!,
        ) as {
          id: string;
        }
      ).id;
    expect(id(completed)).toBe(id(completed));
    expect(id(completed)).not.toBe(id({ ...completed, line: 2 }));
    expect(id(completed)).not.toBe(id(completed, 'batch_ffffffffffffffffffffffff'));
  });
});

describe("OpenAI's Batch object and create body", () => {
  const view: BatchView = {
    id: BATCH,
    object: 'batch',
    status: 'cancelled',
    request_counts: { total: 5, completed: 2, failed: 1, cancelled: 2 },
    created_at: 1_000,
    in_progress_at: 1_000,
    cancelling_at: 1_010,
    cancelled_at: 1_020,
    openai: {
      input_file_id: 'file-0123456789abcdef01234567',
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
      metadata: { k: 'v' },
    },
  };

  it('counts failed and cancelled lines as failed, and names the files once the batch has ended', () => {
    expect(openAIBatchObject(view)).toMatchObject({
      id: BATCH,
      status: 'cancelled',
      request_counts: { total: 5, completed: 2, failed: 3 },
      output_file_id: batchFileId(BATCH, 'output'),
      error_file_id: batchFileId(BATCH, 'errors'),
      expires_at: 1_000 + 24 * 3600,
      cancelled_at: 1_020,
      completed_at: null,
      metadata: { k: 'v' },
    });
    const running = openAIBatchObject({ ...view, status: 'in_progress' });
    expect(running.output_file_id).toBeNull();
    expect(running.error_file_id).toBeNull();
    const clean = openAIBatchObject({
      ...view,
      status: 'completed',
      request_counts: { total: 2, completed: 2, failed: 0, cancelled: 0 },
    });
    expect(clean.error_file_id).toBeNull();
    expect(parseBatchFileId(batchFileId(BATCH, 'errors'))).toEqual({ batchId: BATCH, which: 'errors' });
    expect(parseBatchFileId('file-batch_xyz-output')).toBeUndefined();
  });

  it('refuses a create body naming each bad field', () => {
    const err = (() => {
      try {
        parseOpenAIBatchCreate({
          input_file_id: '',
          endpoint: '/v1/responses',
          completion_window: '1h',
          metadata: [],
        });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).issues.map((i) => i.field)).toEqual([
      'input_file_id',
      'endpoint',
      'completion_window',
      'metadata',
    ]);
    expect(
      parseOpenAIBatchCreate({
        input_file_id: 'file-x',
        endpoint: '/v1/embeddings',
        completion_window: '24h',
      }),
    ).toEqual({
      input_file_id: 'file-x',
      endpoint: '/v1/embeddings',
      completion_window: '24h',
      metadata: null,
    });
  });
});
