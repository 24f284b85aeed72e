/*
 * bench:stream --backend-probe: loaded into each cell0 process (node --import). Per burst of requests (a new
 * burst begins when a request arrives more than 100 ms after the one before), it records the process's
 * main-thread CPU ms from the burst's first request to each of its backend calls (undici sending a request's
 * headers: the call to the simulator starts) and to its last request's arrival; once every request of the
 * burst has had its backend call, it appends one JSON line {requests, arrivedCpu, callCpu: [...]} to the file
 * named by CELL0_BENCH_PROBE_OUT. A count of the loop's work each call waited behind; it moves less with the
 * host's load than the time does, but still grows on a loaded host, where the wall time stretches and more of
 * the earlier streams' later work (their tokens) comes in between.
 *
 * Also per burst (since 2026-12-05 16:40Z): the scavenges of the young generation (V8's minor collections)
 * that began between the burst's first request and its K/2-th backend call, and between it and the K/2-th
 * response's first write (`scavengesToHalfCall`, `scavengesToHalfText`: [count, pause ms]); a scavenge stops
 * the loop for its pause. The line is then written at the K/2-th first write or the K-th call, whichever
 * comes later.
 */
import dc from 'node:diagnostics_channel';
import fs from 'node:fs';
import http from 'node:http';
import { PerformanceObserver, constants } from 'node:perf_hooks';

const out = process.env.CELL0_BENCH_PROBE_OUT;
if (out) {
  const cpuMs = () => {
    const u = process.threadCpuUsage();
    return (u.user + u.system) / 1000;
  };
  let burst;
  let lastArrival = -Infinity;
  /** The scavenges since the burst began: [start (performance.now()), pause ms]. */
  let scavenges = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) scavenges.push([e.startTime, e.duration]);
  }).observe({ entryTypes: ['gc'] });
  const before = (t) => {
    const s = scavenges.filter(([at]) => at < t);
    return [s.length, Number(s.reduce((x, [, d]) => x + d, 0).toFixed(2))];
  };
  const write = (b) => {
    if (b.written || b.callCpu.length < b.requests || b.firstWrites < Math.ceil(b.requests / 2)) return;
    b.written = true;
    const line = {
      requests: b.requests,
      arrivedCpu: b.arrivedCpu,
      callCpu: b.callCpu,
      scavengesToHalfCall: before(b.halfCallAt),
      scavengesToHalfText: before(b.halfTextAt),
    };
    fs.appendFileSync(out, `${JSON.stringify(line)}\n`);
  };
  dc.subscribe('http.server.request.start', () => {
    const t = performance.now();
    if (!burst || t - lastArrival > 100) {
      burst = { t0: t, cpu0: cpuMs(), requests: 0, arrivedCpu: 0, callCpu: [], firstWrites: 0 };
      scavenges = [];
    }
    lastArrival = t;
    burst.requests++;
    burst.arrivedCpu = cpuMs() - burst.cpu0;
  });
  dc.subscribe('undici:client:sendHeaders', () => {
    const b = burst;
    if (!b || b.callCpu.length >= b.requests) return;
    b.callCpu.push(cpuMs() - b.cpu0);
    if (b.callCpu.length === Math.ceil(b.requests / 2)) b.halfCallAt = performance.now();
    write(b);
  });
  // A response's first write: for a stream, its first text (or its whole answer).
  const seen = new WeakSet();
  const { write: resWrite, end: resEnd } = http.ServerResponse.prototype;
  const first = (res) => {
    const b = burst;
    if (!b || seen.has(res)) return;
    seen.add(res);
    if (++b.firstWrites === Math.ceil(b.requests / 2)) b.halfTextAt = performance.now();
    write(b);
  };
  http.ServerResponse.prototype.write = function (...args) {
    first(this);
    return resWrite.apply(this, args);
  };
  http.ServerResponse.prototype.end = function (...args) {
    first(this);
    return resEnd.apply(this, args);
  };
}
