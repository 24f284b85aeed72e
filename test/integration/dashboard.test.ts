import { get, startTestFleet, type TestFleet } from '../helpers/fleet';

async function waitForQueues(url: string): Promise<{ name: string; readOnlyMode: boolean }[]> {
  for (let i = 0; i < 100; i++) {
    const r = await get(`${url}/admin/queues/api/queues`);
    const queues = (r.body.queues ?? []) as { name: string; readOnlyMode: boolean }[];
    if (queues.length === 5) return queues;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error('Bull Board never listed the queues');
}

describe('Bull Board at /admin/queues', () => {
  describe('read-only (default)', () => {
    let fleet: TestFleet;
    beforeAll(async () => {
      fleet = await startTestFleet({ worker: false });
    });
    afterAll(() => fleet.close());

    it('lists the work queues, the batches queue and the maintenance queue, read-only, and refuses mutations server-side', async () => {
      const page = await fetch(`${fleet.url}/admin/queues`);
      expect(page.status).toBe(200);
      expect(await page.text()).toMatch(/<html/i);
      const queues = await waitForQueues(fleet.url);
      expect(queues.map((q) => q.name).sort()).toEqual([
        'batches',
        'embedding',
        'inference',
        'maintenance',
        'search',
      ]);
      expect(queues.every((q) => q.readOnlyMode)).toBe(true);
      await fleet.client.enqueueSearch({ query: 'will stay' });
      const empty = await fetch(`${fleet.url}/admin/queues/api/queues/search/empty`, { method: 'PUT' });
      expect(empty.status).toBe(405);
      expect((await fleet.client.submitter.getCounts()).search!.waiting).toBe(1);
    });
  });

  describe('with CELL0_DASHBOARD_WRITE', () => {
    let fleet: TestFleet;
    beforeAll(async () => {
      fleet = await startTestFleet({ worker: false, dashboardWrite: true });
    });
    afterAll(() => fleet.close());

    it('allows mutations on the work queues; the maintenance and batches queues stay read-only', async () => {
      const queues = await waitForQueues(fleet.url);
      const fixed = ['maintenance', 'batches'];
      expect(queues.filter((q) => !fixed.includes(q.name)).every((q) => !q.readOnlyMode)).toBe(true);
      expect(queues.filter((q) => fixed.includes(q.name)).every((q) => q.readOnlyMode)).toBe(true);
      await fleet.client.enqueueSearch({ query: 'will go' });
      const empty = await fetch(`${fleet.url}/admin/queues/api/queues/search/empty`, { method: 'PUT' });
      expect(empty.status).toBe(200);
      expect((await fleet.client.submitter.getCounts()).search!.waiting).toBe(0);
    });
  });
});
