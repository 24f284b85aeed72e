import { once } from 'node:events';
import {
  chmod,
  lstat,
  lutimes,
  mkdir,
  mkdtemp,
  readdir,
  realpath,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { ClosedError } from '../../shared/errors';
import {
  DiskCleanupManager,
  type CleanupReport,
  type DiskCleanupOptions,
  type DiskUsage,
} from '../../shared/resources/disk-cleanup';
import { rejectionOf } from '../helpers/wait';

const DAY_S = 86_400;
let base: string;
let serial = 0;

beforeAll(async () => {
  // Real path: on some systems the temporary folder is reached through a symlink, and reports use real paths.
  base = await realpath(await mkdtemp(join(tmpdir(), 'cell0-disk-cleanup-')));
});
afterAll(async () => {
  await chmodTree(base);
  await rm(base, { recursive: true, force: true });
});

/** A new empty folder for one test. */
async function freshDir(name = 't'): Promise<string> {
  const dir = join(base, `${name}${serial++}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Sets the mtime (and atime) of `path` to `ageSeconds` ago, without following a symlink. */
async function age(path: string, ageSeconds: number): Promise<void> {
  const t = Date.now() / 1000 - ageSeconds;
  await lutimes(path, t, t);
}

/** A file of `bytes` bytes whose mtime is `ageDays` old. */
async function file(path: string, bytes: number, ageDays: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, Buffer.alloc(bytes, 'x'));
  await age(path, ageDays * DAY_S);
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

type Entry = { type: 'file' | 'dir' | 'link' | 'other'; size: number; mtimeMs: number };

/** Every entry under `dir` (relative path → kind, size, mtime), never following symlinks. */
async function snapshot(dir: string): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const stack = [dir];
  while (stack.length > 0) {
    const d = stack.pop()!;
    for (const name of await readdir(d)) {
      const p = join(d, name);
      const st = await lstat(p);
      const type = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'link' : 'other';
      out.set(relative(dir, p), { type, size: st.size, mtimeMs: st.mtimeMs });
      if (type === 'dir') stack.push(p);
    }
  }
  return out;
}

/** Bytes of the regular files under the folders. */
async function bytesUnder(...dirs: string[]): Promise<number> {
  let sum = 0;
  for (const d of dirs) for (const e of (await snapshot(d)).values()) if (e.type === 'file') sum += e.size;
  return sum;
}

/** A disk of `capacity` bytes whose only content is the regular files under `dirs`. */
function fakeDisk(capacity: number, ...dirs: string[]): (path: string) => Promise<DiskUsage> {
  return async () => {
    const used = await bytesUnder(...dirs);
    return { percent: (used / capacity) * 100, totalBytes: capacity, freeBytes: capacity - used };
  };
}

const calmDisk = async (): Promise<DiskUsage> => ({ percent: 10, totalBytes: 1e12, freeBytes: 9e11 });

/** Undo chmod 000 of the permission test so the tree can be removed. */
async function chmodTree(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [])) {
    const p = join(dir, name);
    const st = await lstat(p);
    if (st.isDirectory()) {
      await chmod(p, 0o755);
      await chmodTree(p);
    }
  }
}

/** The tree of the main tests: what the cleaner must remove, keep and never reach. */
async function buildTree(): Promise<{ root: string; outside: string }> {
  const root = await freshDir('root');
  const outside = await freshDir('outside');
  await file(join(outside, 'old-target.txt'), 70, 10);
  await file(join(outside, 'olddir', 'x.txt'), 80, 10);
  await age(join(outside, 'olddir'), 10 * DAY_S);

  await file(join(root, 'old1.log'), 100, 10);
  await file(join(root, 'new1.log'), 200, 0);
  await file(join(root, 'sub', 'old2.bin'), 300, 10);
  await file(join(root, 'sub', 'new2.bin'), 50, 0);
  await file(join(root, 'olddir', 'deep', 'old3.txt'), 400, 10);
  await file(join(root, 'recent', 'old4.txt'), 500, 10);
  await mkdir(join(root, 'empty-new'));
  await mkdir(join(root, 'empty-old'));
  await symlink(join(outside, 'old-target.txt'), join(root, 'link-out-file'));
  await symlink(join(outside, 'olddir'), join(root, 'link-out-dir'));
  await mkdir(join(root, 'links'));
  await symlink(join(root, 'sub', 'old2.bin'), join(root, 'links', 'link-in'));
  // Symlinks as old as the files: they must be kept for what they are, not for their age.
  for (const l of ['link-out-file', 'link-out-dir', join('links', 'link-in')])
    await age(join(root, l), 10 * DAY_S);
  // Folders last (creating entries changes their mtime), deepest first.
  for (const d of [join('olddir', 'deep'), 'olddir', 'sub', 'empty-old', 'links', ''])
    await age(join(root, d), 10 * DAY_S);
  return { root, outside };
}

const REMOVED = [
  'old1.log',
  join('sub', 'old2.bin'),
  join('olddir', 'deep', 'old3.txt'),
  join('recent', 'old4.txt'),
];
const REMOVED_BYTES = 100 + 300 + 400 + 500;
const REMOVED_DIRS = [join('olddir', 'deep'), 'olddir', 'empty-old'];

let managers: DiskCleanupManager[] = [];
function manager(opts: DiskCleanupOptions = {}): DiskCleanupManager {
  const m = new DiskCleanupManager({ intervalMs: 0, ...opts });
  managers.push(m);
  return m;
}
afterEach(async () => {
  await Promise.all(managers.map((m) => m.close()));
  managers = [];
});

describe('DiskCleanupManager: age-based removal', () => {
  it('removes old regular files and the old folders they leave empty; keeps new files, symlinks and the root', async () => {
    const { root, outside } = await buildTree();
    const before = await snapshot(root);
    const outsideBefore = await snapshot(outside);
    const m = manager({ diskUsage: calmDisk });
    m.registerCleanupPath(root, 5);

    const report = await m.run();

    const after = await snapshot(root);
    const gone = [...before.keys()].filter((k) => !after.has(k)).sort();
    expect(gone).toEqual([...REMOVED, ...REMOVED_DIRS].sort());
    expect([...after.keys()].filter((k) => !before.has(k))).toEqual([]);
    // What stays is untouched: new files, the folder still holding one, the recently changed folder that
    // lost its only file, the new empty folder, and the folder holding nothing but a symlink.
    for (const k of ['new1.log', join('sub', 'new2.bin'), 'empty-new', 'links'])
      expect(after.get(k)).toEqual(before.get(k));
    for (const k of ['sub', 'recent']) expect(after.get(k)?.type).toBe('dir');
    for (const l of ['link-out-file', 'link-out-dir', join('links', 'link-in')])
      expect((await lstat(join(root, l))).isSymbolicLink()).toBe(true);
    expect(await snapshot(outside)).toEqual(outsideBefore);
    expect((await lstat(root)).isDirectory()).toBe(true);

    expect(report.dryRun).toBe(false);
    expect(report.paths).toEqual([
      {
        path: root,
        maxAgeDays: 5,
        removedFiles: 4,
        removedBytes: REMOVED_BYTES,
        removedDirs: 3,
        aggressiveFiles: 0,
        errors: 0,
        diskPercentBefore: 10,
        diskPercentAfter: 10,
      },
    ]);
    expect(report.removedFiles).toBe(4);
    expect(report.removedBytes).toBe(REMOVED_BYTES);
    expect([...report.sample].sort()).toEqual(REMOVED.map((r) => join(root, r)).sort());
    expect(report.errors).toEqual([]);
    expect(Number.isNaN(Date.parse(report.startedAt))).toBe(false);
    expect(m.lastReport()).toBe(report);
  });

  it('a dry run touches nothing and reports what a real run then removes', async () => {
    const { root, outside } = await buildTree();
    const before = await snapshot(root);
    const outsideBefore = await snapshot(outside);
    const m = manager({ diskUsage: calmDisk, dryRun: true });
    m.registerCleanupPath(root, 5);

    const dry = await m.run();
    expect(await snapshot(root)).toEqual(before);
    expect(await snapshot(outside)).toEqual(outsideBefore);
    expect(dry.dryRun).toBe(true);
    expect(dry.paths[0]).toMatchObject({ removedFiles: 4, removedBytes: REMOVED_BYTES, removedDirs: 3 });
    expect([...dry.sample].sort()).toEqual(REMOVED.map((r) => join(root, r)).sort());

    const real = await m.run({ dryRun: false });
    expect(real.dryRun).toBe(false);
    expect([...real.sample].sort()).toEqual([...dry.sample].sort());
    expect(real.paths[0]).toMatchObject({ removedFiles: 4, removedBytes: REMOVED_BYTES, removedDirs: 3 });
    for (const r of REMOVED) expect(await exists(join(root, r))).toBe(false);
  });

  it('keeps the registered folder even when everything in it goes', async () => {
    const root = await freshDir();
    await file(join(root, 'a', 'old.txt'), 10, 3);
    await age(join(root, 'a'), 3 * DAY_S);
    await age(root, 3 * DAY_S);
    const m = manager({ diskUsage: calmDisk });
    m.registerCleanupPath(root, 1);
    const report = await m.run();
    expect(report.paths[0]).toMatchObject({ removedFiles: 1, removedDirs: 1 });
    expect(await readdir(root)).toEqual([]);
  });

  it('takes fractional days: 0.5 = 12 hours, by the injected clock', async () => {
    const root = await freshDir();
    await file(join(root, 'eleven-hours.txt'), 1, 11 / 24);
    await file(join(root, 'thirteen-hours.txt'), 1, 13 / 24);
    const m = manager({ diskUsage: calmDisk });
    m.registerCleanupPath(root, 0.5);
    await m.run();
    expect(await readdir(root)).toEqual(['eleven-hours.txt']);

    // Two hours later by the clock, the other one is old too.
    const later = manager({ diskUsage: calmDisk, now: () => Date.now() + 2 * 3_600_000 });
    later.registerCleanupPath(root, 0.5);
    expect((await later.run()).removedFiles).toBe(1);
    expect(await readdir(root)).toEqual([]);
  });

  it('leaves sockets alone, and the old folder holding one', async () => {
    const root = await freshDir();
    const sock = join(root, 'sockdir', 's.sock');
    await mkdir(dirname(sock));
    const server: Server = createServer();
    await new Promise<void>((done) => server.listen(sock, done));
    try {
      await age(sock, 10 * DAY_S);
      await age(dirname(sock), 10 * DAY_S);
      const m = manager({ diskUsage: calmDisk });
      m.registerCleanupPath(root, 1);
      const report = await m.run();
      expect((await lstat(sock)).isSocket()).toBe(true);
      expect(report.paths[0]).toMatchObject({ removedFiles: 0, removedDirs: 0, errors: 0 });
    } finally {
      server.close();
    }
  });

  it('a folder registered inside another keeps its own max age and is not walked twice', async () => {
    const root = await freshDir();
    await file(join(root, 'old.txt'), 10, 10);
    await file(join(root, 'models', 'old-model.bin'), 20, 10);
    await age(join(root, 'models'), 10 * DAY_S);
    const m = manager({ diskUsage: calmDisk });
    m.registerCleanupPath(root, 5);
    m.registerCleanupPath(join(root, 'models'), 100);
    const report = await m.run();
    expect(await exists(join(root, 'old.txt'))).toBe(false);
    expect(await exists(join(root, 'models', 'old-model.bin'))).toBe(true);
    expect(report.paths.map((p) => [p.removedFiles, p.removedDirs, p.errors])).toEqual([
      [1, 0, 0],
      [0, 0, 0],
    ]);
  });

  it('stops walking at maxEntries and says so', async () => {
    const root = await freshDir();
    for (let i = 0; i < 5; i++) await file(join(root, `old${i}.txt`), 1, 10);
    const capped = manager({ diskUsage: calmDisk, maxEntries: 3 });
    capped.registerCleanupPath(root, 1);
    const report = await capped.run();
    expect(report.removedFiles).toBe(3);
    expect(report.paths[0]!.errors).toBe(1);
    expect(report.errors[0]!.error).toMatch(/maxEntries 3/);
    expect(await readdir(root)).toHaveLength(2);

    const enough = manager({ diskUsage: calmDisk, maxEntries: 2 });
    enough.registerCleanupPath(root, 1);
    const rest = await enough.run();
    expect(rest.removedFiles).toBe(2);
    expect(rest.errors).toEqual([]);
  });

  const asRoot = process.getuid?.() === 0;
  (asRoot ? it.skip : it)('records a folder it may not read and goes on with the rest', async () => {
    const root = await freshDir();
    await file(join(root, 'locked', 'old.txt'), 10, 10);
    await file(join(root, 'open', 'old.txt'), 10, 10);
    await chmod(join(root, 'locked'), 0o000);
    const m = manager({ diskUsage: calmDisk });
    m.registerCleanupPath(root, 1);
    const report = await m.run();
    await chmod(join(root, 'locked'), 0o755);
    expect(report.paths[0]).toMatchObject({ removedFiles: 1, errors: 1 });
    expect(report.errors[0]!.path).toBe(join(root, 'locked'));
    expect(await exists(join(root, 'locked', 'old.txt'))).toBe(true);
  });
});

describe('DiskCleanupManager: oldest-first when the disk is over the threshold', () => {
  /** Two folders on one (fake, 1000-byte) disk: 700 bytes used, one file past the max age of 30 days. */
  async function twoFolders(): Promise<{ a: string; b: string }> {
    const a = await freshDir('a');
    const b = await freshDir('b');
    await file(join(a, 'a-40d'), 100, 40);
    await file(join(a, 'a-9d'), 100, 9);
    await file(join(a, 'a-6d'), 100, 6);
    await file(join(a, 'a-new'), 100, 0);
    await file(join(b, 'b-8d'), 100, 8);
    await file(join(b, 'b-7d'), 100, 7);
    await file(join(b, 'b-1d'), 100, 1);
    return { a, b };
  }

  it('removes the oldest files across the folders of the filesystem until use is at the threshold', async () => {
    const { a, b } = await twoFolders();
    const m = manager({ cleanupThreshold: 40, diskUsage: fakeDisk(1000, a, b) });
    m.registerCleanupPath(a, 30);
    m.registerCleanupPath(b, 30);
    const report = await m.run();
    // 70% → the age phase frees 100 bytes (60%) → the two oldest of the rest go (40%), and no more.
    expect((await readdir(a)).sort()).toEqual(['a-6d', 'a-new']);
    expect((await readdir(b)).sort()).toEqual(['b-1d', 'b-7d']);
    expect(report.paths.map((p) => [p.removedFiles, p.aggressiveFiles, p.removedBytes])).toEqual([
      [2, 1, 200],
      [1, 1, 100],
    ]);
    expect(report.paths[0]).toMatchObject({ diskPercentBefore: 70, diskPercentAfter: 40 });
    expect(report.paths[1]).toMatchObject({ diskPercentBefore: 70, diskPercentAfter: 40 });
    expect([...report.sample].sort()).toEqual([join(a, 'a-40d'), join(a, 'a-9d'), join(b, 'b-8d')].sort());
  });

  it('a dry run simulates the freed space and names the same files', async () => {
    const { a, b } = await twoFolders();
    const before = [await snapshot(a), await snapshot(b)];
    const m = manager({ cleanupThreshold: 40, diskUsage: fakeDisk(1000, a, b), dryRun: true });
    m.registerCleanupPath(a, 30);
    m.registerCleanupPath(b, 30);
    const report = await m.run();
    expect([await snapshot(a), await snapshot(b)]).toEqual(before);
    expect([...report.sample].sort()).toEqual([join(a, 'a-40d'), join(a, 'a-9d'), join(b, 'b-8d')].sort());
    expect(report.paths.map((p) => p.aggressiveFiles)).toEqual([1, 1]);
    expect(report.paths[0]).toMatchObject({ diskPercentBefore: 70, diskPercentAfter: 40 });
  });

  it('re-measures between batches of at most 50 files', async () => {
    const root = await freshDir();
    // 60 files of 10 bytes, one minute apart: 60% of a 1000-byte disk. Down to 5% = the 55 oldest.
    for (let i = 0; i < 60; i++) {
      const p = join(root, `f${String(i).padStart(2, '0')}`);
      await writeFile(p, Buffer.alloc(10));
      await age(p, 3600 - i * 60);
    }
    const measured: number[] = [];
    const disk = fakeDisk(1000, root);
    const m = manager({
      cleanupThreshold: 5,
      diskUsage: async (p) => {
        const u = await disk(p);
        measured.push(u.percent);
        return u;
      },
    });
    m.registerCleanupPath(root, 1);
    const report = await m.run();
    expect((await readdir(root)).sort()).toEqual(['f55', 'f56', 'f57', 'f58', 'f59']);
    expect(report.paths[0]!.aggressiveFiles).toBe(55);
    // Before, after the age phase, after the first batch (50 files), after the second (5), at the end.
    expect(measured.map((p) => Math.round(p))).toEqual([60, 60, 10, 5, 5]);
  });

  it('stops at its own accounting when the measurement does not drop (space held by open files)', async () => {
    const { a, b } = await twoFolders();
    const m = manager({
      cleanupThreshold: 40,
      diskUsage: async () => ({ percent: 70, totalBytes: 1000, freeBytes: 300 }),
    });
    m.registerCleanupPath(a, 30);
    m.registerCleanupPath(b, 30);
    await m.run();
    // Need 30% = 300 bytes: the three oldest under the max age go, then the accounting says enough.
    expect((await readdir(a)).sort()).toEqual(['a-6d', 'a-new']);
    expect((await readdir(b)).sort()).toEqual(['b-1d']);
  });

  it('is skipped when the disk was under the threshold at the start, unless forced', async () => {
    const { a, b } = await twoFolders();
    const disk = fakeDisk(1000, a, b);
    let lowFirst = true;
    const m = manager({
      cleanupThreshold: 40,
      // The first reading of each pass is low: the disk filled while the pass was walking.
      diskUsage: async (p) => {
        if (!lowFirst) return disk(p);
        lowFirst = false;
        return { percent: 20, totalBytes: 1000, freeBytes: 800 };
      },
    });
    m.registerCleanupPath(a, 30);
    m.registerCleanupPath(b, 30);
    const plain = await m.run();
    expect(plain.paths.map((p) => p.aggressiveFiles)).toEqual([0, 0]);
    expect(plain.removedFiles).toBe(1); // a-40d, by age

    lowFirst = true;
    const forced = await m.run({ aggressive: true });
    expect(forced.paths.map((p) => p.aggressiveFiles)).toEqual([1, 1]);
    expect((await readdir(a)).sort()).toEqual(['a-6d', 'a-new']);
    expect((await readdir(b)).sort()).toEqual(['b-1d', 'b-7d']);
  });

  it('measures with statfs by default', async () => {
    const root = await freshDir();
    const m = manager();
    m.registerCleanupPath(root, 1);
    const { diskPercentBefore, diskPercentAfter } = (await m.run()).paths[0]!;
    expect(diskPercentBefore).toBeGreaterThanOrEqual(0);
    expect(diskPercentBefore).toBeLessThanOrEqual(100);
    expect(diskPercentAfter).toBeGreaterThanOrEqual(0);
  });
});

describe('DiskCleanupManager: registration and safety', () => {
  it('refuses the root, the home directory, a folder holding it, an empty path and bad ages', () => {
    const m = manager();
    for (const p of ['/', '/..', '', '  ', homedir(), `${homedir()}/`])
      expect(() => m.registerCleanupPath(p, 1)).toThrow(TypeError);
    if (dirname(homedir()) !== '/')
      expect(() => m.registerCleanupPath(dirname(homedir()), 1)).toThrow(/contains the home directory/);
    expect(() => m.registerCleanupPath('/', 1)).toThrow(/filesystem root/);
    for (const days of [0, -1, Number.NaN, Number.POSITIVE_INFINITY])
      expect(() => m.registerCleanupPath(base, days)).toThrow(/maxAgeDays/);
    expect(m.paths()).toEqual([]);
  });

  it('will not clean a folder that is a symlink to the filesystem root', async () => {
    const dir = await freshDir();
    const link = join(dir, 'to-root');
    await symlink('/', link);
    // A dry run with a tiny budget: even a broken check could not delete anything here.
    const m = manager({ diskUsage: calmDisk, dryRun: true, maxEntries: 5 });
    m.registerCleanupPath(link, 1);
    const report = await m.run();
    expect(report.paths[0]).toMatchObject({ removedFiles: 0, errors: 1 });
    expect(report.errors[0]!.error).toMatch(/filesystem root/);
    expect(report.sample).toEqual([]);
  });

  it('reports a missing folder or a file in its place and cleans the others', async () => {
    const root = await freshDir();
    await file(join(root, 'old.txt'), 5, 10);
    await file(join(root, 'a-file'), 5, 0);
    const m = manager({ diskUsage: calmDisk });
    m.registerCleanupPath(join(root, 'nope'), 1);
    m.registerCleanupPath(join(root, 'a-file'), 1);
    m.registerCleanupPath(root, 1);
    const report = await m.run();
    expect(report.paths.map((p) => p.errors)).toEqual([1, 1, 0]);
    expect(report.errors).toEqual([
      { path: join(root, 'nope'), error: expect.stringMatching(/does not exist/) },
      { path: join(root, 'a-file'), error: expect.stringMatching(/not a directory/) },
    ]);
    expect(report.paths[2]!.removedFiles).toBe(1);
    expect(await exists(join(root, 'a-file'))).toBe(true);
  });

  it('re-registering updates the max age; unregistering forgets; relative paths are made absolute', () => {
    const m = manager();
    m.registerCleanupPath(base, 1);
    m.registerCleanupPath(`${base}/`, 2);
    m.registerCleanupPath('some/relative', 3);
    expect(m.paths()).toEqual([
      { path: base, maxAgeDays: 2 },
      { path: resolve('some/relative'), maxAgeDays: 3 },
    ]);
    expect(m.unregisterCleanupPath(base)).toBe(true);
    expect(m.unregisterCleanupPath(base)).toBe(false);
    expect(m.paths()).toEqual([{ path: resolve('some/relative'), maxAgeDays: 3 }]);
  });

  it('validates its options, naming the bad one', () => {
    const bad: [keyof DiskCleanupOptions, unknown][] = [
      ['cleanupThreshold', 0],
      ['cleanupThreshold', 101],
      ['cleanupThreshold', Number.NaN],
      ['cleanupThreshold', '90'],
      ['intervalMs', -1],
      ['intervalMs', 1.5],
      ['intervalMs', 2 ** 31],
      ['maxEntries', 0],
      ['maxEntries', 2.5],
      ['dryRun', 'yes'],
      ['diskUsage', 42],
      ['now', 'soon'],
    ];
    for (const [option, value] of bad)
      expect(() => new DiskCleanupManager({ [option]: value } as DiskCleanupOptions)).toThrow(
        new RegExp(`option "${option}"`),
      );
    expect(() => new DiskCleanupManager({ cleanupThreshold: -5 })).toThrow(TypeError);
    expect(new DiskCleanupManager().cleanupThreshold).toBe(90);
    expect(new DiskCleanupManager({ cleanupThreshold: undefined }).cleanupThreshold).toBe(90);
    expect(new DiskCleanupManager({ cleanupThreshold: 75 }).cleanupThreshold).toBe(75);
  });
});

describe('DiskCleanupManager: lifecycle', () => {
  it('concurrent run() calls share one pass', async () => {
    const root = await freshDir();
    await file(join(root, 'old.txt'), 5, 10);
    let measurements = 0;
    const m = manager({
      diskUsage: async () => {
        measurements++;
        return calmDisk();
      },
    });
    const done: CleanupReport[] = [];
    m.on('cleanup:done', (r) => done.push(r));
    m.registerCleanupPath(root, 1);
    const p1 = m.run();
    const p2 = m.run({ dryRun: true });
    expect(p2).toBe(p1);
    const [r1, r2] = await Promise.all([p1, p2]);
    expect(r2).toBe(r1);
    expect(r1.dryRun).toBe(false);
    expect(measurements).toBe(2); // one pass: before and after
    expect(done).toEqual([r1]);
    // The next call starts a new pass.
    const r3 = await m.run();
    expect(r3).not.toBe(r1);
    expect(r3.removedFiles).toBe(0);
  });

  it('start() runs on the interval, not at once; close() stops it and is idempotent', async () => {
    const root = await freshDir();
    await file(join(root, 'old.txt'), 5, 10);
    const m = manager({ diskUsage: calmDisk, intervalMs: 20 });
    m.registerCleanupPath(root, 1);
    m.start();
    m.start(); // no second timer
    expect(m.lastReport()).toBeUndefined();
    const [report] = (await once(m, 'cleanup:done')) as [CleanupReport];
    expect(report.removedFiles).toBe(1);
    expect(await exists(join(root, 'old.txt'))).toBe(false);

    await m.close();
    let after = 0;
    m.on('cleanup:done', () => after++);
    await new Promise((r) => setTimeout(r, 100)); // five intervals
    expect(after).toBe(0);
    await m.close();
    expect(await rejectionOf(m.run())).toBeInstanceOf(ClosedError);
    expect(() => m.start()).toThrow(ClosedError);
  });

  it('a failed timer pass is emitted as cleanup:error, never thrown', async () => {
    const m = manager({
      intervalMs: 10,
      now: () => {
        throw new Error('clock broke');
      },
    });
    m.start();
    const [err] = (await once(m, 'cleanup:error')) as [Error];
    expect(err.message).toBe('clock broke');
  });

  it('close() stops a pass in progress at its next entry and waits for it', async () => {
    const root = await freshDir();
    await file(join(root, 'old.txt'), 5, 10);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const m = manager({
      diskUsage: async () => {
        await gate;
        return calmDisk();
      },
    });
    m.registerCleanupPath(root, 1);
    const running = m.run();
    let closed = false;
    const closing = m.close().then(() => (closed = true));
    await new Promise((r) => setImmediate(r));
    expect(closed).toBe(false);
    release();
    const report = await running;
    await closing;
    expect(closed).toBe(true);
    expect(report.removedFiles).toBe(0);
    expect(report.errors.map((e) => e.error)).toEqual(['stopped early: the cleaner was closed']);
    expect(await exists(join(root, 'old.txt'))).toBe(true);
  });
});
