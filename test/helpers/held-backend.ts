import { NoopInferenceBackend } from '../../workers/providers/noop-provider';

/** A backend that holds every call until released, counting the calls, those running and the most at once. */
export class HeldBackend extends NoopInferenceBackend {
  calls = 0;
  running = 0;
  most = 0;
  private gate: Promise<void>;
  release: () => void = () => undefined;
  constructor() {
    super();
    this.gate = new Promise((r) => (this.release = r));
  }
  override async run(job: Parameters<NoopInferenceBackend['run']>[0]) {
    this.calls++;
    this.running++;
    this.most = Math.max(this.most, this.running);
    try {
      await this.gate;
      return await super.run(job);
    } finally {
      this.running--;
    }
  }
}
