export { ENV, loadConfig, redactUrl, type Config } from './config.js';
