export { createFleetPage, type FleetPageOptions } from './fleet-page.js';
export { fleetSources } from './fleet-sources.js';
export {
  FleetSampler,
  quantileOfDelta,
  type FleetSamplerOptions,
  type FleetSources,
  type FleetSample,
  type FleetView,
} from './fleet-sampler.js';
