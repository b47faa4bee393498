// docs/deploy.md: its manifests validate against the Kubernetes schemas, its Prometheus configuration
// passes promtool, and the container's arguments start the real CLI. The YAML is read from the doc,
// so the doc and this test cannot drift apart.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Service } from 'kubernetes-models/v1/Service';
import { parse } from 'yaml';
import { Child, within } from '../../tcpkit/test/helpers.js';
import { parseDuration } from '../src/parse.js';

const DOC = readFileSync(new URL('../../../docs/deploy.md', import.meta.url), 'utf8');
const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const blocks = [...DOC.matchAll(/^```yaml\n([\s\S]*?)^```$/gm)].map((m) => parse(m[1]!) as Record<string, unknown>);
const ofKind = (kind: string): Record<string, unknown> => {
  const block = blocks.find((b) => b.kind === kind);
  assert.ok(block, `a ${kind} in docs/deploy.md`);
  return block;
};

type Container = { args: string[]; readinessProbe: { httpGet: { path: string; port: string } } };
type PodSpec = { terminationGracePeriodSeconds: number; containers: Container[] };

describe('docs/deploy.md', () => {
  it('holds a Deployment and a Service that validate against the Kubernetes schemas', () => {
    const deployment = new Deployment(ofKind('Deployment') as never);
    deployment.validate();
    new Service(ofKind('Service') as never).validate();
    assert.throws(() => new Deployment({ ...ofKind('Deployment'), spec: { replicas: 'three' } } as never).validate());
  });

  it('gives the pod a grace period longer than shutdownDelay + drainTimeout, probes on the admin port', () => {
    const pod = (ofKind('Deployment') as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
    const [container] = pod.containers;
    assert.ok(container);
    const flag = (name: string): string => {
      const arg = container.args.find((a) => a.startsWith(`--${name}=`));
      assert.ok(arg, `--${name} in the container's args`);
      return arg.slice(name.length + 3);
    };
    const budgetMs = parseDuration(flag('shutdown-delay')) + parseDuration(flag('drain-timeout'));
    assert.ok(pod.terminationGracePeriodSeconds * 1000 > budgetMs, 'grace period > shutdownDelay + drainTimeout');
    assert.equal(container.readinessProbe.httpGet.path, '/readyz');
    assert.equal(container.readinessProbe.httpGet.port, 'admin');
  });

  it('has a Prometheus scrape configuration that promtool accepts', (t) => {
    const promtool = spawnSync('promtool', ['--version']);
    if (promtool.error !== undefined) {
      if (process.env.CI) assert.fail('promtool (Debian package prometheus) is missing under CI');
      t.skip('promtool missing: apt-get install prometheus');
      return;
    }
    const config = blocks.find((b) => 'scrape_configs' in b) as { scrape_configs: Record<string, unknown>[] };
    assert.ok(config, 'a scrape configuration');
    // Debian builds Prometheus without Kubernetes service discovery, so promtool there cannot parse
    // kubernetes_sd_configs: check the job with a static target in its place (the relabelling, paths and
    // intervals are still checked), and that the discovery asked for is the pod role.
    const [job] = config.scrape_configs;
    assert.deepEqual(job?.kubernetes_sd_configs, [{ role: 'pod' }]);
    const { kubernetes_sd_configs: _, ...rest } = job!;
    const checkable = { scrape_configs: [{ ...rest, static_configs: [{ targets: ['127.0.0.1:9090'] }] }] };
    const dir = mkdtempSync(join(tmpdir(), 'tcpkit-promtool-'));
    try {
      const file = join(dir, 'prometheus.yml');
      writeFileSync(file, JSON.stringify(checkable));
      execFileSync('promtool', ['check', 'config', file], { stdio: 'pipe' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("starts the real CLI with the container's arguments (on loopback, ephemeral ports)", {
    timeout: 60_000,
  }, async () => {
    const pod = (ofKind('Deployment') as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
    const args = pod.containers[0]!.args.map((a) =>
      a.replace(/^--(host|admin-host)=.*/, '--$1=127.0.0.1').replace(/^--(port|admin-port)=.*/, '--$1=0'),
    );
    const proc = new Child(process.execPath, ['--import', 'tsx', MAIN, ...args]);
    try {
      const line = await proc.line((l) => l.includes('"msg":"listening"'), 'listening', 30_000);
      assert.match(line, /"admin":"127\.0\.0\.1:\d+"/);
      proc.signal('SIGTERM');
      await proc.line((l) => l.includes('not ready'), 'the shutdown delay to begin');
      // The signal again skips the delay; a repeat within 1 s of the first counts as the same signal, so
      // repeat it until the CLI exits (bounded).
      for (let i = 0; i < 20 && proc.process.exitCode === null; i++) {
        proc.signal('SIGTERM');
        await Promise.race([proc.exited, delay(500)]);
      }
      assert.equal((await within(proc.exited, 30_000, 'the CLI to exit')).code, 0);
    } finally {
      proc.kill();
    }
  });
});
