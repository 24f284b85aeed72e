/*
 * `npm run docs:config`: writes docs/configuration.md from the ENV registry. A development tool; the
 * config-docs test fails until the committed page matches what this writes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_DOCS_PATH, renderConfigDocs } from '../shared/config/config-docs.js';
import { packageRoot } from '../shared/paths.js';

const path = join(packageRoot(), CONFIG_DOCS_PATH);
const text = renderConfigDocs();
let before = '';
try {
  before = readFileSync(path, 'utf8');
} catch {
  // first run: no page yet
}
if (before === text) {
  process.stdout.write(`${CONFIG_DOCS_PATH} is up to date\n`);
} else {
  writeFileSync(path, text);
  process.stdout.write(`wrote ${CONFIG_DOCS_PATH}\n`);
}
