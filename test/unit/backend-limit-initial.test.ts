import { loadConfig } from '../../shared/config/config';
import { silentLogger } from '../../shared/logger';
import { buildProviders } from '../../workers/providers/from-config';

/* CELL0_BACKEND_LIMIT_INITIAL: where each backend origin's adaptive limit starts (docs/backends.md). */
describe('the adaptive backend limit from the configuration', () => {
  async function limitOf(env: Record<string, string>): Promise<{ limit: number; max: number }> {
    const providers = buildProviders(loadConfig({ CELL0_OLLAMA_URL: 'http://127.0.0.1:9', ...env }), {
      inference: true,
      search: false,
      logger: silentLogger(),
    });
    try {
      const c = providers.inference!.routes[0]!.guard!.concurrency!.metrics();
      return { limit: c.limit, max: c.max };
    } finally {
      await providers.close();
    }
  }

  it('starts at 4 by default, at CELL0_BACKEND_LIMIT_INITIAL when set, never above the cap', async () => {
    expect(await limitOf({})).toEqual({ limit: 4, max: 64 });
    expect(await limitOf({ CELL0_BACKEND_LIMIT_INITIAL: '32', CELL0_BACKEND_LIMIT_MAX: '128' })).toEqual({
      limit: 32,
      max: 128,
    });
    expect(await limitOf({ CELL0_BACKEND_LIMIT_INITIAL: '100', CELL0_BACKEND_LIMIT_MAX: '16' })).toEqual({
      limit: 16,
      max: 16,
    });
  });
});
