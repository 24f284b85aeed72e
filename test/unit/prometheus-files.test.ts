import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { metricNamesIn, promtool } from '../helpers/prom';

const DIR = join(__dirname, '..', '..', 'dashboards', 'prometheus');

describe('dashboards/prometheus', () => {
  it('promtool check config accepts prometheus.yml (and the rule file it names)', async () => {
    const r = await promtool(['check', 'config', join(DIR, 'prometheus.yml')]);
    expect({ code: r.code, out: r.code === 0 ? '' : r.stdout + r.stderr }).toEqual({ code: 0, out: '' });
  }, 30_000);

  it('promtool check rules accepts alerts.yml', async () => {
    const r = await promtool(['check', 'rules', join(DIR, 'alerts.yml')]);
    expect({ code: r.code, out: r.code === 0 ? '' : r.stdout + r.stderr }).toEqual({ code: 0, out: '' });
    expect(r.stdout).toMatch(/SUCCESS: 6 rules found/);
  }, 30_000);

  it('the alerts query only metric families cell0 serves', () => {
    const doc = parse(readFileSync(join(DIR, 'alerts.yml'), 'utf8')) as {
      groups: { rules: { expr: string }[] }[];
    };
    const served = [
      'bullmq_job_count',
      'cell0_jobs_failed_total',
      'cell0_jobs_completed_total',
      'cell0_http_request_duration_seconds_bucket',
      'cell0_backend_breaker_state',
      'cell0_redis_memory_used_bytes',
      'cell0_redis_memory_max_bytes',
      'cell0_fleet_workers',
    ];
    for (const rule of doc.groups.flatMap((g) => g.rules)) {
      const names = [...rule.expr.matchAll(/\b(cell0_[a-z_]+|bullmq_[a-z_]+)/g)].map((m) => m[1]);
      expect(names.length).toBeGreaterThan(0);
      for (const n of names) expect(served).toContain(n);
    }
  });

  it('reads the metric names out of PromQL (what the live-fleet test checks the dashboard with)', () => {
    expect(
      metricNamesIn(
        'histogram_quantile(0.95, sum by (le, route) (rate(cell0_http_request_duration_seconds_bucket{route=~"/v1/.*"}[$__rate_interval])))',
      ),
    ).toEqual(['cell0_http_request_duration_seconds_bucket']);
    expect(
      metricNamesIn(
        'sum by (queue) (rate(a_total[5m])) / clamp_min(sum by (queue) (rate(b_total[5m]) + rate(a_total[5m])), 1e-9) > 0.05',
      ),
    ).toEqual(['a_total', 'b_total']);
    expect(metricNamesIn('max(x_bytes) / max(y_bytes > 0) >= 0.9 and on (job) up == 1')).toEqual([
      'x_bytes',
      'y_bytes',
      'up',
    ]);
  });
});
