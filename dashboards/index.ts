export { createDashboard, type DashboardOptions } from './bull-board.js';
