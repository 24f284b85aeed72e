// Import boundaries of cell0, checked by `npm run lint` (docs/contributing.md explains them).
//   bin         wires processes: may import anything but bench/ and test/
//   producers   how work enters; workers: how work is done — neither imports the other
//   shared      the engine both use: imports none of the other folders
//   dashboards  Bull Board, served by the API process: shared/ and producers/ (its API-key middleware, the
//               submitter's queues), never workers/
//   bench       may import anything but test/; test/ may import anything; nothing imports bench/ or test/
/** A rule: no import from `from` to `to` (path patterns, or other dependency-cruiser conditions). */
const forbid = (name, comment, from, to) => ({ name, comment, severity: 'error', from, to });

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    forbid(
      'producers-not-workers',
      'producers/ never imports workers/: they meet only through the queues and shared/',
      { path: '^producers/' },
      { path: '^workers/' },
    ),
    forbid(
      'workers-not-producers',
      'workers/ never imports producers/: they meet only through the queues and shared/',
      { path: '^workers/' },
      { path: '^producers/' },
    ),
    forbid(
      'shared-is-the-bottom',
      'shared/ is used by every other folder and imports none of them',
      { path: '^shared/' },
      { path: '^(bin|producers|workers|dashboards|bench|test)/' },
    ),
    forbid(
      'dashboards-not-workers',
      'dashboards/ runs in the API process: shared/ and producers/ only',
      { path: '^dashboards/' },
      { path: '^(bin|workers|bench|test)/' },
    ),
    forbid(
      'nothing-imports-bench',
      'benchmarks are leaves: no code, not even tests, depends on them',
      { pathNot: '^bench/' },
      { path: '^bench/' },
    ),
    forbid(
      'only-tests-import-tests',
      'test/ (helpers, fakes) is not part of the product or of the benchmarks',
      { pathNot: '^test/' },
      { path: '^test/' },
    ),
    forbid('no-circular', 'no import cycles', {}, { circular: true }),
    forbid(
      'no-unresolvable',
      'an import that resolves to nothing would hide a boundary violation',
      {},
      { couldNotResolve: true },
    ),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules|coverage|artillery)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
