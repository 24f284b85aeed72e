/*
 * `cell0 simulator` (and the simulator `cell0 start` runs when no Ollama is configured), apart from
 * bin/runtime.ts so that API and worker processes do not load it.
 */
import { type Config } from '../shared/config/config.js';
import { type Logger } from '../shared/logger.js';
import { OllamaSimulator } from '../workers/providers/simulator/ollama-simulator.js';
import { type Service } from './runtime.js';

export async function startSimulator(config: Config, log: Logger): Promise<Service & { url: string }> {
  const sim = new OllamaSimulator({
    host: config.simulator.host,
    port: config.simulator.port,
    ttftMs: config.simulator.ttftMs,
    tokensPerSec: config.simulator.tokensPerSec,
    loadMsPerGb: config.simulator.loadMsPerGb,
    maxLoaded: config.simulator.maxLoaded,
    allowAnyModel: config.simulator.allowAnyModel,
    embedCallMs: config.simulator.embedCallMs,
    embedItemMs: config.simulator.embedItemMs,
    embedParallel: config.simulator.embedParallel,
    faults: config.simulator.faults,
    gpu: config.simulator.gpu,
  });
  const { url } = await sim.start();
  log.info({ url }, 'simulator listening');
  return {
    name: 'simulator',
    url,
    banner: [`simulator  ${url}  (Ollama-compatible; stats at ${url}/_sim/stats)`],
    close: () => sim.close(),
  };
}
