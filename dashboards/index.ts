export { createDashboard, type DashboardOptions } from './bull-board.js';
export { createFleetPage, fleetSources, type FleetPageOptions } from './fleet-page/index.js';
