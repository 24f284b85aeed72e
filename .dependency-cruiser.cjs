// Import boundaries of cell0, checked by `npm run lint` (docs/contributing.md explains them).
//   bin         wires processes: may import anything but bench/ and test/
//   producers   how work enters; workers: how work is done — neither imports the other
//   shared      the engine both use: imports none of the other folders
//   dashboards  Bull Board, served by the API process: shared/ and producers/ (its API-key middleware, the
//               submitter's queues), never workers/
//   bench       may import anything but test/; test/ may import anything; nothing imports bench/ or test/
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'producers-not-workers',
      comment: 'producers/ never imports workers/: they meet only through the queues and shared/',
      severity: 'error',
      from: { path: '^producers/' },
      to: { path: '^workers/' },
    },
    {
      name: 'workers-not-producers',
      comment: 'workers/ never imports producers/: they meet only through the queues and shared/',
      severity: 'error',
      from: { path: '^workers/' },
      to: { path: '^producers/' },
    },
    {
      name: 'shared-is-the-bottom',
      comment: 'shared/ is used by every other folder and imports none of them',
      severity: 'error',
      from: { path: '^shared/' },
      to: { path: '^(bin|producers|workers|dashboards|bench|test)/' },
    },
    {
      name: 'dashboards-not-workers',
      comment: 'dashboards/ runs in the API process: shared/ and producers/ only',
      severity: 'error',
      from: { path: '^dashboards/' },
      to: { path: '^(bin|workers|bench|test)/' },
    },
    {
      name: 'nothing-imports-bench',
      comment: 'benchmarks are leaves: no code, not even tests, depends on them',
      severity: 'error',
      from: { pathNot: '^bench/' },
      to: { path: '^bench/' },
    },
    {
      name: 'only-tests-import-tests',
      comment: 'test/ (helpers, fakes) is not part of the product or of the benchmarks',
      severity: 'error',
      from: { pathNot: '^test/' },
      to: { path: '^test/' },
    },
    {
      name: 'no-circular',
      comment: 'no import cycles',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-unresolvable',
      comment: 'an import that resolves to nothing would hide a boundary violation',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules|coverage|artillery)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
