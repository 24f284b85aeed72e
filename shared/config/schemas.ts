import { z } from 'zod';

/*
 * The value shapes environment variables are read as. Each schema takes the raw string and either
 * returns the typed value or fails with the one-line reason shown to the operator.
 */

export const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^-?\d+$/, `expected an integer between ${min} and ${max}`)
    .transform(Number)
    .pipe(
      z.number().int().min(min, `expected an integer >= ${min}`).max(max, `expected an integer <= ${max}`),
    );

export const bool = z
  .string()
  .trim()
  .toLowerCase()
  .refine(
    (v) => ['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off'].includes(v),
    'expected 1/0, true/false, yes/no or on/off',
  )
  .transform((v) => ['1', 'true', 'yes', 'on'].includes(v));

/** A URL with one of `protocols` (e.g. 'http:'); `message` is the reason given for anything else. */
const urlWith = (protocols: readonly string[], message: string) =>
  z
    .string()
    .trim()
    .refine((v) => {
      try {
        return protocols.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    }, message);

export const httpUrl = urlWith(['http:', 'https:'], 'expected an http:// or https:// URL').transform((v) =>
  v.replace(/\/+$/, ''),
);

export const redisUrl = urlWith(
  ['redis:', 'rediss:'],
  'expected a redis:// or rediss:// URL, for example redis://:password@host:6379/0',
);

export const list = z.string().transform((v) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0),
);

/** A one-line list parsed by `parse`; its Error message becomes the variable's reason. */
export const parsedList = <T>(parse: (v: string) => T) =>
  z.string().transform((v, ctx) => {
    try {
      return parse(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
      return z.NEVER;
    }
  });

export const rate = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+(\.\d+)?$/, `expected a number between ${min} and ${max}`)
    .transform(Number)
    .pipe(z.number().min(min, `expected a number >= ${min}`).max(max, `expected a number <= ${max}`));
