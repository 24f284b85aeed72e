import { type FieldIssue } from '../../errors.js';
import { issue, type EnvVar, type ParsedEnv } from '../env-var.js';
import { int } from '../schemas.js';

/*
 * Input limits, checked by the API and the client before anything reaches Redis.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const LIMITS_ENV = {
  CELL0_MAX_PROMPT_BYTES: {
    section: 'limits',
    default: '32768',
    schema: int(1, 16_777_216),
    doc: 'Largest prompt (prompt + system + all message contents, UTF-8 bytes)',
  },
  CELL0_MAX_QUERY_BYTES: {
    section: 'limits',
    default: '2048',
    schema: int(1, 1_048_576),
    doc: 'Largest search query, UTF-8 bytes',
  },
  CELL0_EMBED_MAX_INPUTS: {
    section: 'limits',
    default: '2048',
    schema: int(1, 100_000),
    doc: 'Most inputs one POST /v1/embeddings request may carry (each input is also held to CELL0_MAX_PROMPT_BYTES)',
  },
  CELL0_EMBED_MAX_BODY_BYTES: {
    section: 'limits',
    default: '4194304',
    schema: int(1024, 67_108_864),
    doc: 'Largest body of POST /v1/embeddings (a list of texts is larger than one request of the other kinds)',
  },
  CELL0_MAX_BODY_BYTES: {
    section: 'limits',
    default: '65536',
    schema: int(1024, 67_108_864),
    doc: 'Largest HTTP request body; larger bodies get 413',
  },
} satisfies Record<string, EnvVar>;

/** The input limits of Config.limits (the resource limits are in resources.ts). */
export interface InputLimits {
  maxPromptBytes: number;
  maxQueryBytes: number;
  maxBodyBytes: number;
  /** Most inputs of one embeddings request. */
  maxEmbedInputs: number;
  /** Largest body of POST /v1/embeddings. */
  maxEmbedBodyBytes: number;
}

/** Checks across the section's variables (run once each is valid on its own). */
export function checkLimits(p: ParsedEnv<typeof LIMITS_ENV>): FieldIssue[] {
  return p.CELL0_MAX_BODY_BYTES < Math.min(p.CELL0_MAX_PROMPT_BYTES, 16_777_216)
    ? issue(
        'CELL0_MAX_BODY_BYTES',
        `expected at least CELL0_MAX_PROMPT_BYTES (${p.CELL0_MAX_PROMPT_BYTES}), got ${p.CELL0_MAX_BODY_BYTES}`,
      )
    : [];
}

export function loadInputLimits(p: ParsedEnv<typeof LIMITS_ENV>): InputLimits {
  return {
    maxPromptBytes: p.CELL0_MAX_PROMPT_BYTES,
    maxQueryBytes: p.CELL0_MAX_QUERY_BYTES,
    maxBodyBytes: p.CELL0_MAX_BODY_BYTES,
    maxEmbedInputs: p.CELL0_EMBED_MAX_INPUTS,
    maxEmbedBodyBytes: p.CELL0_EMBED_MAX_BODY_BYTES,
  };
}
