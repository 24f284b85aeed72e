/**
 * `defaults` overridden by `given`: the one way options are merged (`{ ...DEFAULTS, ...opts }`), never by
 * mutating either object. An option given as `undefined` means "use the default", not "override it with
 * undefined" (a caller passing `{ timeoutMs: cfg.timeoutMs }` with the setting absent keeps the default),
 * so only the values of `given` that are not undefined replace defaults. Validation stays with the caller:
 * check the merged result in the constructor and name the bad option.
 */
export function withDefaults<T extends object>(
  defaults: { readonly [K in keyof T]?: T[K] },
  given: { readonly [K in keyof T]?: T[K] | undefined } | undefined,
): T {
  const merged: Record<string, unknown> = { ...defaults };
  if (given)
    for (const [k, v] of Object.entries(given)) {
      if (v !== undefined) merged[k] = v;
    }
  return merged as T;
}
