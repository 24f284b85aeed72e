/*
 * bench:stream --backend-probe: loaded into each cell0 process (node --import). Per burst of requests (a new
 * burst begins when a request arrives more than 100 ms after the one before), it records the process's
 * main-thread CPU ms from the burst's first request to each of its backend calls (undici sending a request's
 * headers: the call to the simulator starts) and to its last request's arrival; once every request of the
 * burst has had its backend call, it appends one JSON line {requests, arrivedCpu, callCpu: [...]} to the file
 * named by CELL0_BENCH_PROBE_OUT. A count of the loop's work each call waited behind; it moves less with the
 * host's load than the time does, but still grows on a loaded host, where the wall time stretches and more of
 * the earlier streams' later work (their tokens) comes in between.
 */
import dc from 'node:diagnostics_channel';
import fs from 'node:fs';

const out = process.env.CELL0_BENCH_PROBE_OUT;
if (out) {
  const cpuMs = () => {
    const u = process.threadCpuUsage();
    return (u.user + u.system) / 1000;
  };
  let burst;
  let lastArrival = -Infinity;
  dc.subscribe('http.server.request.start', () => {
    const t = performance.now();
    if (!burst || t - lastArrival > 100) burst = { cpu0: cpuMs(), requests: 0, arrivedCpu: 0, callCpu: [] };
    lastArrival = t;
    burst.requests++;
    burst.arrivedCpu = cpuMs() - burst.cpu0;
  });
  dc.subscribe('undici:client:sendHeaders', () => {
    const b = burst;
    if (!b || b.callCpu.length >= b.requests) return;
    b.callCpu.push(cpuMs() - b.cpu0);
    if (b.callCpu.length === b.requests) fs.appendFileSync(out, `${JSON.stringify(b)}\n`);
  });
}
