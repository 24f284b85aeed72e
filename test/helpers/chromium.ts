import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * The system's Chromium (Debian package `chromium`), never a downloaded one: CELL0_CHROMIUM, else the first
 * of chromium / chromium-browser on the PATH. Throws with how to install it when there is none, so a test
 * needing it fails loudly instead of being skipped.
 */
export function systemChromium(): string {
  const fromEnv = process.env.CELL0_CHROMIUM;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`CELL0_CHROMIUM=${fromEnv}: no such file`);
    return fromEnv;
  }
  for (const name of ['chromium', 'chromium-browser']) {
    try {
      const path = execFileSync('which', [name], { encoding: 'utf8' }).trim();
      if (path) return path;
    } catch {
      // not on the PATH; try the next name
    }
  }
  throw new Error(
    'no Chromium found for the browser tests: install the system package (apt-get install -y chromium) or set CELL0_CHROMIUM to its binary; .ci/run installs it',
  );
}
