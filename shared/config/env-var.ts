import { type z } from 'zod';
import { type FieldIssue } from '../errors.js';
import { type EnvSection } from './env-sections.js';

/** Declaration of one environment variable. */
export interface EnvVar {
  /** Where docs/configuration.md lists it (see env-sections.ts). */
  section: EnvSection;
  /** Default as it would be written in the environment; undefined = unset by default. */
  default?: string;
  schema: z.ZodType;
  /** One line for .env.example and docs/configuration.md. */
  doc: string;
  /** Never logged or echoed back. */
  secret?: boolean;
}

/** The validated values of a registry of variables: those without a default may be undefined. */
export type ParsedEnv<E extends Record<string, EnvVar>> = {
  [K in keyof E]: E[K] extends { default: string }
    ? z.output<E[K]['schema']>
    : z.output<E[K]['schema']> | undefined;
};

/** One variable's issue, as a check across variables reports it. */
export function issue(field: string, reason: string): FieldIssue[] {
  return [{ field, reason }];
}
