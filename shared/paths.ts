import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

let root: string | undefined;

/**
 * The folder holding cell0's package.json. Assets (Lua scripts, the bundled search corpus) are read from
 * there, so the same path works when running from the TypeScript sources and from the compiled dist/.
 */
export function packageRoot(): string {
  if (root) return root;
  let dir = __dirname;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'cell0')
          return (root = dir);
      } catch {
        // not ours; keep walking
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cell0: cannot find the package root above ${__dirname}`);
    dir = parent;
  }
}
