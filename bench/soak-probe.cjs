/*
 * Loaded with `node --require` into the processes bench:soak measures (the API and the worker). Over the IPC
 * channel the bench opened, it answers memory samples (after a full GC when asked: what is retained, not
 * garbage not yet collected) and writes heap snapshots. It does nothing in a process without that channel.
 */
'use strict';
// eslint-disable-next-line @typescript-eslint/no-require-imports -- a CommonJS preload, loaded by node --require
const v8 = require('node:v8');

if (typeof process.send === 'function') {
  const collect = () => {
    if (typeof globalThis.gc === 'function') globalThis.gc();
  };
  process.on('message', (m) => {
    if (m === null || typeof m !== 'object' || typeof m.soak !== 'string') return;
    if (m.soak === 'sample') {
      if (m.gc) collect();
      const u = process.memoryUsage();
      process.send({
        soak: 'sample',
        id: m.id,
        rss: u.rss,
        newSpace: v8.getHeapSpaceStatistics().find((sp) => sp.space_name === 'new_space')?.space_size ?? 0,
        heapUsed: u.heapUsed,
        heapTotal: u.heapTotal,
        external: u.external,
        arrayBuffers: u.arrayBuffers,
      });
    } else if (m.soak === 'snapshot') {
      collect();
      const file = v8.writeHeapSnapshot(m.file);
      process.send({ soak: 'snapshot', id: m.id, file });
    }
  });
  // The channel must not keep a process alive that is asked to stop.
  if (process.channel) process.channel.unref();
}
