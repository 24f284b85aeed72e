import { decodeReply, encodeRawReply, rawReply } from '../../shared/queues/job-replies';

/*
 * rawReply (the reply a worker hands to the producer of its own process) against what that producer's inbox
 * would have read: decodeReply of encodeRawReply's text.
 */
describe('rawReply', () => {
  const IDS = ['abc', '5f'.repeat(32), 'with "quotes" \\ and ✓', 'lone \ud800 surrogate', ''];
  const VALUES = [
    '',
    'null',
    '{"text":"an answer","usage":{"promptTokens":10}}',
    '"✓ \\u0000 \\ud800"',
    '[1,2,{"a":null}]',
    '12.5',
    'true',
    '{"a":1}  ',
    'not json',
    '{"unclosed":',
  ];
  const TIMES = [1_796_476_723_579, 0, -0, 1.5, Number.NaN, Number.POSITIVE_INFINITY];

  it('reads as the inbox would have, for completed and failed jobs', () => {
    let compared = 0;
    let defined = 0;
    for (const jobId of IDS)
      for (const value of VALUES)
        for (const t of TIMES)
          for (const status of ['completed', 'failed'] as const) {
            const direct = rawReply(jobId, status, t, value);
            expect(direct).toEqual(decodeReply(encodeRawReply(jobId, status, t, value)));
            if (direct) {
              defined++;
              // toEqual does not tell 0 from -0.
              expect(Object.is(direct.finishedOn, -0)).toBe(false);
            }
            compared++;
          }
    expect(compared).toBe(IDS.length * VALUES.length * TIMES.length * 2);
    expect(defined).toBeGreaterThan(compared / 2);
  });

  it('parses a completed job’s value, and keeps a failed job’s reason as it is', () => {
    expect(rawReply('j', 'completed', 5, '{"x":[1]}')).toEqual({
      jobId: 'j',
      status: 'completed',
      returnvalue: { x: [1] },
      finishedOn: 5,
    });
    expect(rawReply('j', 'failed', 5, 'boom: "quoted"')).toEqual({
      jobId: 'j',
      status: 'failed',
      failedReason: 'boom: "quoted"',
      finishedOn: 5,
    });
    expect(rawReply('j', 'completed', 5, '1,"s":2')).toBeUndefined();
  });
});
