// The errors live one per file in errors/ (their codes in errors/error-codes.ts); this keeps imports short.
export * from './errors/index.js';
