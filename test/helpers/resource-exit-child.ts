/*
 * Child of the resource-management lifecycle test: starts the process-wide block with the real system
 * sampler and does not shut it down. Awaiting the start must not let the process exit under it, and once
 * started, its timers (sampling, model sweep) are unref'd: the process exits on its own.
 */
import { initializeResourceManagement } from '../../shared/resources/resource-management';

void (async () => {
  const rm = await initializeResourceManagement({ sampleMs: 100 });
  const usage = rm.monitor.getCurrentUsage();
  console.log(`started ${usage && Number.isFinite(usage.cpuPercent) ? 'with a sample' : 'without a sample'}`);
})();
